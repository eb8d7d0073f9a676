package apphealth

import (
	"context"
	"io"
	"net/http"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// maxDrain is how much of a probe's answer is read so that its connection
// can be kept; a longer body is not read and the connection not reused.
const maxDrain = 64 << 10

// HTTPProbe probes an HTTP app: GET of a URL, healthy on 2xx (Dapr's
// HTTP channel HealthProbe). Redirects are not followed, as Dapr's app
// channel follows none. Safe for concurrent use.
type HTTPProbe struct {
	url     string
	rt      http.RoundTripper
	metrics *Metrics
}

// NewHTTPProbe returns a probe that GETs url through rt (the app
// transport; the probe adds no headers). m may be nil.
func NewHTTPProbe(url string, rt http.RoundTripper, m *Metrics) *HTTPProbe {
	return &HTTPProbe{url: url, rt: rt, metrics: m}
}

// Probe implements Prober.
func (p *HTTPProbe) Probe(ctx context.Context) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return false
	}
	start := time.Now()
	resp, err := p.rt.RoundTrip(req)
	if err != nil {
		p.metrics.httpProbe(0, time.Since(start))
		return false
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	_ = resp.Body.Close()
	p.metrics.httpProbe(resp.StatusCode, time.Since(start))
	return resp.StatusCode >= 200 && resp.StatusCode < 300
}

// GRPCProbe probes a gRPC app with
// dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck, healthy on
// OK (Dapr's gRPC channel HealthProbe). It keeps one connection; Close
// ends it. Safe for concurrent use.
type GRPCProbe struct {
	conn    *grpc.ClientConn
	client  runtimev1.AppCallbackHealthCheckClient
	metrics *Metrics
}

// NewGRPCProbe returns a probe of the gRPC app at addr (host:port) with
// creds. It connects lazily; reconnection back-off is capped at
// maxBackoff (the probe interval), so a restarted app is seen healthy
// within about one interval rather than gRPC's default two minutes. m may
// be nil.
func NewGRPCProbe(addr string, creds credentials.TransportCredentials, maxBackoff time.Duration, m *Metrics) (*GRPCProbe, error) {
	bo := backoff.DefaultConfig
	bo.MaxDelay = maxBackoff
	bo.BaseDelay = min(bo.BaseDelay, maxBackoff)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: maxBackoff}))
	if err != nil {
		return nil, err
	}
	return &GRPCProbe{conn: conn, client: runtimev1.NewAppCallbackHealthCheckClient(conn), metrics: m}, nil
}

// Probe implements Prober.
func (p *GRPCProbe) Probe(ctx context.Context) bool {
	start := time.Now()
	_, err := p.client.HealthCheck(ctx, &emptypb.Empty{})
	p.metrics.grpcProbe(status.Code(err).String(), time.Since(start))
	return err == nil
}

// Close closes the probe's connection.
func (p *GRPCProbe) Close() error { return p.conn.Close() }
