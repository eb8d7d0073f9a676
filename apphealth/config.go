package apphealth

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Dapr's defaults (pkg/config/app_connection.go, pkg/runtime/config.go).
const (
	DefaultPath      = "/healthz"
	DefaultInterval  = 5 * time.Second
	DefaultTimeout   = 500 * time.Millisecond
	DefaultThreshold = 3
)

// Config is how the app is probed. The zero value of a field means its
// default (WithDefaults).
type Config struct {
	// Path is what HTTPProbe GETs (--app-health-check-path); "/" is
	// prepended when missing, as Dapr does. Default /healthz. gRPC apps
	// have no path.
	Path string
	// Interval is the time between the starts of two probes
	// (--app-health-probe-interval). Default 5s.
	Interval time.Duration
	// Timeout bounds each probe (--app-health-probe-timeout); at most
	// Interval. Default 500ms.
	Timeout time.Duration
	// Threshold is how many failed probes in a row make the app unhealthy
	// (--app-health-threshold). Default 3.
	Threshold int
}

// WithDefaults returns c with zero fields set to their defaults and the
// path made absolute.
func (c Config) WithDefaults() Config {
	if c.Path == "" {
		c.Path = DefaultPath
	}
	c.Path = "/" + strings.TrimPrefix(c.Path, "/")
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Threshold == 0 {
		c.Threshold = DefaultThreshold
	}
	return c
}

// Validate reports every problem of c, defaults applied first.
func (c Config) Validate() error {
	c = c.WithDefaults()
	var errs []error
	if c.Interval < 0 {
		errs = append(errs, fmt.Errorf("interval: %s is not positive", c.Interval))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout: %s is not positive", c.Timeout))
	}
	if c.Timeout > c.Interval && c.Interval > 0 {
		// Dapr refuses it too: probes would overlap.
		errs = append(errs, fmt.Errorf("timeout: %s is longer than the interval %s", c.Timeout, c.Interval))
	}
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("threshold: %d is below 1", c.Threshold))
	}
	if u, err := url.Parse("http://app" + c.Path); err != nil || u.Host != "app" {
		errs = append(errs, fmt.Errorf("path: %q is not a URL path", c.Path))
	}
	return errors.Join(errs...)
}
