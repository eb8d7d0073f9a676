#!/usr/bin/env bash
# run.sh: Skein's data-path benchmark (issue 11, acceptance points 1 and 7;
# docs/performance.md). On 127.0.0.1 it puts the same backend behind several
# paths ("scenarios", see the table below) and loads each in turn:
#   direct   client → app
#   haproxy  client → HAProxy 1 → HAProxy 2 → app   (HTTP mode, keep-alive)
#   skein*   client → sidecar a → sidecar b → app   (a → b: mTLS, cleartext, HTTP/3 ...)
# Each scenario gets, with freshly started proxies: an idle phase (a few calls,
# then each proxy's VmRSS and VmHWM), a constant-rate open-loop phase (RATE
# req/s of GET for DURATION, latency from each request's scheduled start), a
# closed-loop maximum-throughput phase (MAX_CONNS connections for
# MAX_DURATION) and a large-body phase (POST_RATE req/s POSTing POST_BYTES
# for POST_DURATION). The whole set runs RUNS times, interleaved (run 1 of
# every scenario, then run 2, ...), and the report quotes the median of the
# runs for every figure: latency percentiles, CPU seconds per 1,000 requests
# and RSS of every proxy process, throughput, and the targets table.
#
# Environment (defaults in brackets):
#   RUNS [3]            repetitions of the whole set of scenarios
#   RATE [1000]         constant rate, req/s
#   DURATION [20]       measured constant-rate phase, seconds (or a Go duration: 500ms)
#   WARMUP [2]          unmeasured phase before the constant-rate phase, seconds
#   MAX_DURATION [10]   measured closed-loop phase (after 1 s of warm-up)
#   MAX_CONNS [32]      closed-loop connections
#   RATE_CONNS [64]     most requests in flight in the open-loop phases
#   BODY_BYTES [1024]   response size
#   POST_RATE [100]     rate of the large-body phase, req/s (0: skip the phase)
#   POST_DURATION [5]   its measured part
#   POST_WARMUP [1]     its warm-up
#   POST_BYTES [1048576] request body size of that phase; the app reads it all
#   IDLE_CALLS [10]     calls before the idle memory is read
#   SCENARIOS [direct haproxy skein-mtls skein-mtls-h2]  which paths to run (table below)
#   SUBJECT [skein-mtls] the scenario the targets table is about
#   SKEIN_ENV           extra environment for every sidecar, e.g. "GOMAXPROCS=2 GOGC=200"
#   SKEIN_FLAGS         extra flags for every sidecar, e.g. "--cores 2"
#   BASELINE [e01b6db]  git ref whose binary the skein-mtls-before scenario runs (the
#                       commit before issue 11's data path v2)
#   OUT                 directory to write report.md, raw.jsonl and the SVG charts into
#                       (make bench: bench-results); without it they stay in the work directory
#   RESULTS             also copy the report to this file, and the raw JSON lines beside it (.jsonl)
#   PERF [0]            1: perf record the proxies during each constant-rate phase and
#                       print the top symbols (perturbs the CPU numbers of that run)
#   KEEP_WORK [0]       1: keep the work directory (binaries, logs, raw JSON results)
#   SKEIN_TMPFS [1]     1: run the skein binaries from copies on tmpfs (/dev/shm), whose
#                       pages are 4 KiB: a freshly linked file's page-cache folios can be
#                       large and mapped whole, which moved resident figures by 3-7 MB
#                       between builds of the same code (docs/performance.md); 0: from the
#                       work directory
#   GO [go]             the go command
# Needs Linux (/proc), Go, and haproxy (installed with apt-get when missing and
# running as root). Everything it starts is stopped on exit, on error and on Ctrl-C.
set -euo pipefail

RUNS=${RUNS:-3}
RATE=${RATE:-1000}
DURATION=${DURATION:-20}
WARMUP=${WARMUP:-2}
MAX_DURATION=${MAX_DURATION:-10}
MAX_CONNS=${MAX_CONNS:-32}
RATE_CONNS=${RATE_CONNS:-64}
BODY_BYTES=${BODY_BYTES:-1024}
POST_RATE=${POST_RATE:-100}
POST_DURATION=${POST_DURATION:-5}
POST_WARMUP=${POST_WARMUP:-1}
POST_BYTES=${POST_BYTES:-1048576}
IDLE_CALLS=${IDLE_CALLS:-10}
SCENARIOS=${SCENARIOS:-direct haproxy skein-mtls skein-mtls-h2}
SUBJECT=${SUBJECT:-skein-mtls}
SKEIN_ENV=${SKEIN_ENV:-}
BASELINE=${BASELINE:-e01b6db}
SKEIN_FLAGS=${SKEIN_FLAGS:-}
OUT=${OUT:-}
RESULTS=${RESULTS:-}
PERF=${PERF:-0}
KEEP_WORK=${KEEP_WORK:-0}
GO=${GO:-go}

# --- scenarios ----------------------------------------------------------------

# scenario NAME KIND [SIDECAR FLAG...] declares a scenario. KIND is direct
# (no proxy), haproxy (two HAProxy hops) or skein (two sidecars a → b started
# with Skein's defaults, then these flags, then SKEIN_FLAGS; a first flag
# @base runs the binary built from git ref BASELINE instead). Adding a
# scenario is one line here; it runs when named in SCENARIOS. Flags are
# split on blanks, so a flag value cannot hold one.
KNOWN=()
declare -A KIND=() FLAGS=()
scenario() {
	local name=$1 kind=$2
	shift 2
	KNOWN+=("$name")
	KIND[$name]=$kind
	FLAGS[$name]="$*"
}
scenario direct direct
scenario haproxy haproxy
scenario skein skein --enable-mtls=false         # a → b in cleartext
scenario skein-mtls skein                         # the defaults: SPIFFE mTLS, default peer transport; the targets' subject
scenario skein-h3 skein --peer-transport h3       # HTTP/3 over QUIC, same mTLS
scenario skein-mtls-h2 skein --peer-transport h2  # HTTP/2 over the same mTLS: the candidate transport issue 11 measured against h1
scenario skein-mtls-h1 skein --peer-transport h1  # HTTP/1.1 over the same mTLS (today the default, so the same as skein-mtls)
scenario skein-mtls-2cores skein --cores 2        # skein-mtls with GOMAXPROCS 2 instead of the default 1
scenario skein-mtls-before skein @base            # skein-mtls with the binary of git ref BASELINE: before/after in one run

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

# forget PID...: drops PIDs from the list cleanup stops, once they are
# reaped, so that a pid the kernel hands out again is never signalled.
forget() {
	local keep=() p q drop
	for p in "${PIDS[@]}"; do
		drop=0
		for q; do [[ $p == "$q" ]] && drop=1; done
		((drop)) || keep+=("$p")
	done
	PIDS=("${keep[@]}")
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
	local pid=$! rc=0
	PIDS+=("$pid")
	wait "$pid" || rc=$?
	forget "$pid"
	return "$rc"
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
	forget "$@"
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	local live=() pid
	for pid in "${PIDS[@]}"; do alive "$pid" && live+=("$pid"); done
	((${#live[@]} == 0)) || stop "${live[@]}"
	if ((rc != 0)); then
		for f in "$WORK"/*.log; do
			[[ -s $f ]] || continue
			printf -- '--- %s (last 20 lines)\n' "${f##*/}" >&2
			tail -n 20 "$f" >&2
		done
	fi
	[[ -z ${SHM:-} ]] || rm -rf "$SHM"
	# A failure keeps the work directory for its logs, unless it failed
	# before anything was written there.
	if [[ $KEEP_WORK == 1 || ($rc != 0 && -n $(ls -A "$WORK")) ]]; then
		say "work directory kept: $WORK"
	else
		rm -rf "$WORK"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive integer"
# want KIND: a scenario of that kind is in $SCENARIOS.
want() {
	local s
	for s in $SCENARIOS; do [[ ${KIND[$s]} == "$1" ]] && return 0; done
	return 1
}
for s in $SCENARIOS; do
	[[ -n ${KIND[$s]:-} ]] || die "SCENARIOS: unknown scenario $s (want one of: ${KNOWN[*]})"
done
if [[ -n $OUT ]]; then
	mkdir -p "$OUT" || die "OUT=$OUT: cannot create it"
	OUT=$(cd "$OUT" && pwd)
fi

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

# skein is built as `make build` builds it (static, CGO_ENABLED=0), the
# baseline too, so that both scenarios run what Skein ships.
say "building skein, loadgen and report"
(cd "$ROOT" && CGO_ENABLED=0 "$GO" build -o "$WORK/skein" ./cmd/skein && "$GO" build -o "$WORK/loadgen" ./test/bench/loadgen &&
	"$GO" build -o "$WORK/report" ./test/bench/report)
SKEIN=$WORK/skein
SKEIN_BASE=$WORK/skein-base
for s in $SCENARIOS; do
	if [[ ${FLAGS[$s]} == @base* ]]; then
		say "building skein at $BASELINE (scenario $s)"
		mkdir -p "$WORK/base-src"
		git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/base-src"
		(cd "$WORK/base-src" && CGO_ENABLED=0 "$GO" build -o "$SKEIN_BASE" ./cmd/skein)
		break
	fi
done
LOADGEN=$WORK/loadgen
REPORT=$WORK/report
# The executables' resident pages should not depend on how each got into the
# page cache: tmpfs holds every file in 4 KiB pages (counted as RssShmem, part
# of VmRSS like RssFile).
if [[ ${SKEIN_TMPFS:-1} == 1 && -d /dev/shm && -w /dev/shm ]]; then
	SHM=$(mktemp -d /dev/shm/skein-bench.XXXXXX)
	for b in "$SKEIN" "$SKEIN_BASE"; do
		[[ -f $b ]] && cp "$b" "$SHM/"
	done
	SKEIN=$SHM/skein
	SKEIN_BASE=$SHM/skein-base
	say "running skein from tmpfs ($SHM)"
fi

CLK_TCK=$(getconf CLK_TCK)
DUR=$(godur "$DURATION")
WARM=$(godur "$WARMUP")
MAXDUR=$(godur "$MAX_DURATION")
POSTDUR=$(godur "$POST_DURATION")
POSTWARM=$(godur "$POST_WARMUP")
# Bound each load run: its phases plus a minute for stragglers (10 s timeouts).
BOUND=$(($(seconds "$DUR") + $(seconds "$MAXDUR") + 2 * $(seconds "$WARM") + 60))
POST_BOUND=$(($(seconds "$POSTDUR") + $(seconds "$POSTWARM") + 60))
RAW=$WORK/raw.jsonl

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

# perf_start RUN NAME=PID...: samples each process with call graphs for the
# warm-up and the constant-rate phase (PERF=1 only).
PERF_PIDS=()
PERF_NAMES=()
perf_start() {
	[[ $PERF == 1 ]] || return 0
	command -v perf >/dev/null || die "PERF=1 but perf is not installed"
	local run=$1 w name
	shift
	for w; do
		name=${w%%=*}-run$run
		start "perf-$name" perf record -F 999 -g -o "$WORK/perf-$name.data" -p "${w#*=}" -- \
			sleep $(($(seconds "$WARM") + $(seconds "$DUR")))
		PERF_PIDS+=("$LAST_PID")
		PERF_NAMES+=("$name")
	done
}
perf_report() {
	[[ $PERF == 1 ]] || return 0
	local pid name
	for pid in "${PERF_PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	((${#PERF_PIDS[@]} == 0)) || forget "${PERF_PIDS[@]}"
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

# measure SCENARIO RUN URL WATCH...: the idle, constant-rate, closed-loop and
# large-body phases against URL; WATCH is name=pid, the proxies first, then
# the app.
measure() {
	local scenario=$1 run=$2 url=$3
	shift 3
	local watch=() proxies=() w
	for w; do
		watch+=(-watch "$w")
		[[ ${w%%=*} == app ]] || proxies+=("$w")
	done
	local common=(-scenario "$scenario" -run "$run" -url "$url" -expect-bytes "$BODY_BYTES" -clk-tck "$CLK_TCK"
		"${watch[@]}" -out "$RAW")
	say "$scenario, run $run of $RUNS: idle, $RATE req/s for $DUR, $MAX_CONNS connections for $MAXDUR, $POST_RATE POST/s of $POST_BYTES bytes for $POSTDUR"
	fg timeout 60 "$LOADGEN" idle "${common[@]}" -calls "$IDLE_CALLS" >&2
	((${#proxies[@]} == 0)) || perf_start "$run" "${proxies[@]}"
	fg timeout "$BOUND" "$LOADGEN" rate "${common[@]}" -rate "$RATE" -duration "$DUR" -warmup "$WARM" -conns "$RATE_CONNS" >&2
	perf_report
	fg timeout "$BOUND" "$LOADGEN" max "${common[@]}" -duration "$MAXDUR" -warmup 1s -conns "$MAX_CONNS" >&2
	if [[ $POST_RATE != 0 ]]; then
		fg timeout "$POST_BOUND" "$LOADGEN" rate "${common[@]}" -mode post -body-bytes "$POST_BYTES" -rate "$POST_RATE" \
			-duration "$POSTDUR" -warmup "$POSTWARM" -conns "$RATE_CONNS" >&2
	fi
}

wait_url() {
	"$LOADGEN" wait -url "$1" -timeout 20s -expect-bytes "$BODY_BYTES" || die "$1 never answered: see $WORK/*.log"
}

STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# --- direct: the app --------------------------------------------------------

# The app reads every request's whole body and answers BODY_BYTES; it is
# shared by every scenario and run.
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
start app "$LOADGEN" backend -addr "127.0.0.1:$APP_PORT" -size "$BODY_BYTES"
APP_PID=$LAST_PID
wait_url "http://127.0.0.1:$APP_PORT/bench"
expect_comm "$APP_PID" loadgen

# run_direct NAME RUN: the app alone.
run_direct() {
	measure "$1" "$2" "http://127.0.0.1:$APP_PORT/bench" "app=$APP_PID"
}

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

# run_haproxy NAME RUN: two fresh HAProxy processes, hop 1 → hop 2 → app.
run_haproxy() {
	local name=$1 run=$2
	haproxy_cfg "$HA2_PORT" "$APP_PORT" >"$WORK/haproxy2.cfg"
	haproxy_cfg "$HA1_PORT" "$HA2_PORT" >"$WORK/haproxy1.cfg"
	"$HAPROXY" -c -q -f "$WORK/haproxy1.cfg" || die "haproxy rejects $WORK/haproxy1.cfg"
	start "$name-run$run-haproxy2" "$HAPROXY" -db -f "$WORK/haproxy2.cfg"
	local ha2=$LAST_PID
	start "$name-run$run-haproxy1" "$HAPROXY" -db -f "$WORK/haproxy1.cfg"
	local ha1=$LAST_PID
	wait_url "http://127.0.0.1:$HA1_PORT/bench"
	expect_comm "$ha1" haproxy
	expect_comm "$ha2" haproxy
	measure "$name" "$run" "http://127.0.0.1:$HA1_PORT/bench" "haproxy1=$ha1" "haproxy2=$ha2" "app=$APP_PID"
	stop "$ha1" "$ha2"
}

# --- two Skein sidecars -----------------------------------------------------

# run_skein NAME RUN FLAGS...: two fresh sidecars, a → b, started with
# Skein's defaults, then FLAGS and SKEIN_FLAGS. No Configuration file, so
# tracing samples at Dapr's default rate (telemetry.DefaultSamplingRate,
# 0.0001) and exports nothing; metrics are on (--enable-metrics defaults to
# true). The OTEL_* endpoint variables are removed from their environment:
# one set in the caller's shell would switch on export and sampling of every
# call. Each pair gets its own SKEIN_HOME (and embedded CA).
run_skein() {
	local name=$1 run=$2 bin=$SKEIN
	shift 2
	if [[ ${1:-} == @base ]]; then
		bin=$SKEIN_BASE
		shift
	fi
	export SKEIN_HOME=$WORK/$name-run$run-home
	local env=(env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
	# shellcheck disable=SC2086 # SKEIN_ENV is NAME=VALUE words, SKEIN_FLAGS flag words
	start "$name-run$run-skein-b" "${env[@]}" $SKEIN_ENV "$bin" sidecar --app-id b --dapr-http-port "$SB_HTTP" --dapr-grpc-port 0 \
		--metrics-port "$SB_METRICS" --app-port "$APP_PORT" --log-level warn "$@" $SKEIN_FLAGS
	local sb=$LAST_PID
	# shellcheck disable=SC2086
	start "$name-run$run-skein-a" "${env[@]}" $SKEIN_ENV "$bin" sidecar --app-id a --dapr-http-port "$SA_HTTP" --dapr-grpc-port 0 \
		--metrics-port "$SA_METRICS" --log-level warn "$@" $SKEIN_FLAGS
	local sa=$LAST_PID
	local url="http://127.0.0.1:$SA_HTTP/v1.0/invoke/b/method/bench"
	wait_url "$url"
	expect_comm "$sa" skein
	expect_comm "$sb" skein
	measure "$name" "$run" "$url" "skein-a=$sa" "skein-b=$sb" "app=$APP_PID"
	stop "$sa" "$sb"
}

# --- the runs ----------------------------------------------------------------

read -ra LIST <<<"$SCENARIOS"
per=$(($(seconds "$WARM") + $(seconds "$DUR") + 1 + $(seconds "$MAXDUR") + 3))
[[ $POST_RATE == 0 ]] || per=$((per + $(seconds "$POSTWARM") + $(seconds "$POSTDUR")))
say "$RUNS runs of ${#LIST[@]} scenarios (${LIST[*]}): about $((RUNS * ${#LIST[@]} * per / 60 + 1)) minutes"
for ((run = 1; run <= RUNS; run++)); do
	for s in "${LIST[@]}"; do
		# shellcheck disable=SC2086 # FLAGS are flag words
		case ${KIND[$s]} in
		direct) run_direct "$s" "$run" ;;
		haproxy) run_haproxy "$s" "$run" ;;
		skein) run_skein "$s" "$run" ${FLAGS[$s]} ;;
		esac
	done
done

stop "$APP_PID"

# --- report -----------------------------------------------------------------

# settings lists the scenarios that ran, each skein one with its command.
settings() {
	local s cmd
	for s in "${LIST[@]}"; do
		if [[ ${KIND[$s]} == skein ]]; then
			# shellcheck disable=SC2086 # echo joins the flag words with single blanks
			cmd=$(echo skein sidecar ${FLAGS[$s]} $SKEIN_FLAGS)
			printf '%s (`%s`); ' "$s" "$cmd"
		else
			printf '%s; ' "$s"
		fi
	done
}
{
	echo "Started $STARTED, finished $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) CPUs, load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg);" \
		"$("$GO" version | cut -d' ' -f3), $("$SKEIN" version)" \
		"(commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- cmd proxy discovery identity resiliency telemetry internal xds 2>/dev/null || echo ', modified'))$(want haproxy && printf ', %s' "$("$HAPROXY" -v | head -n 1 | cut -d' ' -f1-3)")."
	echo
	echo "Settings: RUNS=$RUNS RATE=$RATE DURATION=$DUR WARMUP=$WARM MAX_DURATION=$MAXDUR MAX_CONNS=$MAX_CONNS" \
		"RATE_CONNS=$RATE_CONNS BODY_BYTES=$BODY_BYTES POST_RATE=$POST_RATE POST_DURATION=$POSTDUR POST_BYTES=$POST_BYTES${SKEIN_ENV:+ SKEIN_ENV=\"$SKEIN_ENV\"}."
	echo "Scenarios: $(settings)sidecars run with \`--log-level warn\`, metrics on, no Configuration (tracing at Dapr's default sampling rate, 0.0001, no exporter)."
	echo "The client speaks HTTP/1.1 keep-alive to the first hop."
} >"$WORK/header.md"
REPORT_DIR=${OUT:-$WORK/report}
"$REPORT" -in "$RAW" -out "$REPORT_DIR" -header "$WORK/header.md" -subject "$SUBJECT"
cp "$RAW" "$REPORT_DIR/raw.jsonl"
cat "$REPORT_DIR/report.md"
if [[ -n $OUT ]]; then
	say "report, raw results and charts in $OUT (report.md, raw.jsonl, *.svg)"
fi
if [[ -n $RESULTS ]]; then
	cp "$REPORT_DIR/report.md" "$RESULTS"
	cp "$RAW" "${RESULTS%.md}.jsonl"
	say "report written to $RESULTS"
fi
