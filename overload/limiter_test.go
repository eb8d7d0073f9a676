package overload

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// clock is a fake clock the tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLimiter(cfg Config) (*Limiter, *clock) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	cfg.Now = c.now
	return NewLimiter(cfg), c
}

// feed makes n calls one after the other, each answered after rtt.
func feed(t *testing.T, l *Limiter, c *clock, n int, rtt time.Duration) {
	t.Helper()
	for range n {
		tok, err := l.Acquire()
		if err != nil {
			t.Fatalf("Acquire with %d in flight, limit %d: %v", l.InFlight(), l.Limit(), err)
		}
		c.advance(rtt)
		l.Release(tok, true)
	}
}

func TestLimiterRefusesBeyondLimit(t *testing.T) {
	l, _ := newTestLimiter(Config{MinLimit: 3, MaxLimit: 3})
	var toks []Token
	for range 3 {
		tok, err := l.Acquire()
		if err != nil {
			t.Fatalf("Acquire: %v", err)
		}
		toks = append(toks, tok)
	}
	for range 2 {
		if _, err := l.Acquire(); !errors.Is(err, ErrOverloaded) || !IsOverloaded(err) {
			t.Fatalf("Acquire past the limit: %v, want ErrOverloaded", err)
		}
	}
	var re *RefusedError
	if _, err := l.Acquire(); !errors.As(err, &re) || re.Limit != 3 || re.Side != "" {
		t.Errorf("refusal %#v, want a *RefusedError of limit 3", err)
	}
	if got := l.Refused(); got != 3 {
		t.Errorf("Refused() = %d, want 3", got)
	}
	if got := l.InFlight(); got != 3 {
		t.Errorf("InFlight() = %d, want 3 (refusals take no slot)", got)
	}
	l.Release(toks[0], false)
	if _, err := l.Acquire(); err != nil {
		t.Errorf("Acquire after a release: %v", err)
	}
}

func TestNilLimiterAdmitsAll(t *testing.T) {
	var l *Limiter
	tok, err := l.Acquire()
	if err != nil {
		t.Fatalf("nil Acquire: %v", err)
	}
	l.Release(tok, true) // no panic
}

func TestLimiterGrowsWhileLatencyIsFlat(t *testing.T) {
	l, c := newTestLimiter(Config{MinLimit: 20, InitialLimit: 100})
	if got := l.Limit(); got != 100 {
		t.Fatalf("initial limit %d, want 100", got)
	}
	feed(t, l, c, 10, 10*time.Millisecond) // the first window: minRTT
	if got := l.MinRTT(); got != 10*time.Millisecond {
		t.Fatalf("MinRTT() = %v after the first window, want 10ms", got)
	}
	prev := l.Limit()
	for i := range 40 {
		feed(t, l, c, 10, 10*time.Millisecond)
		if l.Limit() < prev {
			t.Fatalf("window %d: limit fell from %d to %d with flat latency", i, prev, l.Limit())
		}
		prev = l.Limit()
	}
	if got := l.Limit(); got != 1000 {
		t.Errorf("limit %d after 40 flat windows, want MaxLimit 1000", got)
	}
}

func TestLimiterShrinksWhenCallsQueueAndRecovers(t *testing.T) {
	l, c := newTestLimiter(Config{MinLimit: 20})
	feed(t, l, c, 10, 10*time.Millisecond)
	feed(t, l, c, 50, 10*time.Millisecond)
	high := l.Limit()
	// Latency four times the no-load one: the gradient is at its floor,
	// 0.5, so every window about halves the limit, down to MinLimit.
	var limits []int
	for range 10 {
		feed(t, l, c, 5, 40*time.Millisecond)
		limits = append(limits, l.Limit())
	}
	if limits[0] >= high || !slices.IsSortedFunc(limits, func(a, b int) int { return b - a }) {
		t.Errorf("limits under queueing %v from %d: want falling", limits, high)
	}
	if got := limits[len(limits)-1]; got != 20 {
		t.Errorf("limit %d after 10 queued windows, want MinLimit 20", got)
	}
	if got := l.MinRTT(); got != 10*time.Millisecond {
		t.Errorf("MinRTT() = %v, want 10ms (queueing never raises it)", got)
	}
	feed(t, l, c, 300, 10*time.Millisecond)
	if got := l.Limit(); got <= 100 {
		t.Errorf("limit %d after latency came back, want it grown past 100", got)
	}
}

func TestLimiterToleratesTheBuffer(t *testing.T) {
	// 100 ms no-load latency: the buffer is 25 ms. At 120 ms the limit
	// still grows; at 200 ms it falls.
	l, c := newTestLimiter(Config{InitialLimit: 200})
	feed(t, l, c, 5, 100*time.Millisecond)
	before := l.Limit()
	feed(t, l, c, 5, 120*time.Millisecond)
	if l.Limit() <= before {
		t.Errorf("limit %d -> %d at 1.2x the no-load latency, want it to grow", before, l.Limit())
	}
	before = l.Limit()
	feed(t, l, c, 5, 200*time.Millisecond)
	if l.Limit() >= before {
		t.Errorf("limit %d -> %d at 2x the no-load latency, want it to fall", before, l.Limit())
	}
}

func TestLimiterMinBufferForFastTargets(t *testing.T) {
	// A 1 ms target whose median wanders to 4 ms is noise, not overload:
	// MinBuffer (5 ms) keeps the limit growing.
	l, c := newTestLimiter(Config{})
	feed(t, l, c, 100, time.Millisecond) // windows of 100 calls
	for range 40 {
		feed(t, l, c, 25, 4*time.Millisecond)
	}
	if got := l.Limit(); got != 1000 {
		t.Errorf("limit %d, want 1000", got)
	}
}

func TestLimiterIgnoresCallsThatAreNoSample(t *testing.T) {
	l, c := newTestLimiter(Config{InitialLimit: 100})
	for range 100 {
		tok, err := l.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		c.advance(time.Second)
		l.Release(tok, false)
	}
	if got, minRTT := l.Limit(), l.MinRTT(); got != 100 || minRTT != 0 {
		t.Errorf("limit %d, MinRTT %v after calls without samples; want 100 and 0 (untouched)", got, minRTT)
	}
}

func TestLimiterMeasuresMinRTTAgainOnlyWhenRefusing(t *testing.T) {
	cfg := Config{MinLimit: 20, MinRTTInterval: 10 * time.Second, MinRTTSamples: 10}
	l, c := newTestLimiter(cfg)
	feed(t, l, c, 10, 10*time.Millisecond)
	// The target becomes slower for good: 50 ms. The limit falls to its
	// floor, but with no refusal nothing is measured again.
	for range 100 {
		feed(t, l, c, 5, 50*time.Millisecond) // 250 ms a window: 40 s in all
	}
	if l.Probing() || l.MinRTT() != 10*time.Millisecond || l.Limit() != 20 {
		t.Fatalf("probing %v, MinRTT %v, limit %d; want no measurement, 10ms, 20", l.Probing(), l.MinRTT(), l.Limit())
	}
	// 20 calls in flight, and one more is refused.
	held := make([]Token, 0, 20)
	for range 20 {
		tok, err := l.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tok)
	}
	if _, err := l.Acquire(); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("21st call: %v, want ErrOverloaded", err)
	}
	c.advance(50 * time.Millisecond)
	for _, tok := range held {
		l.Release(tok, true)
	}
	// The next windows: once the interval has passed since the last
	// check, the limit is pinned to MinLimit and 10 calls measure.
	for i := 0; !l.Probing(); i++ {
		if i == 100 {
			t.Fatal("no measurement after a refusal")
		}
		feed(t, l, c, 5, 50*time.Millisecond)
	}
	if got := l.Limit(); got != 20 {
		t.Errorf("limit %d while measuring, want MinLimit 20", got)
	}
	feed(t, l, c, 10, 50*time.Millisecond)
	if l.Probing() || l.MinRTT() != 50*time.Millisecond {
		t.Errorf("probing %v, MinRTT %v after the measurement; want done, 50ms", l.Probing(), l.MinRTT())
	}
	feed(t, l, c, 400, 50*time.Millisecond)
	if got := l.Limit(); got != 1000 {
		t.Errorf("limit %d at the new no-load latency, want it back at 1000", got)
	}
}

// second is one simulated second: the calls that arrived in it.
type second struct {
	admitted, refused int
	lat               []time.Duration // of the admitted calls
}

func (s *second) p(q float64) time.Duration {
	if len(s.lat) == 0 {
		return 0
	}
	slices.Sort(s.lat)
	return s.lat[min(int(q*float64(len(s.lat))), len(s.lat)-1)]
}

// load is a simulated phase: rate calls a second for secs seconds.
type load struct {
	rate float64
	secs int
}

// simulate runs a slow app (workers serving one call each for service,
// the rest waiting in FIFO order) behind l on the fake clock, offered
// each load in turn at evenly spaced arrivals, and returns what happened
// to the calls that arrived in each second. Deterministic: no randomness,
// no wall clock.
func simulate(l *Limiter, c *clock, workers int, service time.Duration, loads ...load) []second {
	type call struct {
		tok     Token
		arrived time.Time
		sec     int
	}
	var queue []call     // waiting for a worker, FIFO
	var busy []time.Time // when each busy worker finishes
	var running []call   // the calls the busy workers serve
	var out []second
	start := c.t
	finish := func(now time.Time) {
		// Finish every call due by now, in order, starting queued ones.
		for {
			i := -1
			for j, end := range busy {
				if !end.After(now) && (i < 0 || end.Before(busy[i])) {
					i = j
				}
			}
			if i < 0 {
				break
			}
			c.t = busy[i]
			done := running[i]
			l.Release(done.tok, true)
			out[done.sec].lat = append(out[done.sec].lat, c.t.Sub(done.arrived))
			busy = slices.Delete(busy, i, i+1)
			running = slices.Delete(running, i, i+1)
			for len(busy) < workers && len(queue) > 0 {
				busy = append(busy, c.t.Add(service))
				running = append(running, queue[0])
				queue = queue[1:]
			}
		}
		c.t = now
	}
	at := start
	for _, ld := range loads {
		every := time.Duration(float64(time.Second) / ld.rate)
		end := at.Add(time.Duration(ld.secs) * time.Second)
		for ; at.Before(end); at = at.Add(every) {
			finish(at)
			sec := int(at.Sub(start) / time.Second)
			for len(out) <= sec {
				out = append(out, second{})
			}
			tok, err := l.Acquire()
			if err != nil {
				out[sec].refused++
				continue
			}
			out[sec].admitted++
			cl := call{tok: tok, arrived: at, sec: sec}
			if len(busy) < workers {
				busy = append(busy, at.Add(service))
				running = append(running, cl)
			} else {
				queue = append(queue, cl)
			}
		}
	}
	finish(at.Add(time.Hour))
	return out
}

// TestLimiterKeepsQueueShortAtThreeTimesCapacity simulates, on the fake
// clock, slow apps serving 200 calls/s (workers × 1/service) warmed up at
// half that, then offered three times it for 30 s, and checks by counts
// what the benchmark shows (docs/performance.md, Overload): within two
// seconds the admitted calls' latency is back near the app's own, and
// about two calls in three are refused. Without a limit the queue would
// grow by 400 calls every second.
func TestLimiterKeepsQueueShortAtThreeTimesCapacity(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		workers int
		service time.Duration
	}{
		{"defaults, 100 workers of 500ms", Config{}, 100, 500 * time.Millisecond},
		{"floor 20, 20 workers of 100ms", Config{MinLimit: 20}, 20, 100 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, c := newTestLimiter(tc.cfg)
			secs := simulate(l, c, tc.workers, tc.service, load{100, 3}, load{600, 30})
			admitted, refused := 0, 0
			var worst time.Duration
			for i := range secs {
				s := &secs[i]
				t.Logf("second %2d: admitted %3d refused %3d p50 %v p99 %v", i, s.admitted, s.refused, s.p(0.5), s.p(0.99))
				if i >= 5 {
					admitted += s.admitted
					refused += s.refused
					worst = max(worst, s.p(0.99))
				}
			}
			if worst > 2*tc.service {
				t.Errorf("worst p99 of admitted calls from 2 s into the overload %v, want at most twice the app's %v", worst, tc.service)
			}
			if frac := float64(refused) / float64(admitted+refused); frac < 0.6 || frac > 0.7 {
				t.Errorf("refused %d of %d (%.2f), want about two in three", refused, admitted+refused, frac)
			}
			for i := range 3 {
				if secs[i].refused != 0 {
					t.Errorf("warm-up second %d: %d refused at half the capacity", i, secs[i].refused)
				}
			}
		})
	}
}
