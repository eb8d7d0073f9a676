package ratelimit

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Dapr's middleware.http.ratelimit component (components-contrib
// middleware/http/ratelimit): its type, the one version there is, and its
// one metadata field.
const (
	MiddlewareType           = "middleware.http.ratelimit"
	MiddlewareVersion        = "v1"
	MetaMaxRequestsPerSecond = "maxRequestsPerSecond"

	// DefaultMaxRequestsPerSecond applies when the component leaves
	// maxRequestsPerSecond out, as in Dapr's code (its metadata.yaml calls
	// the field required, its code defaults it to 100).
	DefaultMaxRequestsPerSecond = 100
)

// MiddlewareLimit reads the limit of a middleware.http.ratelimit component
// from its metadata (name → value, as written under spec.metadata):
// maxRequestsPerSecond, a number greater than 0 (default 100), with Dapr's
// burst, its whole part and at least 1 (DefaultBurst). Every problem is
// reported, naming its field. Dapr ignores metadata names it does not know;
// here they are errors, so a misspelt maxRequestsPerSecond is not silently
// the default of 100.
func MiddlewareLimit(metadata map[string]string) (Limit, error) {
	l := Limit{RequestsPerSecond: DefaultMaxRequestsPerSecond}
	var errs []error
	seen := ""
	for name, v := range metadata {
		if !strings.EqualFold(name, MetaMaxRequestsPerSecond) {
			// Dapr decodes metadata names case-insensitively (mapstructure).
			errs = append(errs, fmt.Errorf("metadata %q: unknown field (%s knows only %s)", name, MiddlewareType, MetaMaxRequestsPerSecond))
			continue
		}
		if seen != "" {
			errs = append(errs, fmt.Errorf("metadata %q: given twice (also as %q)", name, seen))
			continue
		}
		seen = name
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			errs = append(errs, fmt.Errorf("metadata %s: %q: must be a number", name, v))
			continue
		}
		if f <= 0 {
			// Dapr's own words for it.
			errs = append(errs, fmt.Errorf("metadata property %s must be a positive value, not %q", MetaMaxRequestsPerSecond, v))
			continue
		}
		if f > MaxRequestsPerSecond {
			errs = append(errs, fmt.Errorf("metadata %s: %q: must be at most %g", name, v, float64(MaxRequestsPerSecond)))
			continue
		}
		l.RequestsPerSecond = f
	}
	if err := errors.Join(errs...); err != nil {
		return Limit{}, err
	}
	l.Burst = DefaultBurst(l.RequestsPerSecond)
	return l, nil
}
