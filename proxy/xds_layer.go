package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/resiliency"
)

// errOverflow is the error of a call refused because the target's xDS
// max_requests calls are already in flight. It is a circuit-breaker
// refusal (errors.Is resiliency.ErrCircuitOpen, so retries stop) that
// answers 503, as Envoy's overflow does.
var errOverflow = fmt.Errorf("too many calls in flight (xds max_requests): %w", resiliency.ErrCircuitOpen)

// xdsCalls is the layer of an xDS target's call-wide limits, outside the
// retry layer so that they cover every try: the cap on calls in flight
// (max_requests), which refuses at once, and the route's timeout, a
// deadline for the whole call including retries and back-off. The slot and
// the deadline last until the response body is closed.
func (s *Sidecar) xdsCalls(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rt := routeOf(r)
		if rt == nil || rt.xds == nil {
			return next.RoundTrip(r)
		}
		a, route := rt.xds, rt.route
		limited := a.maxRequests > 0 && a.inflight != nil
		if !limited && (route == nil || route.timeout <= 0) {
			return next.RoundTrip(r)
		}
		if limited {
			if a.inflight.Add(1) > a.maxRequests {
				a.inflight.Add(-1)
				if r.Body != nil {
					_ = r.Body.Close()
				}
				return nil, errOverflow
			}
		}
		done := &callDone{}
		if limited {
			done.inflight = a.inflight
		}
		if route != nil && route.timeout > 0 {
			ctx, cancel := context.WithTimeoutCause(r.Context(), route.timeout,
				fmt.Errorf("route %s timed out after %v: %w", route.name, route.timeout, context.DeadlineExceeded))
			done.cancel = cancel
			r = r.WithContext(ctx)
		}
		resp, err := next.RoundTrip(r)
		if err != nil {
			done.finish()
			if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() != nil {
				err = context.Cause(r.Context()) // names the route; still DeadlineExceeded
			}
			return nil, err
		}
		resp.Body = &doneBody{ReadCloser: resp.Body, done: done}
		return resp, nil
	})
}

// callDone releases what xdsCalls took for one call, once.
type callDone struct {
	once     sync.Once
	inflight interface{ Add(int64) int64 }
	cancel   context.CancelFunc
}

func (d *callDone) finish() {
	d.once.Do(func() {
		if d.inflight != nil {
			d.inflight.Add(-1)
		}
		if d.cancel != nil {
			d.cancel()
		}
	})
}

type doneBody struct {
	io.ReadCloser
	done *callDone
}

func (b *doneBody) Close() error {
	err := b.ReadCloser.Close()
	b.done.finish()
	return err
}

// xdsAccess decides req by the xDS RBAC filter of this app once the files'
// accessControl allowed it (d): a call must pass both. A denial by RBAC
// wins; otherwise the files' decision stands, unless there was no
// accessControl, when RBAC's allow names the rule.
func xdsAccess(snap *Snapshot, req access.Request, d access.Decision) access.Decision {
	if snap.xds == nil || snap.xds.rbac == nil || !d.Allowed {
		return d
	}
	rd := snap.xds.rbac.Decide(req)
	if rd.Denied || d.Level == "" && !d.Denied {
		return rd
	}
	return d
}
