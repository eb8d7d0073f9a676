package discovery

import (
	"fmt"
	"time"
)

// OutlierDetection ejects an instance that keeps failing, as Envoy's
// consecutive_5xx outlier detection does: after Consecutive failures in a
// row (a 5xx answer, or a connection that failed or died) the instance
// gets no calls for BaseEjection; each further ejection doubles that, up to
// MaxEjection. An instance that stays clear of ejection for MaxEjection
// starts again from BaseEjection. Ejection never leaves a target without
// instances: when every instance is ejected, calls go to the least bad one
// (the one whose ejection ends first).
type OutlierDetection struct {
	// Consecutive is the number of failures in a row that eject; 0 turns
	// ejection off.
	Consecutive  int
	BaseEjection time.Duration
	MaxEjection  time.Duration
}

// DefaultOutlierDetection is Skein's default: 5 consecutive failures eject
// for 30 s, doubling up to 5 minutes.
var DefaultOutlierDetection = OutlierDetection{Consecutive: 5, BaseEjection: 30 * time.Second, MaxEjection: 5 * time.Minute}

// Validate reports settings that cannot work.
func (o OutlierDetection) Validate() error {
	switch {
	case o.Consecutive < 0:
		return fmt.Errorf("outlier detection: consecutive failures %d is negative", o.Consecutive)
	case o.Consecutive == 0:
		return nil
	case o.BaseEjection <= 0:
		return fmt.Errorf("outlier detection: base ejection time %s must be positive", o.BaseEjection)
	case o.MaxEjection < o.BaseEjection:
		return fmt.Errorf("outlier detection: max ejection time %s is below the base %s", o.MaxEjection, o.BaseEjection)
	}
	return nil
}

// ejectionFor is how long the n-th ejection in a row (0-based) lasts.
func (o *OutlierDetection) ejectionFor(n int) time.Duration {
	d := o.BaseEjection
	for range n {
		if d >= o.MaxEjection/2 {
			return o.MaxEjection
		}
		d *= 2
	}
	return min(d, o.MaxEjection)
}

// outcome records the result of one try on e under od, at now (unix
// nanos). It returns how long e is now ejected for, or 0.
func (e *Endpoint) outcome(now int64, failed bool, od *OutlierDetection) time.Duration {
	if !failed {
		if e.fails.Load() != 0 {
			e.fails.Store(0)
		}
		return 0
	}
	n := e.fails.Add(1)
	if od == nil || od.Consecutive <= 0 || int(n) < od.Consecutive {
		return 0
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.fails.Store(0)
	if e.ejectedUntil.Load() > now {
		// Already out (it was the least bad of an all-ejected set): its
		// current ejection stands.
		return 0
	}
	if now-e.ejectEnd > int64(od.MaxEjection) {
		e.ejections = 0 // healthy for long enough: forgive earlier ejections
	}
	d := od.ejectionFor(e.ejections)
	e.ejections++
	e.ejectEnd = now + int64(d)
	e.ejectedUntil.Store(e.ejectEnd)
	return d
}

func (e *Endpoint) ejected(now int64) bool { return e.ejectedUntil.Load() > now }

// healthyAt is when e may be chosen again: the later of its ejection's and
// its connect back-off's end.
func (e *Endpoint) healthyAt() int64 { return max(e.ejectedUntil.Load(), e.failedUntil.Load()) }
