package test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// jaeger is a real Jaeger v2 (all-in-one, memory storage) on free loopback
// ports: OTLP gRPC and HTTP receivers and the query API, nothing else.
type jaeger struct {
	otlpGRPC, otlpHTTP, query int
}

// jaegerConfig replaces the embedded all-in-one config, which binds a dozen
// fixed ports (4317, 4318, 14250, 9411, 8888, 5778, ...): only the four
// ports the test picked are opened, so parallel runs cannot clash.
const jaegerConfig = `
service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics: {level: none}
    logs: {level: warn}
extensions:
  jaeger_storage:
    backends:
      mem: {memory: {max_traces: 10000}}
  jaeger_query:
    storage: {traces: mem}
    http: {endpoint: "127.0.0.1:%d"}
    grpc: {endpoint: "127.0.0.1:%d"}
receivers:
  otlp:
    protocols:
      grpc: {endpoint: "127.0.0.1:%d"}
      http: {endpoint: "127.0.0.1:%d"}
processors:
  batch: {timeout: 100ms}
exporters:
  jaeger_storage_exporter: {trace_storage: mem}
`

func startJaeger(t *testing.T, m *mesh) *jaeger {
	t.Helper()
	bin := peersBin(t, "jaeger")
	j := &jaeger{otlpGRPC: freePort(t), otlpHTTP: freePort(t), query: freePort(t)}
	cfg := filepath.Join(t.TempDir(), "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, j.query, freePort(t), j.otlpGRPC, j.otlpHTTP), 0o600); err != nil {
		t.Fatal(err)
	}
	p := m.start("jaeger", bin, nil, "--config=file:"+cfg)
	waitFor(t, 30*time.Second, "jaeger query API", func() bool {
		if p.exited() {
			t.Fatalf("jaeger exited: %v\n%s", p.err, p.out)
		}
		resp, err := http.Get(j.api("/api/services"))
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	})
	return j
}

func (j *jaeger) api(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(j.query) + path
}

// jaegerTrace is a trace as Jaeger's query API (/api/traces) returns it.
type jaegerTrace struct {
	TraceID string `json:"traceID"`
	Spans   []struct {
		TraceID       string `json:"traceID"`
		SpanID        string `json:"spanID"`
		OperationName string `json:"operationName"`
		ProcessID     string `json:"processID"`
		References    []struct {
			RefType string `json:"refType"`
			TraceID string `json:"traceID"`
			SpanID  string `json:"spanID"`
		} `json:"references"`
		Tags []struct {
			Key   string `json:"key"`
			Value any    `json:"value"`
		} `json:"tags"`
	} `json:"spans"`
	Processes map[string]struct {
		ServiceName string `json:"serviceName"`
	} `json:"processes"`
}

// span is one span of a jaegerTrace, flattened for assertions.
type span struct {
	service, name, id, parent string
	tags                      map[string]string
}

func (tr jaegerTrace) spans() []span {
	var out []span
	for _, s := range tr.Spans {
		sp := span{service: tr.Processes[s.ProcessID].ServiceName, name: s.OperationName, id: s.SpanID, tags: map[string]string{}}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" && r.TraceID == s.TraceID {
				sp.parent = r.SpanID
			}
		}
		for _, tag := range s.Tags {
			sp.tags[tag.Key] = fmt.Sprint(tag.Value)
		}
		out = append(out, sp)
	}
	return out
}

// traces returns the traces Jaeger holds for service.
func (j *jaeger) traces(t *testing.T, service string) []jaegerTrace {
	t.Helper()
	return getJSON[struct {
		Data []jaegerTrace `json:"data"`
	}](t, http.DefaultClient, j.api("/api/traces?limit=1000&lookback=1h&service="+service)).Data
}

// tracingConfig writes a Dapr Configuration exporting every span to
// endpoint over protocol.
func tracingConfig(t *testing.T, protocol string, port int, timeout string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: tracing}
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: "127.0.0.1:%d"
      protocol: %s
      isSecure: false
      timeout: %s
`, port, protocol, timeout)
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestTracingJaeger (issue 6, points 2 and 3): app A calls app B through two
// sidecars exporting to a real Jaeger, the caller over OTLP/HTTP and the
// callee over OTLP/gRPC. Every call is one trace in which the caller's
// CLIENT span is the parent of the callee's SERVER span, with Dapr's names
// and attributes, and the app receives the trace context and baggage.
func TestTracingJaeger(t *testing.T) {
	m := newMesh(t)
	j := startJaeger(t, m)
	portA, _ := m.app("a")
	portB, _ := m.app("b")
	fast := []string{"OTEL_BSP_SCHEDULE_DELAY=200"} // export batches every 200 ms, not 5 s
	m.sidecarEnv("app-b", portB, fast, "--config", tracingConfig(t, "grpc", j.otlpGRPC, "5s"))
	a := m.sidecarEnv("app-a", portA, fast, "--config", tracingConfig(t, "http", j.otlpHTTP, "5s"))

	const (
		calls     = 20
		sentTrace = "0af7651916cd43dd8448eb211c80319c"
		sentSpan  = "b7ad6b7169203331"
		state     = "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"
		bag       = "key1=value1,key2=value2;prop"
	)
	var appGot http.Header
	for i := range calls {
		req := newRequest(t, http.MethodPost, a.invokeURL("app-b", "orders/"+strconv.Itoa(i)), strings.NewReader("{}"))
		if i == 0 {
			req.Header.Set("Traceparent", "00-"+sentTrace+"-"+sentSpan+"-01")
			req.Header.Set("Tracestate", state)
			req.Header.Set("Baggage", bag)
		}
		if i == calls-1 {
			req.Header.Set("X-Echo-Status", "503")
		}
		resp, b := do(t, req)
		if want := map[bool]int{true: 503, false: 200}[i == calls-1]; resp.StatusCode != want {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, b)
		}
		if i == 0 {
			appGot = decodeEcho(t, b).Header
			if got := resp.Header.Get("Baggage"); got != bag {
				t.Errorf("response baggage %q, want %q echoed", got, bag)
			}
			if rt, _, _ := parseTraceparent(t, "response", resp.Header["Traceparent"]); rt != sentTrace {
				t.Errorf("response trace %s, want %s", rt, sentTrace)
			}
		}
	}

	var traces []jaegerTrace
	waitFor(t, 30*time.Second, "all traces in jaeger with both spans", func() bool {
		traces = j.traces(t, "app-a")
		if len(traces) < calls {
			return false
		}
		for _, tr := range traces {
			if len(tr.Spans) < 2 {
				return false
			}
		}
		return true
	})
	if len(traces) != calls {
		t.Errorf("%d traces for app-a, want %d", len(traces), calls)
	}
	for _, tr := range traces {
		var client, server *span
		ss := tr.spans()
		for i := range ss {
			switch s := &ss[i]; {
			case s.service == "app-a" && s.tags["span.kind"] == "client":
				client = s
			case s.service == "app-b" && s.tags["span.kind"] == "server":
				server = s
			}
		}
		if client == nil || server == nil || len(ss) != 2 {
			t.Errorf("trace %s: spans %+v, want one app-a client and one app-b server", tr.TraceID, ss)
			continue
		}
		if server.parent != client.id {
			t.Errorf("trace %s: server span's parent %q, want the client span %s", tr.TraceID, server.parent, client.id)
		}
		method := strings.TrimPrefix(client.tags["dapr.api"], "POST /v1.0/invoke/app-b/method/")
		if client.name != "CallLocal/app-b/"+method || server.name != client.name {
			t.Errorf("trace %s: names %q / %q, want CallLocal/app-b/%s on both", tr.TraceID, client.name, server.name, method)
		}
		wantStatus := "200"
		if method == "orders/"+strconv.Itoa(calls-1) {
			wantStatus = "503"
			for _, s := range []*span{client, server} {
				if s.tags["otel.status_code"] != "ERROR" || s.tags["otel.status_description"] != "Code(503): Service Unavailable" {
					t.Errorf("trace %s: %s span status %q %q, want ERROR Code(503): Service Unavailable", tr.TraceID, s.service, s.tags["otel.status_code"], s.tags["otel.status_description"])
				}
			}
		}
		for k, want := range map[string]string{
			"rpc.service": "ServiceInvocation", "net.peer.name": "app-b", "dapr.protocol": "http",
			"http.request.method": "POST", "url.full": "/v1.0/invoke/app-b/method/" + method,
			"server.address": "127.0.0.1", "dapr.status_code": wantStatus,
		} {
			if client.tags[k] != want {
				t.Errorf("trace %s: client tag %s = %q, want %q", tr.TraceID, k, client.tags[k], want)
			}
		}
		for k, want := range map[string]string{
			"rpc.service": "ServiceInvocation", "dapr.invoke_method": method, "dapr.protocol": "grpc",
			"dapr.api": "/dapr.proto.internals.v1.ServiceInvocation/CallLocal", "dapr.status_code": wantStatus,
		} {
			if server.tags[k] != want {
				t.Errorf("trace %s: server tag %s = %q, want %q", tr.TraceID, k, server.tags[k], want)
			}
		}
		if tr.TraceID == sentTrace {
			// The app's own trace: the caller span continues it, and the
			// app is handed the callee span as its parent.
			if client.parent != sentSpan {
				t.Errorf("client span's parent %q, want the app's span %s", client.parent, sentSpan)
			}
			if want := "00-" + sentTrace + "-" + server.id + "-01"; appGot.Get("Traceparent") != want {
				t.Errorf("app got traceparent %q, want %q", appGot.Get("Traceparent"), want)
			}
		}
	}
	if !containsTrace(traces, sentTrace) {
		t.Errorf("the app's trace %s is not in jaeger", sentTrace)
	}
	if got := appGot.Get("Tracestate"); got != state {
		t.Errorf("app got tracestate %q, want %q", got, state)
	}
	if got := appGot.Values("Baggage"); len(got) != 1 || got[0] != bag {
		t.Errorf("app got baggage %q, want %q", got, bag)
	}
	if n := a.metric(t, "skein_trace_spans_exported_total"); n != calls {
		t.Errorf("caller exported %v spans, want %d", n, calls)
	}
}

func containsTrace(ts []jaegerTrace, id string) bool {
	for _, tr := range ts {
		if tr.TraceID == id {
			return true
		}
	}
	return false
}

// sidecarEnv is mesh.sidecar with extra environment variables.
func (m *mesh) sidecarEnv(appID string, appPort int, env []string, extra ...string) *sidecar {
	m.t.Helper()
	s := &sidecar{appID: appID, http: freePort(m.t), grpc: freePort(m.t), metrics: freePort(m.t)}
	args := []string{"sidecar", "--app-id", appID, "--app-port", strconv.Itoa(appPort),
		"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc), "--metrics-port", strconv.Itoa(s.metrics), "--log-level", "debug"}
	s.proc = m.start("sidecar "+appID, bin.skein, env, append(args, extra...)...)
	s.waitReady(m.t)
	return s
}

// TestTracingCollectorDown: with the collector's port closed every call
// still succeeds; spans that cannot be exported are dropped and counted,
// from a full queue and from failed exports.
func TestTracingCollectorDown(t *testing.T) {
	m := newMesh(t)
	down := freePort(t) // nothing listens there
	env := []string{"OTEL_BSP_MAX_QUEUE_SIZE=8", "OTEL_BSP_SCHEDULE_DELAY=50"}
	portA, _ := m.app("a")
	portB, _ := m.app("b")
	// The gRPC exporter waits out its timeout on a refused connection, so
	// app-b's queue fills; the HTTP exporter fails at once.
	b := m.sidecarEnv("app-b", portB, env, "--config", tracingConfig(t, "grpc", down, "2s"))
	a := m.sidecarEnv("app-a", portA, env, "--config", tracingConfig(t, "http", down, "300ms"))
	const calls = 100
	for i := range calls {
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "x"), nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d with the collector down: %d %s", i, resp.StatusCode, body)
		}
	}
	dropped := func(s *sidecar, reason string) float64 {
		return s.metric(t, "skein_trace_spans_dropped_total", `reason="`+reason+`"`)
	}
	for _, s := range []*sidecar{a, b} {
		// Every span is accounted for: dropped from the full queue or by a
		// failed export.
		waitFor(t, 15*time.Second, s.appID+" counting every span as dropped", func() bool {
			return dropped(s, "queue_full")+dropped(s, "export_failed") == calls
		})
		if dropped(s, "export_failed") == 0 {
			t.Errorf("%s: no failed exports counted", s.appID)
		}
		if n := s.metric(t, "skein_trace_spans_exported_total"); n != 0 {
			t.Errorf("%s: %v spans exported to a closed port", s.appID, n)
		}
	}
	if dropped(b, "queue_full") == 0 {
		t.Errorf("app-b: no queue_full drops from %d spans with a queue of 8 and a stalled exporter", calls)
	}
}
