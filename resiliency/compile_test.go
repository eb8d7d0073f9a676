package resiliency

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	gobreaker "github.com/sony/gobreaker/v2"
)

func mustCompile(t testing.TB, doc string) *Compiled {
	t.Helper()
	s, err := decodeString(t.(*testing.T), doc)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Compile(s)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// policyView is what the ForApp tests compare.
type policyView struct {
	Timeout                             time.Duration
	TimeoutName, RetryName, BreakerName string
	BuiltIn                             bool
	CacheSize                           int
}

func view(p Policy) policyView {
	return policyView{p.Timeout, p.TimeoutName, p.RetryName, p.BreakerName, p.BuiltInRetries, p.BreakerCacheSize}
}

func TestForApp(t *testing.T) {
	all := mustCompile(t, `
policies:
  timeouts: {DefaultAppTimeoutPolicy: 1s, DefaultTimeoutPolicy: 2s, t: 300}
  retries: {DefaultRetryPolicy: {}, r: {}}
  circuitBreakers: {DefaultAppCircuitBreakerPolicy: {}, DefaultCircuitBreakerPolicy: {}}
targets:
  apps:
    named: {retry: r, circuitBreakerCacheSize: 5}
    timeoutOnly: {timeout: t}
`)
	generic := mustCompile(t, `
policies:
  timeouts: {DefaultTimeoutPolicy: 2s}
  circuitBreakers: {DefaultCircuitBreakerPolicy: {}}
`)
	tests := []struct {
		name   string
		c      *Compiled
		target string
		want   policyView
	}{
		{"named target: only its policies", all, "named", policyView{RetryName: "r", CacheSize: 5}},
		{"named target: timeout", all, "timeoutOnly", policyView{Timeout: 300 * time.Millisecond, TimeoutName: "t", CacheSize: 100}},
		{"defaults: app first", all, "other", policyView{Timeout: time.Second, TimeoutName: "DefaultAppTimeoutPolicy",
			RetryName: "DefaultRetryPolicy", BreakerName: "DefaultAppCircuitBreakerPolicy", BuiltIn: true, CacheSize: 100}},
		{"defaults: generic", generic, "x", policyView{Timeout: 2 * time.Second, TimeoutName: "DefaultTimeoutPolicy",
			BreakerName: "DefaultCircuitBreakerPolicy", BuiltIn: true, CacheSize: 100}},
		{"target is exact", all, "named.default", policyView{Timeout: time.Second, TimeoutName: "DefaultAppTimeoutPolicy",
			RetryName: "DefaultRetryPolicy", BreakerName: "DefaultAppCircuitBreakerPolicy", BuiltIn: true, CacheSize: 100}},
		{"nil compiled", nil, "x", policyView{BuiltIn: true, CacheSize: 100}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.c.ForApp(tt.target)
			if diff := cmp.Diff(tt.want, view(p)); diff != "" {
				t.Errorf("ForApp(%q) (-want +got):\n%s", tt.target, diff)
			}
			if p.Target != tt.target {
				t.Errorf("Target = %q", p.Target)
			}
			if (p.Retry != nil) != (p.RetryName != "") || (p.Breaker != nil) != (p.BreakerName != "") {
				t.Errorf("policy pointers do not match names: %+v", p)
			}
		})
	}
	if n := testing.AllocsPerRun(100, func() { _ = all.ForApp("other") }); n != 0 {
		t.Errorf("ForApp allocates %v times", n)
	}
}

func TestCompileDefaults(t *testing.T) {
	c := mustCompile(t, `
policies:
  retries: {r: {}, e: {policy: Exponential, maxInterval: 2s, maxRetries: 0}}
  circuitBreakers: {cb: {}}
targets:
  apps: {a: {retry: r, circuitBreaker: cb}, b: {retry: e}}
`)
	a, b := c.ForApp("a"), c.ForApp("b")
	if diff := cmp.Diff(RetryPolicy{Duration: 5 * time.Second, MaxInterval: 60 * time.Second, MaxRetries: -1}, *a.Retry, cmp.AllowUnexported(Codes{})); diff != "" {
		t.Errorf("default retry (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(RetryPolicy{Exponential: true, Duration: 5 * time.Second, MaxInterval: 2 * time.Second}, *b.Retry, cmp.AllowUnexported(Codes{})); diff != "" {
		t.Errorf("exponential retry (-want +got):\n%s", diff)
	}
	cb := a.Breaker
	if cb.MaxRequests != 1 || cb.Interval != 0 || cb.Timeout != 60*time.Second || cb.Trip != DefaultTrip {
		t.Errorf("default breaker = %+v", cb)
	}
	if cb.ReadyToTrip(gobreaker.Counts{ConsecutiveFailures: 5}) || !cb.ReadyToTrip(gobreaker.Counts{ConsecutiveFailures: 6}) {
		t.Error("default trip is not consecutiveFailures > 5")
	}
}

func TestTripEvalError(t *testing.T) {
	// Division by zero fails at evaluation: the breaker must not trip.
	c := mustCompile(t, `
policies: {circuitBreakers: {cb: {trip: "10 / totalSuccesses > 1"}}}
targets: {apps: {a: {circuitBreaker: cb}}}
`)
	cb := c.ForApp("a").Breaker
	if cb.ReadyToTrip(gobreaker.Counts{TotalSuccesses: 0, ConsecutiveFailures: 100}) {
		t.Error("tripped on an evaluation error")
	}
	if !cb.ReadyToTrip(gobreaker.Counts{TotalSuccesses: 2}) {
		t.Error("did not trip on 10/2 > 1")
	}
}

func TestMerge(t *testing.T) {
	a, _ := decodeString(t, `
policies:
  timeouts: {t1: 1s, t2: 2s}
  retries: {r: {maxRetries: 1}}
targets: {apps: {x: {timeout: t1}, y: {timeout: t2}}}
`)
	a.Name = "first"
	b, _ := decodeString(t, `
policies:
  timeouts: {t2: 20s}
  retries: {r: {maxRetries: 2}}
targets: {apps: {y: {retry: r}}}
`)
	b.Name, b.Namespace = "second", "ns"
	got := Merge(a, nil, b)
	want := &Spec{Name: "second", Namespace: "ns",
		Policies: Policies{
			Timeouts: map[string]string{"t1": "1s", "t2": "20s"},
			Retries:  map[string]RetrySpec{"r": {MaxRetries: intp(2)}},
		},
		Targets: Targets{Apps: map[string]AppTarget{"x": {Timeout: "t1"}, "y": {Retry: "r"}}},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Merge (-want +got):\n%s", diff)
	}
	if a.Policies.Timeouts["t2"] != "2s" {
		t.Error("Merge changed its input")
	}
}
