package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/resiliency"
)

// Route is everything decided about one outbound call before it is sent:
// its target, the resiliency policy with the precedence of files and xDS
// already applied, and the xDS cluster and route that add call-wide limits.
// It is resolved once per call, from the snapshot the call started under
// (resolveRoute, the outermost outbound layer), and only read after that:
// retries, breaker, timeout, caps and metrics never look a policy up
// again (grpc-go's ConfigSelector shape). Immutable.
type Route struct {
	Target Target
	// Method is the normalised method, which keys breakers.
	Method string
	// Policy is the call's resiliency policy: the Resiliency resources'
	// policy for the target as the app named it, then, for an xDS cluster,
	// its retry budget and the first matching route's timeout and retry
	// policy (XDSConfig documents the precedence).
	Policy resiliency.Policy
	// xds is the target's xDS cluster (max_requests, in-flight counter),
	// route the matched xDS route (its whole-call timeout); nil when none.
	xds   *xdsApp
	route *xdsRoute
}

// routeFor resolves c's route in its snapshot. Counted in
// Snapshot.routeLookups, which tests read to prove a call resolves once.
func (s *Snapshot) routeFor(c *call) *Route {
	s.routeLookups.Add(1)
	name := c.name
	if name == "" {
		name = c.target.AppID
	}
	rt := &Route{Target: c.target, Method: c.method, Policy: s.Resiliency.ForApp(name)}
	if x := s.xds; x != nil {
		if a := x.apps[c.target]; a != nil {
			rt.xds = a
			if a.budget != nil {
				rt.Policy.Budget = a.budget
			}
			if r := a.match(c.method); r != nil {
				// An xDS route replaces the files' timeout and retries for
				// the methods it matches; the breaker stays the files'.
				rt.route = r
				p := &rt.Policy
				p.Timeout, p.TimeoutName = r.perTry, r.name
				p.Retry, p.RetryName = r.retry, r.name
				p.BuiltInRetries = false
				p.Resource, p.Namespace = "xds", ""
			}
		}
	}
	return rt
}

// resolveRoute is the outermost outbound layer: it resolves the call's
// route once, for every layer and try below.
func resolveRoute(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if c := callFrom(r.Context()); c != nil && c.route == nil {
			c.route = c.snap.routeFor(c)
		}
		return next.RoundTrip(r)
	})
}

// routeOf is the route of r's call; nil outside a call.
func routeOf(r *http.Request) *Route {
	if c := callFrom(r.Context()); c != nil {
		return c.route
	}
	return nil
}

// policyOf is the resiliency policy of a call, as its route has it.
func policyOf(r *http.Request) resiliency.Policy {
	if rt := routeOf(r); rt != nil {
		return rt.Policy
	}
	return resiliency.Policy{}
}

// methodOf keys circuit breakers by the normalised method.
func methodOf(r *http.Request) string {
	if rt := routeOf(r); rt != nil {
		return rt.Method
	}
	return r.URL.Path
}

// targetOf is the target of r's call, parsed once from the invocation: the
// picker resolves it and the peer pools key on it, so neither reads it back
// from the request's Host. False outside a call.
func targetOf(r *http.Request) (Target, bool) {
	if c := callFrom(r.Context()); c != nil {
		return c.target, true
	}
	return Target{}, false
}
