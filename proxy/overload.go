package proxy

import (
	"net/http"

	"github.com/skeinmesh/skein/overload"
)

// HeaderOverloaded marks a sidecar's own refusal for overload (503
// OVERLOADED) on the response, as Envoy's x-envoy-overloaded does, so that
// the calling sidecar knows the instance refused the call rather than
// failed it: no retry, no breaker or outlier verdict (peerRefusals). A
// callee strips it from its app's responses (appOverloadHeader), so only a
// sidecar's refusal carries it.
const HeaderOverloaded = "Skein-Overloaded"

// overloadRetryAfter is the Retry-After (RFC 9110 §10.2.3) of a refusal for
// overload, in seconds: a limit adapts within a fraction of a second, so a
// client waiting this long finds a new one.
const overloadRetryAfter = "1"

// peerOverloadedError is a peer sidecar's refusal for overload, turned into
// an error by peerRefusals. It is an overload.RefusedError of the callee's
// app channel: errors.Is ErrOverloaded, and Overloaded() true for
// resiliency and discovery.
type peerOverloadedError struct{ target string }

func (e *peerOverloadedError) Error() string {
	return e.target + "'s sidecar refused the call: " + (&overload.RefusedError{Side: overload.SideApp}).Error()
}
func (e *peerOverloadedError) Unwrap() error { return &overload.RefusedError{Side: overload.SideApp} }

// peerRefusals turns a peer sidecar's refusal for overload (503 with
// HeaderOverloaded) into a *peerOverloadedError, right under the picker, so
// the layers above see a refusal, not a failed try: the picker does not
// eject or penalise the instance, the breaker does not count it, retries
// stop, and the caller's limit takes no sample. The caller answers its
// client the same 503 OVERLOADED with Retry-After.
func peerRefusals(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil || resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(HeaderOverloaded) == "" {
			return resp, err
		}
		_ = resp.Body.Close()
		target := r.Host
		if t, ok := targetOf(r); ok {
			target = t.AppID
		}
		return nil, &peerOverloadedError{target: target}
	})
}

// appOverloadHeader strips HeaderOverloaded from the app's responses: only
// this sidecar's refusals may carry it to the caller's.
func appOverloadHeader(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil {
			if _, ok := resp.Header[HeaderOverloaded]; ok {
				delete(resp.Header, HeaderOverloaded)
			}
		}
		return resp, err
	})
}

// overloadTarget names a call's target for its limiter and the metric
// label: the app id, with the namespace when it is not this sidecar's.
func (s *Sidecar) overloadTarget(r *http.Request) (string, bool) {
	t, ok := targetOf(r)
	if !ok {
		return "", false
	}
	if t.Namespace == s.opts.Namespace {
		return t.AppID, true
	}
	return t.String(), true
}
