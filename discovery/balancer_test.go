package discovery

import (
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
