package proxy

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/telemetry"
)

// newMetricsSidecar builds a sidecar (not listening) for app "a" under the
// Configuration spec given as YAML ("" for none).
func newMetricsSidecar(t testing.TB, spec string) *Sidecar {
	t.Helper()
	reg, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{AppID: "a", AppPort: 1}, reg, reg, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	if spec != "" {
		if err := s.Apply(configWithSpec(t, spec)); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

func configWithSpec(t testing.TB, spec string) Config {
	t.Helper()
	f := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: m\nspec:\n" + indent(spec)
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func indent(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "  " + l
	}
	return strings.Join(lines, "\n") + "\n"
}

// scrape returns the exposition the metrics port serves.
func scrape(t testing.TB, s *Sidecar, accept string) string {
	t.Helper()
	h := promhttp.HandlerFor(s.metrics.gatherer(s.reg), promhttp.HandlerOpts{EnableOpenMetrics: true})
	r := httptest.NewRequest(http.MethodGet, "/anything", nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Body.String()
}

// seriesOf returns the exposition lines of metric (samples only).
func seriesOf(text, metric string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, metric+"{") || strings.HasPrefix(l, metric+" ") {
			out = append(out, l)
		}
	}
	return out
}

// serve sends one API request through the server metrics layer to a
// handler answering status.
func serve(s *Sidecar, method, path string, status int) {
	h := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		_, _ = w.Write([]byte("hello"))
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(method, path, strings.NewReader("body")))
}

// toApp sends a call through the app metrics layer to an app answering
// status; fromPeer marks a call from caller's sidecar.
func toApp(s *Sidecar, verb, method string, status int, fromPeer bool, caller string) {
	rt := s.appMetrics(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: status, ContentLength: 5, Body: io.NopCloser(strings.NewReader("hello")), Request: r}, nil
	}))
	c := &call{target: s.self, method: method, fromPeer: fromPeer, snap: s.snap.Load()}
	r := httptest.NewRequest(verb, "http://app/"+method, strings.NewReader("body"))
	if caller != "" {
		r.Header.Set(HeaderCallerAppID, caller)
	}
	resp, err := rt.RoundTrip(r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
	if err == nil {
		resp.Body.Close()
	}
}

func TestMetricsLabelRules(t *testing.T) {
	tests := []struct {
		name   string
		spec   string
		run    func(s *Sidecar)
		metric string
		want   []string
	}{{
		name:   "high cardinality keeps invocation paths verbatim",
		run:    func(s *Sidecar) { serve(s, "GET", "/v1.0/invoke/b/method/hi", 200) },
		metric: mServerRequestCount,
		want:   []string{`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/hi",status="200"} 1`},
	}, {
		name:   "high cardinality: response_count too",
		run:    func(s *Sidecar) { serve(s, "GET", "/v1.0/healthz", 204) },
		metric: mServerResponseCount,
		want:   []string{`dapr_http_server_response_count{app_id="a",method="GET",path="/v1.0/healthz",status="204"} 1`},
	}, {
		name: "low cardinality empties the path",
		spec: "metrics:\n  http:\n    increasedCardinality: false",
		run: func(s *Sidecar) {
			serve(s, "GET", "/v1.0/invoke/b/method/hi", 200)
			serve(s, "GET", "/v1.0/invoke/b/method/ho", 200)
		},
		metric: mServerRequestCount,
		want:   []string{`dapr_http_server_request_count{app_id="a",method="GET",path="",status="200"} 2`},
	}, {
		name:   "low cardinality: no response_count",
		spec:   "metrics:\n  http:\n    increasedCardinality: false",
		run:    func(s *Sidecar) { serve(s, "GET", "/v1.0/invoke/b/method/hi", 200) },
		metric: mServerResponseCount,
		want:   nil,
	}, {
		name: "low cardinality keeps static paths on the client",
		spec: "metrics:\n  http:\n    increasedCardinality: false",
		run: func(s *Sidecar) {
			toApp(s, "GET", "dapr/config", 200, false, "")
			toApp(s, "GET", "orders/1", 200, false, "")
		},
		metric: mClientCompleted,
		want: []string{
			`dapr_http_client_completed_count{app_id="a",method="GET",path="",status="200"} 1`,
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/dapr/config",status="200"} 1`,
		},
	}, {
		name:   "high cardinality client path is / + method",
		run:    func(s *Sidecar) { toApp(s, "POST", "orders/1", 201, false, "") },
		metric: mClientCompleted,
		want:   []string{`dapr_http_client_completed_count{app_id="a",method="POST",path="/orders/1",status="201"} 1`},
	}, {
		name: "pathMatching with auto-expansion and fallback to low cardinality",
		spec: "metrics:\n  http:\n    increasedCardinality: false\n    pathMatching: [\"/orders/{orderID}\", /v1.0/invoke/b/method/basket]",
		run: func(s *Sidecar) {
			serve(s, "GET", "/v1.0/invoke/b/method/orders/1", 200)
			serve(s, "GET", "/v1.0/invoke/c/method/orders/2", 200)
			serve(s, "GET", "/v1.0/invoke/b/method/basket", 200)
			serve(s, "GET", "/v1.0/invoke/b/method/items/3", 200)
		},
		metric: mServerRequestCount,
		want: []string{
			`dapr_http_server_request_count{app_id="a",method="GET",path="",status="200"} 1`,
			`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/basket",status="200"} 1`,
			`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/{app_id}/method/orders/{orderID}",status="200"} 2`,
		},
	}, {
		name: "pathMatching on the client uses the pattern as written; unmatched keep high cardinality",
		spec: "metrics:\n  http:\n    pathMatching: [\"/orders/{orderID}\"]",
		run: func(s *Sidecar) {
			toApp(s, "GET", "orders/1", 200, false, "")
			toApp(s, "GET", "orders/2", 200, false, "")
			toApp(s, "GET", "items/3", 200, false, "")
		},
		metric: mClientCompleted,
		want: []string{
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/items/3",status="200"} 1`,
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/orders/{orderID}",status="200"} 2`,
		},
	}, {
		name: "excludeVerbs empties the method",
		spec: "metrics:\n  http:\n    excludeVerbs: true",
		run: func(s *Sidecar) {
			serve(s, "GET", "/v1.0/invoke/b/method/hi", 200)
			serve(s, "POST", "/v1.0/invoke/b/method/hi", 200)
		},
		metric: mServerRequestCount,
		want:   []string{`dapr_http_server_request_count{app_id="a",method="",path="/v1.0/invoke/b/method/hi",status="200"} 2`},
	}, {
		name:   "unknown verbs are UNKNOWN",
		run:    func(s *Sidecar) { serve(s, "PROPFIND", "/v1.0/invoke/b/method/hi", 405) },
		metric: mServerRequestCount,
		want:   []string{`dapr_http_server_request_count{app_id="a",method="UNKNOWN",path="/v1.0/invoke/b/method/hi",status="405"} 1`},
	}, {
		name: "rules rewrite label values of the named metric only",
		spec: `
metrics:
  rules:
  - name: dapr_http_server_request_count
    labels:
    - name: path
      regex:
        "/v1.0/invoke/b/method/orders/": "^/v1.0/invoke/b/method/orders/.+"
        "never": ".*"`,
		run: func(s *Sidecar) {
			serve(s, "GET", "/v1.0/invoke/b/method/orders/1", 200)
			serve(s, "GET", "/v1.0/invoke/b/method/orders/2", 200)
		},
		metric: mServerRequestCount,
		want:   []string{`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/orders/",status="200"} 2`},
	}, {
		name: "rules do not touch other metrics",
		spec: `
metrics:
  rules:
  - name: dapr_http_server_request_count
    labels:
    - name: path
      regex: {"x": ".*"}`,
		run:    func(s *Sidecar) { serve(s, "GET", "/v1.0/invoke/b/method/orders/1", 200) },
		metric: mServerResponseCount,
		want:   []string{`dapr_http_server_response_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/orders/1",status="200"} 1`},
	}, {
		name:   "component_loaded exists at zero",
		run:    func(s *Sidecar) {},
		metric: mComponentLoaded,
		want:   []string{`dapr_runtime_component_loaded{app_id="a"} 0`},
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newMetricsSidecar(t, tc.spec)
			tc.run(s)
			got := seriesOf(scrape(t, s, ""), tc.metric)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("%s (-want +got):\n%s", tc.metric, diff)
			}
		})
	}
}

func TestMetricsCalleeAndCallerInvocation(t *testing.T) {
	s := newMetricsSidecar(t, "")
	toApp(s, "GET", "hi", 200, true, "caller")
	toApp(s, "GET", "hi", 503, true, "caller")
	toApp(s, "GET", "hi", 200, false, "") // self-invocation: no invocation metrics

	// Caller side: one call, two attempts (a retry, which sits between
	// callMetrics and attemptMetrics in the chain).
	attempts := 0
	attempt := s.attemptMetrics(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		attempts++
		if attempts == 1 {
			return nil, errors.New("connection reset")
		}
		return &http.Response{StatusCode: 200, Body: http.NoBody, Request: r}, nil
	}))
	chainRT := s.callMetrics(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if _, err := attempt.RoundTrip(r); err == nil {
			return nil, errors.New("first attempt should fail")
		}
		return attempt.RoundTrip(r)
	}))
	c := &call{target: Target{AppID: "b", Namespace: "default"}, method: "hi", snap: s.snap.Load()}
	r := httptest.NewRequest("GET", "http://b/hi", nil)
	if _, err := chainRT.RoundTrip(r.WithContext(context.WithValue(r.Context(), callKey{}, c))); err != nil {
		t.Fatal(err)
	}

	text := scrape(t, s, "")
	for metric, want := range map[string][]string{
		mReqRecv: {`dapr_runtime_service_invocation_req_recv_total{app_id="a",src_app_id="caller"} 2`},
		mResSent: {
			`dapr_runtime_service_invocation_res_sent_total{app_id="a",dst_app_id="caller",status="200"} 1`,
			`dapr_runtime_service_invocation_res_sent_total{app_id="a",dst_app_id="caller",status="503"} 1`,
		},
		mReqSent:                   {`dapr_runtime_service_invocation_req_sent_total{app_id="a",dst_app_id="b",type="unary"} 2`},
		mResRecv:                   {`dapr_runtime_service_invocation_res_recv_total{app_id="a",src_app_id="b",status="200",type="unary"} 1`},
		mResRecvLatency + "_count": {`dapr_runtime_service_invocation_res_recv_latency_ms_count{app_id="a",src_app_id="b",status="200"} 1`},
		mEdgeRequests:              {`skein_invocation_requests_total{code_class="2xx",dst_app_id="b",src_app_id="a"} 1`},
		mEdgeDuration + "_count":   {`skein_invocation_duration_seconds_count{dst_app_id="b",src_app_id="a"} 1`},
		mClientCompleted: {
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/hi",status="200"} 2`,
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/hi",status="503"} 1`,
		},
	} {
		if diff := cmp.Diff(want, seriesOf(text, metric)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", metric, diff)
		}
	}
}

func TestMetricsLatencyBuckets(t *testing.T) {
	s := newMetricsSidecar(t, "")
	serve(s, "GET", "/v1.0/healthz", 204)
	text := scrape(t, s, "")
	if got, want := bucketBounds(text, mServerLatency), "1,2,3,4,5,6,8,10,13,16,20,25,30,40,50,65,80,100,130,160,200,250,300,400,500,650,800,1000,2000,5000,10000,20000,50000,100000,+Inf"; got != want {
		t.Errorf("default latency buckets = %s, want %s", got, want)
	}
	if got, want := bucketBounds(text, mServerRequestBytes), "1024,2048,4096,16384,65536,262144,1.048576e+06,4.194304e+06,1.6777216e+07,6.7108864e+07,2.68435456e+08,1.073741824e+09,4.294967296e+09,+Inf"; got != want {
		t.Errorf("size buckets = %s, want %s", got, want)
	}

	// A reload with other buckets replaces the latency histograms only.
	if err := s.Apply(configWithSpec(t, "metrics:\n  latencyDistributionBuckets: [5, 50, 500, 5000]")); err != nil {
		t.Fatal(err)
	}
	serve(s, "GET", "/v1.0/healthz", 204)
	text = scrape(t, s, "")
	if got, want := bucketBounds(text, mServerLatency), "5,50,500,5000,+Inf"; got != want {
		t.Errorf("%s buckets = %s, want %s", mServerLatency, got, want)
	}
	if got := seriesOf(text, mServerRequestCount); len(got) != 1 || !strings.HasSuffix(got[0], " 2") {
		t.Errorf("request_count after a bucket change = %q, want one series at 2 (counters survive)", got)
	}
}

// bucketBounds lists the le values of metric's first series.
func bucketBounds(text, metric string) string {
	var les []string
	first := ""
	for _, l := range seriesOf(text, metric+"_bucket") {
		i := strings.Index(l, `le="`)
		rest := l[i+4:]
		series := l[:i]
		if first == "" {
			first = series
		}
		if series != first {
			break
		}
		les = append(les, rest[:strings.IndexByte(rest, '"')])
	}
	return strings.Join(les, ",")
}

func TestMetricsDisabled(t *testing.T) {
	s := newMetricsSidecar(t, "metrics:\n  enabled: false")
	serve(s, "GET", "/v1.0/invoke/b/method/hi", 200)
	s.accessMetrics.decisions.WithLabelValues("x", "allow", "").Inc()
	text := scrape(t, s, "")
	var names []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, "# TYPE ") {
			n := strings.Fields(l)[2]
			if !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				names = append(names, n)
			}
		}
	}
	if len(names) != 0 {
		t.Errorf("with metrics disabled the endpoint serves %v, want only go_* and process_*", names)
	}
	if !strings.Contains(text, "go_goroutines") || !strings.Contains(text, "process_") {
		t.Error("go_* and process_* missing with metrics disabled")
	}
	// Turning metrics back on shows them again.
	if err := s.Apply(configWithSpec(t, "metrics:\n  enabled: true")); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(scrape(t, s, ""), mComponentLoaded) {
		t.Error("metrics enabled again, but Dapr's metrics are not served")
	}
}

func TestMetricsConfigRejected(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"metrics:\n  enabled: maybe", `spec.metrics.enabled: "maybe": must be true or false`},
		{"metrics:\n  latencyDistributionBuckets: [5, 1]", "buckets must increase"},
		{"metrics:\n  http:\n    pathMatching: [orders]", "must start with /"},
		{"metrics:\n  http:\n    pathMatching: ['/a/{x', '/b']", "spec.metrics.http.pathMatching"},
		{"metrics:\n  rules:\n  - name: x\n    labels:\n    - name: path\n      regex: {a: '('}", "invalid regex"},
		{"metrics:\n  colour: blue", "spec.metrics.colour: unknown field"},
	} {
		s := newMetricsSidecar(t, "")
		err := s.Apply(configWithSpec(t, tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Apply(%q) = %v, want an error containing %q", tc.spec, err, tc.want)
		}
	}
}

func TestMetricsExemplars(t *testing.T) {
	s := newMetricsSidecar(t, "")
	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID:    trace.TraceID{0x4b, 0xf9, 0x2f, 0x35, 0x77, 0xb3, 0x4d, 0xa6, 0xa3, 0xce, 0x92, 0x9d, 0x0e, 0x0e, 0x47, 0x36},
		SpanID:     trace.SpanID{0, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7},
		TraceFlags: trace.FlagsSampled,
	})
	h := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	r := httptest.NewRequest("GET", "/v1.0/invoke/b/method/hi", nil)
	h.ServeHTTP(httptest.NewRecorder(), r.WithContext(trace.ContextWithSpanContext(r.Context(), sc)))
	// Without a span: no exemplar, and no failure.
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1.0/invoke/b/method/ho", nil))

	om := scrape(t, s, "application/openmetrics-text; version=1.0.0")
	var with []string
	for _, l := range seriesOf(om, mServerLatency+"_bucket") {
		if strings.Contains(l, `# {trace_id="4bf92f3577b34da6a3ce929d0e0e4736"}`) {
			with = append(with, l)
		}
	}
	if len(with) != 1 || !strings.Contains(with[0], `path="/v1.0/invoke/b/method/hi"`) {
		t.Errorf("exemplar lines = %q, want one on the /hi series", with)
	}
	if strings.Contains(scrape(t, s, ""), "trace_id") {
		t.Error("the text format must not carry exemplars")
	}
}

// TestMetricsServerLayerKeepsFlush checks streaming responses still flush
// through the layer's writer.
func TestMetricsServerLayerKeepsFlush(t *testing.T) {
	s := newMetricsSidecar(t, "")
	flushed := false
	h := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("x"))
		flushed = http.NewResponseController(w).Flush() == nil
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1.0/invoke/b/method/sse", nil))
	if !flushed {
		t.Error("Flush through the metrics writer failed")
	}
}

// BenchmarkServerMetrics measures the API-side layer per request with a
// warm label cache; "off" (spec.metrics.enabled false) is the baseline of
// the handler and recorder alone.
func BenchmarkServerMetrics(b *testing.B) {
	for _, bc := range []struct{ name, spec string }{{"on", ""}, {"off", "metrics:\n  enabled: false"}} {
		b.Run(bc.name, func(b *testing.B) {
			s := newMetricsSidecar(b, bc.spec)
			h := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
			r := httptest.NewRequest("GET", "/v1.0/invoke/b/method/hi", nil)
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkServerMetricsExemplar is the same with a sampled span in the
// request context.
func BenchmarkServerMetricsExemplar(b *testing.B) {
	s := newMetricsSidecar(b, "")
	h := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(200) }))
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled})
	r := httptest.NewRequest("GET", "/v1.0/invoke/b/method/hi", nil)
	r = r.WithContext(trace.ContextWithSpanContext(r.Context(), sc))
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkInvocationMetrics measures the three client-side layers of one
// call (edge, attempt, app) with a warm label cache.
func BenchmarkInvocationMetrics(b *testing.B) {
	s := newMetricsSidecar(b, "")
	resp := &http.Response{StatusCode: 200, ContentLength: 5, Body: http.NoBody}
	rt := s.callMetrics(s.attemptMetrics(s.appMetrics(roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }))))
	c := &call{target: Target{AppID: "b", Namespace: "default"}, method: "hi", fromPeer: true, snap: s.snap.Load()}
	r := httptest.NewRequest("GET", "http://b/hi", nil)
	r = r.WithContext(context.WithValue(r.Context(), callKey{}, c))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := rt.RoundTrip(r); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkWithLabelValues is the uncached baseline: the three server
// metrics looked up by label values per request.
func BenchmarkWithLabelValues(b *testing.B) {
	s := newMetricsSidecar(b, "")
	in := s.snap.Load().meters.in
	b.ReportAllocs()
	for b.Loop() {
		in.srvCount.WithLabelValues("a", "GET", "/v1.0/invoke/b/method/hi", "200").Inc()
		in.srvRespCount.WithLabelValues("a", "GET", "/v1.0/invoke/b/method/hi", "200").Inc()
		in.srvLatency.WithLabelValues("a", "GET", "/v1.0/invoke/b/method/hi", "200").Observe(1)
	}
}
