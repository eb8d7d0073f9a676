package resiliency

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkStack measures the three layers around a transport that answers
// at once, with every policy set and the call succeeding.
func BenchmarkStack(b *testing.B) {
	s := &Spec{
		Policies: Policies{
			Timeouts:        map[string]string{"t": "1s"},
			Retries:         map[string]RetrySpec{"r": {Duration: "1ms"}},
			CircuitBreakers: map[string]CircuitBreakerSpec{"cb": {}},
		},
		Targets: Targets{Apps: map[string]AppTarget{"server": {Timeout: "t", Retry: "r", CircuitBreaker: "cb"}}},
	}
	c, err := Compile(s)
	if err != nil {
		b.Fatal(err)
	}
	policyOf := func(*http.Request) Policy { return c.ForApp("server") }
	ok := roundTripFunc(func(*http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader(""))}, nil
	})
	rt := Retry(policyOf, WithBudgets(NewBudgets(DefaultBudget, nil)))(Breaker(NewRegistry(nil), policyOf, nil)(Timeout(policyOf, nil)(ok)))
	req := httptest.NewRequest(http.MethodGet, "http://server/method", nil)
	b.ReportAllocs()
	for b.Loop() {
		resp, err := rt.RoundTrip(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
	}
}
