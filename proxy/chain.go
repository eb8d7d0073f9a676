package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/recovery"
	"github.com/skeinmesh/skein/resiliency"
)

// chain applies server layers so that the first one listed sees the request
// first.
func chain(h http.Handler, layers ...func(http.Handler) http.Handler) http.Handler {
	for i := len(layers) - 1; i >= 0; i-- {
		h = layers[i](h)
	}
	return h
}

// wrap applies client layers so that the first one listed sees the request
// first.
func wrap(rt http.RoundTripper, layers ...func(http.RoundTripper) http.RoundTripper) http.RoundTripper {
	for i := len(layers) - 1; i >= 0; i-- {
		rt = layers[i](rt)
	}
	return rt
}

// The order of every path through a sidecar, in one place.
func (s *Sidecar) buildChains() {
	panics := recovery.NewMetrics(s.reg) // skein_panics_total{layer}, shared by the recovery layers below
	// App → sidecar: the invoke API and the control endpoints.
	s.apiHandler = chain(http.HandlerFunc(s.serveAPI),
		recovery.Handler(panicLayerAPI, panics, s.log, recoveredAPI), // outermost: a panic anywhere is a 500 (or an aborted reply), never a dropped connection
		s.tracing.Caller(badBaggage),                                 // first: every API request, rejected ones too, gets its CLIENT span; bad baggage is a 400
		s.access.Outbound,                                            // --access-log: one JSON line per outbound call
		s.serverMetrics,                                              // dapr_http_server_*: every API request, inside its span (exemplars)
		s.httpPipeline,                                               // spec.httpPipeline's rate limits (429), after tracing and metrics as in daprd, so refusals are traced and counted; health endpoints and the gRPC API exempt
	)
	// Sidecar → remote sidecar, one per call; the picker retries only what
	// never left the process.
	retry := resiliency.Retry(policyOf,
		resiliency.WithBudgets(s.budgets),
		resiliency.WithMetrics(s.resMetrics),
		resiliency.WithMaxReplayBody(s.opts.MaxReplayBody))
	// The picker takes the call's target as parsed from the invocation,
	// never from the request's Host.
	pick := discovery.Pick(s.resolver, s.balancer, targetOf)
	s.remote.Transport = wrap(s.peers,
		s.firstCall,   // outermost: the first call ends start-up (Options.StartupDone)
		resolveRoute,  // first: the call's route (policy with xDS precedence, caps), resolved once; every layer and try below reads it
		s.callMetrics, // skein_invocation_*: one per call, the outcome after retries
		s.xdsCalls,    // xDS max_requests cap and route timeout: whole-call limits, so outside retry
		s.overloadTargets.Layer(s.overloadTarget), // adaptive concurrency limit per target: refuses at once (503 OVERLOADED); outside retry, so a refusal is never retried and a call's tries are one sample
		retry, // outside the breaker: every try is counted; budgeted; bodies kept up to --max-replay-body-size
		resiliency.Breaker(s.breakers, policyOf, methodOf),          // fails fast with ErrCircuitOpen, no network
		resiliency.Timeout(policyOf, s.resMetrics),                  // per-attempt deadline
		recovery.RoundTripper(panicLayerPeerAttempt, panics, s.log), // a panic in a try is a failed try: breaker, budget and max_requests release as for any error
		s.attemptMetrics,   // dapr_runtime_service_invocation_{req_sent,res_recv}: per attempt past the breaker
		pick,               // endpoint chosen per try (ejected instances skipped); copies the request addressed to it
		peerRefusals,       // under the picker: a peer's 503 OVERLOADED becomes a refusal, no verdict on the instance, not retried
		s.access.TryTiming, // --access-log: connect, TLS and upstream time of each try
		handOver,           // innermost: a 101's connection goes to the forwarder before any layer wraps the body
	)
	// App → a service without a sidecar (a URL or an HTTPEndpoint): the
	// same call-wide and per-try layers, no discovery, the endpoint's TLS.
	s.external.Transport = wrap(roundTripFunc(externalCalls),
		s.firstCall,   // the first call ends start-up
		resolveRoute,  // the policy of the target exactly as written, as in Dapr
		s.callMetrics, // one per call
		retry,
		resiliency.Breaker(s.breakers, policyOf, methodOf),
		resiliency.Timeout(policyOf, s.resMetrics),
		recovery.RoundTripper(panicLayerPeerAttempt, panics, s.log),
		s.attemptMetrics,
		s.access.TryTiming,
		handOver, // innermost: a WebSocket's 101 connection goes to the forwarder
	)
	// On the way to the app, from peers and self-invocation alike.
	s.toApp = chain(s.local,
		s.appPipeline, // spec.appHttpPipeline's rate limits (429), right before the app channel as in Dapr; HTTP apps only
	)
	// Remote sidecar → this sidecar → app: first what every connection and
	// request gets, then the call's own steps, then the forwarder to the app.
	s.inbound = chain(s.toApp,
		s.inboundCall,   // the call's facts, once: :authority is this app (else 421), an app channel, the method normalised and the verb the app receives
		s.authorizeCall, // access control on exactly that method and verb; denied calls never reach the app
		s.limitCaller,   // spec.callerRateLimits (429) by verified caller; after access control, so denied calls take no token
		callerBody,      // a body the caller's sidecar fails to send is its fault (400), not the app's
		callerDeadline,  // the caller's grpc-timeout bounds the app call
	)
	s.peerHandler = chain(s.inbound,
		recovery.Handler(panicLayerPeer, panics, s.log, s.recoveredPeer), // outermost: a panic is a 500 (or a reset stream), never every stream of the connection
		s.firstInbound,                   // the first call from a peer ends start-up (Options.StartupDone)
		s.closeWhileDraining,             // stopping: each HTTP/1.1 answer closes its connection, so callers still routing here re-pick
		grpcErrors,                       // a gRPC call's refusals and failures here are gRPC statuses (proxy mode), not HTTP bodies
		s.tracing.Callee(badBaggage),     // refused calls are traced too; SERVER span, child of the caller's
		identity.RequirePeer(refusePeer), // caller identity from the verified SVID; 401 without one
		s.access.Inbound,                 // --access-log: one JSON line per inbound call, with its caller
	)
	// Sidecar → local app, for calls from peers and self-invocation.
	s.local.Transport = wrap(s.appTransport,
		recovery.RoundTripper(panicLayerAppChannel, panics, s.log), // outermost: a panic below is a 500 INTERNAL; the limiter frees its slot by itself
		appChannelErrors,                           // every failure below is an app-channel failure
		s.appLimit.Layer(),                         // adaptive concurrency limit of the app channel: refuses at once (503 OVERLOADED) before the queue; its latency includes the queue's wait
		limitConcurrency(s.opts.AppMaxConcurrency), // --app-max-concurrency: excess calls queue
		apphealth.Require(s.health),                // --enable-app-health-check: no call to an unhealthy app, from peers or self; after the queue, so a call that waited meanwhile is refused too
		s.access.AppTiming,                         // --access-log: queue and app times, reported to a caller that asks
		s.appMetrics,                               // dapr_http_client_*, callee invocation metrics: the app's own time, after the queue
		appOverloadHeader,                          // the app cannot mark its answer as this sidecar's refusal
		handOver,                                   // innermost: a 101's connection goes to the forwarder; the slot above is held until the tunnel ends
	)
}

// grpcErrors wraps the ResponseWriter of a gRPC call (Dapr's proxy mode) so
// that errors this sidecar writes reach the client as gRPC statuses.
func grpcErrors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if daprgrpc.IsGRPC(r.Header) {
			w = daprgrpc.ErrorWriter(w)
		}
		next.ServeHTTP(w, r)
	})
}
