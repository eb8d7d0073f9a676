package resiliency

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	gobreaker "github.com/sony/gobreaker/v2"
)

func breakerPolicy(t *testing.T, target, trip, timeout string, cacheSize int) Policy {
	t.Helper()
	s := &Spec{
		Policies: Policies{CircuitBreakers: map[string]CircuitBreakerSpec{"cb": {Trip: trip, Timeout: timeout}}},
		Targets:  Targets{Apps: map[string]AppTarget{target: {CircuitBreaker: "cb", CircuitBreakerCacheSize: cacheSize}}},
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return c.ForApp(target)
}

func fail(t *testing.T, cb *CircuitBreaker) {
	t.Helper()
	done, err := cb.Allow()
	if err != nil {
		t.Fatalf("Allow: %v", err)
	}
	done(errors.New("boom"))
}

func TestRegistrySurvivesRecompile(t *testing.T) {
	reg := NewRegistry(nil)
	p1 := breakerPolicy(t, "a", "consecutiveFailures >= 1", "1m", 0)
	fail(t, reg.Get(&p1, "m"))
	if got := reg.Get(&p1, "m").State(); got != StateOpen {
		t.Fatalf("state = %s, want open", got)
	}
	// Same settings from a new Compile: same breaker, still open.
	p2 := breakerPolicy(t, "a", "consecutiveFailures >= 1", "1m", 0)
	if got := reg.Get(&p2, "m").State(); got != StateOpen {
		t.Errorf("after recompile state = %s, want open (state kept)", got)
	}
	// Another method of the same target has its own breaker.
	if got := reg.Get(&p2, "other").State(); got != StateClosed {
		t.Errorf("other method state = %s, want closed", got)
	}
	// Changed settings: a new, closed breaker.
	p3 := breakerPolicy(t, "a", "consecutiveFailures >= 2", "1m", 0)
	if got := reg.Get(&p3, "m").State(); got != StateClosed {
		t.Errorf("after changed settings state = %s, want closed", got)
	}
}

func TestRegistryLRU(t *testing.T) {
	reg := NewRegistry(nil)
	p := breakerPolicy(t, "a", "consecutiveFailures >= 1", "1m", 2)
	fail(t, reg.Get(&p, "m1"))
	fail(t, reg.Get(&p, "m2"))
	reg.Get(&p, "m1") // m1 most recent
	reg.Get(&p, "m3") // evicts m2
	if got := reg.Get(&p, "m1").State(); got != StateOpen {
		t.Errorf("m1 = %s, want open (kept)", got)
	}
	if got := reg.Get(&p, "m2").State(); got != StateClosed {
		t.Errorf("m2 = %s, want closed (evicted, new breaker)", got)
	}
	// Other targets have their own LRU.
	q := breakerPolicy(t, "b", "consecutiveFailures >= 1", "1m", 2)
	fail(t, reg.Get(&q, "m1"))
	if got := reg.Get(&p, "m1").State(); got != StateOpen {
		t.Errorf("a:m1 = %s after b's breakers, want open", got)
	}
}

func TestBreakerHalfOpenTooManyRequests(t *testing.T) {
	reg := NewRegistry(nil)
	p := breakerPolicy(t, "a", "consecutiveFailures >= 1", "20ms", 0)
	cb := reg.Get(&p, "m")
	fail(t, cb)
	if _, err := cb.Allow(); !errors.Is(err, ErrCircuitOpen) {
		t.Fatalf("open: err = %v", err)
	}
	time.Sleep(30 * time.Millisecond)
	done, err := cb.Allow() // the one half-open probe
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	if _, err := cb.Allow(); !errors.Is(err, ErrTooManyRequests) || err.Error() != "too many requests" {
		t.Errorf("second half-open request: err = %v, want ErrTooManyRequests", err)
	}
	done(nil)
	if cb.State() != StateClosed {
		t.Errorf("state = %s, want closed", cb.State())
	}
	if gobreaker.ErrOpenState.Error() != ErrCircuitOpen.Error() {
		t.Error("ErrCircuitOpen text differs from gobreaker's")
	}
}

func TestBreakerLayerStopsRetry(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(502)
	}))
	defer srv.Close()
	p := breakerPolicy(t, "a", "consecutiveFailures >= 2", "1m", 0)
	p.Retry = &RetryPolicy{Duration: time.Millisecond, MaxRetries: 10}
	policyOf := func(*http.Request) Policy { return p }
	rt := Retry(policyOf)(Breaker(NewRegistry(nil), policyOf, nil)(http.DefaultTransport))
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	if _, err := rt.RoundTrip(req); !errors.Is(err, ErrCircuitOpen) {
		t.Errorf("err = %v, want ErrCircuitOpen", err)
	}
	if calls != 2 {
		t.Errorf("calls = %d, want 2 (retry stops at an open breaker)", calls)
	}
}

func TestBudget(t *testing.T) {
	now := time.Unix(0, 0)
	b := NewBudget(BudgetConfig{Ratio: 0.2, PerSecond: 10, Now: func() time.Time { return now }})
	allowed := 0
	for b.Allow() {
		allowed++
	}
	if allowed != 10 {
		t.Errorf("initial retries = %d, want 10 (one second's worth)", allowed)
	}
	for range 10 {
		b.Record()
	}
	if !b.Allow() || !b.Allow() || b.Allow() {
		t.Error("10 requests did not allow exactly 2 retries")
	}
	now = now.Add(500 * time.Millisecond)
	allowed = 0
	for b.Allow() {
		allowed++
	}
	if allowed != 5 {
		t.Errorf("retries after 500ms = %d, want 5", allowed)
	}
	if b.Refused() != 3 {
		t.Errorf("refused = %d, want 3", b.Refused())
	}
	// Defaults.
	d := NewBudget(BudgetConfig{})
	if d.cfg.Ratio != 0.2 || d.cfg.PerSecond != 10 {
		t.Errorf("defaults = %+v", d.cfg)
	}
	var none *Budgets
	if none.For("x") != nil {
		t.Error("nil Budgets returned a budget")
	}
}
