package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
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
	// App → sidecar: the invoke API and the control endpoints.
	s.apiHandler = chain(http.HandlerFunc(s.serveAPI),
		s.tracing.Caller(badBaggage), // first: every API request, rejected ones too, gets its CLIENT span; bad baggage is a 400
		s.accessLayer(false),         // --access-log: one JSON line per outbound call
		s.serverMetrics,              // dapr_http_server_*: every API request, inside its span (exemplars)
	)
	// Sidecar → remote sidecar, one per call; the picker retries only what
	// never left the process.
	retry := resiliency.Retry(s.policyOf,
		resiliency.WithBudgets(s.budgets),
		resiliency.WithMetrics(s.resMetrics),
		resiliency.WithMaxReplayBody(s.opts.MaxReplayBody))
	s.remote.Transport = wrap(s.peers,
		s.callMetrics, // skein_invocation_*: one per call, the outcome after retries
		s.xdsCalls,    // xDS max_requests cap and route timeout: whole-call limits, so outside retry
		retry,         // outside the breaker: every try is counted; budgeted; bodies kept up to --max-replay-body-size
		resiliency.Breaker(s.breakers, s.policyOf, methodOf), // fails fast with ErrCircuitOpen, no network
		resiliency.Timeout(s.policyOf, s.resMetrics),         // per-attempt deadline
		s.attemptMetrics,                       // dapr_runtime_service_invocation_{req_sent,res_recv}: per attempt past the breaker
		discovery.Pick(s.resolver, s.balancer), // endpoint chosen per try (ejected instances skipped); copies the request addressed to it
		s.tryTiming,                            // --access-log: connect, TLS and upstream time of each try
	)
	// Remote sidecar → this sidecar → app.
	s.peerHandler = chain(http.HandlerFunc(s.servePeer),
		s.tracing.Callee(badBaggage),     // outermost: refused calls are traced too; SERVER span, child of the caller's
		identity.RequirePeer(refusePeer), // caller identity from the verified SVID; 401 without one
		s.accessLayer(true),              // --access-log: one JSON line per inbound call, with its caller
	)
	// Sidecar → local app, for calls from peers and self-invocation.
	s.local.Transport = wrap(s.appTransport,
		appChannelErrors, // outermost: every failure below is an app-channel failure
		limitConcurrency(s.opts.AppMaxConcurrency), // --app-max-concurrency: excess calls queue
		s.appTiming,  // --access-log: queue and app times, reported to a caller that asks
		s.appMetrics, // dapr_http_client_*, callee invocation metrics: the app's own time, after the queue
	)
}

// policyOf is the resiliency policy of a call: the target as the caller
// wrote it, looked up in the snapshot the call started under (contract §5.6).
func (s *Sidecar) policyOf(r *http.Request) resiliency.Policy {
	c := callFrom(r.Context())
	if c == nil {
		return resiliency.Policy{}
	}
	name := c.name
	if name == "" {
		name = c.target.AppID
	}
	p := c.snap.Resiliency.ForApp(name)
	if x := c.snap.xds; x != nil {
		p = x.policy(c, p) // per app, xDS routes win (proxy/xds.go)
	}
	return p
}

// methodOf keys circuit breakers by the normalised method.
func methodOf(r *http.Request) string {
	if c := callFrom(r.Context()); c != nil {
		return c.method
	}
	return r.URL.Path
}
