package overload

import (
	"errors"
	"fmt"
	"time"
)

// Config sizes a Limiter. Zero fields take the defaults documented on each
// one (DefaultConfig); Validate reports every bad field at once.
type Config struct {
	// MinLimit is the lowest the limit goes, and the limit while the
	// no-load latency is measured again; default 100. Below it nothing is
	// ever refused, however slow the target: a limiter cannot tell calls
	// queueing in a small app from a workload that moved to slower
	// methods (both raise latency with concurrency), so the default only
	// bounds the queue; a lower floor protects small apps' latency more
	// tightly at the risk of refusing bursts of slow calls.
	MinLimit int
	// MaxLimit is the highest the limit goes; default 1000 (Envoy's
	// max_concurrency_limit).
	MaxLimit int
	// InitialLimit is the limit before the first window, clamped to
	// [MinLimit, MaxLimit]; default MaxLimit: a new limiter knows nothing
	// of its target and tightens only on evidence of queueing, so that a
	// burst of long calls right after start (long polls, held streams) is
	// not refused for want of samples.
	InitialLimit int
	// Window is how often the limit is recomputed from the latencies
	// measured since (Envoy's concurrency_update_interval); default 100ms.
	// A window closes at the first answer after it ends that brings it to
	// at least 5 samples, or after 10 windows with any.
	Window time.Duration
	// Buffer is the queueing tolerated, as a fraction of the no-load
	// latency, before the limit comes down (Envoy's min_rtt buffer);
	// default 0.25.
	Buffer float64
	// MinBuffer is the least queueing tolerated, whatever Buffer gives:
	// the scheduling noise of a sub-millisecond target is not overload;
	// default 5ms.
	MinBuffer time.Duration
	// MinRTTInterval is how often the no-load latency is measured again
	// while the limit is refusing calls (Envoy's min_rtt_calc_params
	// interval); default 30s.
	MinRTTInterval time.Duration
	// MinRTTSamples is how many calls such a measurement takes, at
	// MinLimit in flight; its median is the new no-load latency; default 50.
	MinRTTSamples int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultConfig is Config's documented defaults, what the sidecar uses
// unless told otherwise (--overload-min-limit, --overload-max-limit).
var DefaultConfig = Config{
	MinLimit:       100,
	MaxLimit:       1000,
	Window:         100 * time.Millisecond,
	Buffer:         0.25,
	MinBuffer:      5 * time.Millisecond,
	MinRTTInterval: 30 * time.Second,
	MinRTTSamples:  50,
}

// withDefaults returns c with its zero fields set to DefaultConfig's and
// InitialLimit clamped into the bounds.
func (c Config) withDefaults() Config {
	d := DefaultConfig
	if c.MinLimit == 0 {
		c.MinLimit = d.MinLimit
	}
	if c.MaxLimit == 0 {
		c.MaxLimit = max(d.MaxLimit, c.MinLimit)
	}
	if c.InitialLimit == 0 {
		c.InitialLimit = c.MaxLimit
	}
	c.InitialLimit = min(max(c.InitialLimit, c.MinLimit), c.MaxLimit)
	if c.Window == 0 {
		c.Window = d.Window
	}
	if c.Buffer == 0 {
		c.Buffer = d.Buffer
	}
	if c.MinBuffer == 0 {
		c.MinBuffer = d.MinBuffer
	}
	if c.MinRTTInterval == 0 {
		c.MinRTTInterval = d.MinRTTInterval
	}
	if c.MinRTTSamples == 0 {
		c.MinRTTSamples = d.MinRTTSamples
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Validate reports every field out of range, by name. Zero fields are
// valid (they take the defaults).
func (c Config) Validate() error {
	var errs []error
	if c.MinLimit < 0 {
		errs = append(errs, fmt.Errorf("minLimit: %d is negative", c.MinLimit))
	}
	if c.MaxLimit < 0 {
		errs = append(errs, fmt.Errorf("maxLimit: %d is negative", c.MaxLimit))
	}
	if c.MinLimit > 0 && c.MaxLimit > 0 && c.MaxLimit < c.MinLimit {
		errs = append(errs, fmt.Errorf("maxLimit: %d is below minLimit %d", c.MaxLimit, c.MinLimit))
	}
	if c.MinLimit == 0 && c.MaxLimit > 0 && c.MaxLimit < DefaultConfig.MinLimit {
		errs = append(errs, fmt.Errorf("maxLimit: %d is below the default minLimit %d; set minLimit too", c.MaxLimit, DefaultConfig.MinLimit))
	}
	if c.InitialLimit < 0 {
		errs = append(errs, fmt.Errorf("initialLimit: %d is negative", c.InitialLimit))
	}
	if c.Window < 0 {
		errs = append(errs, fmt.Errorf("window: %v is negative", c.Window))
	}
	if c.Buffer < 0 {
		errs = append(errs, fmt.Errorf("buffer: %v is negative", c.Buffer))
	}
	if c.MinBuffer < 0 {
		errs = append(errs, fmt.Errorf("minBuffer: %v is negative", c.MinBuffer))
	}
	if c.MinRTTInterval < 0 {
		errs = append(errs, fmt.Errorf("minRTTInterval: %v is negative", c.MinRTTInterval))
	}
	if c.MinRTTSamples < 0 {
		errs = append(errs, fmt.Errorf("minRTTSamples: %d is negative", c.MinRTTSamples))
	}
	return errors.Join(errs...)
}
