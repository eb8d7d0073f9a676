#!/usr/bin/env bash
# install.sh: builds the real peers the end-to-end tests run, from the Go
# module proxy, into $SKEIN_PEERS (default ~/.cache/skein/peers). Idempotent:
# a peer whose binaries and version stamp exist is not rebuilt, so CI reuses
# the cache between runs. Heavy builds run one after the other.
#
#   test/peers/install.sh            # everything
#   test/peers/install.sh spire      # one peer
#
# SPIRE v1.13.3 (spire-server, spire-agent): ~4 min download, ~7 min compile on a cold cache.
# Jaeger v1.76.0 (cmd/jaeger, v2 all-in-one): ~2 min download, ~4 min compile on a cold cache.
# h2spec v2.2.1 (HTTP/2 conformance, test/h2spec_test.go): ~5 s download, ~10 s compile.
# Helm v4.3.2 (renders and lints deploy/helm/skein, test/helm_test.go): ~1 min download, ~3 min compile.
# Kubernetes v1.37.2 kube-apiserver + etcd v3.7.3 (test/kube_test.go, run as envtest does):
# ~1 min etcd and ~520 CPU-seconds kube-apiserver compile on a cold cache (~5 min on 2 idle cores;
# 31 min measured here beside four other builds), peak 2.8 GB RAM, GOCACHE +3 GB; modules ~2 min.
# Prometheus + promtool: Debian's package (apt-get, ~15 s), when not already installed.
# Dapr JavaScript SDK (@dapr/dapr, pinned in test/js/package.json): npm ci in test/js from its
# package-lock.json (~10 s; offline from ~/.npm once cached). Needs Node.js and npm.
set -euo pipefail
PEERS=${SKEIN_PEERS:-$HOME/.cache/skein/peers}
BIN="$PEERS/bin"
SRC="$PEERS/src"
mkdir -p "$BIN" "$SRC"
export GOFLAGS=-buildvcs=false

say() { echo "[peers] $*" >&2; }

# go_tool NAME VERSION PKG...: build PKGs at VERSION in a scratch module.
# PINS (module@version ...), when set, fixes the versions of dependencies
# a module without a go.mod of its own would otherwise take at latest.
go_tool() {
	local name=$1 ver=$2
	shift 2
	# shellcheck disable=SC2206 # PINS is a list of words
	local pins=(${PINS:-})
	local stamp="$BIN/.$name.version" want="$ver $*${PINS:+ pins: ${pins[*]}}" p have=1
	for p in "$@"; do [ -x "$BIN/$(basename "$p")" ] || have=0; done
	if [ "$have" = 1 ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		say "$name $ver already built in $BIN"
		return 0
	fi
	mkdir -p "$SRC/$name"
	(
		cd "$SRC/$name"
		[ -f go.mod ] || go mod init "skein.peers/$name" >/dev/null 2>&1
		local args=()
		for p in "$@"; do args+=("$p@$ver"); done
		say "go get -tool ${args[*]}"
		go get -tool "${args[@]}"
		if [ "${#pins[@]}" -gt 0 ]; then
			say "go get ${pins[*]}"
			go get "${pins[@]}"
		fi
		local t0=$SECONDS
		go build -o "$BIN/" "$@"
		say "$name built in $((SECONDS - t0))s"
	)
	echo "$want" >"$stamp"
}

jaeger() {
	go_tool jaeger v1.76.0 github.com/jaegertracing/jaeger/cmd/jaeger
}

# h2spec: its v2.2.1 tag has no go.mod (a dep project, hence +incompatible),
# so each dependency is pinned to the version that built with Go 1.26 on
# 2026-12-04; a new release of one cannot break or change the build.
h2spec() {
	PINS="golang.org/x/net@v0.63.0 golang.org/x/sys@v0.50.0 golang.org/x/text@v0.44.0
		github.com/spf13/cobra@v1.10.2 github.com/spf13/pflag@v1.0.9
		github.com/inconshreveable/mousetrap@v1.1.0 github.com/fatih/color@v1.19.0
		github.com/mattn/go-colorable@v0.1.14 github.com/mattn/go-isatty@v0.0.20" \
		go_tool h2spec v2.2.1+incompatible github.com/summerwind/h2spec/cmd/h2spec
}

# helm: renders the chart in deploy/helm/skein (test/helm_test.go, make
# manifests). Its go.mod pins its dependencies.
helm() {
	go_tool helm v4.3.2 helm.sh/helm/v4/cmd/helm
}

prometheus() {
	# type -P looks for files only: this function is named prometheus too.
	if type -P prometheus >/dev/null && type -P promtool >/dev/null; then
		say "prometheus already installed: $(type -P prometheus)"
		return 0
	fi
	say "apt-get install prometheus"
	local sudo=
	[ "$(id -u)" = 0 ] || sudo=sudo
	# The package's maintainer scripts start a system Prometheus on *:9090
	# where an init system runs; the tests start their own on loopback. A
	# policy-rc.d refusing every start (as Debian's container images ship)
	# keeps it from running; the unit is disabled too where systemd runs.
	local policy=/usr/sbin/policy-rc.d added=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
		$sudo chmod 755 "$policy"
		added=1
		trap "$sudo rm -f $policy" EXIT
	fi
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
	if [ "$added" = 1 ]; then
		$sudo rm -f "$policy"
		trap - EXIT
	fi
	if [ -d /run/systemd/system ]; then
		$sudo systemctl disable --now prometheus >/dev/null 2>&1 || true
	fi
	type -P promtool >/dev/null || { say "promtool missing after installing prometheus"; exit 1; }
	say "prometheus installed: $(command prometheus --version 2>&1 | head -1)"
}

spire() {
	go_tool spire v1.13.3 github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
}

# jssdk: test/js's node_modules (test/jssdk_test.go), exactly as its lock
# file says: npm ci, preferring npm's cache (~/.npm), so a warm machine
# needs no network. Not rebuilt while the lock file and node are the same.
# --ignore-scripts: the one install script in the tree (protobufjs's
# postinstall) only prints a version-scheme warning; skipping it keeps npm 9
# (Debian's) and npm 11 (which asks before running scripts) alike.
jssdk() {
	local dir stamp want
	dir="$(cd "$(dirname "${BASH_SOURCE[0]}")/../js" && pwd)"
	if ! type -P node >/dev/null || ! type -P npm >/dev/null; then
		say "node and npm are needed for $dir (the Dapr JavaScript SDK tests): install Node.js 18 or later with npm (Debian: apt-get install nodejs npm; .ci/run does)"
		exit 1
	fi
	if ! node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)'; then
		say "node $(node --version) is too old for @dapr/dapr: Node.js 18 or later is needed"
		exit 1
	fi
	stamp="$dir/node_modules/.skein-peers.version"
	want="$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1) node $(node --version)"
	if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		say "jssdk already installed in $dir/node_modules"
		return 0
	fi
	say "npm ci in $dir (node $(node --version), npm $(npm --version))"
	(cd "$dir" && npm ci --prefer-offline --ignore-scripts --no-audit --no-fund)
	echo "$want" >"$stamp"
	say "jssdk installed: @dapr/dapr $(cd "$dir" && node -p 'require("@dapr/dapr/package.json").version')"
}

# kube: a real Kubernetes API server and its etcd for the tests of
# `skein control-plane --kubernetes` (test/kube_test.go), started on loopback
# as controller-runtime's envtest does (no prebuilt binaries are reachable
# here, so both build from the Go module proxy). k8s.io/kubernetes replaces
# its staging modules (k8s.io/api, client-go ...) with ./staging/src/...,
# which a module download does not carry: the scratch module maps each to
# the published k8s.io/<name> v0.X.Y of the same release. The -X flags stamp
# the version the server reports (v0.0.0-master without them).
kube() {
	local kv=v1.37.2 ev=v3.7.3
	local stamp="$BIN/.kube.version" want="kube-apiserver $kv etcd $ev"
	if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/etcd" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
		say "kube-apiserver $kv and etcd $ev already built in $BIN"
		return 0
	fi
	mkdir -p "$SRC/etcd" "$SRC/kube"
	(
		cd "$SRC/etcd"
		[ -f go.mod ] || printf 'module skein.peers/etcd\n\ngo 1.26\n' >go.mod
		say "go get -tool go.etcd.io/etcd/server/v3@$ev"
		go get -tool "go.etcd.io/etcd/server/v3@$ev"
		local t0=$SECONDS
		go build -trimpath -o "$BIN/etcd" go.etcd.io/etcd/server/v3
		say "etcd built in $((SECONDS - t0))s"
	)
	(
		cd "$SRC/kube"
		local sv="v0.${kv#v1.}" minor="${kv#v1.}" kmod gover ldf="" pkg
		minor=${minor%%.*}
		kmod=$(go mod download -json "k8s.io/kubernetes@$kv" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
		gover=$(awk '$1=="go"{print $2; exit}' "$kmod")
		{
			printf 'module skein.peers/kube\n\ngo %s\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "$gover" "$kv"
			grep -E '^\s*k8s.io/[^ ]+ => \./staging/' "$kmod" | awk -v sv="$sv" '{printf "\t%s => %s %s\n", $1, $1, sv}'
			printf ')\n'
		} >go.mod
		say "go get -tool k8s.io/kubernetes/cmd/kube-apiserver@$kv"
		go get -tool "k8s.io/kubernetes/cmd/kube-apiserver@$kv"
		for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			ldf+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
		done
		local t0=$SECONDS
		go build -trimpath -ldflags "$ldf" -o "$BIN/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
		say "kube-apiserver built in $((SECONDS - t0))s"
	)
	"$BIN/kube-apiserver" --version | grep -q "$kv" || { say "kube-apiserver does not report $kv"; exit 1; }
	echo "$want" >"$stamp"
}

case "${1:-all}" in
spire) spire ;;
jaeger) jaeger ;;
h2spec) h2spec ;;
helm) helm ;;
prometheus) prometheus ;;
jssdk) jssdk ;;
kube) kube ;;
all) prometheus; jssdk; h2spec; helm; spire; jaeger; kube ;;
*) echo "usage: $0 [all|spire|jaeger|h2spec|helm|prometheus|jssdk|kube]" >&2; exit 2 ;;
esac
say "peers ready in $BIN"
