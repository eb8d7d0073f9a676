// Package otlpsink is a real OTLP trace receiver for tests and benchmarks:
// the collector's gRPC TraceService and the OTLP/HTTP protobuf endpoint on
// 127.0.0.1, keeping every span it receives. It stands in for a collector
// where starting Jaeger would cost more than the test is about (unit tests,
// in-process benchmarks); the end-to-end tests use the real Jaeger.
package otlpsink
