package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/resiliency"
	"github.com/skeinmesh/skein/telemetry"
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
		telemetry.TraceContext(), // first: every hop, rejected calls too, gets its span
	)
	// Sidecar → remote sidecar, one per call; the picker retries only what
	// never left the process.
	retry := resiliency.Retry(s.policyOf,
		resiliency.WithBudgets(s.budgets),
		resiliency.WithMetrics(s.resMetrics),
		resiliency.WithMaxReplayBody(s.opts.MaxReplayBody))
	s.remote.Transport = wrap(s.peers,
		retry, // outside the breaker: every try is counted; budgeted; bodies kept up to --max-replay-body-size
		resiliency.Breaker(s.breakers, s.policyOf, methodOf), // fails fast with ErrCircuitOpen, no network
		resiliency.Timeout(s.policyOf, s.resMetrics),         // per-attempt deadline
		discovery.Pick(s.resolver, s.balancer),               // endpoint chosen per try (ejected instances skipped); copies the request addressed to it
	)
	// Remote sidecar → this sidecar → app.
	s.peerHandler = chain(http.HandlerFunc(s.servePeer),
		telemetry.TraceContext(),         // the callee hop gets its own span id
		identity.RequirePeer(refusePeer), // caller identity from the verified SVID; 401 without one
	)
	// Sidecar → local app, for calls from peers and self-invocation.
	s.local.Transport = wrap(s.appTransport,
		appChannelErrors, // outermost: every failure below is an app-channel failure
		limitConcurrency(s.opts.AppMaxConcurrency), // --app-max-concurrency: excess calls queue
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
	return c.snap.Resiliency.ForApp(name)
}

// methodOf keys circuit breakers by the normalised method.
func methodOf(r *http.Request) string {
	if c := callFrom(r.Context()); c != nil {
		return c.method
	}
	return r.URL.Path
}
