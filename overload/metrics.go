package overload

import "github.com/prometheus/client_golang/prometheus"

// Sides of a limit, the side label's values.
const (
	SideOutbound = "outbound" // the caller's limit per target
	SideApp      = "app"      // the callee's limit on its app channel
)

// Metrics are the limiters' Prometheus metrics:
//
//	skein_overload_refused_total{app_id,side,dst_app_id}  counter: calls refused at once
//	skein_overload_limit{app_id,side,dst_app_id}          gauge: the current limit
//
// app_id is this sidecar's app, as in Skein's other metrics; dst_app_id
// the target (side outbound) or this app again (side app). Their number is
// bounded by the Registry's capacity: a target's series go when its
// limiter is evicted. A nil *Metrics records nothing. Safe for concurrent
// use.
type Metrics struct {
	appID   string
	refused *prometheus.CounterVec
	limit   *prometheus.GaugeVec
}

// NewMetrics registers the metrics with reg, for the sidecar of appID.
func NewMetrics(reg prometheus.Registerer, appID string) (*Metrics, error) {
	m := &Metrics{
		appID: appID,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_overload_refused_total",
			Help: "Calls refused at once (503 OVERLOADED) because the adaptive concurrency limit was reached, by side (outbound: per target; app: the app channel).",
		}, []string{"app_id", "side", "dst_app_id"}),
		limit: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skein_overload_limit",
			Help: "Current adaptive concurrency limit, by side (outbound: per target; app: the app channel).",
		}, []string{"app_id", "side", "dst_app_id"}),
	}
	for _, c := range []prometheus.Collector{m.refused, m.limit} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// bind makes l report to the series of (side, dst).
func (m *Metrics) bind(l *Limiter, side, dst string) {
	l.side = side
	if m == nil {
		return
	}
	refused := m.refused.WithLabelValues(m.appID, side, dst)
	limit := m.limit.WithLabelValues(m.appID, side, dst)
	limit.Set(float64(l.Limit()))
	l.onRefused = refused.Inc
	l.onLimit = func(n int) { limit.Set(float64(n)) }
}

// forget removes the series of (side, dst).
func (m *Metrics) forget(side, dst string) {
	if m == nil {
		return
	}
	m.refused.DeleteLabelValues(m.appID, side, dst)
	m.limit.DeleteLabelValues(m.appID, side, dst)
}

// NewAppLimiter returns the limiter of the app channel of appID, reporting
// to m (nil: not reported).
func NewAppLimiter(cfg Config, m *Metrics, appID string) *Limiter {
	l := NewLimiter(cfg)
	m.bind(l, SideApp, appID)
	return l
}
