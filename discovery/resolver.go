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

// refreshInterval is how often the resolver re-reads the app ids it serves.
const refreshInterval = 250 * time.Millisecond

// Source lists the live instances of an app id. *Registry is one; xDS EDS
// will be another.
type Source interface {
	Lookup(appID, namespace string) ([]Instance, error)
}

// Resolver resolves "<app-id>.<namespace>" names to endpoints, caching each
// name's endpoint set and refreshing it in the background (Run). Endpoint
// values persist across refreshes so their load statistics do too. It is
// safe for concurrent use.
type Resolver struct {
	src     Source
	log     *slog.Logger
	outlier OutlierDetection // default for every name
	metrics *ejectionMetrics // nil: not counted

	mu    sync.Mutex
	names map[string]*nameState // "<app-id>.<namespace>" → state
}

type nameState struct {
	appID, namespace string
	eps              atomic.Pointer[[]*Endpoint]  // immutable slice, swapped on change
	policy           atomic.Pointer[TargetPolicy] // nil: the resolver's defaults
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

// NewResolver returns a resolver over src.
func NewResolver(src Source, log *slog.Logger, opts ...ResolverOption) *Resolver {
	r := &Resolver{src: src, log: log.With("component", "discovery"), outlier: DefaultOutlierDetection, names: map[string]*nameState{}}
	for _, o := range opts {
		o(r)
	}
	return r
}

// SetPolicy sets (or with nil clears) the policy of calls to appID in
// namespace. It applies to calls that start after it returns.
func (r *Resolver) SetPolicy(appID, namespace string, p *TargetPolicy) {
	r.state(appID, namespace).policy.Store(p)
}

func (r *Resolver) state(appID, namespace string) *nameState {
	key := appID + "." + namespace
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.names[key]
	if st == nil {
		st = &nameState{appID: appID, namespace: namespace}
		r.names[key] = st
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
	r.log.Warn("instance ejected", "app_id", st.appID, "namespace", st.namespace, "instance", ep.Addr, "for", d)
	r.metrics.inc(st.appID)
}

// Endpoints returns the live endpoints of appID in namespace. The slice is
// shared and must not be modified. An unknown or empty name is read from the
// source synchronously, so a just-registered instance is found at once.
func (r *Resolver) Endpoints(ctx context.Context, appID, namespace string) ([]*Endpoint, error) {
	_, eps, err := r.resolve(appID, namespace)
	return eps, err
}

func (r *Resolver) resolve(appID, namespace string) (*nameState, []*Endpoint, error) {
	st := r.state(appID, namespace)
	if p := st.eps.Load(); p != nil && len(*p) > 0 {
		return st, *p, nil
	}
	if err := r.refresh(st); err != nil {
		return st, nil, err
	}
	if eps := *st.eps.Load(); len(eps) > 0 {
		return st, eps, nil
	}
	return st, nil, fmt.Errorf("%w: %s", ErrNotFound, appID)
}

// Known returns a copy of every name's endpoints, for the metadata endpoint.
func (r *Resolver) Known() map[string][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string][]string, len(r.names))
	for k, st := range r.names {
		if p := st.eps.Load(); p != nil && len(*p) > 0 {
			for _, e := range *p {
				out[k] = append(out[k], e.Addr)
			}
		}
	}
	return out
}

func (r *Resolver) refresh(st *nameState) error {
	ins, err := r.src.Lookup(st.appID, st.namespace)
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
			r.log.Debug("endpoints changed", "app_id", st.appID, "namespace", st.namespace, "count", len(next))
		}
	}
	return nil
}

// Run refreshes every known name until ctx is done.
func (r *Resolver) Run(ctx context.Context) {
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		sts := make([]*nameState, 0, len(r.names))
		for _, st := range r.names {
			sts = append(sts, st)
		}
		r.mu.Unlock()
		for _, st := range sts {
			if err := r.refresh(st); err != nil {
				r.log.Warn("refresh failed", "app_id", st.appID, "err", err)
			}
		}
	}
}
