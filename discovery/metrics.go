package discovery

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ejectionMetrics counts outlier ejections; the number of instances out at
// a moment is computed when scraped, since ejections end by time alone.
type ejectionMetrics struct {
	appID   string
	total   *prometheus.CounterVec
	ejected *prometheus.Desc
	res     *Resolver
}

// WithMetrics registers the resolver's metrics in reg, labelled with the
// app id of the sidecar it serves:
//
//	skein_discovery_ejections_total{app_id,dst_app_id}   counter
//	skein_discovery_ejected_endpoints{app_id,dst_app_id} gauge, at scrape time
func WithMetrics(reg prometheus.Registerer, appID string) ResolverOption {
	return func(r *Resolver) {
		m := &ejectionMetrics{
			appID: appID,
			total: prometheus.NewCounterVec(prometheus.CounterOpts{
				Name: "skein_discovery_ejections_total",
				Help: "Instances ejected by outlier detection, by target app id.",
			}, []string{"app_id", "dst_app_id"}),
			ejected: prometheus.NewDesc("skein_discovery_ejected_endpoints",
				"Instances of the target app id currently ejected by outlier detection.",
				[]string{"app_id", "dst_app_id"}, nil),
			res: r,
		}
		reg.MustRegister(m.total, m)
		r.metrics = m
	}
}

func (m *ejectionMetrics) inc(dst string) {
	if m != nil {
		m.total.WithLabelValues(m.appID, dst).Inc()
	}
}

// Describe implements prometheus.Collector.
func (m *ejectionMetrics) Describe(ch chan<- *prometheus.Desc) { ch <- m.ejected }

// Collect implements prometheus.Collector: one series per target that has
// had an ejection, so a recovered target reads 0 rather than vanishing.
func (m *ejectionMetrics) Collect(ch chan<- prometheus.Metric) {
	now := time.Now().UnixNano()
	counts := map[string]int{}
	m.res.mu.Lock()
	for _, st := range m.res.names {
		p := st.eps.Load()
		if p == nil {
			continue
		}
		for _, e := range *p {
			if e.ejectedUntil.Load() == 0 {
				continue
			}
			n := counts[st.target.AppID]
			if e.ejected(now) {
				n++
			}
			counts[st.target.AppID] = n
		}
	}
	m.res.mu.Unlock()
	for dst, n := range counts {
		ch <- prometheus.MustNewConstMetric(m.ejected, prometheus.GaugeValue, float64(n), m.appID, dst)
	}
}
