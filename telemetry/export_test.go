package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/skeinmesh/skein/test/otlpsink"
)

// exportTracing is a Tracing at rate 1 exporting to endpoint.
func exportTracing(t *testing.T, protocol, endpoint string, headers []Header, getenv func(string) string) (*Tracing, *prometheus.Registry, *bytes.Buffer) {
	t.Helper()
	reg := prometheus.NewRegistry()
	var logs bytes.Buffer
	f := false
	tr, err := NewTracing(context.Background(), TracingOptions{
		AppID: "app-a", Getenv: getenv, Registry: reg, Log: slog.New(slog.NewTextHandler(&logs, nil)),
		Spec: &TracingSpec{SamplingRate: "1", Otel: OtelSpec{EndpointAddress: endpoint, Protocol: protocol,
			IsSecure: &f, Headers: headers, Timeout: 2 * time.Second}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tr, reg, &logs
}

func endSpans(tr *Tracing, n int) {
	for range n {
		_, span := tr.tracer.Start(context.Background(), "s", trace.WithSpanKind(trace.SpanKindClient))
		span.End()
	}
}

// counter is the value of a counter (or gauge), of the child with label
// reason when reason is set.
func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if reason == "" || (len(m.GetLabel()) == 1 && m.GetLabel()[0].GetValue() == reason) {
				if g := m.GetGauge(); g != nil {
					return g.GetValue()
				}
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("%s{reason=%q} not registered", name, reason)
	return 0
}

func TestExportGRPC(t *testing.T) {
	sink := &otlpsink.Sink{}
	addr, stop, err := otlpsink.StartGRPC(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	tr, reg, _ := exportTracing(t, "grpc", addr, []Header{{"x-token", "abc"}}, env())
	endSpans(tr, 10)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if sink.Len() != 10 {
		t.Fatalf("collector got %d spans, want 10", sink.Len())
	}
	if s := sink.Spans()[0]; s.Service != "app-a" {
		t.Errorf("service.name %q, want app-a", s.Service)
	}
	if h := sink.Headers()[0]["x-token"]; len(h) != 1 || h[0] != "abc" {
		t.Errorf("export header x-token = %q, want abc", h)
	}
	if got := counter(t, reg, "skein_trace_spans_exported_total", ""); got != 10 {
		t.Errorf("exported counter %v, want 10", got)
	}
}

func TestExportHTTP(t *testing.T) {
	sink := &otlpsink.Sink{}
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.URL.Path)
		sink.ServeHTTP(w, r)
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")
	// The endpoint from the environment (config endpoint empty), headers too.
	tr, reg, _ := exportTracing(t, "", "", nil, env("OTEL_EXPORTER_OTLP_ENDPOINT", srv.URL,
		"OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "OTEL_EXPORTER_OTLP_INSECURE", "true", "OTEL_EXPORTER_OTLP_HEADERS", "x-token=from%20env"))
	endSpans(tr, 3)
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if sink.Len() != 3 || len(paths) == 0 || paths[0] != "/v1/traces" {
		t.Fatalf("collector got %d spans on %q, want 3 on /v1/traces (host %s)", sink.Len(), paths, host)
	}
	if h := sink.Headers()[0]["X-Token"]; len(h) != 1 || h[0] != "from env" {
		t.Errorf("export header X-Token = %q, want %q", h, "from env")
	}
	if got := counter(t, reg, "skein_trace_spans_exported_total", ""); got != 3 {
		t.Errorf("exported counter %v, want 3", got)
	}
}

func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestCollectorDown(t *testing.T) {
	for _, protocol := range []string{"grpc", "http"} {
		t.Run(protocol, func(t *testing.T) {
			tr, reg, logs := exportTracing(t, protocol, closedPort(t), nil, env())
			endSpans(tr, 5)
			if err := tr.Close(); err != nil {
				t.Fatal(err)
			}
			if got := counter(t, reg, "skein_trace_spans_dropped_total", "export_failed"); got != 5 {
				t.Errorf("dropped{export_failed} %v, want 5", got)
			}
			if got := counter(t, reg, "skein_trace_spans_exported_total", ""); got != 0 {
				t.Errorf("exported %v, want 0", got)
			}
			if n := strings.Count(logs.String(), "trace export failing"); n != 1 {
				t.Errorf("failure logged %d times, want once:\n%s", n, logs)
			}
		})
	}
}

// TestQueueFull: with the collector stalled, the bounded queue fills and
// every further span is dropped and counted, without blocking.
func TestQueueFull(t *testing.T) {
	sink := &otlpsink.Sink{}
	addr, stop, err := otlpsink.StartGRPC(sink)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	sink.Hold()
	tr, reg, _ := exportTracing(t, "grpc", addr, nil, env("OTEL_BSP_MAX_QUEUE_SIZE", "4"))
	endSpans(tr, 50)
	if got := counter(t, reg, "skein_trace_spans_dropped_total", "queue_full"); got != 46 {
		t.Errorf("dropped{queue_full} %v, want 46 (queue of 4)", got)
	}
	if got := counter(t, reg, "skein_trace_spans_queued", ""); got != 4 {
		t.Errorf("queued gauge %v, want 4", got)
	}
	sink.Release()
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
	if got := counter(t, reg, "skein_trace_spans_exported_total", ""); got != 4 || sink.Len() != 4 {
		t.Errorf("exported %v, collector has %d, want 4", got, sink.Len())
	}
}
