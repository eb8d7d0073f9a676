package apphealth

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// latencyBuckets are Dapr's default latency boundaries in milliseconds
// (contract §6.1).
var latencyBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000}

// Metrics are the app health metrics of one sidecar (package doc). A nil
// *Metrics records nothing. Safe for concurrent use.
type Metrics struct {
	appID       string
	healthy     prometheus.Gauge
	transitions *prometheus.CounterVec
	httpCount   *prometheus.CounterVec
	httpLatency *prometheus.HistogramVec
	grpcCount   *prometheus.CounterVec
	grpcLatency *prometheus.HistogramVec
}

// NewMetrics registers the metrics with reg for the local app appID.
func NewMetrics(reg prometheus.Registerer, appID string) (*Metrics, error) {
	healthy := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "skein_app_healthy",
		Help: "1 while the app passes its health checks (--enable-app-health-check), else 0.",
	}, []string{"app_id"})
	m := &Metrics{
		appID:   appID,
		healthy: healthy.WithLabelValues(appID),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_app_health_transitions_total",
			Help: "Changes of the app's health, by the status entered (healthy, unhealthy).",
		}, []string{"app_id", "status"}),
		httpCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_http_healthprobes_completed_count",
			Help: "Count of completed health probes of an HTTP app, by status code (500 when no answer came).",
		}, []string{"app_id", "status"}),
		httpLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dapr_http_healthprobes_roundtrip_latency",
			Help:    "Time of health probes of an HTTP app until the answer was read, or a terminal error, in milliseconds.",
			Buckets: latencyBuckets,
		}, []string{"app_id", "status"}),
		grpcCount: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_grpc_io_healthprobes_completed_count",
			Help: "Count of completed health probes of a gRPC app, by status code.",
		}, []string{"app_id", "grpc_client_status"}),
		grpcLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "dapr_grpc_io_healthprobes_roundtrip_latency",
			Help:    "Time of health probes of a gRPC app until the answer, or a terminal error, in milliseconds.",
			Buckets: latencyBuckets,
		}, []string{"app_id", "grpc_client_status"}),
	}
	for _, c := range []prometheus.Collector{healthy, m.transitions, m.httpCount, m.httpLatency, m.grpcCount, m.grpcLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) setHealthy(ok bool) {
	if m == nil {
		return
	}
	v := 0.0
	if ok {
		v = 1
	}
	m.healthy.Set(v)
}

func (m *Metrics) transition(healthy bool) {
	if m == nil {
		return
	}
	status := "unhealthy"
	if healthy {
		status = "healthy"
	}
	m.transitions.WithLabelValues(m.appID, status).Inc()
}

// httpProbe records an HTTP probe; code 0 means no answer, which Dapr
// records as 500.
func (m *Metrics) httpProbe(code int, d time.Duration) {
	if m == nil {
		return
	}
	if code == 0 {
		code = 500
	}
	s := strconv.Itoa(code)
	m.httpCount.WithLabelValues(m.appID, s).Inc()
	m.httpLatency.WithLabelValues(m.appID, s).Observe(float64(d) / float64(time.Millisecond))
}

// grpcProbe records a gRPC probe with its status code name (OK,
// Unavailable, ...).
func (m *Metrics) grpcProbe(code string, d time.Duration) {
	if m == nil {
		return
	}
	m.grpcCount.WithLabelValues(m.appID, code).Inc()
	m.grpcLatency.WithLabelValues(m.appID, code).Observe(float64(d) / float64(time.Millisecond))
}
