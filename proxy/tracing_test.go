package proxy

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/telemetry"
)

func writeConfiguration(t *testing.T, tracing string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n  tracing:\n" + tracing
	if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestTracingConfig(t *testing.T) {
	good := writeConfiguration(t, "    samplingRate: \"1\"\n    otel: {endpointAddress: \"127.0.0.1:4317\", protocol: grpc, isSecure: false}\n")
	cfg, err := LoadConfig(good, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := compile(cfg, "app-a")
	if err != nil {
		t.Fatal(err)
	}
	if s.Tracing == nil || s.Tracing.SamplingRate != "1" || s.Tracing.Otel.Protocol != "grpc" {
		t.Errorf("snapshot tracing %+v", s.Tracing)
	}

	bad := writeConfiguration(t, "    otel: {endpointAddress: \"127.0.0.1:4317\", protocol: udp}\n")
	cfg, err = LoadConfig(bad, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = compile(cfg, "app-a")
	if err == nil || !strings.Contains(err.Error(), bad+`: spec.tracing.otel.protocol: "udp": must be grpc or http`) {
		t.Errorf("bad protocol: %v", err)
	}
}

// TestSidecarTracing: the API hop's span is named after the invocation and
// ends with the call's status; a reloaded sampling rate applies to the
// next request.
func TestSidecarTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	reg := prometheus.NewRegistry()
	tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingOptions{
		AppID: "app-a", Spec: &telemetry.TracingSpec{SamplingRate: "0"}, Registry: reg, SpanProcessor: rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	dr, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{AppID: "app-a", Tracing: tr, Host: Host{IP: "127.0.0.1", Name: "test"}}, dr, dr, reg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	invoke := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.apiHandler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1.0/invoke/ghost/method/orders/1", nil))
		return w
	}
	if w := invoke(); len(rec.Ended()) != 0 || w.Header().Get("Traceparent") != "" {
		t.Fatalf("rate 0: %d spans, traceparent %q", len(rec.Ended()), w.Header().Get("Traceparent"))
	}

	cfg, err := LoadConfig(writeConfiguration(t, "    samplingRate: \"1\"\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	w := invoke()
	spans := rec.Ended()
	if len(spans) != 1 {
		t.Fatalf("after reload to rate 1: %d spans", len(spans))
	}
	sp := spans[0]
	if sp.Name() != "CallLocal/ghost/orders/1" || sp.SpanKind() != trace.SpanKindClient {
		t.Errorf("span %q kind %v, want CallLocal/ghost/orders/1 client", sp.Name(), sp.SpanKind())
	}
	if w.Code != http.StatusInternalServerError || sp.Status().Code != codes.Error || sp.Status().Description != "Code(500): Internal Server Error" {
		t.Errorf("APP_NOT_FOUND: status %d, span status %+v", w.Code, sp.Status())
	}
	if !strings.Contains(w.Header().Get("Traceparent"), sp.SpanContext().SpanID().String()) {
		t.Errorf("error response traceparent %q, want the span %s", w.Header().Get("Traceparent"), sp.SpanContext().SpanID())
	}

	w = httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodPost, "/v1.0/invoke/ghost/method/x", nil)
	r.Header.Set("Baggage", "=bad")
	s.apiHandler.ServeHTTP(w, r)
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), `"message":"invalid baggage header: `) ||
		!strings.Contains(w.Body.String(), ReasonInvalidBaggage) {
		t.Errorf("invalid baggage: %d %s", w.Code, w.Body)
	}
}
