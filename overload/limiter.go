package overload

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// ErrOverloaded is what every refusal for overload matches with
// errors.Is: a Limiter's *RefusedError, and whatever wraps one.
var ErrOverloaded = errors.New("overloaded")

// RefusedError is the error of a call refused because the calls in flight
// had reached an adaptive concurrency limit. Its Overloaded method tells
// layers that cannot import this package (resiliency, discovery) that the
// refusal is no verdict on any instance and must not be retried, as
// net/http's Timeout() does for timeouts.
type RefusedError struct {
	// Side is whose limit refused: SideOutbound (the caller's, per
	// target) or SideApp (the callee's app channel); "" for a limiter of
	// neither.
	Side string
	// Limit is the limit that was reached; 0 when not known (a refusal
	// reported by another sidecar).
	Limit int
}

func (e *RefusedError) Error() string {
	side := ""
	switch e.Side {
	case SideOutbound:
		side = " to the target"
	case SideApp:
		side = " to the app"
	}
	if e.Limit > 0 {
		return fmt.Sprintf("overloaded: %d calls in flight%s, the adaptive concurrency limit", e.Limit, side)
	}
	return "overloaded: calls in flight" + side + " reached the adaptive concurrency limit"
}

// Overloaded reports true: the call was refused for overload.
func (e *RefusedError) Overloaded() bool { return true }

// Is makes errors.Is(err, ErrOverloaded) true.
func (e *RefusedError) Is(target error) bool { return target == ErrOverloaded }

// IsOverloaded reports whether err, or an error it wraps, says a call was
// refused for overload: ErrOverloaded, or any error with an Overloaded()
// bool method that returns true.
func IsOverloaded(err error) bool {
	var o interface{ Overloaded() bool }
	return errors.Is(err, ErrOverloaded) || errors.As(err, &o) && o.Overloaded()
}

// Window tuning that Config does not expose.
const (
	// windowSamples is how many latencies of a window are kept (the
	// latest); its median is computed from them.
	windowSamples = 64
	// minWindowSamples is how many answers a window needs to close on
	// time: fewer make a noisy median.
	minWindowSamples = 5
	// maxWindows is how many Windows a window with fewer answers lasts.
	maxWindows = 10
	// gradient bounds: the limit at most halves or doubles in one window
	// (Envoy's gradient controller).
	minGradient, maxGradient = 0.5, 2.0
	// growth is the share of a rise that a window applies (Netflix's
	// smoothing): a latency sample lags the limit it measures by a
	// round trip, so a limit raised at once overshoots and the queue
	// oscillates. A fall applies in full: overload is cut at once.
	growth = 0.25
)

// Limiter is an adaptive concurrency limit: Acquire admits a call while
// fewer than the limit are in flight and refuses it at once otherwise, and
// the limit follows the latency of the calls it admitted.
//
// The algorithm is Envoy's gradient controller (adaptive_concurrency
// filter), changed so that it can be on by default and keeps the queue
// short against a slow app:
//
//   - Every Window the median latency of the window's calls (sample) is
//     compared with the no-load latency (minRTT):
//     gradient = clamp((minRTT + buffer) / sample, 0.5, 2), where buffer
//     is max(Buffer × minRTT, MinBuffer); then limit × gradient, plus its
//     square root as headroom for bursts, clamped to [MinLimit, MaxLimit].
//     Latency within the buffer lets the limit grow towards MaxLimit;
//     queueing beyond it brings the limit down until the queue is gone.
//     Latency lags the limit by a round trip, so a fall is judged on every
//     answer of the window and applied at once (overload is cut as soon as
//     it shows), while a rise is judged only on the answers of calls
//     admitted under the current limit and applied a quarter at a time:
//     Envoy's fixed 100 ms windows, which do neither, make the queue
//     oscillate between the limit's bounds against a 100 ms app
//     (TestLimiterKeepsQueueShortAtThreeTimesCapacity).
//   - minRTT is the first window's median, then the lowest window median
//     seen (of windows with at least 5 answers). Envoy re-measures it every
//     interval by pinning the limit to its minimum for a number of calls,
//     which refuses calls at regular times even when nothing is wrong. Here
//     that measurement (MinLimit in flight, MinRTTSamples calls, their
//     median) is taken only when the limit refused calls in the last
//     MinRTTInterval: the one case where minRTT may have drifted (the
//     target got slower for good, or started out overloaded) and refusals
//     happen anyway. The limit from before the measurement is restored
//     after it.
//
// A call is in flight from Acquire to Release, which its layer calls when
// the response headers arrive (or the call fails): a streaming body or an
// open WebSocket does not hold a slot. Only answers (and deadlines) are
// latency samples; fast failures (refused connections, unknown targets,
// another limiter's refusal) say nothing about queueing and are not.
//
// Safe for concurrent use. Admission is two atomic adds; a release with a
// sample takes a mutex.
type Limiter struct {
	cfg      Config
	side     string // RefusedError's Side
	limit    atomic.Int64
	inflight atomic.Int64
	probing  atomic.Bool   // measuring minRTT: the limit is MinLimit
	epoch    atomic.Uint64 // limits set so far; a rise is judged on the calls admitted under the current one
	refusals atomic.Bool   // a call was refused since the last minRTT check
	refused  atomic.Uint64
	// onRefused and onLimit report to metrics; either may be nil.
	onRefused func()
	onLimit   func(int)

	mu         sync.Mutex
	winStart   time.Time
	all, cur   window        // the window's answers: all of them, and those admitted under its limit
	minRTT     time.Duration // 0: not yet measured
	lastCheck  time.Time     // when minRTT was last measured, or found in no need of it
	probeStart time.Time
	probe      []time.Duration // the measurement's samples
	restore    int64           // the limit from before the measurement
}

// NewLimiter returns a limiter sized by cfg (zero fields: DefaultConfig's),
// starting at cfg.InitialLimit. cfg must be valid (Config.Validate).
func NewLimiter(cfg Config) *Limiter {
	l := &Limiter{cfg: cfg.withDefaults()}
	l.limit.Store(int64(l.cfg.InitialLimit))
	now := l.cfg.Now()
	l.winStart, l.lastCheck = now, now
	return l
}

// Token is an admitted call, handed back to Release.
type Token struct {
	start time.Time
	epoch uint64
	probe bool // admitted during a minRTT measurement
}

// Acquire admits one call, or refuses it with a *RefusedError
// (ErrOverloaded) when the calls in flight have reached the limit. An
// admitted call must be released once with Release. A nil *Limiter admits
// every call.
func (l *Limiter) Acquire() (Token, error) {
	if l == nil {
		return Token{}, nil
	}
	if limit := l.limit.Load(); l.inflight.Add(1) > limit {
		l.inflight.Add(-1)
		l.refused.Add(1)
		l.refusals.Store(true)
		if l.onRefused != nil {
			l.onRefused()
		}
		return Token{}, &RefusedError{Side: l.side, Limit: int(limit)}
	}
	return Token{start: l.cfg.Now(), epoch: l.epoch.Load(), probe: l.probing.Load()}, nil
}

// Release ends an admitted call. sample says whether its latency (from
// Acquire until now) measures the target: true for an answer or a missed
// deadline, false for a failure that came at once. Safe on a nil *Limiter.
func (l *Limiter) Release(t Token, sample bool) {
	if l == nil {
		return
	}
	l.inflight.Add(-1)
	if !sample {
		return
	}
	now := l.cfg.Now()
	rtt := now.Sub(t.start)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.probing.Load() {
		if t.probe {
			l.probe = append(l.probe, rtt)
		}
		// Samples from before the measurement ran at the old limit: they
		// are neither part of it nor of a window.
		if len(l.probe) >= l.cfg.MinRTTSamples || len(l.probe) > 0 && now.Sub(l.probeStart) >= maxWindows*l.cfg.Window {
			l.endProbe(now)
		}
		return
	}
	l.all.add(rtt)
	if t.epoch == l.epoch.Load() {
		l.cur.add(rtt)
	}
	if el := now.Sub(l.winStart); el >= l.cfg.Window && l.all.n >= minWindowSamples || el >= maxWindows*l.cfg.Window {
		l.update(now)
	}
}

// window keeps the latest windowSamples latencies of a window.
type window struct {
	d [windowSamples]time.Duration
	n int // answers added; the latest windowSamples are in d
}

func (w *window) add(d time.Duration) {
	w.d[w.n%windowSamples] = d
	w.n++
}

// median of the kept latencies (which it reorders); 0 for none.
func (w *window) median() time.Duration { return median(w.d[:min(w.n, windowSamples)]) }

// update closes the window: minRTT, then the limit. l.mu is held.
//
// Queueing is judged on every answer of the window, so that the limit
// comes down as soon as latency shows it, whichever limit admitted the
// calls; a rise is judged only on the answers of calls admitted under the
// current limit (at least minWindowSamples of them: else the window closes
// without a change and those answers count in the next), since earlier
// ones measure a lower limit and would raise it again before its effect
// shows.
func (l *Limiter) update(now time.Time) {
	enough := l.all.n >= minWindowSamples
	sample := l.all.median()
	l.all.n, l.winStart = 0, now
	if l.minRTT == 0 {
		l.minRTT, l.lastCheck = sample, now
		l.closeWindow()
		return
	}
	if enough && sample < l.minRTT {
		l.minRTT = sample
	}
	if now.Sub(l.lastCheck) >= l.cfg.MinRTTInterval {
		l.lastCheck = now
		if l.refusals.Swap(false) {
			l.startProbe(now)
			return
		}
	}
	cur := l.limit.Load()
	next := l.next(cur, sample)
	if next >= cur {
		if l.cur.n < minWindowSamples {
			return // too few answers under this limit to raise it
		}
		next = l.next(cur, l.cur.median())
		if next > cur {
			next = cur + int64(math.Ceil(growth*float64(next-cur)))
		}
	}
	l.closeWindow()
	l.setLimit(next)
}

// next is the gradient controller's new limit for a window whose median
// latency is sample.
func (l *Limiter) next(cur int64, sample time.Duration) int64 {
	buffer := max(time.Duration(float64(l.minRTT)*l.cfg.Buffer), l.cfg.MinBuffer)
	g := float64(l.minRTT+buffer) / float64(max(sample, 1))
	g = min(max(g, minGradient), maxGradient)
	next := float64(cur) * g
	next += math.Sqrt(next)
	return int64(min(max(next, float64(l.cfg.MinLimit)), float64(l.cfg.MaxLimit)))
}

// closeWindow starts the next limit's window. l.mu is held.
func (l *Limiter) closeWindow() {
	l.cur.n = 0
	l.epoch.Add(1)
}

// startProbe pins the limit to MinLimit to measure minRTT again. l.mu is
// held.
func (l *Limiter) startProbe(now time.Time) {
	l.restore = l.limit.Load()
	l.probe = l.probe[:0]
	l.probeStart = now
	l.probing.Store(true)
	l.closeWindow()
	l.setLimit(int64(l.cfg.MinLimit))
}

// endProbe takes the measurement's median as minRTT and restores the
// limit. l.mu is held.
func (l *Limiter) endProbe(now time.Time) {
	l.minRTT = max(median(l.probe), 1)
	l.probe = l.probe[:0]
	l.probing.Store(false)
	l.lastCheck, l.winStart, l.all.n = now, now, 0
	l.closeWindow()
	l.refusals.Store(false)
	l.setLimit(l.restore)
}

func (l *Limiter) setLimit(n int64) {
	if l.limit.Swap(n) != n && l.onLimit != nil {
		l.onLimit(int(n))
	}
}

// Limit returns the current limit.
func (l *Limiter) Limit() int { return int(l.limit.Load()) }

// InFlight returns the calls admitted and not yet released.
func (l *Limiter) InFlight() int { return int(l.inflight.Load()) }

// Refused returns how many calls were refused so far.
func (l *Limiter) Refused() uint64 { return l.refused.Load() }

// MinRTT returns the no-load latency the limit is computed against; 0
// before the first window closed.
func (l *Limiter) MinRTT() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.minRTT
}

// Probing reports whether minRTT is being measured again (the limit is
// pinned to MinLimit).
func (l *Limiter) Probing() bool { return l.probing.Load() }

// median of ds, which it sorts; 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[(len(ds)-1)/2]
}
