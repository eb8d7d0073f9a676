package telemetry

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

const (
	sentTrace  = "4bf92f3577b34da6a3ce929d0e0e4736"
	sentSpan   = "00f067aa0ba902b7"
	sentParent = "00-" + sentTrace + "-" + sentSpan + "-01"
)

// traceparentRE matches a version-00 traceparent; the flags the sidecar
// keeps are sampled (01) and W3C level 2's random (02), as OTel does.
var traceparentRE = regexp.MustCompile(`^00-([0-9a-f]{32})-([0-9a-f]{16})-(0[0-3])$`)

// newTestTracing is a Tracing whose spans a SpanRecorder (the SDK's own)
// sees, with no exporter.
func newTestTracing(t *testing.T, appID, rate string, getenv func(string) string) (*Tracing, *tracetest.SpanRecorder, *bytes.Buffer) {
	t.Helper()
	rec := tracetest.NewSpanRecorder()
	var logs bytes.Buffer
	tr, err := NewTracing(context.Background(), TracingOptions{
		AppID: appID, Spec: &TracingSpec{SamplingRate: rate}, Getenv: getenv,
		Registry: prometheus.NewRegistry(), Log: slog.New(slog.NewTextHandler(&logs, nil)), SpanProcessor: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr, rec, &logs
}

func reject(w http.ResponseWriter, _ *http.Request, err error) {
	http.Error(w, err.Error(), http.StatusBadRequest)
}

// mesh is two sidecars in miniature: the caller's API layer forwards to
// the callee's peer layer over real HTTP, which forwards to an app; each
// hop names its span and injects its context as the proxy does.
type mesh struct {
	caller, callee       *tracetest.SpanRecorder
	api                  *httptest.Server
	appGot               http.Header // what the app received
	appStatus            int
	appTraceparentOnResp string
}

func newMesh(t *testing.T, rate string) *mesh {
	t.Helper()
	m := &mesh{appStatus: http.StatusOK}
	callerT, callerRec, _ := newTestTracing(t, "app-a", rate, env())
	calleeT, calleeRec, _ := newTestTracing(t, "app-b", rate, env())
	m.caller, m.callee = callerRec, calleeRec
	app := func(w http.ResponseWriter, r *http.Request) {
		m.appGot = r.Header.Clone()
		if m.appTraceparentOnResp != "" {
			w.Header().Set("Traceparent", m.appTraceparentOnResp)
		}
		w.WriteHeader(m.appStatus)
	}
	peer := httptest.NewServer(calleeT.Callee(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		NameServed(r.Context(), "app-b", strings.TrimPrefix(r.URL.Path, "/"))
		h := r.Header.Clone()
		Inject(r.Context(), h)
		rr := httptest.NewRequest(r.Method, r.URL.Path, nil)
		rr.Header = h
		app(w, rr)
	})))
	t.Cleanup(peer.Close)
	m.api = httptest.NewServer(callerT.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method := strings.TrimPrefix(r.URL.Path, "/v1.0/invoke/app-b/method/")
		NameCall(r.Context(), "app-b", method)
		out, _ := http.NewRequestWithContext(r.Context(), r.Method, peer.URL+"/"+method, nil)
		out.Header = r.Header.Clone()
		Inject(r.Context(), out.Header)
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	})))
	t.Cleanup(m.api.Close)
	return m
}

func (m *mesh) call(t *testing.T, path string, h map[string]string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, m.api.URL+path, nil)
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func only(t *testing.T, rec *tracetest.SpanRecorder, who string) sdktrace.ReadOnlySpan {
	t.Helper()
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("%s: %d spans, want 1", who, len(spans))
	}
	return spans[0]
}

func attrs(s sdktrace.ReadOnlySpan) map[string]string {
	m := map[string]string{}
	for _, kv := range s.Attributes() {
		m[string(kv.Key)] = kv.Value.Emit()
	}
	return m
}

func TestCallerAndCalleeSpans(t *testing.T) {
	m := newMesh(t, "1")
	resp := m.call(t, "/v1.0/invoke/app-b/method/orders/1?x=y", map[string]string{
		"Traceparent": sentParent, "Tracestate": "vendor=opaque", "Baggage": "key1=value1,key2=value2",
		"Dapr-App-Id": "app-b", "Dapr-Api-Token": "secret",
	})
	client, server := only(t, m.caller, "caller"), only(t, m.callee, "callee")

	if client.Name() != "CallLocal/app-b/orders/1" || client.SpanKind() != trace.SpanKindClient {
		t.Errorf("caller span %q kind %v, want CallLocal/app-b/orders/1 client", client.Name(), client.SpanKind())
	}
	if server.Name() != "CallLocal/app-b/orders/1" || server.SpanKind() != trace.SpanKindServer {
		t.Errorf("callee span %q kind %v, want CallLocal/app-b/orders/1 server", server.Name(), server.SpanKind())
	}
	if got := client.SpanContext().TraceID().String(); got != sentTrace {
		t.Errorf("caller trace %s, want the app's %s", got, sentTrace)
	}
	if client.Parent().SpanID().String() != sentSpan || !client.Parent().IsRemote() {
		t.Errorf("caller span's parent %v, want the app's span %s", client.Parent().SpanID(), sentSpan)
	}
	if server.SpanContext().TraceID() != client.SpanContext().TraceID() || server.Parent().SpanID() != client.SpanContext().SpanID() {
		t.Errorf("callee span %v parent %v, want child of caller span %v", server.SpanContext().TraceID(), server.Parent().SpanID(), client.SpanContext().SpanID())
	}

	ca := attrs(client)
	for k, want := range map[string]string{
		"rpc.service": "ServiceInvocation", "net.peer.name": "app-b", "dapr.protocol": "http",
		"dapr.api": "POST /v1.0/invoke/app-b/method/orders/1", "http.request.method": "POST",
		"url.full": "/v1.0/invoke/app-b/method/orders/1?x=y", "server.address": "127.0.0.1",
		"dapr.status_code": "200", "dapr-app-id": "app-b",
	} {
		if ca[k] != want {
			t.Errorf("caller attribute %s = %q, want %q", k, ca[k], want)
		}
	}
	if _, ok := ca["dapr-api-token"]; ok {
		t.Error("the API token became a span attribute")
	}
	if ca["server.port"] == "" {
		t.Error("caller span has no server.port")
	}
	sa := attrs(server)
	for k, want := range map[string]string{
		"rpc.service": "ServiceInvocation", "dapr.invoke_method": "orders/1", "dapr.protocol": "grpc",
		"dapr.api": "/dapr.proto.internals.v1.ServiceInvocation/CallLocal", "dapr.status_code": "200",
	} {
		if sa[k] != want {
			t.Errorf("callee attribute %s = %q, want %q", k, sa[k], want)
		}
	}
	if client.Status().Code != codes.Unset || server.Status().Code != codes.Unset {
		t.Errorf("status %v / %v on a 200", client.Status(), server.Status())
	}
	if v, _ := client.Resource().Set().Value("service.name"); v.AsString() != "app-a" {
		t.Errorf("caller service.name %q, want app-a", v.AsString())
	}

	// The app: a child of the callee span, tracestate and baggage as sent.
	want := "00-" + sentTrace + "-" + server.SpanContext().SpanID().String() + "-01"
	if got := m.appGot.Get("Traceparent"); got != want {
		t.Errorf("app traceparent %q, want %q (callee span as parent)", got, want)
	}
	if got := m.appGot.Get("Tracestate"); got != "vendor=opaque" {
		t.Errorf("app tracestate %q, want vendor=opaque", got)
	}
	if got := m.appGot.Values("Baggage"); !cmp.Equal(got, []string{"key1=value1,key2=value2"}) {
		t.Errorf("app baggage %q, want it unchanged", got)
	}
	// The response: the caller span's context, and the baggage echoed.
	if got, want := resp.Header.Get("Traceparent"), "00-"+sentTrace+"-"+client.SpanContext().SpanID().String()+"-01"; got != want {
		t.Errorf("response traceparent %q, want %q", got, want)
	}
	if got := resp.Header.Get("Baggage"); got != "key1=value1,key2=value2" {
		t.Errorf("response baggage %q, want echoed", got)
	}
}

func TestErrorStatus(t *testing.T) {
	m := newMesh(t, "1")
	m.appStatus = http.StatusServiceUnavailable
	m.call(t, "/v1.0/invoke/app-b/method/x", nil)
	for who, s := range map[string]sdktrace.ReadOnlySpan{"caller": only(t, m.caller, "caller"), "callee": only(t, m.callee, "callee")} {
		if s.Status().Code != codes.Error || s.Status().Description != "Code(503): Service Unavailable" {
			t.Errorf("%s status %+v, want Error Code(503): Service Unavailable", who, s.Status())
		}
		if attrs(s)["dapr.status_code"] != "503" {
			t.Errorf("%s dapr.status_code %q", who, attrs(s)["dapr.status_code"])
		}
	}
}

func TestAppTraceparentOnResponseKept(t *testing.T) {
	m := newMesh(t, "1")
	const appTP = "00-11111111111111111111111111111111-2222222222222222-01"
	m.appTraceparentOnResp = appTP
	if got := m.call(t, "/v1.0/invoke/app-b/method/x", nil).Header.Get("Traceparent"); got != appTP {
		t.Errorf("response traceparent %q, want the app's %q", got, appTP)
	}
}

func TestSampling(t *testing.T) {
	tests := []struct {
		name, rate, inbound string
		spans               int
		flags               string // on what the app receives; "" for no traceparent at all
		keepTrace           bool   // the app's trace id is the inbound one
	}{
		{name: "rate 1, new trace", rate: "1", spans: 1, flags: "01"},
		{name: "never sampled: traceparent still sent with 00", rate: "1e-12", spans: 0, flags: "00"},
		{name: "sampled parent is followed", rate: "1e-12", inbound: sentParent, spans: 1, flags: "01", keepTrace: true},
		{name: "unsampled parent is followed", rate: "1", inbound: "00-" + sentTrace + "-" + sentSpan + "-00", spans: 0, flags: "00", keepTrace: true},
		{name: "invalid traceparent: new root", rate: "1", inbound: "00-" + strings.Repeat("0", 32) + "-" + sentSpan + "-01", spans: 1, flags: "01"},
		{name: "rate 0: no span, inbound passes untouched", rate: "0", inbound: sentParent, spans: 0, flags: "01", keepTrace: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t, tt.rate)
			h := map[string]string{}
			if tt.inbound != "" {
				h["Traceparent"] = tt.inbound
			}
			resp := m.call(t, "/v1.0/invoke/app-b/method/x", h)
			if n := len(m.caller.Ended()) + len(m.callee.Ended()); n != 2*tt.spans {
				t.Errorf("%d spans recorded, want %d", n, 2*tt.spans)
			}
			got := m.appGot.Get("Traceparent")
			sm := traceparentRE.FindStringSubmatch(got)
			if sm == nil {
				t.Fatalf("app traceparent %q is not a valid version-00 traceparent", got)
			}
			if sm[3] != tt.flags {
				t.Errorf("app traceparent %q, want flags %s", got, tt.flags)
			}
			if (sm[1] == sentTrace) != tt.keepTrace {
				t.Errorf("app traceparent %q: kept inbound trace = %v, want %v", got, sm[1] == sentTrace, tt.keepTrace)
			}
			if tt.rate == "0" {
				if got != tt.inbound {
					t.Errorf("rate 0: app traceparent %q, want the inbound %q untouched", got, tt.inbound)
				}
				if rt := resp.Header.Get("Traceparent"); rt != "" {
					t.Errorf("rate 0: response traceparent %q, want none", rt)
				}
			} else if rt := traceparentRE.FindStringSubmatch(resp.Header.Get("Traceparent")); rt == nil || rt[1] != sm[1] {
				t.Errorf("response traceparent %q, want trace %s", resp.Header.Get("Traceparent"), sm[1])
			}
		})
	}
}

func TestBaggage(t *testing.T) {
	m := newMesh(t, "1")
	t.Run("invalid is a 400", func(t *testing.T) {
		m.appGot = nil
		req, _ := http.NewRequest(http.MethodGet, m.api.URL+"/v1.0/invoke/app-b/method/x", nil)
		req.Header.Set("Baggage", "key1=value1,=nokey")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(string(b), "invalid baggage header: ") {
			t.Errorf("got %d %q, want 400 invalid baggage header: ...", resp.StatusCode, b)
		}
		if m.appGot != nil {
			t.Error("the app was called")
		}
	})
	t.Run("none in, none delivered", func(t *testing.T) {
		resp := m.call(t, "/v1.0/invoke/app-b/method/x", nil)
		if _, ok := m.appGot["Baggage"]; ok {
			t.Errorf("app got baggage %q", m.appGot["Baggage"])
		}
		if _, ok := resp.Header["Baggage"]; ok {
			t.Error("response has baggage")
		}
	})
}

func TestHealthNotTraced(t *testing.T) {
	tr, rec, _ := newTestTracing(t, "app-a", "1", env())
	var inCtx bool
	h := tr.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inCtx = trace.SpanContextFromContext(r.Context()).IsValid()
		w.WriteHeader(http.StatusNoContent)
	}))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1.0/healthz", nil))
	if inCtx || len(rec.Ended()) != 0 || w.Header().Get("Traceparent") != "" {
		t.Errorf("healthz traced: span in ctx %v, %d spans, traceparent %q", inCtx, len(rec.Ended()), w.Header().Get("Traceparent"))
	}
}

// TestSpanInRequestContext: later layers (metrics exemplars) find the span
// with the standard API.
func TestSpanInRequestContext(t *testing.T) {
	tr, rec, _ := newTestTracing(t, "app-a", "1", env())
	var seen trace.SpanContext
	h := tr.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen = trace.SpanContextFromContext(r.Context())
	}))
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/x", nil))
	if got := only(t, rec, "caller").SpanContext(); !seen.IsSampled() || seen.SpanID() != got.SpanID() {
		t.Errorf("context span %v, recorded %v", seen.SpanID(), got.SpanID())
	}
}

func TestUpdate(t *testing.T) {
	tr, rec, logs := newTestTracing(t, "app-a", "0", env())
	h := tr.Caller(reject)(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	serve := func() {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/x", nil))
	}
	serve()
	if n := len(rec.Ended()); n != 0 {
		t.Fatalf("rate 0: %d spans", n)
	}
	tr.Update(&TracingSpec{SamplingRate: "1"})
	serve()
	if n := len(rec.Ended()); n != 1 {
		t.Fatalf("after reload to rate 1: %d spans, want 1", n)
	}
	if strings.Contains(logs.String(), "restart") {
		t.Errorf("a rate change asked for a restart:\n%s", logs)
	}
	tr.Update(&TracingSpec{SamplingRate: "1", Otel: OtelSpec{EndpointAddress: "c:4317", Protocol: "grpc"}})
	if !strings.Contains(logs.String(), "apply after a restart") || !strings.Contains(logs.String(), "new_endpoint=c:4317") {
		t.Errorf("exporter change not logged as needing a restart:\n%s", logs)
	}
}

func TestResource(t *testing.T) {
	tests := []struct {
		name   string
		getenv func(string) string
		want   string
	}{
		{"app id", env(), "app-a"},
		{"OTEL_RESOURCE_ATTRIBUTES", env("OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs,team=x"), "attrs"},
		{"OTEL_SERVICE_NAME wins", env("OTEL_RESOURCE_ATTRIBUTES", "service.name=attrs", "OTEL_SERVICE_NAME", "named"), "named"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newResource("app-a", tt.getenv)
			v, _ := r.Set().Value("service.name")
			if v.AsString() != tt.want {
				t.Errorf("service.name %q, want %q", v.AsString(), tt.want)
			}
		})
	}
}

// FuzzTraceHeaders feeds the caller layer arbitrary trace headers: it must
// answer 400 exactly for invalid baggage, and otherwise hand the next hop a
// valid traceparent that keeps a valid inbound trace id.
func FuzzTraceHeaders(f *testing.F) {
	f.Add(sentParent, "vendor=x", "k=v")
	f.Add("00-"+sentTrace+"-"+sentSpan+"-00", "", "")
	f.Add("ff-"+sentTrace+"-"+sentSpan+"-01", "a=b,c=d", "k=v;prop")
	f.Add("01-"+sentTrace+"-"+sentSpan+"-01-future", "", "=bad")
	f.Add("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", strings.Repeat("x=y,", 200), "k=%zz")
	rec := tracetest.NewSpanRecorder()
	tr, err := NewTracing(context.Background(), TracingOptions{AppID: "a", Spec: &TracingSpec{SamplingRate: "0.5"},
		Getenv: env(), Registry: prometheus.NewRegistry(), SpanProcessor: rec})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, tp, ts, bag string) {
		defer rec.Reset()
		var out http.Header
		h := tr.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out = r.Header.Clone()
			Inject(r.Context(), out)
		}))
		req := httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/x", nil)
		req.Header["Traceparent"] = []string{tp}
		req.Header["Tracestate"] = []string{ts}
		req.Header["Baggage"] = []string{bag}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code == http.StatusBadRequest {
			if out != nil || !strings.HasPrefix(w.Body.String(), "invalid baggage header") {
				t.Fatalf("400 %q, handler called %v", w.Body, out != nil)
			}
			return
		}
		m := traceparentRE.FindStringSubmatch(out.Get("Traceparent"))
		if m == nil {
			t.Fatalf("outbound traceparent %q invalid (inbound %q)", out.Get("Traceparent"), tp)
		}
		if in := traceparentRE.FindStringSubmatch(tp); in != nil && in[1] != strings.Repeat("0", 32) && in[2] != strings.Repeat("0", 16) && m[1] != in[1] {
			t.Fatalf("inbound trace %s replaced by %s", in[1], m[1])
		}
		if len(out.Get("Tracestate")) > maxTracestate {
			t.Fatalf("tracestate of %d bytes sent", len(out.Get("Tracestate")))
		}
		if got := out.Values("Baggage"); len(got) != 1 || got[0] != bag {
			t.Fatalf("baggage %q changed to %q", bag, got)
		}
	})
}
