#!/usr/bin/env bash
# overload.sh: Skein's overload benchmark (issue 14, acceptance point 1;
# docs/performance.md, Overload). On 127.0.0.1 a slow app (WORKERS requests
# at a time, each taking DELAY: WORKERS/DELAY req/s at most, the rest
# waiting in its queue) sits behind two sidecars, a → b, and an open-loop
# load of FACTOR times what it can serve goes through them, once per
# scenario:
#   queue     --overload-protection=false: calls queue, as they did before
#             the limit (and as they do in Dapr)
#   adaptive  Skein's defaults: adaptive concurrency limits per target (on a)
#             and on the app channel (on b) refuse what the app cannot serve
# After a WARMUP at WARMUP_RATE req/s (half the app's capacity by default:
# the limits learn the app's no-load latency, as they would in service), the
# measured phase sends FACTOR × capacity req/s for DURATION. loadgen counts
# every request as admitted (200), refused (503 OVERLOADED) or an error
# (timeouts, anything else), keeps the admitted calls' latency second by
# second, and reads each sidecar's skein_overload_refused_total afterwards;
# the report (overload.md) tabulates it and charts both scenarios' latency
# over time (overload-latency.svg) and the outcomes (overload-outcomes.svg).
#
# Environment (defaults in brackets):
#   WORKERS [100]      requests the app serves at once (at least --overload-min-limit,
#                      100, for the limit to keep its queue short: below that it
#                      only bounds it)
#   DELAY [500ms]      time each takes
#   FACTOR [3]         offered load, times the app's capacity
#   DURATION [15]      measured phase, seconds
#   WARMUP [3]         warm-up, seconds
#   WARMUP_RATE        warm-up req/s [half the capacity]
#   TIMEOUT [30s]      client timeout: a request unsent or unanswered this long is an error
#   CONNS [1000]       most requests in flight from the generator
#   RUNS [1]           repetitions of both scenarios, interleaved
#   SCENARIOS [queue adaptive]
#   SKEIN_FLAGS        extra flags for every sidecar
#   OUT                directory for overload.md, overload.jsonl and the SVG charts
#                      [the work directory, removed at the end: the report goes to stdout]
#   KEEP_WORK [0]      1: keep the work directory (binaries, logs)
#   GO [go]            the go command
# Bounded: each scenario takes at most WARMUP + DURATION + 2 × TIMEOUT and
# a few seconds of start-up. Needs Linux, Go and bash. Everything it starts
# is stopped on exit, on error and on Ctrl-C.
set -euo pipefail

WORKERS=${WORKERS:-100}
DELAY=${DELAY:-500ms}
FACTOR=${FACTOR:-3}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
TIMEOUT=${TIMEOUT:-30s}
CONNS=${CONNS:-1000}
RUNS=${RUNS:-1}
SCENARIOS=${SCENARIOS:-queue adaptive}
SKEIN_FLAGS=${SKEIN_FLAGS:-}
OUT=${OUT:-}
KEEP_WORK=${KEEP_WORK:-0}
GO=${GO:-go}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skein-overload.XXXXXX")
PIDS=()

say() { printf '==> %s\n' "$*" >&2; }
die() {
	printf 'overload.sh: %s\n' "$*" >&2
	exit 1
}

# start NAME CMD...: runs CMD in the background, output in $WORK/NAME.log;
# LAST_PID is its pid.
start() {
	local name=$1
	shift
	"$@" >"$WORK/$name.log" 2>&1 &
	LAST_PID=$!
	PIDS+=("$LAST_PID")
}

# stop PID...: SIGTERM, up to 5 s to exit, then SIGKILL; forgotten once reaped.
stop() {
	local pid i keep=() p q drop
	for pid; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid; do
		for ((i = 0; i < 50; i++)); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for p in "${PIDS[@]}"; do
		drop=0
		for q; do [[ $p == "$q" ]] && drop=1; done
		((drop)) || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	((${#PIDS[@]} == 0)) || stop "${PIDS[@]}"
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

[[ $WORKERS =~ ^[1-9][0-9]*$ ]] || die "WORKERS=$WORKERS: want a positive integer"
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive integer"
[[ $DURATION =~ ^[1-9][0-9]*$ && $WARMUP =~ ^[0-9]+$ ]] || die "DURATION and WARMUP: want whole seconds"
[[ $TIMEOUT =~ ^[1-9][0-9]*s$ ]] || die "TIMEOUT=$TIMEOUT: want whole seconds, e.g. 15s"
for s in $SCENARIOS; do
	case $s in queue | adaptive) ;; *) die "SCENARIOS: unknown scenario $s (want queue or adaptive)" ;; esac
done

say "building skein, loadgen and report"
(cd "$ROOT" && "$GO" build -o "$WORK/skein" ./cmd/skein && "$GO" build -o "$WORK/loadgen" ./test/bench/loadgen &&
	"$GO" build -o "$WORK/report" ./test/bench/report)
LOADGEN=$WORK/loadgen

# The app's capacity and the rates, from DELAY and WORKERS.
DELAY_MS=$(awk -v d="$DELAY" 'BEGIN {
	if (d ~ /ms$/) { sub(/ms$/, "", d); print d + 0 } else if (d ~ /s$/) { sub(/s$/, "", d); print d * 1000 } else { print -1 } }')
awk -v d="$DELAY_MS" 'BEGIN { exit !(d > 0) }' || die "DELAY=$DELAY: want a duration in ms or s, e.g. 100ms"
CAPACITY=$(awk -v w="$WORKERS" -v d="$DELAY_MS" 'BEGIN { printf "%.3f", w * 1000 / d }')
RATE=$(awk -v c="$CAPACITY" -v f="$FACTOR" 'BEGIN { printf "%.3f", c * f }')
WARMUP_RATE=${WARMUP_RATE:-$(awk -v c="$CAPACITY" 'BEGIN { printf "%.3f", c / 2 }')}

mapfile -t PORT < <("$LOADGEN" ports -n 5)
((${#PORT[@]} == 5)) || die "could not pick free ports"
APP_PORT=${PORT[0]} SA_HTTP=${PORT[1]} SA_METRICS=${PORT[2]} SB_HTTP=${PORT[3]} SB_METRICS=${PORT[4]}
RAW=$WORK/overload.jsonl
STARTED=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)

# run SCENARIO RUN: a fresh app and two fresh sidecars, the load, then stop.
run() {
	local scenario=$1 run=$2 flags=()
	[[ $scenario == queue ]] && flags=(--overload-protection=false)
	export SKEIN_HOME=$WORK/$scenario-run$run-home
	start "$scenario-run$run-app" "$LOADGEN" backend -addr "127.0.0.1:$APP_PORT" -delay "$DELAY" -workers "$WORKERS"
	local app=$LAST_PID
	local env=(env -u OTEL_EXPORTER_OTLP_ENDPOINT -u OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
	# shellcheck disable=SC2086 # SKEIN_FLAGS are flag words
	start "$scenario-run$run-skein-b" "${env[@]}" "$WORK/skein" sidecar --app-id b --dapr-http-port "$SB_HTTP" --dapr-grpc-port 0 \
		--metrics-port "$SB_METRICS" --app-port "$APP_PORT" --log-level warn "${flags[@]}" $SKEIN_FLAGS
	local sb=$LAST_PID
	# shellcheck disable=SC2086
	start "$scenario-run$run-skein-a" "${env[@]}" "$WORK/skein" sidecar --app-id a --dapr-http-port "$SA_HTTP" --dapr-grpc-port 0 \
		--metrics-port "$SA_METRICS" --log-level warn "${flags[@]}" $SKEIN_FLAGS
	local sa=$LAST_PID
	local url="http://127.0.0.1:$SA_HTTP/v1.0/invoke/b/method/work"
	"$LOADGEN" wait -url "$url" -timeout 20s -expect-bytes 1024 || die "$url never answered: see $WORK/*.log"
	say "$scenario, run $run of $RUNS: ${WARMUP}s at $WARMUP_RATE req/s, then ${DURATION}s at $RATE req/s ($FACTOR × the app's $CAPACITY req/s)"
	local bound=$((WARMUP + DURATION + 2 * ${TIMEOUT%s} + 30))
	timeout "$bound" "$LOADGEN" overload -scenario "$scenario" -run "$run" -url "$url" -expect-bytes 1024 \
		-rate "$RATE" -duration "${DURATION}s" -warmup "${WARMUP}s" -warmup-rate "$WARMUP_RATE" -conns "$CONNS" -timeout "$TIMEOUT" \
		-capacity "$CAPACITY" -app-ms "$DELAY_MS" \
		-metrics "a=http://127.0.0.1:$SA_METRICS/metrics" -metrics "b=http://127.0.0.1:$SB_METRICS/metrics" -out "$RAW" >&2
	stop "$sa" "$sb" "$app"
}

read -ra LIST <<<"$SCENARIOS"
for ((r = 1; r <= RUNS; r++)); do
	for s in "${LIST[@]}"; do run "$s" "$r"; done
done

{
	echo "Started $STARTED, finished $(date -u +%Y-%m-%dT%H:%M:%SZ); $(nproc) CPUs, load average before $LOAD_BEFORE, after $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown);" \
		"$("$GO" version | cut -d' ' -f3), $("$WORK/skein" version) (commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)$(git -C "$ROOT" diff --quiet HEAD -- cmd proxy overload resiliency discovery 2>/dev/null || echo ', modified'))."
	echo
	echo "The app: \`loadgen backend -delay $DELAY -workers $WORKERS\`, $CAPACITY req/s at most; the path: client → sidecar a → sidecar b → app (mTLS, metrics on, \`--log-level warn\`)."
	echo "Load: ${WARMUP}s at $WARMUP_RATE req/s (unmeasured), then ${DURATION}s at $RATE req/s, open loop, at most $CONNS requests in flight, client timeout $TIMEOUT."
	echo "Scenarios: queue (\`--overload-protection=false\`: calls wait in the app's queue, as before this limit), adaptive (the defaults: adaptive concurrency limits on both sidecars)${SKEIN_FLAGS:+; both with $SKEIN_FLAGS}."
} >"$WORK/header.md"
REPORT_DIR=${OUT:-$WORK/report}
mkdir -p "$REPORT_DIR"
"$WORK/report" -overload -in "$RAW" -out "$REPORT_DIR" -header "$WORK/header.md"
cp "$RAW" "$REPORT_DIR/overload.jsonl"
cat "$REPORT_DIR/overload.md"
[[ -z $OUT ]] || say "report, raw results and charts in $OUT (overload.md, overload.jsonl, *.svg)"
