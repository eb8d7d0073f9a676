package accesslog

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.opentelemetry.io/otel/trace"
)

// decodeLines splits what a Log wrote into lines, each decoded to its keys
// in order and its values.
func decodeLines(t *testing.T, out string) (keys [][]string, vals []map[string]any) {
	t.Helper()
	for line := range strings.Lines(out) {
		if !strings.HasSuffix(line, "\n") {
			t.Fatalf("line %q does not end in a newline", line)
		}
		dec := json.NewDecoder(strings.NewReader(line))
		var v map[string]any
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		dec = json.NewDecoder(strings.NewReader(line))
		var ks []string
		_, _ = dec.Token() // {
		for dec.More() {
			k, _ := dec.Token()
			ks = append(ks, k.(string))
			var skip json.RawMessage
			_ = dec.Decode(&skip)
		}
		keys, vals = append(keys, ks), append(vals, v)
	}
	return keys, vals
}

var (
	outboundKeys = []string{"time", "direction", "caller", "callee", "verb", "method", "status", "bytes_in", "bytes_out",
		"tries", "instance", "duration_ms", "queue_ms", "connect_ms", "tls_ms", "upstream_ms", "app_ms", "trace_id"}
	inboundKeys = []string{"time", "direction", "caller", "callee", "verb", "method", "status", "bytes_in", "bytes_out",
		"duration_ms", "queue_ms", "app_ms"}
)

// TestOutboundLine: a call through Outbound and TryTiming to a peer that
// reports its times gives one line with the caller's view of the call,
// and the timing header does not reach the calling app.
func TestOutboundLine(t *testing.T) {
	peer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if got := r.Header.Get(HeaderTiming); got != "?1" {
			t.Errorf("peer got %s %q, want the ask", HeaderTiming, got)
		}
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set(HeaderTiming, "queue=2000000,app=3500000")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, "created")
	}))
	defer peer.Close()
	transport := &http.Transport{}
	defer transport.CloseIdleConnections()

	var out bytes.Buffer
	l := New(&out)
	client := &http.Client{Transport: l.TryTiming(transport)}
	app := l.Outbound(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		Note(r.Context(), Call{CallerApp: "a", CallerNamespace: "default", CalleeApp: "b", CalleeNamespace: "prod", Method: "orders/1"})
		req, _ := http.NewRequestWithContext(r.Context(), http.MethodPut, peer.URL+"/orders/1", r.Body)
		l.AskTiming(req.Header)
		resp, err := client.Do(req)
		if err != nil {
			t.Errorf("call: %v", err)
			return
		}
		defer resp.Body.Close()
		if got := resp.Header.Get(HeaderTiming); got != "" {
			t.Errorf("the timing header reached the calling app: %q", got)
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))

	sc := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1, 2, 3}, SpanID: trace.SpanID{4}, TraceFlags: trace.FlagsSampled,
	})
	r := httptest.NewRequest(http.MethodPost, "/v1.0/invoke/b.prod/method/orders/1", strings.NewReader(strings.Repeat("x", 100)))
	r = r.WithContext(trace.ContextWithSpanContext(r.Context(), sc))
	app.ServeHTTP(httptest.NewRecorder(), r)

	keys, vals := decodeLines(t, out.String())
	if len(vals) != 1 {
		t.Fatalf("wrote %d lines, want 1: %q", len(vals), out.String())
	}
	if diff := cmp.Diff(outboundKeys, keys[0]); diff != "" {
		t.Errorf("fields (-want +got):\n%s", diff)
	}
	got := vals[0]
	want := map[string]any{
		"direction": "outbound", "caller": "a.default", "callee": "b.prod", "verb": "POST", "method": "orders/1",
		"status": 201.0, "bytes_in": 100.0, "bytes_out": 7.0, "tries": 1.0, "instance": strings.TrimPrefix(peer.URL, "http://"),
		"queue_ms": 2.0, "app_ms": 3.5, "trace_id": sc.TraceID().String(),
	}
	for k, v := range want {
		if diff := cmp.Diff(v, got[k]); diff != "" {
			t.Errorf("%s (-want +got):\n%s", k, diff)
		}
	}
	for _, k := range []string{"duration_ms", "connect_ms", "tls_ms", "upstream_ms"} {
		if v, ok := got[k].(float64); !ok || v < 0 {
			t.Errorf("%s = %v, want a duration", k, got[k])
		}
	}
}

// TestInboundTiming: the callee's line, and its times reported in the
// response only to a caller that asked.
func TestInboundTiming(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ask       string
		wantTimes bool
	}{
		{name: "asked", ask: "?1", wantTimes: true},
		{name: "not asked"},
		{name: "something else", ask: "queue=1,app=2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			appSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "ok")
			}))
			defer appSrv.Close()
			transport := &http.Transport{}
			defer transport.CloseIdleConnections()

			var out bytes.Buffer
			l := New(&out)
			toApp := l.AppTiming(transport)
			h := l.Inbound(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				Note(r.Context(), Call{CalleeApp: "b", CalleeNamespace: "default", Method: "hi"}) // no verified peer
				req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, appSrv.URL, nil)
				resp, err := toApp.RoundTrip(req)
				if err != nil {
					t.Errorf("app call: %v", err)
					return
				}
				defer resp.Body.Close()
				if v := resp.Header.Get(HeaderTiming); v != "" {
					w.Header().Set(HeaderTiming, v)
				}
				_, _ = io.Copy(w, resp.Body)
			}))
			r := httptest.NewRequest(http.MethodGet, "/hi", nil)
			if tc.ask != "" {
				r.Header.Set(HeaderTiming, tc.ask)
			}
			rw := httptest.NewRecorder()
			h.ServeHTTP(rw, r)

			reported := rw.Header().Get(HeaderTiming)
			if tc.wantTimes {
				if q, a := parseTiming(reported); !strings.HasPrefix(reported, "queue=") || q < 0 || a <= 0 {
					t.Errorf("reported %q, want queue and app times", reported)
				}
			} else if reported != "" {
				t.Errorf("reported %q to a caller that did not ask", reported)
			}

			keys, vals := decodeLines(t, out.String())
			if len(vals) != 1 {
				t.Fatalf("wrote %d lines, want 1: %q", len(vals), out.String())
			}
			if diff := cmp.Diff(inboundKeys, keys[0]); diff != "" {
				t.Errorf("fields (-want +got):\n%s", diff)
			}
			got := vals[0]
			for k, v := range map[string]any{"direction": "inbound", "caller": "unknown", "callee": "b.default",
				"verb": "GET", "method": "hi", "status": 200.0, "bytes_in": 0.0, "bytes_out": 2.0} {
				if diff := cmp.Diff(v, got[k]); diff != "" {
					t.Errorf("%s (-want +got):\n%s", k, diff)
				}
			}
			if v, ok := got["app_ms"].(float64); !ok || v <= 0 {
				t.Errorf("app_ms = %v, want the app's time", got["app_ms"])
			}
		})
	}
}

// TestNotNoted: a request no layer named as a call (a control endpoint, a
// rejected request) writes no line.
func TestNotNoted(t *testing.T) {
	var out bytes.Buffer
	l := New(&out)
	for _, h := range []http.Handler{
		l.Outbound(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusUnauthorized) })),
		l.Inbound(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "{}") })),
	} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1.0/metadata", nil))
	}
	if out.Len() != 0 {
		t.Errorf("wrote %q", out.String())
	}
}

// TestOff: a nil Log (no --access-log) adds no layer and asks for no times.
func TestOff(t *testing.T) {
	l := New(nil)
	if l != nil {
		t.Fatalf("New(nil) = %v, want nil", l)
	}
	var h http.Handler = http.NewServeMux() // comparable, unlike a HandlerFunc
	var rt http.RoundTripper = &http.Transport{}
	if l.Outbound(h) != h || l.Inbound(h) != h {
		t.Error("an off log wraps handlers")
	}
	if l.TryTiming(rt) != rt || l.AppTiming(rt) != rt {
		t.Error("an off log wraps transports")
	}
	hdr := http.Header{HeaderTiming: {"?1"}}
	l.AskTiming(hdr)
	if _, ok := hdr[HeaderTiming]; ok {
		t.Errorf("an off log passed the app's %s on", HeaderTiming)
	}
	Note(t.Context(), Call{Method: "x"}) // no record: nothing happens
}

func TestTimingHeaderRoundTrip(t *testing.T) {
	q, a := parseTiming(formatTiming(1234, 5678901))
	if q != 1234 || a != 5678901 {
		t.Errorf("round trip gave queue %d app %d", q, a)
	}
	for _, bad := range []string{"", "queue", "queue=x,app=-5", "app=,queue=1e9", "other=3"} {
		q, a := parseTiming(bad)
		if q < 0 || a < 0 || (bad != "app=,queue=1e9" && (q != 0 || a != 0)) {
			t.Errorf("parseTiming(%q) = %d, %d", bad, q, a)
		}
	}
}
