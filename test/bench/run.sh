#!/usr/bin/env bash
# run.sh: Skein's data-path benchmark (issue acceptance point 13). On
# 127.0.0.1 it puts the same 1 KiB backend behind three paths and loads each
# in turn:
#   direct   client → app
#   haproxy  client → HAProxy 1 → HAProxy 2 → app   (HTTP mode, keep-alive)
#   skein    client → sidecar a → sidecar b → app   (a → b is h2c; also over
#            mTLS HTTP/2 and HTTP/3, see SCENARIOS)
# Each path gets a constant-rate open-loop phase (RATE req/s for DURATION s,
# latency measured from each request's scheduled start) and a closed-loop
# maximum-throughput phase (MAX_CONNS connections for MAX_DURATION s). It
# reports p50/p90/p99 latency, CPU seconds per 1,000 requests and peak RSS
# (VmHWM) of every proxy process, and the Skein/HAProxy ratios against the
# targets, as markdown on stdout; progress goes to stderr.
#
# Environment (defaults in brackets):
#   RATE [1000]         constant rate, req/s
#   DURATION [20]       measured constant-rate phase, seconds (or a Go duration: 500ms)
#   WARMUP [2]          unmeasured phase before each measured one, seconds
#   MAX_DURATION [10]   measured closed-loop phase, seconds
#   MAX_CONNS [32]      closed-loop connections
#   RATE_CONNS [64]     most requests in flight in the constant-rate phase
#   BODY_BYTES [1024]   response size
#   SCENARIOS [direct haproxy skein skein-mtls skein-h3]  which paths to run:
#                       skein is the a → b hop in cleartext h2c, skein-mtls HTTP/2 over
#                       SPIFFE mTLS, skein-h3 HTTP/3 over QUIC with the same mTLS
#   SKEIN_ENV           extra environment for both sidecars, e.g. "GOMAXPROCS=1 GOGC=200"
#   RESULTS             also write the markdown report to this file
#   PERF [0]            1: perf record the proxies during their constant-rate phase and
#                       print the top symbols (perturbs the CPU numbers of that run)
#   KEEP_WORK [0]       1: keep the work directory (binaries, logs, raw JSON results)
# Needs Go, and haproxy (installed with apt-get when missing and running as root).
# Everything it starts is stopped on exit, on error and on Ctrl-C.
set -euo pipefail

RATE=${RATE:-1000}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
MAX_DURATION=${MAX_DURATION:-10}
MAX_CONNS=${MAX_CONNS:-32}
RATE_CONNS=${RATE_CONNS:-64}
BODY_BYTES=${BODY_BYTES:-1024}
SCENARIOS=${SCENARIOS:-direct haproxy skein skein-mtls skein-h3}
SKEIN_ENV=${SKEIN_ENV:-}
RESULTS=${RESULTS:-}
PERF=${PERF:-0}
KEEP_WORK=${KEEP_WORK:-0}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skein-bench.XXXXXX")
PIDS=()

say() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'run.sh: %s\n' "$*" >&2
	exit 1
}

# godur turns "20" into "20s" and leaves Go durations ("500ms", "1m") alone.
godur() {
	case $1 in
	*[a-z]) echo "$1" ;;
	*) echo "${1}s" ;;
	esac
}

# seconds rounds a duration in the forms godur accepts up to whole seconds,
# for time bounds.
seconds() {
	case $1 in
	*ms) echo 1 ;;
	*m) echo $((${1%m} * 60)) ;;
	*s) echo "${1%s}" | cut -d. -f1 ;;
	*) echo "$1" | cut -d. -f1 ;;
	esac
}

# alive PID: the process exists and is not a zombie.
alive() {
	local st
	st=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
	[[ -n $st && $st != Z ]]
}

# start NAME CMD...: runs CMD in the background with its output in
# $WORK/NAME.log and sets LAST_PID to its pid (CMD itself: no wrapper).
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# fg CMD...: runs CMD in the background and waits for it, so that a signal
# to the script runs the trap at once (bash defers traps while a foreground
# command runs) and the trap stops CMD too. Returns CMD's status.
fg() {
	"$@" &
	local pid=$!
	PIDS+=("$pid")
	wait "$pid"
}

# stop PID...: SIGTERM, up to 5 s to exit, then SIGKILL.
stop() {
	local pid i
	for pid; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid; do
		for ((i = 0; i < 50; i++)); do
			alive "$pid" || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local live=()
	for pid in "${PIDS[@]}"; do alive "$pid" && live+=("$pid"); done
	((${#live[@]} == 0)) || stop "${live[@]}"
	if ((rc != 0)); then
		for f in "$WORK"/*.log; do
			[[ -s $f ]] || continue
			printf -- '--- %s (last 20 lines)\n' "${f##*/}" >&2
			tail -n 20 "$f" >&2
		done
	fi
	if [[ $KEEP_WORK == 1 || $rc != 0 ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# want SCENARIO: SCENARIO is in $SCENARIOS.
want() { [[ " $SCENARIOS " == *" $1 "* ]]; }
for s in $SCENARIOS; do
	case $s in
	direct | haproxy | skein | skein-mtls | skein-h3) ;;
	*) die "SCENARIOS: unknown scenario $s (want direct, haproxy, skein, skein-mtls, skein-h3)" ;;
	esac
done

# --- tools -----------------------------------------------------------------

HAPROXY=$(command -v haproxy || true)
[[ -z $HAPROXY && -x /usr/sbin/haproxy ]] && HAPROXY=/usr/sbin/haproxy
if [[ -z $HAPROXY ]] && want haproxy; then
	[[ $(id -u) == 0 ]] || die "haproxy is not installed (apt-get install -y --no-install-recommends haproxy)"
	say "installing haproxy"
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy >"$WORK/apt.log" 2>&1; then
		apt-get update >>"$WORK/apt.log" 2>&1
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends haproxy >>"$WORK/apt.log" 2>&1 ||
			die "apt-get install haproxy failed: see $WORK/apt.log"
	fi
	HAPROXY=$(command -v haproxy || echo /usr/sbin/haproxy)
fi
! want haproxy || [[ -x $HAPROXY ]] || die "haproxy not found"

say "building skein and loadgen"
(cd "$ROOT" && go build -o "$WORK/skein" ./cmd/skein && go build -o "$WORK/loadgen" ./test/bench/loadgen)
SKEIN=$WORK/skein
LOADGEN=$WORK/loadgen

CLK_TCK=$(getconf CLK_TCK)
DUR=$(godur "$DURATION")
WARM=$(godur "$WARMUP")
MAXDUR=$(godur "$MAX_DURATION")
# Bound each load run: its phases plus a minute for stragglers (10 s timeouts).
BOUND=$(($(seconds "$DUR") + $(seconds "$MAXDUR") + 2 * $(seconds "$WARM") + 60))
OUT=$WORK/results.jsonl

mapfile -t PORT < <("$LOADGEN" ports -n 7)
((${#PORT[@]} == 7)) || die "could not pick free ports"
APP_PORT=${PORT[0]} HA1_PORT=${PORT[1]} HA2_PORT=${PORT[2]}
SA_HTTP=${PORT[3]} SA_METRICS=${PORT[4]} SB_HTTP=${PORT[5]} SB_METRICS=${PORT[6]}

# expect_comm PID NAME: PID is the process we mean to measure, not a wrapper.
expect_comm() {
	local comm
	comm=$(cat "/proc/$1/comm" 2>/dev/null) || die "process $1 ($2) is gone: see $WORK/*.log"
	[[ $comm == "$2"* ]] || die "pid $1 is $comm, want $2"
}

# perf_start NAME=PID...: samples each process with call graphs for the
# warm-up and the constant-rate phase (PERF=1 only).
PERF_PIDS=()
PERF_NAMES=()
perf_start() {
	[[ $PERF == 1 ]] || return 0
	command -v perf >/dev/null || die "PERF=1 but perf is not installed"
	local w
	for w; do
		start "perf-${w%%=*}" perf record -F 999 -g -o "$WORK/perf-${w%%=*}.data" -p "${w#*=}" -- \
			sleep $(($(seconds "$WARM") + $(seconds "$DUR")))
		PERF_PIDS+=("$LAST_PID")
		PERF_NAMES+=("${w%%=*}")
	done
}
perf_report() {
	[[ $PERF == 1 ]] || return 0
	local pid name
	for pid in "${PERF_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	for name in "${PERF_NAMES[@]}"; do
		perf report -i "$WORK/perf-$name.data" --stdio --no-children --sort dso,symbol 2>/dev/null >"$WORK/perf-$name.txt" || true
		perf report -i "$WORK/perf-$name.data" --stdio --children --sort symbol -g none 2>/dev/null >"$WORK/perf-$name-children.txt" || true
		say "perf: top symbols of $name (self); full reports in $WORK/perf-$name.txt and perf-$name-children.txt"
		grep -E '^ +[0-9.]+%' "$WORK/perf-$name.txt" | head -n 25 >&2 || true
	done
	PERF_PIDS=()
	PERF_NAMES=()
	KEEP_WORK=1
}

# measure SCENARIO URL WATCH...: the constant-rate run, then the closed-loop
# run; WATCH is name=pid.
measure() {
	local scenario=$1 url=$2
	shift 2
	local watch=() w
	for w; do watch+=(-watch "$w"); done
	fg timeout "$BOUND" "$LOADGEN" rate -scenario "$scenario" -url "$url" -rate "$RATE" -duration "$DUR" -warmup "$WARM" \
		-conns "$RATE_CONNS" -expect-bytes "$BODY_BYTES" -clk-tck "$CLK_TCK" "${watch[@]}" -out "$OUT" >&2
	perf_report
	fg timeout "$BOUND" "$LOADGEN" max -scenario "$scenario" -url "$url" -duration "$MAXDUR" -warmup 1s \
		-conns "$MAX_CONNS" -expect-bytes "$BODY_BYTES" -clk-tck "$CLK_TCK" "${watch[@]}" -out "$OUT" >&2
}

wait_url() {
	"$LOADGEN" wait -url "$1" -timeout 20s -expect-bytes "$BODY_BYTES" || die "$1 never answered: see $WORK/*.log"
}

# --- the app ----------------------------------------------------------------

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start app "$LOADGEN" backend -addr "127.0.0.1:$APP_PORT" -size "$BODY_BYTES"
APP_PID=$LAST_PID
wait_url "http://127.0.0.1:$APP_PORT/bench"
expect_comm "$APP_PID" loadgen

# --- direct -----------------------------------------------------------------

if want direct; then
	say "direct: $RATE req/s for $DUR, then $MAX_CONNS connections for $MAXDUR"
	measure direct "http://127.0.0.1:$APP_PORT/bench" "app=$APP_PID"
fi

# --- two HAProxy hops -------------------------------------------------------

# haproxy_cfg PORT NEXT_PORT: one hop, no logging (Skein runs at warn).
# Threads, buffers and connection reuse ("http-reuse safe") stay at
# Debian's defaults.
haproxy_cfg() {
	cat <<EOF
global
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    timeout connect 2s
    timeout client 30s
    timeout server 30s
    timeout http-keep-alive 30s

frontend hop
    bind 127.0.0.1:$1
    default_backend next

backend next
    server next 127.0.0.1:$2
EOF
}
if want haproxy; then
	haproxy_cfg "$HA2_PORT" "$APP_PORT" >"$WORK/haproxy2.cfg"
	haproxy_cfg "$HA1_PORT" "$HA2_PORT" >"$WORK/haproxy1.cfg"
	"$HAPROXY" -c -q -f "$WORK/haproxy1.cfg" || die "haproxy rejects $WORK/haproxy1.cfg"
	start haproxy2 "$HAPROXY" -db -f "$WORK/haproxy2.cfg"
	HA2_PID=$LAST_PID
	start haproxy1 "$HAPROXY" -db -f "$WORK/haproxy1.cfg"
	HA1_PID=$LAST_PID
	wait_url "http://127.0.0.1:$HA1_PORT/bench"
	expect_comm "$HA1_PID" haproxy
	expect_comm "$HA2_PID" haproxy

	say "haproxy: $RATE req/s for $DUR, then $MAX_CONNS connections for $MAXDUR"
	perf_start "haproxy1=$HA1_PID" "haproxy2=$HA2_PID"
	measure haproxy "http://127.0.0.1:$HA1_PORT/bench" "haproxy1=$HA1_PID" "haproxy2=$HA2_PID" "app=$APP_PID"
	stop "$HA1_PID" "$HA2_PID"
fi

# --- two Skein sidecars -----------------------------------------------------

# skein_pair NAME FLAGS...: two sidecars, a → b, started with FLAGS, loaded
# as scenario NAME. Each pair gets its own SKEIN_HOME (and embedded CA).
skein_pair() {
	local name=$1
	shift
	export SKEIN_HOME=$WORK/$name-home
	# shellcheck disable=SC2086 # SKEIN_ENV is a list of NAME=VALUE words
	start skein-b env $SKEIN_ENV "$SKEIN" sidecar --app-id b --dapr-http-port "$SB_HTTP" --metrics-port "$SB_METRICS" \
		--app-port "$APP_PORT" --log-level warn "$@"
	SB_PID=$LAST_PID
	# shellcheck disable=SC2086
	start skein-a env $SKEIN_ENV "$SKEIN" sidecar --app-id a --dapr-http-port "$SA_HTTP" --metrics-port "$SA_METRICS" \
		--log-level warn "$@"
	SA_PID=$LAST_PID
	SKEIN_URL="http://127.0.0.1:$SA_HTTP/v1.0/invoke/b/method/bench"
	wait_url "$SKEIN_URL"
	expect_comm "$SA_PID" skein
	expect_comm "$SB_PID" skein

	say "$name: $RATE req/s for $DUR, then $MAX_CONNS connections for $MAXDUR"
	perf_start "skein-a=$SA_PID" "skein-b=$SB_PID"
	measure "$name" "$SKEIN_URL" "skein-a=$SA_PID" "skein-b=$SB_PID" "app=$APP_PID"
	stop "$SA_PID" "$SB_PID"
}

# skein: the a → b hop in cleartext h2c; skein-mtls: HTTP/2 over SPIFFE
# mTLS (the default); skein-h3: HTTP/3 over QUIC with the same mTLS.
if want skein; then skein_pair skein --enable-mtls=false; fi
if want skein-mtls; then skein_pair skein-mtls; fi
if want skein-h3; then skein_pair skein-h3 --peer-transport h3; fi

stop "$APP_PID"

# --- report -----------------------------------------------------------------

{
	echo "## Skein data-path benchmark"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg);" \
		"$(go version | cut -d' ' -f3), $("$SKEIN" version)" \
		"(commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- proxy discovery cmd telemetry 2>/dev/null || echo ', modified')), $("$HAPROXY" -v | head -n 1 | cut -d' ' -f1-3)."
	echo "Responses of $BODY_BYTES bytes over HTTP/1.1 keep-alive from the client; Skein's a → b hop: skein h2c, skein-mtls HTTP/2 + mTLS, skein-h3 HTTP/3 + mTLS."
	echo
	"$LOADGEN" report -in "$OUT"
	if want skein && want skein-mtls; then
		echo "### mTLS against cleartext (target: CPU per request within 15%)"
		echo
		"$LOADGEN" report -in "$OUT" -ratios-only -reference skein -subject skein-mtls -cpu-target 1.15
	fi
	if want skein-mtls && want skein-h3; then
		echo "### HTTP/3 against HTTP/2, both over mTLS"
		echo
		"$LOADGEN" report -in "$OUT" -ratios-only -reference skein-mtls -subject skein-h3 -cpu-target 1.15
	fi
} >"$WORK/report.md"
cat "$WORK/report.md"
if [[ -n $RESULTS ]]; then
	cp "$WORK/report.md" "$RESULTS"
	cp "$OUT" "${RESULTS%.md}.jsonl"
	say "report written to $RESULTS"
fi
