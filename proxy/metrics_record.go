package proxy

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
)

// maxCachedSeries bounds each label-value cache of a snapshot; label values
// beyond it are still recorded, only without the cache.
const maxCachedSeries = 4096

// exemplarEvery is how often one bucket of one series takes a new trace-id
// exemplar. Prometheus keeps one exemplar per bucket and scrapes every few
// seconds, so replacing it more often only costs allocations.
const exemplarEvery = time.Second

// meters is what a snapshot records with: its spec.metrics, the
// instruments, and caches of label-value children so that a request does
// one map lookup instead of hashing label values per metric. Safe for
// concurrent use.
type meters struct {
	spec  *MetricsSpec
	in    *instruments
	appID string

	srvReqBytes, srvRespBytes, cliRecvBytes prometheus.Observer

	server childCache[httpKey, *serverChildren]
	client childCache[httpKey, *clientChildren]
	peer   childCache[peerKey, *peerChildren]
	edge   childCache[string, *edgeChildren]
	caller childCache[string, *callerChildren]
}

func newMeters(spec *MetricsSpec, in *instruments, appID string) *meters {
	m := &meters{spec: spec, in: in, appID: appID}
	m.srvReqBytes = in.srvReqBytes.WithLabelValues(m.labels(mServerRequestBytes, labelsApp, appID)...)
	m.srvRespBytes = in.srvRespBytes.WithLabelValues(m.labels(mServerResponseBytes, labelsApp, appID)...)
	m.cliRecvBytes = in.cliRecvBytes.WithLabelValues(m.labels(mClientReceivedBytes, labelsApp, appID)...)
	return m
}

// childCache maps label-value keys to their metric children.
type childCache[K comparable, V any] struct {
	mu     sync.RWMutex
	m      map[K]V
	shared map[any]V // intern: by what a value records into
}

func (c *childCache[K, V]) load(k K) (V, bool) {
	c.mu.RLock()
	v, ok := c.m[k]
	c.mu.RUnlock()
	return v, ok
}

// store keeps v under k unless the cache is full, and returns v.
func (c *childCache[K, V]) store(k K, v V) V {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[K]V{}
	}
	if len(c.m) < maxCachedSeries {
		c.m[k] = v
	}
	c.mu.Unlock()
	return v
}

// intern caches under k the value for id, made with mk the first time id
// is seen. id names what the value records into (its metric children, or
// its capped app id), so raw keys whose label values collapse into the same
// series (capped values, low cardinality, rules) share one value instead
// of one each. Returns that value.
func (c *childCache[K, V]) intern(k K, id any, mk func() V) V {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m, c.shared = map[K]V{}, map[any]V{}
	}
	v, ok := c.shared[id]
	if !ok {
		v = mk()
		c.shared[id] = v
	}
	if len(c.m) < maxCachedSeries {
		c.m[k] = v
	}
	return v
}

// httpKey is a request's raw label inputs: verb, path (server) or method
// (client), status.
type httpKey struct {
	verb, path string
	status     int
}

type serverChildren struct {
	count, resp prometheus.Counter // resp nil with low cardinality
	latency     *latencyObserver
}

type clientChildren struct {
	count     prometheus.Counter
	latency   *latencyObserver
	sentBytes prometheus.Observer
}

// peerKey is a call to another app: its id and whether it streams.
type peerKey struct {
	appID     string
	streaming bool
}

// peerChildren are the caller side's Dapr children for one target, per
// attempt.
type peerChildren struct {
	reqSent  prometheus.Counter
	byStatus childCache[int, *peerStatusChildren]
	key      peerKey
}

type peerStatusChildren struct {
	resRecv prometheus.Counter
	latency *latencyObserver // nil for streaming calls (Dapr: unary only)
}

// edgeChildren are Skein's per-edge children for one target, per call.
// They are apart from peerChildren so that a call that never reached an
// attempt creates none of Dapr's series, not even at zero.
type edgeChildren struct {
	duration *latencyObserver // skein_invocation_duration_seconds
	byClass  childCache[int, prometheus.Counter]
	appID    string
}

// callerChildren are the callee side's children for one calling app.
type callerChildren struct {
	reqRecv  prometheus.Counter
	byStatus childCache[int, prometheus.Counter]
	appID    string
}

func (m *meters) serverChildren(k httpKey) *serverChildren {
	if c, ok := m.server.load(k); ok {
		return c
	}
	method, path, status := m.spec.methodLabel(k.verb), m.spec.pathLabel(k.path), strconv.Itoa(k.status)
	count := m.in.srvCount.WithLabelValues(m.labels(mServerRequestCount, labelsHTTP, m.appID, method, path, status)...)
	latency := m.in.srvLatency.WithLabelValues(m.labels(mServerLatency, labelsHTTP, m.appID, method, path, status)...)
	var resp prometheus.Counter
	if m.spec.IncreasedCardinality {
		resp = m.in.srvRespCount.WithLabelValues(m.labels(mServerResponseCount, labelsHTTP, m.appID, method, path, status)...)
	}
	return m.server.intern(k, [...]any{count, resp, latency}, func() *serverChildren {
		return &serverChildren{count: count, resp: resp, latency: newLatencyObserver(latency, m.in.buckets)}
	})
}

func (m *meters) clientChildren(k httpKey) *clientChildren {
	if c, ok := m.client.load(k); ok {
		return c
	}
	// The client path is "/" + the method the app receives (contract §6.2).
	method, path, status := m.spec.methodLabel(k.verb), m.spec.pathLabel("/"+k.path), strconv.Itoa(k.status)
	count := m.in.cliCount.WithLabelValues(m.labels(mClientCompleted, labelsHTTP, m.appID, method, path, status)...)
	latency := m.in.cliLatency.WithLabelValues(m.labels(mClientLatency, labelsHTTP, m.appID, method, path, status)...)
	sentBytes := m.in.cliSentBytes.WithLabelValues(m.labels(mClientSentBytes, labelsClientSent, m.appID, method, path)...)
	return m.client.intern(k, [...]any{count, latency, sentBytes}, func() *clientChildren {
		return &clientChildren{count: count, latency: newLatencyObserver(latency, m.in.buckets), sentBytes: sentBytes}
	})
}

func (m *meters) peerChildren(k peerKey) *peerChildren {
	if c, ok := m.peer.load(k); ok {
		return c
	}
	// Nested children take the capped id from key, so every series of a
	// target that is _other says so.
	id := peerKey{appID: m.appLabel(appsCalled, k.appID), streaming: k.streaming}
	return m.peer.intern(k, id, func() *peerChildren {
		return &peerChildren{
			reqSent: m.in.reqSent.WithLabelValues(m.labels(mReqSent, labelsReqSent, m.appID, id.appID, invocationType(id.streaming))...),
			key:     id,
		}
	})
}

func (m *meters) peerStatus(p *peerChildren, status int) *peerStatusChildren {
	if c, ok := p.byStatus.load(status); ok {
		return c
	}
	st := strconv.Itoa(status)
	c := &peerStatusChildren{
		resRecv: m.in.resRecv.WithLabelValues(m.labels(mResRecv, labelsResRecv, m.appID, p.key.appID, st, invocationType(p.key.streaming))...),
	}
	if !p.key.streaming {
		c.latency = newLatencyObserver(m.in.resRecvLatency.WithLabelValues(m.labels(mResRecvLatency, labelsResRecvLat, m.appID, p.key.appID, st)...), m.in.buckets)
	}
	return p.byStatus.store(status, c)
}

func (m *meters) edgeChildren(appID string) *edgeChildren {
	if c, ok := m.edge.load(appID); ok {
		return c
	}
	id := m.appLabel(appsCalled, appID)
	return m.edge.intern(appID, id, func() *edgeChildren {
		return &edgeChildren{
			duration: newLatencyObserver(m.in.edgeDuration.WithLabelValues(m.labels(mEdgeDuration, labelsEdgeLat, m.appID, id)...), edgeBuckets),
			appID:    id,
		}
	})
}

// edgeRequests is the skein_invocation_requests_total child of a call to
// e's target that ended with status.
func (m *meters) edgeRequests(e *edgeChildren, status int) prometheus.Counter {
	if ctr, ok := e.byClass.load(status / 100); ok {
		return ctr
	}
	ctr := m.in.edgeRequests.WithLabelValues(m.labels(mEdgeRequests, labelsEdge, m.appID, e.appID, codeClass(status))...)
	return e.byClass.store(status/100, ctr)
}

func (m *meters) callerChildren(appID string) *callerChildren {
	if c, ok := m.caller.load(appID); ok {
		return c
	}
	id := m.appLabel(appsCalling, appID)
	return m.caller.intern(appID, id, func() *callerChildren {
		return &callerChildren{
			reqRecv: m.in.reqRecv.WithLabelValues(m.labels(mReqRecv, labelsReqRecv, m.appID, id)...),
			appID:   id,
		}
	})
}

func (m *meters) resSent(c *callerChildren, status int) prometheus.Counter {
	if ctr, ok := c.byStatus.load(status); ok {
		return ctr
	}
	ctr := m.in.resSent.WithLabelValues(m.labels(mResSent, labelsResSent, m.appID, c.appID, strconv.Itoa(status))...)
	return c.byStatus.store(status, ctr)
}

func invocationType(streaming bool) string {
	if streaming {
		return "streaming"
	}
	return "unary"
}

// codeClass is the status class of skein_invocation_requests_total.
func codeClass(status int) string {
	switch status / 100 {
	case 1:
		return "1xx"
	case 2:
		return "2xx"
	case 3:
		return "3xx"
	case 4:
		return "4xx"
	}
	return "5xx"
}

// latencyObserver is a histogram child that attaches the trace id of a
// sampled span as an exemplar, at most once per exemplarEvery per bucket.
type latencyObserver struct {
	h      prometheus.Observer
	ex     prometheus.ExemplarObserver // h, when it takes exemplars
	bounds []float64
	last   []atomic.Int64 // per bucket (+Inf last): Unix ns of the last exemplar
}

func newLatencyObserver(h prometheus.Observer, bounds []float64) *latencyObserver {
	l := &latencyObserver{h: h, bounds: bounds, last: make([]atomic.Int64, len(bounds)+1)}
	l.ex, _ = h.(prometheus.ExemplarObserver)
	return l
}

// observe records v; now is the time of the observation.
func (l *latencyObserver) observe(ctx context.Context, v float64, now time.Time) {
	if l.ex != nil {
		if sc := trace.SpanContextFromContext(ctx); sc.IsValid() && sc.IsSampled() {
			// Buckets are upper-inclusive: the first bound >= v.
			i := sort.SearchFloat64s(l.bounds, v)
			t := now.UnixNano()
			if last := l.last[i].Load(); t-last >= int64(exemplarEvery) && l.last[i].CompareAndSwap(last, t) {
				l.ex.ObserveWithExemplar(v, prometheus.Labels{"trace_id": sc.TraceID().String()})
				return
			}
		}
	}
	l.h.Observe(v)
}

// ms is d in (fractional) milliseconds, the unit of Dapr's latencies.
func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
