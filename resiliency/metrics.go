package resiliency

import (
	"strings"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Values of the policy label of the dapr_resiliency_* metrics.
const (
	policyTimeout = "timeout"
	policyRetry   = "retry"
	policyBreaker = "circuitbreaker"
)

// Breaker states as the metrics and Dapr name them.
const (
	StateClosed   = "closed"
	StateHalfOpen = "half-open"
	StateOpen     = "open"
	StateUnknown  = "unknown"
)

var allStates = [...]string{StateClosed, StateHalfOpen, StateOpen, StateUnknown}

// Metrics are Dapr's resiliency metrics (contract §6.2) for outbound
// calls, plus skein_resiliency_retry_budget_refused_total{app_id,target}.
// Labels follow Dapr: app_id is the local app, name and namespace the
// Resiliency resource, target "app_<target>", flow_direction "outbound".
// dapr_resiliency_count counts a retry policy once per call and timeout
// and breaker policies once per attempt (status: the breaker's state
// before the attempt); activations count each retry made, each timeout
// fired and each breaker state change (status: the new state). A nil
// *Metrics records nothing. Safe for concurrent use.
//
// The target label takes at most maxTargetLabels distinct app ids, as the
// invocation metrics' app id labels do (proxy/metrics_limit.go); later
// ones are recorded as "app__other", so calls naming ever new app ids (a
// default policy applies to every target) cannot grow the series.
type Metrics struct {
	appID       string
	targets     sync.Map   // target → its label, for the targets admitted so far: read on every call without a lock
	mu          sync.Mutex // held to admit a target
	admitted    int
	count       *prometheus.CounterVec
	activations *prometheus.CounterVec
	cbState     *prometheus.GaugeVec
	refused     *prometheus.CounterVec
}

// NewMetrics registers the metrics with reg for the local app appID.
func NewMetrics(reg prometheus.Registerer, appID string) (*Metrics, error) {
	labels := []string{"app_id", "name", "policy", "namespace", "flow_direction", "target", "status"}
	m := &Metrics{
		appID: appID,
		count: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_resiliency_count",
			Help: "Number of times a resiliency policy was instantiated, per attempt for timeouts and breakers and per call for retries.",
		}, labels),
		activations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_resiliency_activations_total",
			Help: "Number of times a resiliency policy acted: a timeout fired, a retry happened, a breaker changed state.",
		}, labels),
		cbState: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "dapr_resiliency_cb_state",
			Help: "Circuit breaker state of a target: 1 for the current status, 0 for the others.",
		}, labels),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_resiliency_retry_budget_refused_total",
			Help: "Retries not made because the target's retry budget was spent.",
		}, []string{"app_id", "target"}),
	}
	for _, c := range []prometheus.Collector{m.count, m.activations, m.cbState, m.refused} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// maxTargetLabels is how many distinct targets the metrics name; the
// invocation metrics' cap on app ids (proxy's maxLabelValues) is the same.
const maxTargetLabels = 1000

// targetOther is the target label of every target past maxTargetLabels.
const targetOther = "_other"

// targetLabel is Dapr's target label for an app (contract §6.2), or
// app__other once maxTargetLabels other targets have been named.
func (m *Metrics) targetLabel(target string) string {
	if l, ok := m.targets.Load(target); ok {
		return l.(string)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if l, ok := m.targets.Load(target); ok {
		return l.(string)
	}
	if m.admitted >= maxTargetLabels {
		return "app_" + targetOther
	}
	m.admitted++
	l := "app_" + target
	m.targets.Store(target, l)
	return l
}

func (m *Metrics) policyUsed(p *Policy, kind, status string) {
	if m == nil {
		return
	}
	m.count.WithLabelValues(m.appID, p.Resource, kind, p.Namespace, "outbound", m.targetLabel(p.Target), status).Inc()
}

func (m *Metrics) activated(p *Policy, kind, status string) {
	if m == nil {
		return
	}
	m.activations.WithLabelValues(m.appID, p.Resource, kind, p.Namespace, "outbound", m.targetLabel(p.Target), status).Inc()
}

func (m *Metrics) breakerState(p *Policy, state string) {
	if m == nil {
		return
	}
	for _, s := range allStates {
		v := 0.0
		if s == state {
			v = 1
		}
		m.cbState.WithLabelValues(m.appID, p.Resource, policyBreaker, p.Namespace, "outbound", m.targetLabel(p.Target), s).Set(v)
	}
}

func (m *Metrics) budgetRefused(target string) {
	if m == nil {
		return
	}
	m.refused.WithLabelValues(m.appID, strings.TrimPrefix(m.targetLabel(target), "app_")).Inc()
}
