package proxy

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
)

// accessMetrics are Dapr's dapr_runtime_acl_* counters (labels: the
// caller's app id, trust domain and namespace) and Skein's decisions by
// caller, decision and deciding rule (bounded by the policy's size).
type accessMetrics struct {
	allowed, blocked map[string]*prometheus.CounterVec // level ("app", "global") → counter
	decisions        *prometheus.CounterVec
}

func newAccessMetrics(reg prometheus.Registerer) *accessMetrics {
	m := &accessMetrics{allowed: map[string]*prometheus.CounterVec{}, blocked: map[string]*prometheus.CounterVec{}}
	labels := []string{"app_id", "trustDomain", "namespace"}
	for _, level := range []string{"app", "global"} {
		m.allowed[level] = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_acl_" + level + "_policy_action_allowed_total",
			Help: "Calls allowed by the " + level + "-level access policy.",
		}, labels)
		m.blocked[level] = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_acl_" + level + "_policy_action_blocked_total",
			Help: "Calls blocked by the " + level + "-level access policy.",
		}, labels)
		reg.MustRegister(m.allowed[level], m.blocked[level])
	}
	m.decisions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_access_decisions_total",
		Help: "Access decisions on calls from other sidecars, by caller app, decision (allow, deny, audit_deny) and deciding rule.",
	}, []string{"caller_app", "decision", "rule"})
	reg.MustRegister(m.decisions)
	return m
}

// authorize decides whether the verified caller of r may invoke method
// (already normalised, so every spelling of a path is decided as the path
// the app receives). It returns *access.DeniedError when enforcement denies;
// an audit-mode denial is logged and counted but allowed.
func (s *Sidecar) authorize(r *http.Request, method string, snap *Snapshot) error {
	req := access.Request{Operation: method, Verb: r.Method, GRPC: daprgrpc.IsGRPC(r.Header)}
	callerApp := "unknown"
	var caller access.Caller
	if p, ok := identity.PeerFrom(r.Context()); ok {
		caller = access.Caller{TrustDomain: p.ID.TrustDomain().String(), Namespace: p.Namespace, AppID: p.AppID}
		req.Caller, req.CallerID, callerApp = &caller, p.ID.String(), p.AppID
	}
	d := xdsAccess(snap, req, snap.Access.Decide(req)) // files' accessControl, then xDS RBAC
	decision := "allow"
	switch {
	case d.Denied && d.Allowed:
		decision = "audit_deny"
		s.log.Warn("access audit: enforcement would deny this call", "caller", req.CallerID, "operation", method, "verb", r.Method, "rule", d.Rule)
	case d.Denied:
		decision = "deny"
	}
	s.accessMetrics.decisions.WithLabelValues(callerApp, decision, d.Rule).Inc()
	if level := d.Level; level != "" && req.Caller != nil {
		c := s.accessMetrics.allowed[level]
		if d.Denied && !d.Allowed {
			c = s.accessMetrics.blocked[level]
		}
		if c != nil {
			c.WithLabelValues(caller.AppID, caller.TrustDomain, caller.Namespace).Inc()
		}
	}
	if d.Allowed {
		return nil
	}
	verb := r.Method
	if req.GRPC {
		verb = "NONE" // as Dapr reports a gRPC call's denial
	}
	return &access.DeniedError{CallerID: req.CallerID, Operation: method, Verb: verb, Decision: d}
}

// deniedDetail returns the ErrorInfo metadata of an access denial.
func deniedDetail(err error) (map[string]string, bool) {
	var denied *access.DeniedError
	if !errors.As(err, &denied) {
		return nil, false
	}
	md := map[string]string{"rule": denied.Decision.Rule, "level": denied.Decision.Level}
	if denied.Decision.Policy != "" {
		md["policy"] = denied.Decision.Policy
	}
	return md, true
}
