package proxy

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/discovery"
)

// callPeer sends one call to target through the caller-side metrics
// layers (callMetrics over attemptMetrics) to a next hop that answers
// status, or fails with err.
func callPeer(s *Sidecar, target string, status int, err error) {
	rt := s.callMetrics(s.attemptMetrics(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if err != nil {
			return nil, err
		}
		return &http.Response{StatusCode: status, Body: http.NoBody, Request: r}, nil
	})))
	c := &call{target: Target{AppID: target, Namespace: "default"}, method: "hi", snap: s.snap.Load()}
	r := httptest.NewRequest(http.MethodGet, "http://"+target+"/hi", nil)
	_, _ = rt.RoundTrip(r.WithContext(context.WithValue(r.Context(), callKey{}, c)))
}

func notFound(appID string) error { return fmt.Errorf("%w: %s", discovery.ErrNotFound, appID) }

// TestMetricsLabelsInvalidUTF8 records label values that are not UTF-8;
// before, each made WithLabelValues panic after the app had answered.
func TestMetricsLabelsInvalidUTF8(t *testing.T) {
	s := newMetricsSidecar(t, "")
	serve(s, "GET", "/v1.0/invoke/b/method/public/\xff1", 200)
	toApp(s, "GET", "public/\xff1", 200, true, "\xff")
	toApp(s, "GET", "x", 200, true, "not.an/app id")
	text := scrape(t, s, "")
	for metric, want := range map[string][]string{
		mServerRequestCount: {`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/public/` + "\uFFFD" + `1",status="200"} 1`},
		mClientCompleted: {
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/public/` + "\uFFFD" + `1",status="200"} 1`,
			`dapr_http_client_completed_count{app_id="a",method="GET",path="/x",status="200"} 1`,
		},
		// A caller header that is no valid app id is Dapr's "unknown".
		mReqRecv: {`dapr_runtime_service_invocation_req_recv_total{app_id="a",src_app_id="unknown"} 2`},
	} {
		if diff := cmp.Diff(want, seriesOf(text, metric)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", metric, diff)
		}
	}
}

// TestMetricsUnknownAppID: a call to an app id with no instance creates no
// Dapr invocation series and only the shared _unknown edge series.
func TestMetricsUnknownAppID(t *testing.T) {
	s := newMetricsSidecar(t, "")
	for i := range 3 {
		id := "ghost-" + strconv.Itoa(i)
		callPeer(s, id, 0, notFound(id))
	}
	callPeer(s, "b", 0, errors.New("connection reset")) // a known app that failed: counted as sent
	text := scrape(t, s, "")
	for metric, want := range map[string][]string{
		mReqSent:      {`dapr_runtime_service_invocation_req_sent_total{app_id="a",dst_app_id="b",type="unary"} 1`},
		mResRecv:      nil,
		mEdgeRequests: {`skein_invocation_requests_total{code_class="5xx",dst_app_id="_unknown",src_app_id="a"} 3`, `skein_invocation_requests_total{code_class="5xx",dst_app_id="b",src_app_id="a"} 1`},
		mEdgeDuration + "_count": {
			`skein_invocation_duration_seconds_count{dst_app_id="_unknown",src_app_id="a"} 3`,
			`skein_invocation_duration_seconds_count{dst_app_id="b",src_app_id="a"} 1`,
		},
	} {
		if diff := cmp.Diff(want, seriesOf(text, metric)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", metric, diff)
		}
	}
}

// distinctValues counts the values of label among metric's series and
// reports whether value is one of them.
func distinctValues(text, metric, label, value string) (int, bool) {
	seen := map[string]bool{}
	for _, l := range seriesOf(text, metric) {
		i := strings.Index(l, label+`="`)
		if i < 0 {
			continue
		}
		v := l[i+len(label)+2:]
		seen[v[:strings.IndexByte(v, '"')]] = true
	}
	return len(seen), seen[value]
}

// TestMetricsCardinalityCap covers the cap on label values: past
// maxLabelValues new values are _other, while values that are bounded by
// the Configuration (pathMatching patterns, rule replacements) are always
// kept, and the cap counts values after the rules.
func TestMetricsCardinalityCap(t *testing.T) {
	over := maxLabelValues + 50
	tests := []struct {
		name      string
		spec      string
		run       func(s *Sidecar)
		metric    string
		label     string
		wantCount int    // distinct values of label
		wantValue string // one of them
	}{{
		name: "server paths",
		run: func(s *Sidecar) {
			for i := range over {
				serve(s, "GET", "/v1.0/invoke/b/method/orders/"+strconv.Itoa(i), 200)
			}
		},
		metric: mServerRequestCount, label: "path",
		wantCount: maxLabelValues + 1, wantValue: labelOther,
	}, {
		name: "a pathMatching pattern is kept once the cap is full",
		spec: "metrics:\n  http:\n    pathMatching: [\"/items/{id}\"]",
		run: func(s *Sidecar) {
			for i := range over {
				serve(s, "GET", "/v1.0/invoke/b/method/orders/"+strconv.Itoa(i), 200)
			}
			serve(s, "GET", "/v1.0/invoke/b/method/items/7", 200)
		},
		metric: mServerRequestCount, label: "path",
		wantCount: maxLabelValues + 2, wantValue: "/v1.0/invoke/{app_id}/method/items/{id}",
	}, {
		name: "rules apply before the cap",
		spec: `
metrics:
  rules:
  - name: dapr_http_client_completed_count
    labels:
    - name: path
      regex: {"/orders/": "^/orders/.+"}`,
		run: func(s *Sidecar) {
			for i := range over {
				toApp(s, "GET", "orders/"+strconv.Itoa(i), 200, false, "")
			}
			toApp(s, "GET", "basket", 200, false, "")
		},
		metric: mClientCompleted, label: "path",
		wantCount: 2, wantValue: "/basket",
	}, {
		name: "low cardinality is not capped further",
		spec: "metrics:\n  http:\n    increasedCardinality: false",
		run: func(s *Sidecar) {
			for i := range over {
				serve(s, "GET", "/v1.0/invoke/b/method/orders/"+strconv.Itoa(i), 200)
			}
		},
		metric: mServerRequestCount, label: "path",
		wantCount: 1, wantValue: "",
	}, {
		name: "callers",
		run: func(s *Sidecar) {
			for i := range over {
				toApp(s, "GET", "x", 200, true, "caller-"+strconv.Itoa(i))
			}
		},
		metric: mReqRecv, label: "src_app_id",
		wantCount: maxLabelValues + 1, wantValue: labelOther,
	}, {
		name: "known targets",
		run: func(s *Sidecar) {
			for i := range over {
				callPeer(s, "app-"+strconv.Itoa(i), 200, nil)
			}
		},
		metric: mReqSent, label: "dst_app_id",
		wantCount: maxLabelValues + 1, wantValue: labelOther,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newMetricsSidecar(t, tc.spec)
			tc.run(s)
			n, ok := distinctValues(scrape(t, s, ""), tc.metric, tc.label, tc.wantValue)
			if n != tc.wantCount || !ok {
				t.Errorf("%s: %d distinct %s values (has %q: %v), want %d with it", tc.metric, n, tc.label, tc.wantValue, ok, tc.wantCount)
			}
		})
	}
}

// discardWriter is a ResponseWriter that keeps nothing, so the loop below
// measures the metrics and not a recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMetricsCardinalityBound is the load: 100,000 distinct method
// paths (on the API and to the app), 100,000 callers, 100,000 app ids with
// no instance and 100,000 known ones (25,000 of each under -race, see
// boundCalls), driven straight through one sidecar's metrics layers. The heap and the exposition must stay under
// fixed bounds, and once the caps are full (after maxLabelValues values
// and the child caches' maxCachedSeries keys) the heap must stop growing.
// Before the cap, 20,000 paths alone added ~150 MB and a million lines.
func TestMetricsCardinalityBound(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 calls of each kind")
	}
	const n = boundCalls
	const full = 2 * maxCachedSeries // every cap and cache is full by then
	// Measured (go1.26, linux/amd64, with and without -race): ~20 MB to
	// fill the caps, then nothing for the remaining 92,000 of each, and
	// ~152,000 exposition lines. The bounds leave margin.
	const maxGrowth = 32 << 20
	const maxGrowthWhenFull = 4 << 20
	const maxLines = 200_000

	s := newMetricsSidecar(t, "")
	srv := s.serverMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	resp := &http.Response{StatusCode: http.StatusOK, ContentLength: 0, Body: http.NoBody}
	app := s.appMetrics(roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }))
	known := s.callMetrics(s.attemptMetrics(roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil })))
	unknown := s.callMetrics(s.attemptMetrics(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return nil, notFound(r.Host)
	})))
	snap := s.snap.Load()
	w := &discardWriter{h: http.Header{}}
	// One request per kind, its path or target changed per call: only the
	// metrics should grow, not the test.
	apiReq := httptest.NewRequest(http.MethodGet, "/", nil)
	appReq := httptest.NewRequest(http.MethodGet, "http://app/", nil)
	appCall := &call{target: s.self, fromPeer: true, snap: snap}
	appReq = appReq.WithContext(context.WithValue(appReq.Context(), callKey{}, appCall))
	peerReq := httptest.NewRequest(http.MethodGet, "http://peer/hi", nil)
	peerCall := &call{method: "hi", snap: snap}
	peerReq = peerReq.WithContext(context.WithValue(peerReq.Context(), callKey{}, peerCall))

	run := func(from, to int) {
		for i := from; i < to; i++ {
			id := strconv.Itoa(i)
			apiReq.URL.Path = "/v1.0/invoke/b/method/orders/" + id
			srv.ServeHTTP(w, apiReq)

			appCall.method = "orders/" + id
			appReq.Header.Set(HeaderCallerAppID, "caller-"+id)
			_, _ = app.RoundTrip(appReq)

			peerCall.target = Target{AppID: "ghost-" + id, Namespace: "default"}
			peerReq.Host = peerCall.target.String()
			_, _ = unknown.RoundTrip(peerReq)

			peerCall.target = Target{AppID: "app-" + id, Namespace: "default"}
			_, _ = known.RoundTrip(peerReq)
		}
	}
	run(0, 10) // warm: first series, pools
	before := heapInUse()
	run(10, full)
	filled := heapInUse()
	run(full, n)
	after := heapInUse()
	text := scrape(t, s, "")
	lines := strings.Count(text, "\n")
	mb := func(b uint64) float64 { return float64(b) / (1 << 20) }
	growth, growthWhenFull := int64(after)-int64(before), int64(after)-int64(filled)
	t.Logf("heap %.1f MB, %.1f MB with the caps full, %.1f MB after %d calls of each kind; %d exposition lines",
		mb(before), mb(filled), mb(after), n, lines)
	if growth > maxGrowth {
		t.Errorf("heap grew %.1f MB for %d calls of each kind, want under %d MB", float64(growth)/(1<<20), n, maxGrowth>>20)
	}
	if growthWhenFull > maxGrowthWhenFull {
		t.Errorf("heap grew %.1f MB over the last %d calls of each kind, want under %d MB: something still grows per value",
			float64(growthWhenFull)/(1<<20), n-full, maxGrowthWhenFull>>20)
	}
	if lines > maxLines {
		t.Errorf("/metrics has %d lines, want under %d", lines, maxLines)
	}
	for _, c := range []struct{ metric, label, value string }{
		{mServerRequestCount, "path", labelOther},
		{mClientCompleted, "path", labelOther},
		{mReqRecv, "src_app_id", labelOther},
		{mReqSent, "dst_app_id", labelOther},
		{mEdgeRequests, "dst_app_id", labelUnknown},
	} {
		if got, ok := distinctValues(text, c.metric, c.label, c.value); got > maxLabelValues+2 || !ok {
			t.Errorf("%s: %d distinct %s values (has %q: %v), want at most %d with it", c.metric, got, c.label, c.value, ok, maxLabelValues+2)
		}
	}
	if strings.Contains(text, `dst_app_id="ghost-`) {
		t.Error("an app id with no instance has its own series")
	}
	runtime.KeepAlive(s)
}
