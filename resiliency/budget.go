package resiliency

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// BudgetConfig sizes a retry budget (PRODUCT.md difference 7).
type BudgetConfig struct {
	// Ratio is the retries allowed per request; default 0.2 (20%).
	Ratio float64
	// PerSecond are retries allowed every second on top; default 10.
	PerSecond float64
	// Burst caps the saved-up retries; default PerSecond + 100*Ratio.
	Burst float64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultBudget is the budget of BudgetConfig's documented defaults.
var DefaultBudget = BudgetConfig{Ratio: 0.2, PerSecond: 10}

// Budget is a token bucket capping the retries to one target: each request
// deposits Ratio tokens, time deposits PerSecond tokens a second, a retry
// takes one token. It starts with one second's worth. Safe for concurrent
// use.
type Budget struct {
	cfg       BudgetConfig
	mu        sync.Mutex
	tokens    float64
	last      time.Time
	refused   atomic.Uint64
	onRefused func()
}

// NewBudget returns a full budget; zero fields of cfg get DefaultBudget's
// values, except that cfg with a zero PerSecond and a non-zero Ratio keeps
// PerSecond 0 (a pure ratio budget).
func NewBudget(cfg BudgetConfig) *Budget {
	if cfg.Ratio == 0 && cfg.PerSecond == 0 {
		cfg.Ratio, cfg.PerSecond = DefaultBudget.Ratio, DefaultBudget.PerSecond
	}
	if cfg.Burst == 0 {
		cfg.Burst = cfg.PerSecond + 100*cfg.Ratio
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Budget{cfg: cfg, tokens: min(cfg.PerSecond, cfg.Burst), last: cfg.Now()}
}

// refill adds the tokens earned since the last call; b.mu is held.
func (b *Budget) refill() {
	now := b.cfg.Now()
	if el := now.Sub(b.last); el > 0 {
		b.tokens = min(b.tokens+el.Seconds()*b.cfg.PerSecond, b.cfg.Burst)
	}
	b.last = now
}

// Record notes one request (not a retry) to the target.
func (b *Budget) Record() {
	b.mu.Lock()
	b.refill()
	b.tokens = min(b.tokens+b.cfg.Ratio, b.cfg.Burst)
	b.mu.Unlock()
}

// Allow takes a token for one retry and reports whether there was one. A
// refusal is counted (Refused and the refused metric).
func (b *Budget) Allow() bool {
	b.mu.Lock()
	b.refill()
	ok := b.tokens >= 1-1e-9 // 5 deposits of 0.2 make a whole token
	if ok {
		b.tokens = max(b.tokens-1, 0)
	}
	b.mu.Unlock()
	if !ok {
		b.refused.Add(1)
		if b.onRefused != nil {
			b.onRefused()
		}
	}
	return ok
}

// Refused returns the number of retries refused so far.
func (b *Budget) Refused() uint64 { return b.refused.Load() }

// Budgets holds one Budget per target, created on first use, for at most
// MaxTargets targets: the least recently used is dropped beyond that (and
// starts full if it is used again), so callers naming ever new app ids
// cannot grow it. Safe for concurrent use.
type Budgets struct {
	cfg     BudgetConfig
	metrics *Metrics
	mu      sync.Mutex
	m       *simplelru.LRU[string, sizedBudget]
}

// sizedBudget is a target's budget and the size ForConfig gave it (nil:
// the Budgets' own).
type sizedBudget struct {
	b     *Budget
	sized *BudgetConfig
}

// NewBudgets returns per-target budgets sized by cfg, counting refusals in
// m (nil: not counted).
func NewBudgets(cfg BudgetConfig, m *Metrics) *Budgets {
	l, _ := simplelru.NewLRU[string, sizedBudget](MaxTargets, nil) // errors only for a size below 1
	return &Budgets{cfg: cfg, metrics: m, m: l}
}

// For returns target's budget. A nil *Budgets returns nil: no budget.
func (bs *Budgets) For(target string) *Budget { return bs.ForConfig(target, nil) }

// ForConfig returns target's budget sized by cfg (nil: the Budgets' own
// configuration). The budget and its tokens persist while the size stays
// the same; a changed size starts a new, full budget. cfg's Now is
// ignored. A nil *Budgets returns nil: no budget.
func (bs *Budgets) ForConfig(target string, cfg *BudgetConfig) *Budget {
	if bs == nil {
		return nil
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	e, ok := bs.m.Get(target)
	if ok && sameSize(e.sized, cfg) {
		return e.b
	}
	c := bs.cfg
	if cfg != nil {
		c.Ratio, c.PerSecond, c.Burst = cfg.Ratio, cfg.PerSecond, cfg.Burst
	}
	b := NewBudget(c)
	if bs.metrics != nil {
		m := bs.metrics
		b.onRefused = func() { m.budgetRefused(target) }
	}
	bs.m.Add(target, sizedBudget{b: b, sized: cfg})
	return b
}

// Len is the number of targets whose budget is kept.
func (bs *Budgets) Len() int {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.m.Len()
}

// sameSize reports whether two budget sizes (nil: the default) are equal.
func sameSize(a, b *BudgetConfig) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Ratio == b.Ratio && a.PerSecond == b.PerSecond && a.Burst == b.Burst
}
