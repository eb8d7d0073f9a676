package resiliency

import (
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
)

// overloadErr is a refusal for overload, as package overload's
// RefusedError says it.
type overloadErr struct{}

func (overloadErr) Error() string    { return "overloaded" }
func (overloadErr) Overloaded() bool { return true }

// TestOverloadRefusalNeitherRetriedNorCounted: a try refused for overload
// is not retried, whatever the retry policy, and the breaker counts it as
// neither failure nor success, so refusals never trip it.
func TestOverloadRefusalNeitherRetriedNorCounted(t *testing.T) {
	c := mustCompile(t, `
policies:
  retries: {r: {policy: constant, duration: 1ms, maxRetries: 5}}
  circuitBreakers: {cb: {maxRequests: 1, timeout: 1m, trip: consecutiveFailures >= 2}}
targets: {apps: {server: {retry: r, circuitBreaker: cb}}}
`)
	policyOf := func(*http.Request) Policy { return c.ForApp("server") }
	reg := NewRegistry(nil)
	var tries atomic.Int64
	refuse := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		tries.Add(1)
		return nil, overloadErr{}
	})
	rt := Retry(policyOf)(Breaker(reg, policyOf, nil)(refuse))
	for i := range 5 {
		req, _ := http.NewRequest(http.MethodGet, "http://server/method", nil)
		if _, err := rt.RoundTrip(req); !errors.As(err, new(overloadErr)) {
			t.Fatalf("call %d: %v, want the refusal", i+1, err)
		}
	}
	if n := tries.Load(); n != 5 {
		t.Errorf("%d tries for 5 refused calls, want 5 (no retry)", n)
	}
	p := c.ForApp("server")
	if got := reg.Get(&p, "method").State(); got != StateClosed {
		t.Errorf("breaker %s after 5 refusals, want closed", got)
	}
}
