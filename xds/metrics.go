package xds

import "github.com/prometheus/client_golang/prometheus"

// metrics are the skein_xds_* metrics. The type label is lds, rds, cds or
// eds.
type metrics struct {
	connected prometheus.Gauge
	updates   *prometheus.CounterVec
	version   *prometheus.GaugeVec
	resources *prometheus.GaugeVec
	restarts  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_xds_connected",
			Help: "1 while the ADS stream to the control plane is up (a response arrived), else 0.",
		}),
		updates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_xds_updates_total",
			Help: "xDS responses handled, by type (lds, rds, cds, eds) and result (ack, nack).",
		}, []string{"type", "result"}),
		version: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skein_xds_resource_version_info",
			Help: "The accepted version_info of each xDS resource type (value 1).",
		}, []string{"type", "version"}),
		resources: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "skein_xds_resources",
			Help: "Accepted xDS resources, by type.",
		}, []string{"type"}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_xds_stream_restarts_total",
			Help: "ADS streams that ended and were reopened after a back-off.",
		}),
	}
	for _, c := range []prometheus.Collector{m.connected, m.updates, m.version, m.resources, m.restarts} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
