package harness

import (
	"fmt"
	"testing"
	"time"
)

// Usage is what a sidecar holds: its goroutines (go_goroutines) and open
// file descriptors (process_open_fds), from its Prometheus port.
type Usage struct{ Goroutines, FDs float64 }

func (u Usage) String() string {
	return fmt.Sprintf("%v goroutines, %v fds", u.Goroutines, u.FDs)
}

// Usage reads the sidecar's goroutines and open fds. The scrape's own
// connection is counted in both, the same way every time.
func (s *Sidecar) Usage(t testing.TB) Usage {
	t.Helper()
	return Usage{Goroutines: s.Metric(t, "go_goroutines"), FDs: s.Metric(t, "process_open_fds")}
}

// Settles waits up to d for the sidecar's usage to come back to at most
// base plus margin, and fails the test with both if it does not: a fault
// that ended must not leave goroutines or connections behind.
func (s *Sidecar) Settles(t testing.TB, base, margin Usage, d time.Duration) Usage {
	t.Helper()
	var u Usage
	deadline := time.Now().Add(d)
	for {
		u = s.Usage(t)
		if u.Goroutines <= base.Goroutines+margin.Goroutines && u.FDs <= base.FDs+margin.FDs {
			return u
		}
		if time.Now().After(deadline) {
			t.Errorf("%s holds %v after the fault, want at most %v plus %v (its baseline)", s.AppID, u, base, margin)
			return u
		}
		time.Sleep(100 * time.Millisecond)
	}
}
