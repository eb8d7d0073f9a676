package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Errors callers branch on.
var (
	// ErrNotFound means no live instance of the app id is registered.
	ErrNotFound = errors.New("couldn't find service")
	// ErrUnreachable means instances exist but none could be connected to.
	ErrUnreachable = errors.New("no instance reachable")
)

// DefaultRefreshInterval is how often a Resolver re-reads every name it
// serves unless WithRefreshInterval says otherwise. The embedded registry
// does not push, so this polling is how its changes (a new or dead
// instance) are noticed.
const DefaultRefreshInterval = 250 * time.Millisecond

// Source lists the live instances of an app id. *Registry is one; xDS EDS
// (xds.Endpoints) is another.
type Source interface {
	Lookup(appID, namespace string) ([]Instance, error)
}

// Notifier is implemented by a Source that pushes changes (xDS EDS): the
// Resolver subscribes while it runs and re-reads a name as soon as it is
// told, without waiting for its next poll.
//
// Subscribe registers changed until cancel is called. The source calls
// changed with the app id and namespace of every name whose instances may
// have changed, after Lookup returns the new ones; names the subscriber
// never asked about may be included. changed neither blocks nor calls the
// source, so the source may call it from any goroutine, even holding locks
// Lookup takes.
type Notifier interface {
	Subscribe(changed func(appID, namespace string)) (cancel func())
}

// Resolver resolves Targets to endpoints, caching each target's endpoint
// set and refreshing it in the background (Run): every name every refresh
// interval (DefaultRefreshInterval unless WithRefreshInterval), and a
// single name at once when a Notifier source says it changed. Endpoint
// values persist across refreshes so their load statistics and outlier
// state do too. It is safe for concurrent use.
type Resolver struct {
	src      Source
	log      *slog.Logger
	outlier  OutlierDetection // default for every name
	metrics  *ejectionMetrics // nil: not counted
	interval time.Duration    // <= 0: no polling
	wake     chan struct{}    // cap 1: pending has names; Run drains it

	mu      sync.Mutex
	names   map[Target]*nameState
	pending map[*nameState]bool // names a Notifier pushed, not yet re-read
}

type nameState struct {
	target Target
	eps    atomic.Pointer[[]*Endpoint]  // immutable slice, swapped on change
	policy atomic.Pointer[TargetPolicy] // nil: the resolver's defaults

	// refreshing serialises refreshes of the name (poll, push, first
	// call), so the last one stored is the one that read the source last:
	// a slow read of the old instances never overwrites a pushed change.
	refreshing sync.Mutex
}

// TargetPolicy overrides, for one app id, how calls to it choose an
// instance (from xDS: a Cluster's lb_policy and outlier_detection). Nil
// fields keep the defaults.
type TargetPolicy struct {
	Balancer Balancer
	Outlier  *OutlierDetection
}

// ResolverOption configures a Resolver.
type ResolverOption func(*Resolver)

// WithOutlierDetection sets the default outlier detection (default
// DefaultOutlierDetection; Consecutive 0 turns it off).
func WithOutlierDetection(od OutlierDetection) ResolverOption {
	return func(r *Resolver) { r.outlier = od }
}

// WithRefreshInterval sets how often Run re-reads every name it serves
// (default DefaultRefreshInterval). 0 or negative turns polling off: names
// then change only when a Notifier source pushes, or on the first call for
// a name without endpoints. Only a source that pushes every change (xDS
// EDS without the registry fallback) can do without polling.
func WithRefreshInterval(d time.Duration) ResolverOption {
	return func(r *Resolver) { r.interval = d }
}

// NewResolver returns a resolver over src.
func NewResolver(src Source, log *slog.Logger, opts ...ResolverOption) *Resolver {
	r := &Resolver{
		src:      src,
		log:      log.With("component", "discovery"),
		outlier:  DefaultOutlierDetection,
		interval: DefaultRefreshInterval,
		wake:     make(chan struct{}, 1),
		names:    map[Target]*nameState{},
		pending:  map[*nameState]bool{},
	}
	for _, o := range opts {
		o(r)
	}
	return r
}

// SetPolicy sets (or with nil clears) the policy of calls to t. It applies
// to calls that start after it returns.
func (r *Resolver) SetPolicy(t Target, p *TargetPolicy) {
	r.state(t).policy.Store(p)
}

func (r *Resolver) state(t Target) *nameState {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.names[t]
	if st == nil {
		st = &nameState{target: t}
		r.names[t] = st
	}
	return st
}

// outlierOf is the outlier detection of calls to st's name.
func (r *Resolver) outlierOf(st *nameState) *OutlierDetection {
	if p := st.policy.Load(); p != nil && p.Outlier != nil {
		return p.Outlier
	}
	return &r.outlier
}

// report records the outcome of a try on ep, one of st's endpoints, and
// ejects ep when outlier detection says so.
func (r *Resolver) report(st *nameState, ep *Endpoint, now int64, failed bool) {
	d := ep.outcome(now, failed, r.outlierOf(st))
	if d == 0 {
		return
	}
	r.log.Warn("instance ejected", "app_id", st.target.AppID, "namespace", st.target.Namespace, "instance", ep.Addr, "for", d)
	r.metrics.inc(st.target.AppID)
}

// Endpoints returns the live endpoints of t. The slice is shared and must
// not be modified. An unknown or empty target is read from the source
// synchronously, so a just-registered instance is found at once.
func (r *Resolver) Endpoints(ctx context.Context, t Target) ([]*Endpoint, error) {
	_, eps, err := r.resolve(t)
	return eps, err
}

func (r *Resolver) resolve(t Target) (*nameState, []*Endpoint, error) {
	st := r.state(t)
	if p := st.eps.Load(); p != nil && len(*p) > 0 {
		return st, *p, nil
	}
	if err := r.refresh(st); err != nil {
		if errors.Is(err, ErrNotFound) {
			err = fmt.Errorf("%w: %s", ErrNotFound, t.AppID)
		}
		r.forgetEmpty(st) // a name with no instance known is not kept
		return st, nil, err
	}
	if eps := *st.eps.Load(); len(eps) > 0 {
		return st, eps, nil
	}
	r.forgetEmpty(st)
	return st, nil, fmt.Errorf("%w: %s", ErrNotFound, t.AppID)
}

// forgetEmpty drops st from the cache when it has no endpoints and no
// policy: a name with no instance is read from the source at its next
// call anyway (resolve), so keeping it would only let calls naming ever
// new app ids (a typo in a loop, a scan) grow the cache, and every
// refresh, without bound. Names with endpoints are kept, for their load
// statistics and outlier state, and so are names xDS set a policy for.
func (r *Resolver) forgetEmpty(st *nameState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := st.eps.Load(); p != nil && len(*p) > 0 || st.policy.Load() != nil {
		return
	}
	if r.names[st.target] == st {
		delete(r.names, st.target)
	}
	delete(r.pending, st)
}

// Len is the number of names cached.
func (r *Resolver) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.names)
}

// Known returns a copy of every target's endpoints, keyed by the
// target's name ("<app-id>.<namespace>"), for the metadata endpoint.
func (r *Resolver) Known() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.names))
	for t, st := range r.names {
		if p := st.eps.Load(); p != nil && len(*p) > 0 {
			k := t.String()
			for _, e := range *p {
				out[k] = append(out[k], e.Addr)
			}
		}
	}
	return out
}

func (r *Resolver) refresh(st *nameState) error {
	st.refreshing.Lock()
	defer st.refreshing.Unlock()
	ins, err := r.src.Lookup(st.target.AppID, st.target.Namespace)
	if err != nil {
		return err
	}
	var old []*Endpoint
	if p := st.eps.Load(); p != nil {
		old = *p
	}
	next := make([]*Endpoint, 0, len(ins))
	changed := len(ins) != len(old)
	for _, in := range ins {
		i := slices.IndexFunc(old, func(e *Endpoint) bool { return e.Addr == in.Address && e.id == in.ID() })
		if i >= 0 {
			old[i].setWeight(in.Weight) // a new weight keeps the endpoint's statistics
			old[i].unhealthy.Store(in.Unhealthy)
			next = append(next, old[i])
			continue
		}
		changed = true
		next = append(next, newEndpoint(in))
	}
	if changed || st.eps.Load() == nil {
		slices.SortFunc(next, func(a, b *Endpoint) int {
			if a.Addr < b.Addr {
				return -1
			}
			return 1
		})
		st.eps.Store(&next)
		if len(old) > 0 || len(next) > 0 {
			r.log.Debug("endpoints changed", "app_id", st.target.AppID, "namespace", st.target.Namespace, "count", len(next))
		}
	}
	return nil
}

// Run refreshes names in the background until ctx is done: every name each
// refresh interval (unless polling is off), and a name a Notifier source
// pushed as soon as it is told. Call it once.
func (r *Resolver) Run(ctx context.Context) {
	if n, ok := r.src.(Notifier); ok {
		defer n.Subscribe(r.changed)()
		// A push that came before the subscription was missed: read once
		// what is cached so far.
		r.refreshAll(r.all())
	}
	var tick <-chan time.Time
	if r.interval > 0 {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			r.refreshAll(r.all())
		case <-r.wake:
			r.refreshAll(r.takePending())
		}
	}
}

// changed is the Notifier callback: it queues name for Run and wakes it.
// A burst of pushes is coalesced into one re-read per name. Names never
// asked about are not cached, so they are skipped.
func (r *Resolver) changed(appID, namespace string) {
	r.mu.Lock()
	st := r.names[Target{AppID: appID, Namespace: namespace}]
	if st != nil {
		r.pending[st] = true
	}
	r.mu.Unlock()
	if st == nil {
		return
	}
	select {
	case r.wake <- struct{}{}:
	default: // Run is already due to drain pending
	}
}

// all returns every cached name.
func (r *Resolver) all() []*nameState {
	r.mu.Lock()
	defer r.mu.Unlock()
	sts := make([]*nameState, 0, len(r.names))
	for _, st := range r.names {
		sts = append(sts, st)
	}
	return sts
}

// takePending returns the names pushed since the last call and forgets them.
func (r *Resolver) takePending() []*nameState {
	r.mu.Lock()
	defer r.mu.Unlock()
	sts := make([]*nameState, 0, len(r.pending))
	for st := range r.pending {
		sts = append(sts, st)
	}
	clear(r.pending)
	return sts
}

func (r *Resolver) refreshAll(sts []*nameState) {
	for _, st := range sts {
		if err := r.refresh(st); err != nil {
			if errors.Is(err, ErrNotFound) {
				r.forgetEmpty(st) // a name nobody registered: every call says so; the instances known stay
				continue
			}
			r.log.Warn("refresh failed", "app_id", st.target.AppID, "namespace", st.target.Namespace, "err", err)
			continue // a failed read says nothing about the instances: keep what is cached
		}
		r.forgetEmpty(st) // its last instance went away
	}
}
