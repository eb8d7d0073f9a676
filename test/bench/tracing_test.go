package bench

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/telemetry"
	"github.com/skeinmesh/skein/test/otlpsink"
)

// BenchmarkTracing is BenchmarkTwoSidecars with tracing configured four
// ways, to show what a call pays for spans and that a collector that is
// down costs the call nothing more (issue 6, point 2):
//
//	off      samplingRate "0": no spans, no traceparent
//	default  no tracing section: rate 0.0001, no exporter (unsampled spans, traceparent still sent)
//	live     rate "1", OTLP/gRPC to an in-process collector (otlpsink) that keeps every span
//	down     rate "1", OTLP/gRPC to a closed port: exports fail, the queue fills, spans are dropped
//
//	go test ./test/bench -run '^$' -bench 'Tracing/.*/serial' -benchmem -count 5
//
// In "live" the collector runs in this process, so its CPU is in ns/op too.
func BenchmarkTracing(b *testing.B) {
	sink := &otlpsink.Sink{}
	live, stop, err := otlpsink.StartGRPC(sink)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close()
	f := false
	otel := func(endpoint string) *telemetry.TracingSpec {
		return &telemetry.TracingSpec{SamplingRate: "1", Otel: telemetry.OtelSpec{EndpointAddress: endpoint, Protocol: "grpc", IsSecure: &f}}
	}
	for _, tc := range []struct {
		name string
		spec *telemetry.TracingSpec
	}{
		{"off", &telemetry.TracingSpec{SamplingRate: "0"}},
		{"default", nil},
		{"live", otel(live)},
		{"down", otel(down)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			appPort := startApp(b)
			reg, err := discovery.NewRegistry(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			withTracing := func(appID string) func(*proxy.Options) {
				return func(o *proxy.Options) {
					tr, err := telemetry.NewTracing(context.Background(), telemetry.TracingOptions{
						AppID: appID, Spec: tc.spec, Registry: prometheus.NewRegistry(),
					})
					if err != nil {
						b.Fatal(err)
					}
					o.Tracing = tr
				}
			}
			startSidecar(b, reg, "b", appPort, withTracing("b"))
			a := startSidecar(b, reg, "a", 0, withTracing("a"))
			run(b, "http://127.0.0.1:"+strconv.Itoa(a.HTTP)+"/v1.0/invoke/b/method/bench")
		})
	}
}
