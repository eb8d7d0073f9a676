// Package proxy is Skein's L7 data path: the app-facing invoke API, the
// peer-facing listener, the request pipelines between them, and the
// transports to peers and to the local app.
//
// A call crosses two sidecars:
//
//	app A ──HTTP──▶ [API listener] ─ invoke ─▶ outbound chain ─h1/mTLS─▶
//	        [peer listener] ─▶ inbound chain ─▶ app channel ──HTTP──▶ app B
//
// The order of the layers on each path is written down once, in chain.go,
// one line a layer with why it sits there. In short:
//
//	outbound (API port): recovery, CLIENT span, access log, server metrics,
//	    httpPipeline rate limits, serveAPI (parse the invocation, body
//	    limit, the call's facts) →
//	    forwarder → resolveRoute (the call's *Route, once), call metrics,
//	    xDS call caps, adaptive limit per target, retry, breaker, per-try
//	    timeout, recovery, attempt metrics, pick an instance, peer refusals,
//	    try timing → peer transport
//	inbound (peer port): recovery, gRPC errors, SERVER span, peer
//	    identity, access log, inboundCall (authority, app channel,
//	    normalised method and verb), authorizeCall, limitCaller (per-caller
//	    rate limits), callerBody, callerDeadline, appPipeline rate limits
//	    (self-invocation too) → forwarder → recovery, app-channel errors,
//	    adaptive limit, concurrency limit (queue), app health, app timing,
//	    app metrics → app transport
//	external (a URL or HTTPEndpoint target, external.go): serveAPI →
//	    forwarder → resolveRoute, call metrics, retry, breaker, timeout,
//	    recovery, attempt metrics, try timing → the endpoint's transport
//
// The gRPC port (package proxy/daprgrpc) serves Dapr's gRPC API, whose
// InvokeService runs through the outbound chain above as the HTTP
// invocation Dapr makes of it, and Dapr's proxy mode, where a call with
// dapr-app-id metadata goes through the same chain as it is (HTTP/2 between
// the sidecars). A gRPC app (--app-protocol grpc) gets HTTP invocations as
// AppCallback/OnInvoke (daprgrpc.AppTransport).
//
// A call's facts are decided once: the target and method when the
// invocation is parsed, the snapshot when the call starts, and its Route
// (route.go: the resiliency policy with files' and xDS precedence settled,
// the xDS cluster and route) by the outermost outbound layer; later layers
// and every try only read them.
//
// Transports: the forwarder (forward.go) copies the request, lets the
// path's rewrite address it, and streams the answer back. Between sidecars
// the default is keep-alive HTTP/1.1 over SPIFFE mTLS on the lean client of
// package proxy/h1 (request written and response read on the calling
// goroutine); HTTP/2 and HTTP/3 are a flag away, and the peer port serves
// all of them. The app channel is proxy/h1 too (net/http's h2c with
// --app-protocol h2c). HTTP/1.x on the API port and on the peer port is
// served by proxy/h1's lean server (the handler on the connection's
// goroutine, no goroutine per request); HTTP/2 (h2c on the API port, h2
// or h2c on the peer port) by net/http's, a connection going to one or
// the other by its first bytes (apiserver.go, splitH2C) or its ALPN
// protocol (peers.go, splitALPN).
//
// WebSocket (tunnel.go): an HTTP/1.1 invocation asking to upgrade passes
// every layer like any call and goes over HTTP/1.1 on both hops whatever
// --peer-transport says; when the app answers 101, each sidecar answers
// 101 and joins its client's connection to the upstream's (handOver, the
// innermost client layer, takes the connection) until either side closes.
// The call's layers are released when the tunnel ends.
//
// Target and method extraction (target.go) and header rules (header.go) are
// pure functions with table and fuzz tests. Every error a client sees is
// produced by writeError (errors.go) in Dapr's JSON shape plus Skein's
// machine-readable reason.
//
// Configuration reaches the data path as an immutable *Snapshot loaded once
// per request (Sidecar.Apply swaps it atomically); state that must outlive a
// snapshot (connection pools, endpoint statistics) lives outside it.
//
// Metrics (metrics*.go): layers in chain.go record Dapr's dapr_http_* and
// dapr_runtime_service_invocation_* metrics and Skein's per-edge
// skein_invocation_* ones, labelled by the snapshot's spec.metrics; each
// snapshot caches its label-value children, so a request costs map lookups
// and atomic adds, not label hashing. Label values from requests are made
// valid UTF-8 and capped in number (metrics_limit.go).
//
// The access log (--access-log), its timing layers and the Skein-Timing
// exchange between sidecars are package accesslog, told by accesslog.Note
// which call a request is.
//
// Overload (overload.go, package overload): adaptive concurrency limits,
// one per target outside the retry layer and one on the app channel before
// the --app-max-concurrency queue, refuse calls beyond them at once (503
// OVERLOADED, Retry-After, HeaderOverloaded). On the caller, a peer's such
// refusal becomes an error just under the picker (peerRefusals), which
// resiliency and discovery recognise as no verdict on the instance and
// never retry.
//
// Every chain has a recovery layer (package recovery, recover.go): a panic
// in a layer fails only its request, with a 500 INTERNAL, and is logged and
// counted in skein_panics_total{layer}.
package proxy
