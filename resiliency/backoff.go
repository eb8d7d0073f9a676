package resiliency

import (
	"math/rand/v2"
	"time"
)

// Exponential back-off constants (contract §5.4: cenkalti/backoff defaults,
// not configurable through the resource).
const (
	ExponentialInitial        = 500 * time.Millisecond
	ExponentialMultiplier     = 1.5
	ExponentialRandomization  = 0.5
	ExponentialMaxElapsedTime = 15 * time.Minute
)

// Backoff yields the delays before successive retries of one call. It is
// not safe for concurrent use: each call gets its own from NewBackoff.
type Backoff struct {
	p     *RetryPolicy
	cur   time.Duration
	start time.Time
	now   func() time.Time
	rnd   func() float64
}

// NewBackoff starts the back-off of one call. rnd yields numbers in [0, 1)
// and now the time; nil means math/rand/v2 and time.Now.
func (p *RetryPolicy) NewBackoff(rnd func() float64, now func() time.Time) *Backoff {
	if rnd == nil {
		rnd = rand.Float64
	}
	if now == nil {
		now = time.Now
	}
	cur := ExponentialInitial
	if p.Initial > 0 {
		cur = p.Initial
	}
	return &Backoff{p: p, cur: cur, start: now(), now: now, rnd: rnd}
}

// Next returns the delay before the next retry, and false when an
// exponential back-off has run for ExponentialMaxElapsedTime and the call
// must stop retrying. Constant back-off always waits Duration. Exponential
// waits the current interval randomised by ±50%, then multiplies the
// interval by 1.5; both the interval and the delay are capped at
// MaxInterval.
func (b *Backoff) Next() (time.Duration, bool) {
	if !b.p.Exponential {
		return b.p.Duration, true
	}
	if b.now().Sub(b.start) > ExponentialMaxElapsedTime {
		return 0, false
	}
	cur := min(b.cur, b.p.MaxInterval)
	delta := ExponentialRandomization * float64(cur)
	lo := float64(cur) - delta
	d := time.Duration(lo + b.rnd()*(2*delta+1))
	b.cur = min(time.Duration(float64(cur)*ExponentialMultiplier), b.p.MaxInterval)
	return min(d, b.p.MaxInterval), true
}

// RetryHTTP reports whether an attempt that got HTTP status code is retried
// (contract §5.4). Only errors are: statuses below 200 or above 399. With a
// matching list, only listed errors are.
func (p *RetryPolicy) RetryHTTP(code int) bool {
	if code >= 200 && code <= 399 || p.TransportOnly {
		return false
	}
	if p.HTTPCodes.Set() {
		return p.HTTPCodes.Contains(code)
	}
	return true
}

// RetryGRPC reports whether an attempt that ended with gRPC status code
// is retried: every non-OK code, or only listed ones with a matching list.
func (p *RetryPolicy) RetryGRPC(code int) bool {
	if code == 0 || p.TransportOnly {
		return false
	}
	if p.GRPCCodes.Set() {
		return p.GRPCCodes.Contains(code)
	}
	return true
}
