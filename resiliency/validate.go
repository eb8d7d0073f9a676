package resiliency

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
)

// ParseDuration reads a duration as Dapr does (contract §5.2): an integer
// string is milliseconds, anything else a Go duration ("500ms", "1m30s").
// Negative durations are refused; there is no maximum.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
		if ms < 0 {
			return 0, fmt.Errorf("duration %q: must not be negative", s)
		}
		return time.Duration(ms) * time.Millisecond, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: want milliseconds or a Go duration such as 5s", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("duration %q: must not be negative", s)
	}
	return d, nil
}

// codeRange is an inclusive range of status codes.
type codeRange struct{ lo, hi int }

// Codes is a parsed matching list (Matching.HTTPStatusCodes or
// GRPCStatusCodes). The zero value is unset: it holds no code and Set is
// false.
type Codes struct {
	ranges []codeRange
}

// Set reports whether the list was configured.
func (c Codes) Set() bool { return len(c.ranges) > 0 }

// Contains reports whether code is listed.
func (c Codes) Contains(code int) bool {
	for _, r := range c.ranges {
		if code >= r.lo && code <= r.hi {
			return true
		}
	}
	return false
}

// ParseCodes parses a comma list of codes and ranges "a-b", each within
// [lo, hi] and with a <= b. An empty or blank list is unset.
func ParseCodes(s string, lo, hi int) (Codes, error) {
	var c Codes
	if strings.TrimSpace(s) == "" {
		return c, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		parts := strings.Split(item, "-")
		if len(parts) > 2 {
			return Codes{}, fmt.Errorf("%q: a range is two codes joined by -", item)
		}
		var r [2]int
		for i, p := range parts {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return Codes{}, fmt.Errorf("%q: not a status code", item)
			}
			if n < lo || n > hi {
				return Codes{}, fmt.Errorf("%q: codes must be within %d-%d", item, lo, hi)
			}
			r[i] = n
		}
		if len(parts) == 1 {
			r[1] = r[0]
		}
		if r[0] > r[1] {
			return Codes{}, fmt.Errorf("%q: range starts after it ends", item)
		}
		c.ranges = append(c.ranges, codeRange{r[0], r[1]})
	}
	return c, nil
}

// Status code families of contract §5.4.
const (
	minHTTPCode, maxHTTPCode = 100, 599
	minGRPCCode, maxGRPCCode = 0, 16
)

// DefaultTrip is the trip expression of a breaker without one.
const DefaultTrip = "consecutiveFailures > 5"

// tripEnv declares the variables of a trip expression (contract §5.5).
var tripEnv = func() *cel.Env {
	env, err := cel.NewEnv(
		cel.Variable("requests", cel.IntType),
		cel.Variable("totalSuccesses", cel.IntType),
		cel.Variable("totalFailures", cel.IntType),
		cel.Variable("consecutiveSuccesses", cel.IntType),
		cel.Variable("consecutiveFailures", cel.IntType),
	)
	if err != nil {
		panic(err) // static declarations: cannot fail at run time
	}
	return env
}()

// compileTrip compiles a trip expression that must yield a bool.
func compileTrip(expr string) (cel.Program, error) {
	ast, iss := tripEnv.Compile(expr)
	if iss.Err() != nil {
		return nil, fmt.Errorf("%q: %w", expr, iss.Err())
	}
	if ast.OutputType() != cel.BoolType {
		return nil, fmt.Errorf("%q: must be a bool expression, is %s", expr, ast.OutputType())
	}
	prg, err := tripEnv.Program(ast)
	if err != nil {
		return nil, fmt.Errorf("%q: %w", expr, err)
	}
	return prg, nil
}

// sortedKeys returns the keys of m in order, so errors come out stably.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Validate returns every problem in s (errors.Join), each naming its field
// path: durations that are neither milliseconds nor Go durations, retry
// policies other than constant/exponential, maxRetries below -1, matching
// lists with bad codes or ranges, negative maxRequests, trip expressions
// that do not compile to a bool, negative cache sizes, and targets naming
// policies that do not exist. A nil Spec is valid.
func (s *Spec) Validate() error {
	if s == nil {
		return nil
	}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	dur := func(path, v string, required bool) {
		if v == "" && !required {
			return
		}
		if _, err := ParseDuration(v); err != nil {
			add(path, "%v", err)
		}
	}
	for _, name := range sortedKeys(s.Policies.Timeouts) {
		dur("spec.policies.timeouts."+name, s.Policies.Timeouts[name], true)
	}
	for _, name := range sortedKeys(s.Policies.Retries) {
		r, p := s.Policies.Retries[name], "spec.policies.retries."+name
		if r.Policy != "" && !strings.EqualFold(r.Policy, "constant") && !strings.EqualFold(r.Policy, "exponential") {
			add(p+".policy", "%q: must be constant or exponential", r.Policy)
		}
		dur(p+".duration", r.Duration, false)
		dur(p+".maxInterval", r.MaxInterval, false)
		if r.MaxRetries != nil && *r.MaxRetries < -1 {
			add(p+".maxRetries", "%d: must be -1 (unlimited) or more", *r.MaxRetries)
		}
		if _, err := ParseCodes(r.Matching.HTTPStatusCodes, minHTTPCode, maxHTTPCode); err != nil {
			add(p+".matching.httpStatusCodes", "%v", err)
		}
		if _, err := ParseCodes(r.Matching.GRPCStatusCodes, minGRPCCode, maxGRPCCode); err != nil {
			add(p+".matching.gRPCStatusCodes", "%v", err)
		}
	}
	for _, name := range sortedKeys(s.Policies.CircuitBreakers) {
		b, p := s.Policies.CircuitBreakers[name], "spec.policies.circuitBreakers."+name
		if b.MaxRequests < 0 || b.MaxRequests > math.MaxUint32 {
			add(p+".maxRequests", "%d: must be within 0-%d", b.MaxRequests, uint32(math.MaxUint32))
		}
		dur(p+".interval", b.Interval, false)
		dur(p+".timeout", b.Timeout, false)
		if b.Trip != "" {
			if _, err := compileTrip(b.Trip); err != nil {
				add(p+".trip", "%v", err)
			}
		}
	}
	for _, name := range sortedKeys(s.Targets.Apps) {
		a, p := s.Targets.Apps[name], "spec.targets.apps."+name
		if _, ok := s.Policies.Timeouts[a.Timeout]; a.Timeout != "" && !ok {
			add(p+".timeout", "no timeout policy named %q", a.Timeout)
		}
		if _, ok := s.Policies.Retries[a.Retry]; a.Retry != "" && !ok {
			add(p+".retry", "no retry policy named %q", a.Retry)
		}
		if _, ok := s.Policies.CircuitBreakers[a.CircuitBreaker]; a.CircuitBreaker != "" && !ok {
			add(p+".circuitBreaker", "no circuit breaker policy named %q", a.CircuitBreaker)
		}
		if a.CircuitBreakerCacheSize < 0 {
			add(p+".circuitBreakerCacheSize", "%d: must not be negative", a.CircuitBreakerCacheSize)
		}
	}
	return errors.Join(errs...)
}
