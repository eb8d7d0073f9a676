package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/skeinmesh/skein/accesslog"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
)

// The metrics layers. Each loads the meters of the snapshot its call runs
// under and does nothing more when spec.metrics.enabled is false.

// serverMetrics records Dapr's dapr_http_server_* metrics for every request
// the app makes on the API port (contract §6.2).
func (s *Sidecar) serverMetrics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m := s.snap.Load().meters
		if m == nil || !m.spec.Enabled || daprgrpc.FromGRPC(r.Context()) {
			// A call on the gRPC port is counted by Dapr's gRPC metrics.
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		sw := &accesslog.StatusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		end := time.Now()
		status := sw.Status
		if status == 0 {
			status = http.StatusOK // what net/http sends for a handler that wrote nothing
		}
		c := m.serverChildren(httpKey{verb: r.Method, path: r.URL.Path, status: status})
		c.count.Inc()
		if c.resp != nil {
			c.resp.Inc()
		}
		c.latency.observe(r.Context(), ms(end.Sub(start)), end)
		m.srvReqBytes.Observe(float64(max(r.ContentLength, 0)))
		m.srvRespBytes.Observe(float64(sw.Bytes))
	})
}

// callMetrics records Skein's per-edge golden metrics once per call to
// another app, with the outcome the app sees after retries.
func (s *Sidecar) callMetrics(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c := callFrom(r.Context())
		if c == nil || c.snap.meters == nil || !c.snap.meters.spec.Enabled {
			return next.RoundTrip(r)
		}
		m := c.snap.meters
		start := time.Now()
		resp, err := next.RoundTrip(r)
		end := time.Now()
		var status int
		switch {
		case err == nil:
			status = resp.StatusCode
		case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
			return resp, err // the app went away: no outcome to count
		default:
			status, _ = classify(err)
		}
		e := m.edgeChildren(edgeTarget(c, err))
		m.edgeRequests(e, status).Inc()
		e.duration.observe(r.Context(), end.Sub(start).Seconds(), end)
		return resp, err
	})
}

// attemptMetrics records Dapr's caller-side service invocation metrics for
// each attempt that passed the circuit breaker, retries included.
func (s *Sidecar) attemptMetrics(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c := callFrom(r.Context())
		if c == nil || c.snap.meters == nil || !c.snap.meters.spec.Enabled {
			return next.RoundTrip(r)
		}
		m := c.snap.meters
		streaming := streams(r)
		start := time.Now()
		resp, err := next.RoundTrip(r)
		if errors.Is(err, discovery.ErrNotFound) {
			// No instance to send to: like Dapr, whose name resolution fails
			// before it records anything, no series for this app id.
			return resp, err
		}
		// Counted once the attempt is over rather than before it, so that
		// an app id that resolves to nothing never gets a series; the
		// count is the same, a long call's only later.
		p := m.peerChildren(peerKey{appID: c.target.AppID, streaming: streaming})
		p.reqSent.Inc()
		if err != nil {
			return resp, err // no response arrived
		}
		end := time.Now()
		st := m.peerStatus(p, resp.StatusCode)
		st.resRecv.Inc()
		if st.latency != nil {
			st.latency.observe(r.Context(), ms(end.Sub(start)), end)
		}
		return resp, nil
	})
}

// edgeTarget is the dst_app_id of a finished call: labelUnknown when the
// app id resolved to no instance, so that calls to made-up app ids share
// one series.
func edgeTarget(c *call, err error) string {
	if errors.Is(err, discovery.ErrNotFound) {
		return labelUnknown
	}
	return c.target.AppID
}

// streams reports whether a call is a stream rather than a unary request:
// it asks for server-sent events or sends a body of unknown length.
func streams(r *http.Request) bool {
	if r.ContentLength < 0 && r.Body != nil && r.Body != http.NoBody {
		return true
	}
	a, ok := r.Header["Accept"]
	return ok && len(a) > 0 && strings.Contains(a[0], "text/event-stream")
}

// appMetrics records Dapr's dapr_http_client_* metrics for every request to
// the local app and, for calls from other sidecars (which have passed
// access control), the callee's service invocation metrics.
func (s *Sidecar) appMetrics(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		c := callFrom(r.Context())
		if c == nil || c.snap.meters == nil || !c.snap.meters.spec.Enabled {
			return next.RoundTrip(r)
		}
		m := c.snap.meters
		var caller *callerChildren
		if c.fromPeer {
			caller = m.callerChildren(callerOf(r))
			caller.reqRecv.Inc()
		}
		start := time.Now()
		resp, err := next.RoundTrip(r)
		end := time.Now()
		status := http.StatusInternalServerError // an app-channel error (contract §1.10)
		if err == nil {
			status = resp.StatusCode
		}
		k := httpKey{verb: r.Method, path: c.method, status: status}
		cc := m.clientChildren(k)
		cc.count.Inc()
		cc.latency.observe(r.Context(), ms(end.Sub(start)), end)
		cc.sentBytes.Observe(float64(max(r.ContentLength, 0)))
		if err == nil && resp.StatusCode >= http.StatusOK { // an upgraded body must stay an io.ReadWriteCloser
			if resp.ContentLength >= 0 {
				m.cliRecvBytes.Observe(float64(resp.ContentLength))
			} else {
				resp.Body = &countingBody{ReadCloser: resp.Body, done: m.cliRecvBytes.Observe}
			}
		}
		if caller != nil {
			m.resSent(caller, status).Inc()
		}
		return resp, err
	})
}

// callerOf is the calling app of a call from another sidecar: from its
// verified certificate, else (mTLS off) the header its sidecar set, which
// anyone can set, so only a valid app id is taken from it.
func callerOf(r *http.Request) string {
	if p, ok := identity.PeerFrom(r.Context()); ok {
		return p.AppID
	}
	return callerLabel(r.Header.Get(HeaderCallerAppID))
}

// countingBody counts a response body of unknown length and reports the
// total once, at its end or when it is closed.
type countingBody struct {
	io.ReadCloser
	n    int64
	done func(float64)
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	if err == io.EOF {
		b.report()
	}
	return n, err
}

func (b *countingBody) Close() error {
	b.report()
	return b.ReadCloser.Close()
}

func (b *countingBody) report() {
	if b.done != nil {
		b.done(float64(b.n))
		b.done = nil
	}
}
