package overload

import (
	"container/list"
	"sync"
)

// DefaultMaxTargets bounds the targets a Registry keeps limiters for.
const DefaultMaxTargets = 1000

// Registry keeps one Limiter per target, for the caller side. It is
// bounded two ways, so that names nobody answers to cannot grow it: a
// target gets a limiter only once a call to it was answered (Learn), and
// at most max targets are kept, the least recently used going first. An
// evicted target starts again with a fresh limiter and its metric series
// go. Safe for concurrent use.
type Registry struct {
	cfg     Config
	max     int
	metrics *Metrics
	mu      sync.Mutex
	order   *list.List // of *entry, most recently used first
	items   map[string]*list.Element
}

type entry struct {
	target string
	l      *Limiter
}

// NewRegistry returns an empty registry of limiters sized by cfg, keeping
// at most max targets (<= 0: DefaultMaxTargets), reporting to m (nil: not
// reported).
func NewRegistry(cfg Config, max int, m *Metrics) *Registry {
	if max <= 0 {
		max = DefaultMaxTargets
	}
	return &Registry{cfg: cfg, max: max, metrics: m, order: list.New(), items: map[string]*list.Element{}}
}

// Get returns target's limiter, nil when it has none. A nil *Registry has
// none.
func (r *Registry) Get(target string) *Limiter {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	el, ok := r.items[target]
	if !ok {
		return nil
	}
	r.order.MoveToFront(el)
	return el.Value.(*entry).l
}

// Learn returns target's limiter, creating it (and evicting the least
// recently used target past the bound) when it has none.
func (r *Registry) Learn(target string) *Limiter {
	r.mu.Lock()
	defer r.mu.Unlock()
	if el, ok := r.items[target]; ok {
		r.order.MoveToFront(el)
		return el.Value.(*entry).l
	}
	l := NewLimiter(r.cfg)
	r.metrics.bind(l, SideOutbound, target)
	r.items[target] = r.order.PushFront(&entry{target: target, l: l})
	for r.order.Len() > r.max {
		last := r.order.Back()
		e := last.Value.(*entry)
		r.order.Remove(last)
		delete(r.items, e.target)
		r.metrics.forget(SideOutbound, e.target)
	}
	return l
}

// Len returns how many targets have a limiter.
func (r *Registry) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order.Len()
}
