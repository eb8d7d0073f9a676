# Skein: `make test` is the one test command (README, .ci/run).
GO ?= go
# A count, not a duration: a -fuzztime duration races Go 1.26's fuzz coordinator
# (go.dev/issue/75804: a spurious "context deadline exceeded" with no crasher).
FUZZTIME ?= 50000x

.PHONY: all build test unit e2e fuzz lint bench bench-overload demo peers

all: build

build:
	$(GO) build -o bin/skein ./cmd/skein

demo:
	$(GO) run ./cmd/skein demo

# test installs what the tests need (Go modules, and the real peers built
# from the Go module proxy: SPIRE), checks formatting and vet, runs every
# test with the race detector, then a short run of each fuzz target.
test: lint peers
	$(GO) mod download
	$(GO) test -race -count=1 -timeout 30m ./...
	$(MAKE) fuzz

peers:
	bash test/peers/install.sh

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -race -count=1 ./proxy/... ./discovery/... ./telemetry/... ./cmd/...

e2e:
	$(GO) test -count=1 -timeout 20m ./test/...

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzNormalizeMethod$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseTarget$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzParseInvocation$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzTraceHeaders$$' -fuzztime $(FUZZTIME) ./telemetry
	$(GO) test -run '^$$' -fuzz '^FuzzAccessDecisionIsTheDeliveredPath$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzDecide$$' -fuzztime $(FUZZTIME) ./identity/access
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./resiliency
	$(GO) test -run '^$$' -fuzz '^FuzzSplitH2C$$' -fuzztime $(FUZZTIME) ./proxy
	$(GO) test -run '^$$' -fuzz '^FuzzResponse$$' -fuzztime $(FUZZTIME) ./proxy/h1
	# Each FuzzManifest input costs milliseconds (YAML, JSON Patch, YAML again):
	# minimizing every new input for the default 60 s stalled the run for minutes.
	$(GO) test -run '^$$' -fuzz '^FuzzManifest$$' -fuzztime $(FUZZTIME) -fuzzminimizetime 10x ./inject

# bench runs the data-path benchmark (test/bench/run.sh; knobs and meaning in
# docs/performance.md, e.g. make bench RUNS=5 SCENARIOS="direct haproxy
# skein-mtls") and writes report.md, raw.jsonl and SVG charts into $(OUT).
OUT ?= bench-results
bench:
	GO="$(GO)" OUT="$(OUT)" bash test/bench/run.sh

# bench-overload runs the overload benchmark (test/bench/overload.sh; docs/
# performance.md, Overload): 3x a slow app's capacity through two sidecars,
# the adaptive limit off and on, about two minutes; overload.md, overload.jsonl
# and the charts go into $(OUT).
bench-overload:
	GO="$(GO)" OUT="$(OUT)" bash test/bench/overload.sh
