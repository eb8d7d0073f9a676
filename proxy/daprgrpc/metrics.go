package daprgrpc

import (
	"context"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
)

// Metrics are Dapr's gRPC metrics (contract §6.2, pkg/diagnostics/
// grpc_monitoring.go): the server side for every call on the gRPC port (the
// Dapr API's methods and proxied calls, by their full method name), the
// client side for the sidecar's OnInvoke calls to a gRPC app. Status
// labels are gRPC code names (OK, Unavailable, ...).
type Metrics struct {
	appID           string
	serverCompleted *prometheus.CounterVec
	serverLatency   *prometheus.HistogramVec
	clientCompleted *prometheus.CounterVec
	clientLatency   *prometheus.HistogramVec
	methods         methodLimit
}

// latencyBuckets are OpenCensus's default millisecond distribution, which
// Dapr's gRPC views use.
var latencyBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250,
	300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000}

// maxMethods bounds the method label's values: proxied calls name any
// method a client sends; beyond this many, methods count as "_other".
const maxMethods = 1000

// NewMetrics registers the gRPC metrics of app appID with reg.
func NewMetrics(reg prometheus.Registerer, appID string) (*Metrics, error) {
	m := &Metrics{
		appID: appID,
		serverCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dapr_grpc_io_server_completed_rpcs",
			Help: "Count of RPCs by method and status, on the sidecar's gRPC API."}, []string{"app_id", "grpc_server_method", "grpc_server_status"}),
		serverLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dapr_grpc_io_server_server_latency",
			Help: "Distribution of server latency in milliseconds, on the sidecar's gRPC API.", Buckets: latencyBuckets},
			[]string{"app_id", "grpc_server_method", "grpc_server_status"}),
		clientCompleted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dapr_grpc_io_client_completed_rpcs",
			Help: "Count of RPCs by method and status, from the sidecar to its gRPC app."}, []string{"app_id", "grpc_client_method", "grpc_client_status"}),
		clientLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dapr_grpc_io_client_roundtrip_latency",
			Help: "Distribution of round-trip latency in milliseconds, from the sidecar to its gRPC app.", Buckets: latencyBuckets},
			[]string{"app_id", "grpc_client_method", "grpc_client_status"}),
	}
	for _, c := range []prometheus.Collector{m.serverCompleted, m.serverLatency, m.clientCompleted, m.clientLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// server records one call served on the gRPC port.
func (m *Metrics) server(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	method = m.methods.label(method)
	st := code.String()
	m.serverCompleted.WithLabelValues(m.appID, method, st).Inc()
	m.serverLatency.WithLabelValues(m.appID, method, st).Observe(float64(d) / float64(time.Millisecond))
}

// client records one call the sidecar made to its gRPC app.
func (m *Metrics) client(method string, code codes.Code, d time.Duration) {
	if m == nil {
		return
	}
	st := code.String()
	m.clientCompleted.WithLabelValues(m.appID, method, st).Inc()
	m.clientLatency.WithLabelValues(m.appID, method, st).Observe(float64(d) / float64(time.Millisecond))
}

// methodLimit admits the first maxMethods distinct methods as label values.
type methodLimit struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (l *methodLimit) label(method string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[method]; ok {
		return method
	}
	if len(l.seen) >= maxMethods {
		return "_other"
	}
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[method] = struct{}{}
	return method
}

// statusOf is the gRPC status a handler gave a call, from what it wrote
// as grpc-status (a trailer, or a header in a trailers-only answer).
// Without one, an HTTP error status is mapped as gRPC clients map it.
func statusOf(h http.Header, httpStatus int) codes.Code {
	v := h.Get("Grpc-Status")
	if v == "" {
		v = h.Get(http.TrailerPrefix + "Grpc-Status")
	}
	if n, err := strconv.Atoi(v); err == nil {
		return codes.Code(n)
	}
	if httpStatus != 0 && httpStatus != http.StatusOK {
		return codes.Unknown
	}
	return codes.OK
}

// statusRecorder remembers the HTTP status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// viaGRPC marks the context of an HTTP request made from a gRPC call, so
// the sidecar's HTTP API metrics leave it to the gRPC ones.
type viaGRPC struct{}

// FromGRPC reports whether ctx is a request that came in on the gRPC port
// (InvokeService, or a proxied call), counted by the gRPC metrics.
func FromGRPC(ctx context.Context) bool { return ctx.Value(viaGRPC{}) != nil }

func markGRPC(ctx context.Context) context.Context { return context.WithValue(ctx, viaGRPC{}, true) }
