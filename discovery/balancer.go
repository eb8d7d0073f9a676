package discovery

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoint is one instance of an app id, with the load statistics the
// balancer needs. It is safe for concurrent use.
type Endpoint struct {
	// Addr is the peer-facing host:port.
	Addr string
	id   string
	// weight is the instance's share of load relative to its siblings
	// (xDS load_balancing_weight); always at least 1.
	weight atomic.Uint32

	inflight    atomic.Int64
	failedUntil atomic.Int64 // unix nanos; connect failures back it off
	warm        atomic.Bool  // answered once: later answers are latency samples

	// unhealthy: its app fails its health checks (Instance.Unhealthy).
	unhealthy atomic.Bool

	// Outlier detection (outlier.go).
	fails        atomic.Int32 // consecutive failures
	ejectedUntil atomic.Int64 // unix nanos

	mu        sync.Mutex
	ewma      float64 // peak-EWMA of latency, nanoseconds
	stamp     int64   // unix nanos of the last ewma update
	ejections int     // ejections in a row, for the doubling
	ejectEnd  int64   // unix nanos the last ejection ended (or ends)
}

func newEndpoint(in Instance) *Endpoint {
	e := &Endpoint{Addr: in.Address, id: in.ID()}
	e.setWeight(in.Weight)
	e.unhealthy.Store(in.Unhealthy)
	return e
}

// setWeight sets the endpoint's weight; 0 means 1.
func (e *Endpoint) setWeight(w uint32) { e.weight.Store(max(w, 1)) }

// decayNanos is the peak-EWMA time constant: how fast old latency is forgotten
// (Finagle and Linkerd use 10 s; a shorter one lets idle instances back in
// sooner on small meshes).
const decayNanos = float64(2 * time.Second)

// observe folds one latency sample into the peak-EWMA: a sample above the
// current value replaces it at once, lower ones decay it over time.
func (e *Endpoint) observe(now int64, rtt time.Duration) {
	e.mu.Lock()
	e.ewma = e.decayed(now, float64(rtt))
	e.stamp = now
	e.mu.Unlock()
}

func (e *Endpoint) decayed(now int64, sample float64) float64 {
	if sample > e.ewma {
		return sample
	}
	w := math.Exp(-float64(now-e.stamp) / decayNanos)
	return e.ewma*w + sample*(1-w)
}

// latencyFloor is added to every latency estimate before endpoints are
// compared. Below a few milliseconds, differences between healthy instances
// are scheduling noise on this machine (an instance idle for a moment answers
// a millisecond or two later), not a reason to shift load.
const latencyFloor = float64(5 * time.Millisecond)

// latency is the endpoint's expected latency: peak-EWMA (decayed towards
// zero while unused) plus latencyFloor.
func (e *Endpoint) latency(now int64) float64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.decayed(now, 0) + latencyFloor
}

// cheaper reports whether one more request is expected to finish sooner on e
// than on o: latency times outstanding requests plus one. Latencies within a
// factor of two count as equal and only the outstanding requests decide, a
// tie leaving the caller's choice standing; a strict comparison would send a
// light load entirely to whichever instance once answered a little faster,
// for as long as the other's peak takes to decay. Weights do not enter the
// cost: they bias which two endpoints are drawn and which is the caller's
// choice (twoOf), so ties split load in proportion to weight.
func (e *Endpoint) cheaper(o *Endpoint, now int64) bool {
	le, lo := e.latency(now), o.latency(now)
	ne, no := float64(e.inflight.Load()+1), float64(o.inflight.Load()+1)
	if le < 2*lo && lo < 2*le {
		return ne < no
	}
	return le*ne < lo*no
}

func (e *Endpoint) backedOff(now int64) bool { return e.failedUntil.Load() > now }

// markFailed backs the endpoint off for d after a connect failure.
func (e *Endpoint) markFailed(now int64, d time.Duration) { e.failedUntil.Store(now + int64(d)) }

// Balancer chooses one endpoint of a non-empty set, skipping those in tried.
type Balancer interface {
	Pick(eps []*Endpoint, tried []*Endpoint, now int64) *Endpoint
}

// P2C is power of two choices over peak-EWMA cost (see cheaper). It is
// stateless.
type P2C struct{}

// Pick implements Balancer.
func (P2C) Pick(eps []*Endpoint, tried []*Endpoint, now int64) *Endpoint {
	cands := candidates(eps, tried, now)
	switch n := len(cands); n {
	case 0:
		return nil
	case 1:
		return cands[0]
	default:
		i, j := twoOf(cands)
		a, b := cands[i], cands[j]
		if b.cheaper(a, now) {
			return b
		}
		return a
	}
}

// twoOf draws two distinct indexes of cands, each endpoint with a
// probability proportional to its weight (uniformly when all weigh the
// same, the usual case, without a second pass).
func twoOf(cands []*Endpoint) (int, int) {
	n := len(cands)
	total, uniform := totalWeight(cands)
	if uniform {
		i := rand.IntN(n)
		j := rand.IntN(n - 1)
		if j >= i {
			j++
		}
		return i, j
	}
	i := weightedIndex(cands, rand.Uint64N(total), -1)
	j := weightedIndex(cands, rand.Uint64N(total-uint64(cands[i].weight.Load())), i)
	return i, j
}

// totalWeight sums the weights of cands and says whether they are all equal.
func totalWeight(cands []*Endpoint) (total uint64, uniform bool) {
	uniform = true
	first := cands[0].weight.Load()
	for _, e := range cands {
		w := uint64(max(e.weight.Load(), 1))
		total += w
		uniform = uniform && uint32(w) == max(first, 1)
	}
	return total, uniform
}

// weightedIndex returns the index whose cumulative weight range holds r,
// skipping the index skip.
func weightedIndex(cands []*Endpoint, r uint64, skip int) int {
	last := 0
	for k, e := range cands {
		if k == skip {
			continue
		}
		w := uint64(max(e.weight.Load(), 1))
		if r < w {
			return k
		}
		r -= w
		last = k
	}
	return last
}

// RoundRobin cycles through endpoints, each as many times per cycle as its
// weight.
type RoundRobin struct{ next atomic.Uint64 }

// Pick implements Balancer.
func (r *RoundRobin) Pick(eps []*Endpoint, tried []*Endpoint, now int64) *Endpoint {
	cands := candidates(eps, tried, now)
	if len(cands) == 0 {
		return nil
	}
	total, uniform := totalWeight(cands)
	if uniform {
		return cands[r.next.Add(1)%uint64(len(cands))]
	}
	return cands[weightedIndex(cands, r.next.Add(1)%total, -1)]
}

// candidates returns eps minus tried, preferring endpoints neither
// unhealthy, backed off nor ejected; when every untried endpoint is one of
// those, the candidate is the least bad one, whose back-off or ejection
// ends first (an unhealthy app's sidecar answers for it: that still beats
// failing the call). It does not allocate when nothing is excluded.
func candidates(eps []*Endpoint, tried []*Endpoint, now int64) []*Endpoint {
	exclude := func(e *Endpoint) bool {
		return slices.Contains(tried, e) || e.unhealthy.Load() || e.backedOff(now) || e.ejected(now)
	}
	n := 0
	for _, e := range eps {
		if !exclude(e) {
			n++
		}
	}
	if n == len(eps) {
		return eps
	}
	out := make([]*Endpoint, 0, len(eps))
	for _, e := range eps {
		if !exclude(e) {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	var best *Endpoint
	for _, e := range eps {
		if !slices.Contains(tried, e) && (best == nil || e.healthyAt() < best.healthyAt()) {
			best = e
		}
	}
	if best != nil {
		out = append(out, best)
	}
	return out
}
