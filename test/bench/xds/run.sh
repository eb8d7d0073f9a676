#!/usr/bin/env bash
# run.sh: the control-plane scale benchmark (issue 13, acceptance point 7;
# docs/kubernetes.md "Scale"). Builds skein and the benchmark, then for each
# SIDECARS count and each MODE runs a fresh `skein control-plane` with
# ENDPOINTS registered endpoints of APPS app ids, connects that many
# simulated ADS sidecars and changes one endpoint (turns it unhealthy)
# RATE times a second, CHANGES times. Writes raw.jsonl, report.md and
# push-latency.svg into OUT.
#
# Environment (defaults in brackets):
#   SIDECARS [1000,5000]  simulated sidecars, one run per count and mode
#   MODES [sotw,delta]    ADS modes
#   ENDPOINTS [10000]     registered endpoints
#   APPS [1000]           app ids they (and the sidecars) are spread over
#   RATE [10]             changes per second
#   CHANGES [300]         changes (30 s at 10/s)
#   SETTLE [3m]           longest wait for every sidecar to hold a state
#   BASELINE              a git ref: also measure its binary first (label = the ref)
#   OUT [xds-bench-results]  where the results go (raw.jsonl is appended to)
#   GO [go]               the go command
# Needs Linux (/proc) and Go. Each run stops its control plane on exit.
set -euo pipefail

SIDECARS=${SIDECARS:-1000,5000}
MODES=${MODES:-sotw,delta}
ENDPOINTS=${ENDPOINTS:-10000}
APPS=${APPS:-1000}
RATE=${RATE:-10}
CHANGES=${CHANGES:-300}
SETTLE=${SETTLE:-3m}
BASELINE=${BASELINE:-}
OUT=${OUT:-xds-bench-results}
GO=${GO:-go}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/skein-xds-bench.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

echo "==> building skein and the benchmark" >&2
(cd "$ROOT" && "$GO" build -o "$WORK/skein" ./cmd/skein && "$GO" build -o "$WORK/xds-bench" ./test/bench/xds)
HEAD=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo head)

bench() { # label binary
	"$WORK/xds-bench" -skein "$2" -label "$1" -sidecars "$SIDECARS" -modes "$MODES" -endpoints "$ENDPOINTS" \
		-apps "$APPS" -rate "$RATE" -changes "$CHANGES" -settle "$SETTLE" -out "$OUT"
}
if [ -n "$BASELINE" ]; then
	echo "==> building skein at $BASELINE" >&2
	mkdir -p "$WORK/base-src"
	git -C "$ROOT" archive "$BASELINE" | tar -x -C "$WORK/base-src"
	(cd "$WORK/base-src" && "$GO" build -o "$WORK/skein-base" ./cmd/skein)
	bench "$BASELINE" "$WORK/skein-base"
fi
bench "$HEAD" "$WORK/skein"
echo "==> $OUT/report.md" >&2
