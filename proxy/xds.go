package proxy

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/httpendpoint"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/resiliency"
)

// XDSConfig is the configuration an xDS control plane pushed, in Skein's
// terms: package xds translates the Envoy resources into it (Envoy types
// never reach proxy). It is one more part of Config, compiled into the same
// Snapshot as the files.
//
// Precedence: per target app, xDS wins. A call to an app with an XDSApp
// whose route matches the method takes that route's timeout and retry
// policy instead of the Resiliency resources' (the circuit breaker, which
// xDS does not carry, stays the files'); an app without a matching route
// keeps the files' policy. Access control is the exception: Access (the
// RBAC filter of this app's own Listener) applies in addition to the
// Configuration's accessControl, and a call must pass both.
//
// An XDSConfig is plain data owned by the caller until it is applied; the
// sidecar keeps it, so it must not change afterwards.
type XDSConfig struct {
	// Version summarises the versions of the resource types, for logs.
	Version string
	// Apps are the xDS Clusters, by the app they name.
	Apps map[Target]XDSApp
	// Access is the RBAC filter of this app's Listener; nil means none.
	Access *access.RBAC
	// HTTPEndpoints are the HTTPEndpoint resources of this sidecar's
	// namespace that apply to its app, by name as apps invoke them
	// (external invocation). Environment references are resolved in the
	// sidecar's environment at compile. Per name they replace an
	// HTTPEndpoint file's.
	HTTPEndpoints map[string]*httpendpoint.Spec
}

// Load-balancing policies of an XDSApp.
const (
	// LBP2C is power of two choices over peak-EWMA latency (LEAST_REQUEST).
	LBP2C = "p2c"
	// LBRoundRobin is round robin (ROUND_ROBIN).
	LBRoundRobin = "round-robin"
)

// XDSApp is what xDS says about calls to one app: a Cluster, its
// RouteConfiguration's routes. The app's instances do not live here but in
// the discovery.Source the xds package provides (EDS).
type XDSApp struct {
	// Cluster is the xDS name, "<app-id>" or "<app-id>.<namespace>".
	Cluster string
	// Routes are tried in order against "/<method>"; the first match wins.
	Routes []XDSRoute
	// MaxRequests caps the calls in flight from this sidecar to the app
	// (circuit_breakers max_requests); excess calls fail at once with 503
	// CIRCUIT_OPEN. 0 means no cap.
	MaxRequests uint32
	// RetryBudget sizes the app's retry budget; nil keeps the default.
	RetryBudget *resiliency.BudgetConfig
	// LoadBalancer is LBP2C, LBRoundRobin, or "" for the sidecar's
	// --load-balancer.
	LoadBalancer string
	// Outlier is the app's outlier detection; nil keeps the sidecar's
	// --outlier-* settings.
	Outlier *discovery.OutlierDetection
}

// XDSRoute is one route of a RouteConfiguration. Exactly one of Prefix and
// Path is set, each starting with "/".
type XDSRoute struct {
	// Name is the route's name, or "route[<i>]"; it names the policy in
	// the dapr_resiliency_* metrics.
	Name string
	// Prefix matches "/<method>" by prefix, Path exactly.
	Prefix, Path string
	// IgnoreCase matches without regard to case (case_sensitive false).
	IgnoreCase bool
	// Timeout bounds the whole call, retries included; 0 means none.
	Timeout time.Duration
	// PerTryTimeout bounds each attempt; 0 means none.
	PerTryTimeout time.Duration
	// Retry is the retry policy; nil means no retries.
	Retry *resiliency.RetryPolicy
}

// XDSStatus is the state of the xDS client, shown on /v1.0/metadata.
type XDSStatus struct {
	Server    string `json:"server"`
	Mode      string `json:"mode"` // sotw or delta
	Node      string `json:"node"`
	Connected bool   `json:"connected"`
	// Types is keyed by type URL.
	Types map[string]XDSTypeStatus `json:"types"`
}

// XDSTypeStatus is the state of one resource type.
type XDSTypeStatus struct {
	// Version is the last accepted version_info.
	Version string `json:"version"`
	// Status is ACKED or NACKED after the last response, "" before any.
	Status string `json:"status"`
	// Error is why the last response was rejected (NACKED only).
	Error string `json:"error,omitempty"`
	// RejectedVersion is the version_info of the rejected response.
	RejectedVersion string `json:"rejectedVersion,omitempty"`
	// Resources counts the accepted resources of the type.
	Resources int `json:"resources"`
	// Updated is when the last response was handled.
	Updated time.Time `json:"updated,omitzero"`
}

// ControlPlane is a configuration source the sidecar runs for as long as it
// runs (package xds's client).
type ControlPlane interface {
	Run(ctx context.Context)
}

// xdsState is the sidecar's xDS state that outlives snapshots.
type xdsState struct {
	mu        sync.Mutex // serialises applies, from files and from xDS
	files     Config     // the last applied file config, XDS nil
	cfg       *XDSConfig // the last applied xDS config
	inflight  map[Target]*atomic.Int64
	balancers map[Target]discovery.Balancer // per app: round robin keeps its turn
	policies  map[Target]bool               // apps whose resolver policy xDS set

	cp     ControlPlane
	status atomic.Pointer[XDSStatus]
}

// SetControlPlane makes the sidecar run cp from Run until it stops. Call it
// before Run.
func (s *Sidecar) SetControlPlane(cp ControlPlane) { s.xds.cp = cp }

// SetXDSStatus publishes the xDS client's status on /v1.0/metadata. Safe
// for concurrent use.
func (s *Sidecar) SetXDSStatus(st XDSStatus) { s.xds.status.Store(&st) }

// ApplyXDS compiles the file config last applied with x and swaps it in:
// a later file reload keeps x. On error the current snapshot keeps serving
// and the error (naming the part) is what the control plane gets as NACK.
func (s *Sidecar) ApplyXDS(x *XDSConfig) error {
	if x == nil {
		x = &XDSConfig{}
	}
	return s.Apply(Config{XDS: x, xdsOnly: true})
}

// merge returns the config to compile: a push from xDS takes the last
// file config, a file reload the last xDS config. s.xds.mu is held.
func (st *xdsState) merge(cfg Config) Config {
	if cfg.xdsOnly {
		files := st.files
		files.XDS = cfg.XDS
		if files.Version == "" {
			files.Version = "none"
		}
		return files
	}
	if cfg.XDS == nil {
		cfg.XDS = st.cfg
	}
	return cfg
}

// bindXDS records the applied config and binds snap's xDS part to the
// state that outlives snapshots: concurrency counters, and the balancer and
// outlier detection of each app in the resolver. s.xds.mu is held; snap is
// not stored yet.
func (s *Sidecar) bindXDS(snap *Snapshot, cfg Config) {
	st := &s.xds
	st.cfg = cfg.XDS
	cfg.XDS = nil
	st.files = cfg
	if st.inflight == nil {
		st.inflight, st.balancers, st.policies = map[Target]*atomic.Int64{}, map[Target]discovery.Balancer{}, map[Target]bool{}
	}
	var apps map[Target]*xdsApp
	if snap.xds != nil {
		apps = snap.xds.apps
	}
	for t, a := range apps {
		c := st.inflight[t]
		if c == nil {
			c = new(atomic.Int64)
			st.inflight[t] = c
		}
		a.inflight = c
		tp := &discovery.TargetPolicy{Outlier: a.outlier}
		switch a.lb {
		case LBRoundRobin:
			if _, ok := st.balancers[t].(*discovery.RoundRobin); !ok {
				st.balancers[t] = &discovery.RoundRobin{}
			}
			tp.Balancer = st.balancers[t]
		case LBP2C:
			st.balancers[t] = discovery.P2C{}
			tp.Balancer = st.balancers[t]
		}
		s.resolver.SetPolicy(t, tp)
		st.policies[t] = true
	}
	for t := range st.policies {
		if _, ok := apps[t]; !ok {
			s.resolver.SetPolicy(t, nil)
			delete(st.policies, t)
			delete(st.balancers, t)
		}
	}
}

// xdsSnapshot is a compiled XDSConfig. Immutable once its snapshot is
// stored.
type xdsSnapshot struct {
	version string
	apps    map[Target]*xdsApp
	rbac    *access.RBACMatcher
}

type xdsApp struct {
	routes      []xdsRoute
	maxRequests int64
	inflight    *atomic.Int64 // shared by every snapshot; set by bindXDS
	budget      *resiliency.BudgetConfig
	lb          string
	outlier     *discovery.OutlierDetection
}

type xdsRoute struct {
	name    string
	pattern string // without the leading "/"
	exact   bool
	fold    bool
	timeout time.Duration
	perTry  time.Duration
	retry   *resiliency.RetryPolicy
}

// compileXDS validates x and compiles it; nil compiles to nil. Errors name
// the cluster and field.
func compileXDS(x *XDSConfig) (*xdsSnapshot, error) {
	if x == nil {
		return nil, nil
	}
	out := &xdsSnapshot{version: x.Version, apps: make(map[Target]*xdsApp, len(x.Apps))}
	var errs []error
	targets := make([]Target, 0, len(x.Apps))
	for t := range x.Apps {
		targets = append(targets, t)
	}
	sort.Slice(targets, func(i, j int) bool { return targets[i].String() < targets[j].String() })
	for _, t := range targets {
		a := x.Apps[t]
		name := a.Cluster
		if name == "" {
			name = t.String()
		}
		fail := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf("cluster %s: %s", name, fmt.Sprintf(format, args...)))
		}
		if err := ValidateAppID(t.AppID); err != nil || t.Namespace == "" {
			fail("not an app id and namespace")
			continue
		}
		ca := &xdsApp{maxRequests: int64(a.MaxRequests), budget: a.RetryBudget, lb: a.LoadBalancer, outlier: a.Outlier}
		switch a.LoadBalancer {
		case "", LBP2C, LBRoundRobin:
		default:
			fail("load balancer %q: want %s or %s", a.LoadBalancer, LBP2C, LBRoundRobin)
		}
		if a.Outlier != nil {
			if err := a.Outlier.Validate(); err != nil {
				fail("%v", err)
			}
		}
		if b := a.RetryBudget; b != nil && (b.Ratio < 0 || b.PerSecond < 0 || b.Ratio == 0 && b.PerSecond == 0) {
			fail("retry budget: ratio %v and per-second %v: want non-negative, not both 0", b.Ratio, b.PerSecond)
		}
		for i, r := range a.Routes {
			cr, err := compileXDSRoute(r)
			if err != nil {
				fail("routes[%d]: %v", i, err)
				continue
			}
			if cr.name == "" {
				cr.name = fmt.Sprintf("route[%d]", i)
			}
			ca.routes = append(ca.routes, cr)
		}
		out.apps[t] = ca
	}
	m, err := access.CompileRBAC(x.Access)
	if err != nil {
		errs = append(errs, fmt.Errorf("rbac: %w", err))
	}
	out.rbac = m
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("xds %s: %w", x.Version, err)
	}
	return out, nil
}

func compileXDSRoute(r XDSRoute) (xdsRoute, error) {
	cr := xdsRoute{name: r.Name, fold: r.IgnoreCase, timeout: r.Timeout, perTry: r.PerTryTimeout, retry: r.Retry}
	switch {
	case (r.Prefix == "") == (r.Path == ""):
		return cr, errors.New("exactly one of prefix and path required")
	case r.Prefix != "":
		if !strings.HasPrefix(r.Prefix, "/") {
			return cr, fmt.Errorf("prefix %q: must start with /", r.Prefix)
		}
		cr.pattern = r.Prefix[1:]
	default:
		if !strings.HasPrefix(r.Path, "/") {
			return cr, fmt.Errorf("path %q: must start with /", r.Path)
		}
		cr.pattern, cr.exact = r.Path[1:], true
	}
	if r.Timeout < 0 || r.PerTryTimeout < 0 {
		return cr, errors.New("negative timeout")
	}
	if rp := r.Retry; rp != nil && (rp.MaxRetries < -1 || rp.MaxInterval <= 0 || rp.Initial < 0) {
		return cr, errors.New("retry policy: max retries below -1 or back-off not positive")
	}
	return cr, nil
}

// match returns the first route matching method (normalised, no leading
// "/"), or nil. It does not allocate.
func (a *xdsApp) match(method string) *xdsRoute {
	for i := range a.routes {
		r := &a.routes[i]
		var ok bool
		switch {
		case r.exact && r.fold:
			ok = strings.EqualFold(method, r.pattern)
		case r.exact:
			ok = method == r.pattern
		case len(method) < len(r.pattern):
		case r.fold:
			ok = strings.EqualFold(method[:len(r.pattern)], r.pattern)
		default:
			ok = method[:len(r.pattern)] == r.pattern
		}
		if ok {
			return r
		}
	}
	return nil
}
