package telemetry

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc/credentials"
)

// traceMetrics count what happens to sampled spans after they end.
type traceMetrics struct {
	exported  prometheus.Counter
	queueFull prometheus.Counter // dropped before the queue: it was full
	failed    prometheus.Counter // dropped by a failed export
	pending   atomic.Int64       // in the queue or in an export under way
}

func newTraceMetrics(reg prometheus.Registerer) *traceMetrics {
	dropped := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_trace_spans_dropped_total",
		Help: "Sampled spans not delivered to the trace collector, by reason: queue_full (the bounded export queue was full), export_failed (the collector refused or could not be reached).",
	}, []string{"reason"})
	m := &traceMetrics{
		exported: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "skein_trace_spans_exported_total",
			Help: "Sampled spans the trace collector accepted.",
		}),
		queueFull: dropped.WithLabelValues("queue_full"),
		failed:    dropped.WithLabelValues("export_failed"),
	}
	queued := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "skein_trace_spans_queued",
		Help: "Sampled spans waiting for export or being exported.",
	}, func() float64 { return float64(m.pending.Load()) })
	reg.MustRegister(m.exported, dropped, queued)
	return m
}

// newExporter builds the OTLP exporter. Every setting is passed
// explicitly, so the exporters' own reading of OTEL_EXPORTER_OTLP_* cannot
// add to a configured endpoint (contract §6.3: the environment applies only
// when otel.endpointAddress is empty, and resolve has applied it then).
// Neither exporter connects here: a collector that is down costs nothing
// until the first export.
func newExporter(ctx context.Context, e Export) (sdktrace.SpanExporter, error) {
	switch e.Protocol {
	case "grpc":
		opts := []otlptracegrpc.Option{
			otlptracegrpc.WithEndpoint(e.Endpoint),
			otlptracegrpc.WithHeaders(e.Headers),
			otlptracegrpc.WithTimeout(e.Timeout),
		}
		if e.Insecure {
			opts = append(opts, otlptracegrpc.WithInsecure())
		} else {
			opts = append(opts, otlptracegrpc.WithTLSCredentials(credentials.NewTLS(&tls.Config{MinVersion: tls.VersionTLS12})))
		}
		return otlptracegrpc.New(ctx, opts...)
	case "http":
		opts := []otlptracehttp.Option{
			otlptracehttp.WithEndpoint(e.Endpoint),
			otlptracehttp.WithURLPath(e.URLPath),
			otlptracehttp.WithHeaders(e.Headers),
			otlptracehttp.WithTimeout(e.Timeout),
		}
		if e.Insecure {
			opts = append(opts, otlptracehttp.WithInsecure())
		} else {
			opts = append(opts, otlptracehttp.WithTLSClientConfig(&tls.Config{MinVersion: tls.VersionTLS12}))
		}
		return otlptracehttp.New(ctx, opts...)
	}
	return nil, fmt.Errorf("tracing protocol %q: must be grpc or http", e.Protocol)
}

// newPipeline puts the SDK's BatchSpanProcessor (non-blocking, bounded
// queue) between the spans and exp, and counts every sampled span's fate.
//
// The SDK drops spans when its queue is full without telling anyone (only
// an internal counter, logged at shutdown). So the batch processor is
// gated: a span enters only while fewer than queue spans are pending
// (queued, or in an export under way); the exporter wrapper releases
// spans when their export returns. The queue itself can therefore never
// overflow, and every drop happens, and is counted, in the gate. A failed
// export counts its spans as dropped too.
func newPipeline(exp sdktrace.SpanExporter, queue int, m *traceMetrics, log *slog.Logger) sdktrace.SpanProcessor {
	ce := &countingExporter{next: exp, m: m, log: log}
	bsp := sdktrace.NewBatchSpanProcessor(ce, sdktrace.WithMaxQueueSize(queue))
	return &gate{next: bsp, limit: int64(queue), m: m}
}

// gate admits ended sampled spans into the batch processor while the
// pending count is under limit, and counts the rest as queue_full drops.
// OnEnd never blocks.
type gate struct {
	next  sdktrace.SpanProcessor
	limit int64
	m     *traceMetrics
}

func (g *gate) OnStart(ctx context.Context, s sdktrace.ReadWriteSpan) { g.next.OnStart(ctx, s) }

func (g *gate) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() {
		return // the batch processor ignores these too
	}
	if g.m.pending.Add(1) > g.limit {
		g.m.pending.Add(-1)
		g.m.queueFull.Inc()
		return
	}
	g.next.OnEnd(s)
}

func (g *gate) Shutdown(ctx context.Context) error   { return g.next.Shutdown(ctx) }
func (g *gate) ForceFlush(ctx context.Context) error { return g.next.ForceFlush(ctx) }

// countingExporter counts each batch as exported or failed and releases it
// from the gate. It logs when exports start failing and when they recover,
// not every failure, and returns nil so the SDK does not also report the
// error through OTel's global error handler (stderr).
type countingExporter struct {
	next    sdktrace.SpanExporter
	m       *traceMetrics
	log     *slog.Logger
	failing atomic.Bool
}

func (c *countingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	err := c.next.ExportSpans(ctx, spans)
	n := len(spans)
	c.m.pending.Add(-int64(n))
	if err != nil {
		c.m.failed.Add(float64(n))
		if !c.failing.Swap(true) {
			c.log.Warn("trace export failing; spans are dropped and counted in skein_trace_spans_dropped_total", "spans", n, "err", err)
		}
		return nil
	}
	c.m.exported.Add(float64(n))
	if c.failing.Swap(false) {
		c.log.Info("trace export recovered")
	}
	return nil
}

func (c *countingExporter) Shutdown(ctx context.Context) error { return c.next.Shutdown(ctx) }
