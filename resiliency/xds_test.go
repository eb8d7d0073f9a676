package resiliency

import (
	"testing"
	"time"
)

// The knobs xDS needs: a per-target budget size, the first exponential
// interval, and transport-only retries.

func TestBudgetsForConfig(t *testing.T) {
	now := time.Unix(0, 0)
	bs := NewBudgets(BudgetConfig{Ratio: 0.2, PerSecond: 10, Now: func() time.Time { return now }}, nil)
	small := &BudgetConfig{Ratio: 0.5, PerSecond: 1}
	b := bs.ForConfig("a", small)
	if !b.Allow() || b.Allow() {
		t.Fatal("a budget sized 1/s must start with one token")
	}
	if bs.ForConfig("a", &BudgetConfig{Ratio: 0.5, PerSecond: 1}) != b {
		t.Error("an equal size must keep the budget and its tokens")
	}
	if bs.ForConfig("a", nil) == b {
		t.Error("back to the default size must start a new budget")
	}
	if got := bs.For("a"); got != bs.ForConfig("a", nil) {
		t.Error("For must be ForConfig with the default size")
	}
	d := bs.For("b")
	for range 10 {
		if !d.Allow() {
			t.Fatal("the default budget starts with 10 tokens")
		}
	}
}

func TestBackoffInitial(t *testing.T) {
	p := &RetryPolicy{Exponential: true, Initial: 10 * time.Millisecond, MaxInterval: time.Second}
	b := p.NewBackoff(func() float64 { return 0.5 }, nil)
	if d, _ := b.Next(); d != 10*time.Millisecond {
		t.Errorf("first delay = %v, want the initial 10ms", d)
	}
	if d, _ := b.Next(); d != 15*time.Millisecond {
		t.Errorf("second delay = %v, want 15ms", d)
	}
	p.Initial = 0
	if d, _ := p.NewBackoff(func() float64 { return 0.5 }, nil).Next(); d != ExponentialInitial {
		t.Errorf("without Initial, first delay = %v, want %v", d, ExponentialInitial)
	}
}

func TestTransportOnly(t *testing.T) {
	p := &RetryPolicy{TransportOnly: true}
	if p.RetryHTTP(503) || p.RetryGRPC(14) {
		t.Error("a transport-only policy retried a status")
	}
	p.TransportOnly = false
	if !p.RetryHTTP(503) {
		t.Error("a policy without matching list must retry 503")
	}
}
