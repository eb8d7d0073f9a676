package apphealth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnhealthy is the error of a call refused because the app is
// unhealthy. The text is Dapr's (pkg/messages ErrAppUnhealthy).
var ErrUnhealthy = errors.New("app is not in a healthy state")

// Prober probes the app once. It reports whether the app answered healthy
// before ctx ended; every failure (refused connection, timeout, unhealthy
// status) is an unhealthy answer. Probe is called from one goroutine at a
// time.
type Prober interface {
	Probe(ctx context.Context) bool
}

// Checker keeps the app's health from periodic probes. Create it with
// New and run it with Run; its methods and Require may be used from any
// goroutine, before Run too. A nil *Checker is an app without health
// checks: Healthy reports true and Require(nil) passes calls through.
type Checker struct {
	cfg     Config
	probe   Prober
	metrics *Metrics
	log     *slog.Logger

	healthy   atomic.Bool
	changed   chan struct{} // cap 1: a change not yet seen by the reader of Changed
	checked   chan struct{} // closed after the first verdict
	checkOnce sync.Once

	failures int // consecutive failed probes, owned by Run
}

// New returns a checker of the app with cfg (defaults applied), probing
// with p. The app counts as unhealthy until a probe succeeds, as in Dapr.
// m may be nil (no metrics).
func New(cfg Config, p Prober, m *Metrics, log *slog.Logger) *Checker {
	cfg = cfg.WithDefaults()
	c := &Checker{
		cfg:      cfg,
		probe:    p,
		metrics:  m,
		log:      log.With("component", "apphealth"),
		changed:  make(chan struct{}, 1),
		checked:  make(chan struct{}),
		failures: cfg.Threshold,
	}
	m.setHealthy(false)
	return c
}

// Config returns the checker's settings, defaults applied.
func (c *Checker) Config() Config { return c.cfg }

// Healthy reports whether the app is healthy: true for a nil checker.
func (c *Checker) Healthy() bool { return c == nil || c.healthy.Load() }

// Changed receives after the app's health changes. Signals coalesce: read
// Healthy after each one. Meant for one reader.
func (c *Checker) Changed() <-chan struct{} { return c.changed }

// Checked is closed once the first probe has completed, whatever its
// verdict.
func (c *Checker) Checked() <-chan struct{} { return c.checked }

// Run probes the app every interval until ctx ends, the first probe at
// once. Each probe is bounded by the timeout; probes never overlap (a slow
// one delays the next, as Dapr's queue does). When Run returns it closes
// the prober if it is an io.Closer.
func (c *Checker) Run(ctx context.Context) {
	if cl, ok := c.probe.(io.Closer); ok {
		defer cl.Close()
	}
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	c.log.Info("app health probes starting", "interval", c.cfg.Interval, "timeout", c.cfg.Timeout, "threshold", c.cfg.Threshold)
	for {
		c.probeOnce(ctx)
		select {
		case <-ctx.Done():
			c.log.Info("app health probes stopping")
			return
		case <-t.C:
		}
	}
}

func (c *Checker) probeOnce(ctx context.Context) {
	pctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	ok := c.probe.Probe(pctx)
	cancel()
	if ctx.Err() != nil {
		return // cut short by shutdown: says nothing about the app
	}
	c.record(ok)
	c.checkOnce.Do(func() { close(c.checked) })
}

// record applies one probe's verdict: Dapr's setResult. One success makes
// the app healthy; Threshold failures in a row make it unhealthy.
func (c *Checker) record(ok bool) {
	if ok {
		c.failures = 0
		c.set(true)
		return
	}
	if c.failures < c.cfg.Threshold {
		c.failures++
	}
	if c.log.Enabled(context.Background(), slog.LevelDebug) {
		c.log.Debug("app health probe failed", "failures", c.failures, "threshold", c.cfg.Threshold)
	}
	if c.failures >= c.cfg.Threshold {
		c.set(false)
	}
}

func (c *Checker) set(healthy bool) {
	if c.healthy.Swap(healthy) == healthy {
		return
	}
	c.metrics.setHealthy(healthy)
	c.metrics.transition(healthy)
	if healthy {
		c.log.Info("app entered healthy status")
	} else {
		c.log.Warn("app entered unhealthy status", "failures", c.failures)
	}
	select {
	case c.changed <- struct{}{}:
	default: // a signal is pending: the reader will see the latest state
	}
}

// Require returns the layer in front of the app: while the app is
// unhealthy by c a call fails with ErrUnhealthy and never reaches it (Dapr
// refuses it in its app channel, for calls from other apps and
// self-invocation alike). With a nil c the layer adds nothing.
func Require(c *Checker) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if c == nil {
			return next
		}
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if !c.healthy.Load() {
				if r.Body != nil {
					_ = r.Body.Close() // RoundTripper contract: the body is closed even on error
				}
				return nil, ErrUnhealthy
			}
			return next.RoundTrip(r)
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
