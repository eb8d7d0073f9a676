package resiliency

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/google/cel-go/cel"
	gobreaker "github.com/sony/gobreaker/v2"
)

// Names of the default policies (contract §5.6), looked up in this order.
const (
	DefaultAppTimeoutPolicy        = "DefaultAppTimeoutPolicy"
	DefaultTimeoutPolicy           = "DefaultTimeoutPolicy"
	DefaultAppRetryPolicy          = "DefaultAppRetryPolicy"
	DefaultRetryPolicy             = "DefaultRetryPolicy"
	DefaultAppCircuitBreakerPolicy = "DefaultAppCircuitBreakerPolicy"
	DefaultCircuitBreakerPolicy    = "DefaultCircuitBreakerPolicy"
)

// Defaults of contract §5.4 and §5.5.
const (
	DefaultRetryDuration    = 5 * time.Second
	DefaultRetryMaxInterval = 60 * time.Second
	DefaultBreakerTimeout   = 60 * time.Second
	DefaultBreakerCacheSize = 100
)

// MaxTargets is how many targets' state (circuit breakers, retry budgets)
// a sidecar keeps: four times the largest mesh we test (1,000 app ids), so
// that real targets keep theirs, while calls naming ever new app ids (a
// typo in a loop, a scan) cannot grow memory without bound: about 1 KB a
// target, 4 MB at the cap. Beyond it the least recently called target's
// state is dropped.
const MaxTargets = 4096

// Merge merges specs into one table, as Dapr merges several Resiliency
// resources (contract §5.1): for the same policy or target name the later
// spec wins; Name and Namespace are those of the last spec that has a name.
// Nil specs are skipped. The result shares no maps with the inputs.
func Merge(specs ...*Spec) *Spec {
	out := &Spec{}
	for _, s := range specs {
		if s == nil {
			continue
		}
		if s.Name != "" {
			out.Name, out.Namespace = s.Name, s.Namespace
		}
		out.Policies.Timeouts = mergeMap(out.Policies.Timeouts, s.Policies.Timeouts)
		out.Policies.Retries = mergeMap(out.Policies.Retries, s.Policies.Retries)
		out.Policies.CircuitBreakers = mergeMap(out.Policies.CircuitBreakers, s.Policies.CircuitBreakers)
		out.Targets.Apps = mergeMap(out.Targets.Apps, s.Targets.Apps)
		if s.Targets.Actors != nil {
			out.Targets.Actors = s.Targets.Actors
		}
		if s.Targets.Components != nil {
			out.Targets.Components = s.Targets.Components
		}
	}
	return out
}

func mergeMap[V any](dst, src map[string]V) map[string]V {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = make(map[string]V, len(src))
	}
	maps.Copy(dst, src)
	return dst
}

// Policy is what applies to one call (contract §5.6). Nil or zero parts are
// absent. A Policy is a value taken from an immutable Compiled: callers must
// not change what its pointers point to.
type Policy struct {
	// Target is the call's target as the caller wrote it.
	Target string
	// Timeout is the per-attempt deadline; 0 means none.
	Timeout time.Duration
	// Retry is the retry policy, or nil.
	Retry *RetryPolicy
	// Breaker is the circuit breaker policy, or nil.
	Breaker *BreakerPolicy
	// BreakerCacheSize bounds the breakers kept for Target (one per method).
	BreakerCacheSize int
	// BuiltInRetries reports whether the built-in service retries
	// (contract §5.7) stay on: false when a named app target exists.
	BuiltInRetries bool
	// TimeoutName, RetryName and BreakerName are the policy names.
	TimeoutName, RetryName, BreakerName string
	// Resource and Namespace name the Resiliency resource, for metrics.
	Resource, Namespace string
	// Budget sizes the target's retry budget (an xDS cluster's
	// retry_budget); nil means the Budgets' own configuration.
	Budget *BudgetConfig
}

// RetryPolicy is a compiled retry policy (contract §5.4).
type RetryPolicy struct {
	Exponential bool
	// Initial is the first exponential interval; 0 means
	// ExponentialInitial (Resiliency resources cannot set it; xDS
	// retry_back_off.base_interval does).
	Initial time.Duration
	// Duration is the constant back-off.
	Duration time.Duration
	// MaxInterval caps the exponential back-off.
	MaxInterval time.Duration
	// MaxRetries counts retries after the first attempt; -1 is unlimited.
	MaxRetries int
	// HTTPCodes and GRPCCodes are the matching lists; unset lists retry
	// every error status of their family.
	HTTPCodes, GRPCCodes Codes
	// TransportOnly retries transport errors only, never a status (an xDS
	// retry_on of connect-failure or reset alone).
	TransportOnly bool
}

// BreakerPolicy is a compiled circuit breaker policy (contract §5.5).
type BreakerPolicy struct {
	Name        string
	MaxRequests uint32
	Interval    time.Duration
	Timeout     time.Duration
	Trip        string
	trip        cel.Program
}

// settings are what makes two breakers the same: a recompiled policy with
// equal settings keeps its breakers and their state.
type breakerSettings struct {
	maxRequests       uint32
	interval, timeout time.Duration
	trip              string
}

func (b *BreakerPolicy) settings() breakerSettings {
	return breakerSettings{b.MaxRequests, b.Interval, b.Timeout, b.Trip}
}

// ReadyToTrip evaluates the trip expression over counts; an evaluation
// error means "don't trip" (contract §5.5).
func (b *BreakerPolicy) ReadyToTrip(c gobreaker.Counts) bool {
	out, _, err := b.trip.Eval(map[string]any{
		"requests":             int64(c.Requests),
		"totalSuccesses":       int64(c.TotalSuccesses),
		"totalFailures":        int64(c.TotalFailures),
		"consecutiveSuccesses": int64(c.ConsecutiveSuccesses),
		"consecutiveFailures":  int64(c.ConsecutiveFailures),
	})
	if err != nil {
		return false
	}
	v, ok := out.Value().(bool)
	return ok && v
}

// Compiled is a validated Spec ready to serve lookups. It is immutable and
// safe for concurrent use; a new Spec is a new Compiled swapped in
// atomically, while breakers live on in a Registry.
type Compiled struct {
	apps map[string]Policy
	def  Policy
}

// Compile validates s and compiles it. A nil Spec compiles to a Compiled
// without policies.
func Compile(s *Spec) (*Compiled, error) {
	if s == nil {
		s = &Spec{}
	}
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("resiliency %s: %w", s.Name, err)
	}
	timeouts := make(map[string]time.Duration, len(s.Policies.Timeouts))
	for name, v := range s.Policies.Timeouts {
		timeouts[name], _ = ParseDuration(v) // validated
	}
	retries := make(map[string]*RetryPolicy, len(s.Policies.Retries))
	for name, r := range s.Policies.Retries {
		retries[name] = compileRetry(r)
	}
	breakers := make(map[string]*BreakerPolicy, len(s.Policies.CircuitBreakers))
	for name, b := range s.Policies.CircuitBreakers {
		breakers[name] = compileBreaker(name, b)
	}
	c := &Compiled{apps: make(map[string]Policy, len(s.Targets.Apps))}
	for target, a := range s.Targets.Apps {
		p := Policy{
			Target:           target,
			Timeout:          timeouts[a.Timeout],
			Retry:            retries[a.Retry],
			Breaker:          breakers[a.CircuitBreaker],
			BreakerCacheSize: a.CircuitBreakerCacheSize,
			TimeoutName:      a.Timeout,
			RetryName:        a.Retry,
			BreakerName:      a.CircuitBreaker,
			Resource:         s.Name,
			Namespace:        s.Namespace,
		}
		if p.BreakerCacheSize == 0 {
			p.BreakerCacheSize = DefaultBreakerCacheSize
		}
		c.apps[target] = p
	}
	c.def = Policy{BreakerCacheSize: DefaultBreakerCacheSize, BuiltInRetries: true, Resource: s.Name, Namespace: s.Namespace}
	for _, n := range []string{DefaultAppTimeoutPolicy, DefaultTimeoutPolicy} {
		if d, ok := timeouts[n]; ok {
			c.def.Timeout, c.def.TimeoutName = d, n
			break
		}
	}
	for _, n := range []string{DefaultAppRetryPolicy, DefaultRetryPolicy} {
		if r, ok := retries[n]; ok {
			c.def.Retry, c.def.RetryName = r, n
			break
		}
	}
	for _, n := range []string{DefaultAppCircuitBreakerPolicy, DefaultCircuitBreakerPolicy} {
		if b, ok := breakers[n]; ok {
			c.def.Breaker, c.def.BreakerName = b, n
			break
		}
	}
	return c, nil
}

func compileRetry(r RetrySpec) *RetryPolicy {
	p := &RetryPolicy{
		Exponential: strings.EqualFold(r.Policy, "exponential"),
		Duration:    DefaultRetryDuration,
		MaxInterval: DefaultRetryMaxInterval,
		MaxRetries:  -1, // omitted ⇒ unlimited (contract §5.4)
	}
	if r.Duration != "" {
		p.Duration, _ = ParseDuration(r.Duration)
	}
	if r.MaxInterval != "" {
		p.MaxInterval, _ = ParseDuration(r.MaxInterval)
	}
	if r.MaxRetries != nil {
		p.MaxRetries = *r.MaxRetries
	}
	p.HTTPCodes, _ = ParseCodes(r.Matching.HTTPStatusCodes, minHTTPCode, maxHTTPCode)
	p.GRPCCodes, _ = ParseCodes(r.Matching.GRPCStatusCodes, minGRPCCode, maxGRPCCode)
	return p
}

func compileBreaker(name string, b CircuitBreakerSpec) *BreakerPolicy {
	p := &BreakerPolicy{Name: name, MaxRequests: uint32(b.MaxRequests), Timeout: DefaultBreakerTimeout, Trip: b.Trip}
	if p.MaxRequests == 0 {
		p.MaxRequests = 1
	}
	if b.Interval != "" {
		p.Interval, _ = ParseDuration(b.Interval)
	}
	if b.Timeout != "" {
		if d, _ := ParseDuration(b.Timeout); d > 0 {
			p.Timeout = d
		}
	}
	if p.Trip == "" {
		p.Trip = DefaultTrip
	}
	p.trip, _ = compileTrip(p.Trip) // validated
	return p
}

// ForApp returns the policy of a service-invocation call to target, the
// target string exactly as the caller wrote it (contract §5.6): a named app
// target gets only its own policies and the built-in retries are off;
// otherwise each kind independently falls back to DefaultApp<Kind>Policy,
// then Default<Kind>Policy, and built-in retries stay on. A nil Compiled
// has no policies. ForApp does not allocate.
func (c *Compiled) ForApp(target string) Policy {
	if c == nil {
		return Policy{Target: target, BreakerCacheSize: DefaultBreakerCacheSize, BuiltInRetries: true}
	}
	if p, ok := c.apps[target]; ok {
		return p
	}
	p := c.def
	p.Target = target
	return p
}
