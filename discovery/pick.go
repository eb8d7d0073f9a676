package discovery

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// maxConnectTries bounds how many instances one call tries when they refuse
// connections.
const maxConnectTries = 3

// connectBackoff is how long an instance that refused a connection is
// avoided while others are available.
const connectBackoff = 5 * time.Second

// Picker is the client-side layer that turns a request addressed to the
// logical host "<app-id>.<namespace>" into one addressed to an instance.
// It never modifies the request it is given.
type Picker struct {
	res  *Resolver
	bal  Balancer
	next http.RoundTripper
	now  func() time.Time
}

// Pick returns the picking layer over next, resolving with res and
// choosing with bal.
func Pick(res *Resolver, bal Balancer) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return &Picker{res: res, bal: bal, next: next, now: time.Now}
	}
}

// RoundTrip implements http.RoundTripper. The request's Host must be
// "<app-id>.<namespace>"; it is kept as the :authority the callee checks.
func (p *Picker) RoundTrip(r *http.Request) (*http.Response, error) {
	appID, ns, ok := strings.Cut(r.Host, ".")
	if !ok {
		return nil, fmt.Errorf("pick: logical host %q is not <app-id>.<namespace>", r.Host)
	}
	st, eps, err := p.res.resolve(appID, ns)
	if err != nil {
		closeBody(r)
		return nil, err
	}
	bal := p.bal
	if tp := st.policy.Load(); tp != nil && tp.Balancer != nil {
		bal = tp.Balancer
	}
	var body *trackedBody
	if r.Body != nil && r.Body != http.NoBody {
		body = &trackedBody{rc: r.Body}
	}
	var triedBuf [maxConnectTries]*Endpoint
	tried := triedBuf[:0]
	var lastErr error
	for range maxConnectTries {
		now := p.now()
		ep := bal.Pick(eps, tried, now.UnixNano())
		if ep == nil {
			break
		}
		tried = append(tried, ep)
		out := *r // shallow copy: only URL changes, and URL is copied too
		u := *r.URL
		u.Host = ep.Addr
		out.URL = &u
		if body != nil {
			out.Body = body
		}
		ep.inflight.Add(1)
		resp, err := p.next.RoundTrip(&out)
		ep.inflight.Add(-1)
		end := p.now()
		if err == nil {
			// An instance's first answer pays for connection setup on both
			// hops; it says nothing about the instance's latency.
			if ep.warm.Load() {
				ep.observe(end.UnixNano(), end.Sub(now))
			} else {
				ep.warm.Store(true)
			}
			p.res.report(st, ep, end.UnixNano(), resp.StatusCode >= 500)
			return resp, nil
		}
		lastErr = err
		if r.Context().Err() != nil {
			// The caller gave up (or its deadline passed): no verdict on
			// the instance.
			break
		}
		p.res.report(st, ep, end.UnixNano(), true)
		if neverSent(err) && (body == nil || !body.read.Load()) {
			// Nothing reached this instance: safe to try another, whatever the verb.
			ep.markFailed(end.UnixNano(), connectBackoff)
			continue
		}
		if !replayable(r) {
			break
		}
		// The connection died before any response (the instance was killed
		// mid-call): a bodiless idempotent request may be sent again, the
		// rule net/http applies to its own connections (RFC 9110 §9.2.2).
		ep.markFailed(end.UnixNano(), connectBackoff)
	}
	closeBody(r)
	if neverSent(lastErr) {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnreachable, appID, lastErr)
	}
	return nil, lastErr
}

func closeBody(r *http.Request) {
	if r.Body != nil {
		_ = r.Body.Close()
	}
}

// neverSent reports whether err shows the request never left this process:
// the connection to the instance could not be made.
func neverSent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// replayable reports whether r may be sent again after it reached an
// instance: an idempotent method and no body.
func replayable(r *http.Request) bool {
	if r.Body != nil && r.Body != http.NoBody {
		return false
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
}

// trackedBody lets the picker replay a body that no try has read from. A
// transport closes the body of a failed request; while nothing was read,
// that Close is ignored so the next try can send the same body.
type trackedBody struct {
	rc   io.ReadCloser
	read atomic.Bool // written by the transport's body-writer goroutine
}

func (b *trackedBody) Read(p []byte) (int, error) {
	b.read.Store(true)
	return b.rc.Read(p)
}

func (b *trackedBody) Close() error {
	if b.read.Load() {
		return b.rc.Close()
	}
	return nil
}
