// Package telemetry sets up logging, metrics and trace-context handling for
// a sidecar.
//
// NewLogger builds the process's *slog.Logger with a runtime-adjustable
// level. NewRegistry returns a Prometheus registry (never the global one)
// with the Go and process collectors. TraceContext is the server-side layer
// that gives every hop a W3C trace context: it continues a valid inbound
// traceparent with a new span id, or starts a trace when there is none, and
// exposes it to later layers through SpanFrom(ctx).
package telemetry
