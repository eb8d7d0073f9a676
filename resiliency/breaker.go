package resiliency

import (
	"container/list"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"
	gobreaker "github.com/sony/gobreaker/v2"
)

// Errors of a call a breaker refused; their texts are Dapr's (contract §5.5).
// Callers branch on them with errors.Is; a retry stops at either.
var (
	ErrCircuitOpen     = errors.New("circuit breaker is open")
	ErrTooManyRequests = errors.New("too many requests")
)

// errServerStatus marks a response with status >= 500 as a failure.
var errServerStatus = errors.New("server error status")

// CircuitBreaker is the breaker of one "<target>:<method>" key. Safe for
// concurrent use.
type CircuitBreaker struct {
	cb       *gobreaker.TwoStepCircuitBreaker[struct{}]
	settings breakerSettings
}

// State returns "closed", "half-open" or "open".
func (b *CircuitBreaker) State() string { return b.cb.State().String() }

// Allow asks to make one call. On success, done must be called once with
// the outcome (nil, or the failure); otherwise err is ErrCircuitOpen or
// ErrTooManyRequests.
func (b *CircuitBreaker) Allow() (done func(error), err error) {
	done, err = b.cb.Allow()
	switch {
	case errors.Is(err, gobreaker.ErrOpenState):
		return nil, ErrCircuitOpen
	case errors.Is(err, gobreaker.ErrTooManyRequests):
		return nil, ErrTooManyRequests
	}
	return done, err
}

// Registry keeps the circuit breakers, one per "<target>:<method>", in an
// LRU per target bounded by the policy's BreakerCacheSize, for at most
// MaxTargets targets: beyond that the least recently used target's breakers
// are dropped (a dropped breaker starts closed if its target is called
// again), so calls naming ever new app ids cannot grow it. It outlives
// Compiled snapshots: a recompiled policy with the same settings keeps the
// breaker and its state, changed settings start a new closed breaker. Safe
// for concurrent use.
type Registry struct {
	metrics *Metrics
	mu      sync.Mutex
	targets *simplelru.LRU[string, *lru]
}

// NewRegistry returns an empty Registry reporting state changes to m (nil:
// not reported).
func NewRegistry(m *Metrics) *Registry {
	t, _ := simplelru.NewLRU[string, *lru](MaxTargets, nil) // errors only for a size below 1
	return &Registry{metrics: m, targets: t}
}

type lru struct {
	order *list.List // of *lruEntry, most recently used first
	items map[string]*list.Element
}

type lruEntry struct {
	method string
	cb     *CircuitBreaker
}

// Get returns the breaker for p.Target and method, creating it when absent
// or when p.Breaker's settings changed. p.Breaker must not be nil.
func (r *Registry) Get(p *Policy, method string) *CircuitBreaker {
	want := p.Breaker.settings()
	r.mu.Lock()
	defer r.mu.Unlock()
	l, ok := r.targets.Get(p.Target)
	if !ok {
		l = &lru{order: list.New(), items: map[string]*list.Element{}}
		r.targets.Add(p.Target, l)
	}
	if el, ok := l.items[method]; ok {
		e := el.Value.(*lruEntry)
		if e.cb.settings == want {
			l.order.MoveToFront(el)
			return e.cb
		}
		l.order.Remove(el)
		delete(l.items, method)
	}
	cb := r.newBreaker(p, method)
	l.items[method] = l.order.PushFront(&lruEntry{method: method, cb: cb})
	size := p.BreakerCacheSize
	if size <= 0 {
		size = DefaultBreakerCacheSize
	}
	for l.order.Len() > size {
		last := l.order.Back()
		l.order.Remove(last)
		delete(l.items, last.Value.(*lruEntry).method)
	}
	return cb
}

// Targets is the number of targets whose breakers are kept.
func (r *Registry) Targets() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.targets.Len()
}

func (r *Registry) newBreaker(p *Policy, method string) *CircuitBreaker {
	bp := p.Breaker
	// Metrics label by target only (contract §5.5); keep what they need.
	mp := Policy{Target: p.Target, Resource: p.Resource, Namespace: p.Namespace}
	m := r.metrics
	return &CircuitBreaker{
		settings: bp.settings(),
		cb: gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        p.Target + ":" + method,
			MaxRequests: bp.MaxRequests,
			Interval:    bp.Interval,
			Timeout:     bp.Timeout,
			ReadyToTrip: bp.ReadyToTrip,
			OnStateChange: func(_ string, _, to gobreaker.State) {
				m.activated(&mp, policyBreaker, to.String())
				m.breakerState(&mp, to.String())
			},
			// A caller that went away, or whose request body failed, says
			// nothing about the callee; nor does a refusal for overload.
			IsExcluded: func(err error) bool {
				return errors.Is(err, context.Canceled) || isClientFault(err) || isOverloaded(err)
			},
		}),
	}
}

// Breaker is the client-side circuit breaker layer. For a request whose
// policy (policyOf) has a breaker, it takes the breaker of
// "<target>:<method>" from reg (methodOf; nil means the URL path without
// its leading "/"), fails fast with ErrCircuitOpen or ErrTooManyRequests
// without calling next when the breaker refuses, and otherwise counts a
// transport error or a response with status >= 500 as a failure; the
// caller's cancellation, its client's faults (a malformed request body) and
// refusals for overload (an error with Overloaded() true) count as neither
// failure nor success. It sits inside Retry, so every
// attempt is counted.
func Breaker(reg *Registry, policyOf func(*http.Request) Policy, methodOf func(*http.Request) string) func(http.RoundTripper) http.RoundTripper {
	if methodOf == nil {
		methodOf = func(r *http.Request) string { return strings.TrimPrefix(r.URL.Path, "/") }
	}
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			p := policyOf(req)
			if p.Breaker == nil {
				return next.RoundTrip(req)
			}
			cb := reg.Get(&p, methodOf(req))
			reg.metrics.policyUsed(&p, policyBreaker, cb.State())
			done, err := cb.Allow()
			if err != nil {
				if req.Body != nil {
					req.Body.Close() // a RoundTripper always closes the body
				}
				return nil, err
			}
			resp, err := next.RoundTrip(req)
			switch {
			case err != nil:
				done(err)
			case resp.StatusCode >= 500:
				done(errServerStatus)
			case grpcFailed(resp):
				done(errServerStatus)
			default:
				done(nil)
			}
			return resp, err
		})
	}
}

// roundTripFunc adapts a func to http.RoundTripper.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
