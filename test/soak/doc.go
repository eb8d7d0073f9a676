// Command soak is Skein's soak test (issue 14 point 5; `make soak`,
// docs/performance.md "Soak"). On 127.0.0.1 it starts an app (in this
// process), an OTLP/HTTP trace sink (in this process, counting spans) and
// two `skein sidecar` processes, a → b → app, with mTLS, a Resiliency
// (retries, a circuit breaker, a timeout) and tracing of every call on.
// test/bench/loadgen then sends a steady open-loop rate of GETs through
// them for the whole duration, while this program samples each sidecar's
// RSS, heap in use, goroutines and open fds from its /metrics every
// interval. The app fails every 200th request with a 503, which the
// caller's retry policy retries, so retries happen all along and no call
// the client sees fails.
//
// It fails (exit status 1) when any call fails, or when any sampled figure
// of either sidecar grows by more than its margin after the warm-up: the
// median of the last third of the samples after the warm-up against the
// median of the first third. It writes report.md, samples.csv and
// soak.svg (the sampled curves) into -out.
//
//	soak -skein bin/skein -loadgen bin/loadgen [-duration 30m] [-rate 1000] [-interval 10s] [-out soak-results]
package main
