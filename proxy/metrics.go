package proxy

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Labels of Dapr's metrics (contract §6.2). Label values are given in this
// order everywhere below.
var (
	labelsHTTP       = []string{"app_id", "method", "path", "status"}
	labelsClientSent = []string{"app_id", "method", "path"}
	labelsApp        = []string{"app_id"}
	labelsReqSent    = []string{"app_id", "dst_app_id", "type"}
	labelsResRecv    = []string{"app_id", "src_app_id", "status", "type"}
	labelsResRecvLat = []string{"app_id", "src_app_id", "status"}
	labelsReqRecv    = []string{"app_id", "src_app_id"}
	labelsResSent    = []string{"app_id", "dst_app_id", "status"}
	labelsEdge       = []string{"src_app_id", "dst_app_id", "code_class"}
	labelsEdgeLat    = []string{"src_app_id", "dst_app_id"}
)

// Metric names that rules and tests refer to.
const (
	mServerRequestCount  = "dapr_http_server_request_count"
	mServerResponseCount = "dapr_http_server_response_count"
	mServerLatency       = "dapr_http_server_latency"
	mServerRequestBytes  = "dapr_http_server_request_bytes"
	mServerResponseBytes = "dapr_http_server_response_bytes"
	mClientSentBytes     = "dapr_http_client_sent_bytes"
	mClientReceivedBytes = "dapr_http_client_received_bytes"
	mClientLatency       = "dapr_http_client_roundtrip_latency"
	mClientCompleted     = "dapr_http_client_completed_count"
	mReqSent             = "dapr_runtime_service_invocation_req_sent_total"
	mResRecv             = "dapr_runtime_service_invocation_res_recv_total"
	mResRecvLatency      = "dapr_runtime_service_invocation_res_recv_latency_ms"
	mReqRecv             = "dapr_runtime_service_invocation_req_recv_total"
	mResSent             = "dapr_runtime_service_invocation_res_sent_total"
	mComponentLoaded     = "dapr_runtime_component_loaded"
	mEdgeRequests        = "skein_invocation_requests_total"
	mEdgeDuration        = "skein_invocation_duration_seconds"
)

// edgeBuckets are the boundaries of skein_invocation_duration_seconds.
var edgeBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// instruments are the metric vectors of the data path. The latency
// histograms depend on spec.metrics.latencyDistributionBuckets, so a
// Configuration that changes them gets new ones (and those series restart);
// everything else is shared by every instruments value of a sidecar.
type instruments struct {
	buckets []float64

	srvCount, srvRespCount     *prometheus.CounterVec
	srvLatency                 *prometheus.HistogramVec
	srvReqBytes, srvRespBytes  *prometheus.HistogramVec
	cliCount                   *prometheus.CounterVec
	cliLatency                 *prometheus.HistogramVec
	cliSentBytes, cliRecvBytes *prometheus.HistogramVec

	reqSent, resRecv, reqRecv, resSent *prometheus.CounterVec
	resRecvLatency                     *prometheus.HistogramVec

	edgeRequests    *prometheus.CounterVec
	edgeDuration    *prometheus.HistogramVec
	componentLoaded *prometheus.CounterVec

	// limits caps the values of request-derived labels; shared by every
	// copy, as the vectors are (metrics_limit.go).
	limits *labelLimits
}

func newInstruments(buckets []float64) *instruments {
	counter := func(name, help string, labels []string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
	}
	hist := func(name, help string, b []float64, labels []string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: b}, labels)
	}
	in := &instruments{
		srvCount:        counter(mServerRequestCount, "The number of HTTP requests the app made to the sidecar's API.", labelsHTTP),
		srvRespCount:    counter(mServerResponseCount, "The number of HTTP responses the sidecar's API sent to the app.", labelsHTTP),
		srvReqBytes:     hist(mServerRequestBytes, "Size distribution of HTTP request bodies (Content-Length) on the sidecar's API.", sizeBuckets, labelsApp),
		srvRespBytes:    hist(mServerResponseBytes, "Size distribution of HTTP response bodies on the sidecar's API.", sizeBuckets, labelsApp),
		cliCount:        counter(mClientCompleted, "Count of completed requests from the sidecar to its app.", labelsHTTP),
		cliSentBytes:    hist(mClientSentBytes, "Total bytes sent in request bodies to the app (not including headers).", sizeBuckets, labelsClientSent),
		cliRecvBytes:    hist(mClientReceivedBytes, "Total bytes received in response bodies from the app (not including headers).", sizeBuckets, labelsApp),
		reqSent:         counter(mReqSent, "Requests sent to other sidecars, one per attempt.", labelsReqSent),
		resRecv:         counter(mResRecv, "Responses received from other sidecars.", labelsResRecv),
		reqRecv:         counter(mReqRecv, "Requests received from other sidecars after access control allowed them.", labelsReqRecv),
		resSent:         counter(mResSent, "Responses sent to other sidecars.", labelsResSent),
		edgeRequests:    counter(mEdgeRequests, "Calls from this app to another app (after retries), by caller, callee and status class (2xx, 3xx, 4xx, 5xx).", labelsEdge),
		edgeDuration:    hist(mEdgeDuration, "Time from a call to another app until its response headers (after retries), in seconds.", edgeBuckets, labelsEdgeLat),
		componentLoaded: counter(mComponentLoaded, "The number of successfully loaded components (Skein loads none; kept for Dapr's dashboards).", labelsApp),
		limits:          newLabelLimits(maxLabelValues),
	}
	in.setLatency(buckets)
	return in
}

// setLatency creates the latency histograms with buckets (milliseconds).
func (in *instruments) setLatency(buckets []float64) {
	in.buckets = buckets
	in.srvLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mServerLatency,
		Help: "Latency distribution of the app's HTTP requests to the sidecar's API, in milliseconds.", Buckets: buckets}, labelsHTTP)
	in.cliLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mClientLatency,
		Help: "Latency of the sidecar's requests to its app until response headers, in milliseconds.", Buckets: buckets}, labelsHTTP)
	in.resRecvLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: mResRecvLatency,
		Help: "Latency of requests to other sidecars until response headers, per attempt, in milliseconds.", Buckets: buckets}, labelsResRecvLat)
}

// withLatency returns a copy sharing every vector but the latency ones.
func (in *instruments) withLatency(buckets []float64) *instruments {
	c := *in
	c.setLatency(buckets)
	return &c
}

// collectors lists what is exposed; response_count only with high
// cardinality, as Dapr registers that view only then.
func (in *instruments) collectors(spec *MetricsSpec) []prometheus.Collector {
	cs := []prometheus.Collector{in.srvCount, in.srvLatency, in.srvReqBytes, in.srvRespBytes,
		in.cliCount, in.cliLatency, in.cliSentBytes, in.cliRecvBytes,
		in.reqSent, in.resRecv, in.resRecvLatency, in.reqRecv, in.resSent,
		in.edgeRequests, in.edgeDuration, in.componentLoaded}
	if spec.IncreasedCardinality {
		cs = append(cs, in.srvRespCount)
	}
	return cs
}

// sidecarMetrics is the metrics state that outlives snapshots: the current
// instruments (swapped when a Configuration changes the latency buckets)
// and the spec they are exposed under. It is registered once as an
// unchecked collector, so the set of families it exposes may change.
type sidecarMetrics struct {
	appID string
	mu    sync.Mutex // serialises bind
	cur   atomic.Pointer[meters]
}

func newSidecarMetrics(reg prometheus.Registerer, appID string) *sidecarMetrics {
	m := &sidecarMetrics{appID: appID}
	in := newInstruments(defaultLatencyBuckets)
	in.componentLoaded.WithLabelValues(appID) // Dapr's dashboards list apps from this series (contract §6.6)
	m.cur.Store(newMeters(defaultMetricsSpec(), in, appID))
	reg.MustRegister(m)
	return m
}

// bind returns the meters a snapshot with spec records with, reusing the
// current instruments when the latency buckets are unchanged, and makes
// them the ones exposed.
func (m *sidecarMetrics) bind(spec *MetricsSpec) *meters {
	m.mu.Lock()
	defer m.mu.Unlock()
	in := m.cur.Load().in
	if !slices.Equal(in.buckets, spec.LatencyBuckets) {
		in = in.withLatency(spec.LatencyBuckets)
	}
	mt := newMeters(spec, in, m.appID)
	m.cur.Store(mt)
	return mt
}

// Describe sends nothing: the collector is unchecked because the families
// it exposes follow the current Configuration.
func (m *sidecarMetrics) Describe(chan<- *prometheus.Desc) {}

// Collect exposes the current instruments; nothing when metrics are
// disabled.
func (m *sidecarMetrics) Collect(ch chan<- prometheus.Metric) {
	mt := m.cur.Load()
	if !mt.spec.Enabled {
		return
	}
	for _, c := range mt.in.collectors(mt.spec) {
		c.Collect(ch)
	}
}

// enabled reports whether the current Configuration records metrics.
func (m *sidecarMetrics) enabled() bool { return m.cur.Load().spec.Enabled }

// gatherer returns what the metrics port serves: everything in g, or only
// go_* and process_* while spec.metrics.enabled is false (contract §6.1).
func (m *sidecarMetrics) gatherer(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		if m.enabled() {
			return mfs, err
		}
		out := mfs[:0]
		for _, mf := range mfs {
			if n := mf.GetName(); strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") {
				out = append(out, mf)
			}
		}
		return out, err
	})
}
