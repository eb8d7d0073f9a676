// Package recovery turns a panic in a request layer into a logged, counted
// failure of that one request, so that a bug in one layer never answers an
// empty reply, resets every stream of a connection or strands a slot that
// a layer above took.
//
// Two layers in the stdlib shapes, each named by a constant layer string
// (the value of the layer label, so its values stay bounded):
//   - Handler, func(http.Handler) http.Handler, goes outermost on a server
//     chain. It recovers a panic below it, logs it at ERROR with its stack
//     (no bodies, headers or query strings), counts it in
//     skein_panics_total{layer}, and, when no response header has been sent
//     yet, answers with the reply func it was given (the sidecar's 500 in
//     Dapr's error envelope). Once the response has started it aborts it
//     with panic(http.ErrAbortHandler), which net/http turns into a reset
//     stream or a closed connection without logging it again, so a client
//     never takes a truncated reply for a whole one.
//   - RoundTripper, func(http.RoundTripper) http.RoundTripper, turns a panic
//     below it into an error wrapping ErrPanic and closes the request body,
//     so the layers above it (limits, breakers, metrics) see a failed try and
//     release what they hold as for any other failure.
//
// http.ErrAbortHandler is how net/http and httputil.ReverseProxy abort a
// response on purpose; both layers let it pass untouched.
//
// Metrics holds the counter; build it once per sidecar with NewMetrics and
// share it between the layers. Everything here is safe for concurrent use.
package recovery
