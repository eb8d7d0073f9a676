package identity

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Metrics are the identity concern's Prometheus metrics: Dapr's
// dapr_runtime_mtls_* counters (contract §6.2) and Skein's handshake
// failures and certificate expiry. Safe for concurrent use.
type Metrics struct {
	initTotal, initFail, rotated, rotateFail *prometheus.CounterVec
	handshakeFail                            *prometheus.CounterVec
	expiry                                   prometheus.Gauge
	appID                                    string
}

// NewMetrics registers the metrics for appID on reg.
func NewMetrics(reg prometheus.Registerer, appID string) *Metrics {
	m := &Metrics{
		appID: appID,
		initTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_mtls_init_total", Help: "Successful mTLS initialisations.",
		}, []string{"app_id"}),
		initFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_mtls_init_fail_total", Help: "Failed mTLS initialisations.",
		}, []string{"app_id", "reason"}),
		rotated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_mtls_workload_cert_rotated_total", Help: "Workload certificate renewals.",
		}, []string{"app_id"}),
		rotateFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dapr_runtime_mtls_workload_cert_rotated_fail_total", Help: "Failed workload certificate renewals.",
		}, []string{"app_id", "reason"}),
		handshakeFail: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_identity_handshake_failures_total",
			Help: "TLS handshakes refused on the peer hop, by side (server: peer-facing port, client: calls out) and reason.",
		}, []string{"app_id", "side", "reason"}),
		expiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_identity_svid_expiry_timestamp_seconds", Help: "When the current SVID expires (Unix time).",
			ConstLabels: prometheus.Labels{"app_id": appID},
		}),
	}
	reg.MustRegister(m.initTotal, m.initFail, m.rotated, m.rotateFail, m.handshakeFail, m.expiry)
	return m
}

// Initialised records the first SVID.
func (m *Metrics) Initialised(sv *x509svid.SVID) {
	m.initTotal.WithLabelValues(m.appID).Inc()
	m.expiry.Set(float64(sv.Certificates[0].NotAfter.Unix()))
}

// InitFailed records a failure to obtain the first SVID.
func (m *Metrics) InitFailed(reason string) { m.initFail.WithLabelValues(m.appID, reason).Inc() }

// Rotated records a renewed SVID.
func (m *Metrics) Rotated(sv *x509svid.SVID) {
	m.rotated.WithLabelValues(m.appID).Inc()
	m.expiry.Set(float64(sv.Certificates[0].NotAfter.Unix()))
}

// RotateFailed records a failed renewal.
func (m *Metrics) RotateFailed(reason string) { m.rotateFail.WithLabelValues(m.appID, reason).Inc() }

// HandshakeFailed records a refused handshake.
func (m *Metrics) HandshakeFailed(side, reason string) {
	m.handshakeFail.WithLabelValues(m.appID, side, reason).Inc()
}
