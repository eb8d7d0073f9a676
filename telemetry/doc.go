// Package telemetry sets up logging, metrics and tracing for a sidecar.
//
// NewLogger builds the process's *slog.Logger with a runtime-adjustable
// level. NewRegistry returns a Prometheus registry (never the global one)
// with the Go and process collectors.
//
// Tracing follows Dapr (contract §6.3-6.5) on OpenTelemetry: DecodeTracing
// reads a Configuration's spec.tracing; NewTracing builds a TracerProvider
// from it and the OTEL_* environment (parent-based trace-id-ratio sampler,
// OTLP gRPC or HTTP exporter behind the SDK's batch span processor with a
// bounded queue, drops counted in skein_trace_spans_dropped_total) without
// touching OTel's global provider. Its Caller and Callee layers give the
// caller sidecar's API request a CLIENT span and the callee sidecar's peer
// request a SERVER span, child of the caller's; NameCall and NameServed
// give them Dapr's names; Inject writes the hop's traceparent on outbound
// requests. Later layers find the span with the standard
// trace.SpanContextFromContext(r.Context()).
package telemetry
