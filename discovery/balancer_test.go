package discovery

import (
	"log/slog"
	"testing"
	"time"
)

func eps(addrs ...string) []*Endpoint {
	out := make([]*Endpoint, len(addrs))
	for i, a := range addrs {
		out[i] = &Endpoint{Addr: a, id: a}
	}
	return out
}

func TestP2CSharesEqualEndpoints(t *testing.T) {
	es := eps("a", "b")
	now := time.Now().UnixNano()
	counts := map[string]int{}
	var p P2C
	for i := range 1000 {
		e := p.Pick(es, nil, now)
		counts[e.Addr]++
		// Equal latency with a little jitter, as on a real machine.
		e.observe(now, time.Duration(200+i%7)*time.Microsecond)
		now += int64(300 * time.Microsecond)
	}
	for _, a := range []string{"a", "b"} {
		if counts[a] < 300 {
			t.Errorf("endpoint %s got %d of 1000 picks, want at least 300 (%v)", a, counts[a], counts)
		}
	}
}

func TestP2CPrefersFasterAndLessLoaded(t *testing.T) {
	now := time.Now().UnixNano()
	es := eps("slow", "fast")
	es[0].observe(now, 50*time.Millisecond)
	es[1].observe(now, time.Millisecond)
	var p P2C
	for range 100 {
		if e := p.Pick(es, nil, now); e.Addr != "fast" {
			t.Fatalf("picked %s, want fast", e.Addr)
		}
	}
	es[1].inflight.Add(100) // fast but swamped
	if e := p.Pick(es, nil, now); e.Addr != "slow" {
		t.Errorf("picked %s, want slow once fast has 100 in flight", e.Addr)
	}
}

func TestCandidates(t *testing.T) {
	now := time.Now().UnixNano()
	es := eps("a", "b", "c")
	if got := candidates(es, nil, now); len(got) != 3 {
		t.Errorf("all healthy: %d candidates", len(got))
	}
	if got := candidates(es, es[:1], now); len(got) != 2 || got[0].Addr != "b" {
		t.Errorf("a tried: %v", addrs(got))
	}
	es[1].markFailed(now, time.Second)
	if got := candidates(es, es[:1], now); len(got) != 1 || got[0].Addr != "c" {
		t.Errorf("a tried, b backed off: %v", addrs(got))
	}
	es[2].markFailed(now, 2*time.Second)
	// Every untried endpoint backed off: the least bad (b, back first)
	// still beats failing.
	if got := candidates(es, es[:1], now); len(got) != 1 || got[0].Addr != "b" {
		t.Errorf("all backed off: %v", addrs(got))
	}
	if got := candidates(es, es, now); len(got) != 0 {
		t.Errorf("all tried: %v", addrs(got))
	}
	// Back-off ends.
	if got := candidates(es, nil, now+int64(3*time.Second)); len(got) != 3 {
		t.Errorf("after back-off: %v", addrs(got))
	}
}

func TestRoundRobinCycles(t *testing.T) {
	es := eps("a", "b", "c")
	var rr RoundRobin
	seen := map[string]int{}
	for range 30 {
		seen[rr.Pick(es, nil, 0).Addr]++
	}
	for _, a := range []string{"a", "b", "c"} {
		if seen[a] != 10 {
			t.Errorf("%s picked %d times, want 10", a, seen[a])
		}
	}
}

func TestPickWithOneEndpointDoesNotAllocate(t *testing.T) {
	es := eps("a")
	now := time.Now().UnixNano()
	var p P2C
	if n := testing.AllocsPerRun(100, func() { p.Pick(es, nil, now) }); n != 0 {
		t.Errorf("Pick allocates %v times, want 0", n)
	}
}

func addrs(es []*Endpoint) []string {
	out := make([]string, len(es))
	for i, e := range es {
		out[i] = e.Addr
	}
	return out
}

// TestWeightsShareLoad: xDS load_balancing_weight 1 and 3 split an idle
// load 1:3 under both balancers.
func TestWeightsShareLoad(t *testing.T) {
	now := time.Now().UnixNano()
	for name, bal := range map[string]Balancer{"p2c": P2C{}, "round-robin": &RoundRobin{}} {
		es := eps("light", "heavy", "other")
		es[1].setWeight(3)
		es[2].setWeight(0) // 0 means 1
		n := map[string]int{}
		const picks = 5000
		for range picks {
			n[bal.Pick(es, nil, now).Addr]++
		}
		for addr, want := range map[string]float64{"light": 0.2, "heavy": 0.6, "other": 0.2} {
			if got := float64(n[addr]) / picks; got < want-0.04 || got > want+0.04 {
				t.Errorf("%s: %s got %.3f of picks, want %.2f±0.04 (%v)", name, addr, got, want, n)
			}
		}
		// Weights never make a tried endpoint a candidate.
		for range 100 {
			if e := bal.Pick(es, es[1:2], now); e == es[1] {
				t.Fatalf("%s picked a tried endpoint", name)
			}
		}
	}
}

// TestResolverUpdatesWeight: a changed weight reaches the same endpoint,
// keeping its statistics.
func TestResolverUpdatesWeight(t *testing.T) {
	src := staticSource{"b.default": {{AppID: "b", Namespace: "default", Address: "127.0.0.1:1", Weight: 2}}}
	res := NewResolver(src, slog.New(slog.DiscardHandler))
	st, eps, err := res.resolve(Target{AppID: "b", Namespace: "default"})
	if err != nil || len(eps) != 1 || eps[0].weight.Load() != 2 {
		t.Fatalf("resolve: %v %v", eps, err)
	}
	ep := eps[0]
	src["b.default"][0].Weight = 7
	if err := res.refresh(st); err != nil {
		t.Fatal(err)
	}
	if _, eps, _ := res.resolve(Target{AppID: "b", Namespace: "default"}); eps[0] != ep || ep.weight.Load() != 7 {
		t.Errorf("after refresh: same endpoint %v, weight %d", eps[0] == ep, ep.weight.Load())
	}
}

// TestUnhealthyPickedLast: an instance whose app fails its health checks
// gets no calls while a healthy one is left, and gets them when none is
// (its sidecar then answers for the app), by both balancers.
func TestUnhealthyPickedLast(t *testing.T) {
	now := time.Now().UnixNano()
	for _, bal := range []Balancer{P2C{}, &RoundRobin{}} {
		es := eps("a", "b", "c")
		es[0].unhealthy.Store(true)
		es[2].unhealthy.Store(true)
		for range 50 {
			if got := bal.Pick(es, nil, now); got != es[1] {
				t.Fatalf("%T picked %s, want the healthy b", bal, got.Addr)
			}
		}
		es[1].unhealthy.Store(true)
		seen := map[string]bool{}
		for range 50 {
			if got := bal.Pick(es, nil, now); got != nil {
				seen[got.Addr] = true
			}
		}
		if len(seen) == 0 {
			t.Errorf("%T: no instance picked when all are unhealthy, want one (its sidecar answers)", bal)
		}
		if got := bal.Pick(es, es, now); got != nil {
			t.Errorf("%T picked %s after every instance was tried", bal, got.Addr)
		}
	}
}
