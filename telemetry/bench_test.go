package telemetry

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/test/otlpsink"
)

// BenchmarkCallerLayer is one API request through the caller layer plus
// the outbound Inject, without the network, so the tracing cost is not
// lost in the noise of a whole call (test/bench BenchmarkTracing has
// that):
//
//	go test ./telemetry -run '^$' -bench CallerLayer -benchmem -count 5
func BenchmarkCallerLayer(b *testing.B) {
	sink := &otlpsink.Sink{}
	live, stop, err := otlpsink.StartGRPC(sink)
	if err != nil {
		b.Fatal(err)
	}
	defer stop()
	f := false
	otel := func(endpoint string) *TracingSpec {
		return &TracingSpec{SamplingRate: "1", Otel: OtelSpec{EndpointAddress: endpoint, Protocol: "grpc", IsSecure: &f}}
	}
	for _, tc := range []struct {
		name string
		spec *TracingSpec
	}{
		{"off", &TracingSpec{SamplingRate: "0"}},
		{"unsampled", nil},
		{"sampled-live", otel(live)},
		{"sampled-down", otel("127.0.0.1:1")},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tr, err := NewTracing(context.Background(), TracingOptions{AppID: "a", Spec: tc.spec, Getenv: env(), Registry: prometheus.NewRegistry()})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			out := http.Header{}
			h := tr.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				NameCall(r.Context(), "b", "orders")
				Inject(r.Context(), out)
				w.WriteHeader(http.StatusOK)
			}))
			r := httptest.NewRequest(http.MethodPost, "/v1.0/invoke/b/method/orders", nil)
			r.Header.Set("Dapr-App-Id", "b")
			w := httptest.NewRecorder()
			b.ReportAllocs()
			for b.Loop() {
				clear(w.Header())
				h.ServeHTTP(w, r)
			}
		})
	}
}
