package resiliency

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
)

// Timeout is the per-attempt deadline layer (contract §5.3), innermost of
// the three. For a request whose policy (policyOf) has a Timeout, next runs
// under a context with that deadline; on expiry the attempt fails with an
// error wrapping context.DeadlineExceeded ("context deadline exceeded")
// and any late response is discarded. The deadline also covers reading the
// response body, whose Close releases the context. m may be nil.
func Timeout(policyOf func(*http.Request) Policy, m *Metrics) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			p := policyOf(req)
			if p.Timeout <= 0 {
				return next.RoundTrip(req)
			}
			m.policyUsed(&p, policyTimeout, "")
			ctx, cancel := context.WithTimeout(req.Context(), p.Timeout)
			resp, err := next.RoundTrip(req.WithContext(ctx))
			if err != nil {
				cancel()
				if ctx.Err() == context.DeadlineExceeded && req.Context().Err() == nil {
					m.activated(&p, policyTimeout, "")
					return nil, fmt.Errorf("attempt to %s timed out after %v: %w", p.Target, p.Timeout, context.DeadlineExceeded)
				}
				return nil, err
			}
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		})
	}
}

// cancelBody releases the attempt's context when the body is closed, so
// that the body stays readable after RoundTrip returns.
type cancelBody struct {
	io.ReadCloser
	once   sync.Once
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(b.cancel)
	return err
}
