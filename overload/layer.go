package overload

import (
	"context"
	"errors"
	"net/http"
)

// Layer is the client-side layer of one limiter (the app channel's): a
// call beyond the limit fails with a *RefusedError without calling next, and
// the request body is closed. A nil *Limiter passes every call.
func (l *Limiter) Layer() func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if l == nil {
			return next
		}
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return limited(l, next, r)
		})
	}
}

// Layer is the client-side layer of limits per target: targetOf names a
// request's target (false: none, the call passes). A target without a
// limiter yet gets one when a call to it is answered (Registry). A nil
// *Registry passes every call.
func (r *Registry) Layer(targetOf func(*http.Request) (string, bool)) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if r == nil {
			return next
		}
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			target, ok := targetOf(req)
			if !ok {
				return next.RoundTrip(req)
			}
			if l := r.Get(target); l != nil {
				return limited(l, next, req)
			}
			resp, err := next.RoundTrip(req)
			if err == nil {
				r.Learn(target)
			}
			return resp, err
		})
	}
}

// limited runs one call through l. The slot is held until the response
// headers (or the failure) come back, and freed even if a layer below
// panics.
func limited(l *Limiter, next http.RoundTripper, r *http.Request) (*http.Response, error) {
	tok, err := l.Acquire()
	if err != nil {
		if r.Body != nil {
			_ = r.Body.Close() // a RoundTripper always closes the body
		}
		return nil, err
	}
	sample := false
	defer func() { l.Release(tok, sample) }()
	resp, err := next.RoundTrip(r)
	sample = measures(err)
	return resp, err
}

// measures reports whether a call's outcome is a latency sample: an
// answer, or a deadline passing (the call's or a try's: the target was at
// least that slow). The caller going away and failures that came back at
// once (no instance, connection refused, another limiter's refusal) are
// not.
func measures(err error) bool {
	return err == nil || errors.Is(err, context.DeadlineExceeded) && !IsOverloaded(err)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
