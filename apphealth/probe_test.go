package apphealth

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

func newTestMetrics(t *testing.T) *Metrics {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry(), "app-a")
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestHTTPProbe probes an httptest app answering each status: healthy on
// 2xx only, a redirect not followed, and Dapr's probe metric by status.
func TestHTTPProbe(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   bool
	}{
		{"200", http.StatusOK, true},
		{"204", http.StatusNoContent, true},
		{"redirect not followed", http.StatusFound, false},
		{"404", http.StatusNotFound, false},
		{"500", http.StatusInternalServerError, false},
		{"503", http.StatusServiceUnavailable, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var mu sync.Mutex
			var paths []string
			app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				paths = append(paths, r.Method+" "+r.URL.Path)
				mu.Unlock()
				if tt.status == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", tt.status) // /elsewhere would answer 302 too: a loop if followed
					return
				}
				w.WriteHeader(tt.status)
			}))
			defer app.Close()
			m := newTestMetrics(t)
			p := NewHTTPProbe(app.URL+"/healthz", app.Client().Transport, m)
			if got := p.Probe(t.Context()); got != tt.want {
				t.Errorf("Probe() = %v, want %v", got, tt.want)
			}
			mu.Lock()
			if len(paths) != 1 || paths[0] != "GET /healthz" {
				t.Errorf("app saw %q, want one GET /healthz", paths)
			}
			mu.Unlock()
			code := strconv.Itoa(tt.status)
			if n := testutil.ToFloat64(m.httpCount.WithLabelValues("app-a", code)); n != 1 {
				t.Errorf("dapr_http_healthprobes_completed_count{status=%q} = %v, want 1", code, n)
			}
		})
	}
}

// TestHTTPProbeFailures: no app listening and an app slower than the
// probe's deadline are unhealthy answers, recorded with status 500 as
// Dapr records probes that got no answer.
func TestHTTPProbeFailures(t *testing.T) {
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		m := newTestMetrics(t)
		if NewHTTPProbe("http://"+addr+"/healthz", &http.Transport{}, m).Probe(t.Context()) {
			t.Error("healthy with nothing listening")
		}
		if n := testutil.ToFloat64(m.httpCount.WithLabelValues("app-a", "500")); n != 1 {
			t.Errorf("completed_count{status=500} = %v, want 1", n)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		release := make(chan struct{})
		app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}))
		defer app.Close()
		defer close(release)
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		if NewHTTPProbe(app.URL+"/healthz", app.Client().Transport, nil).Probe(ctx) {
			t.Error("healthy past the deadline")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("probe took %s, want it cut at the 50ms deadline", d)
		}
	})
}

// healthServer is a gRPC app implementing AppCallbackHealthCheck whose
// answer can be changed.
type healthServer struct {
	runtimev1.UnimplementedAppCallbackHealthCheckServer
	code  atomic.Uint32 // codes.Code to answer; OK: healthy
	calls atomic.Int64
}

func (h *healthServer) HealthCheck(context.Context, *emptypb.Empty) (*runtimev1.HealthCheckResponse, error) {
	h.calls.Add(1)
	if c := codes.Code(h.code.Load()); c != codes.OK {
		return nil, status.Error(c, "not ready")
	}
	return &runtimev1.HealthCheckResponse{}, nil
}

// serveGRPC serves srv (nil: no health service) on addr ("127.0.0.1:0"
// for any port) until the returned stop is called.
func serveGRPC(t *testing.T, addr string, srv *healthServer) (string, func()) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	if srv != nil {
		runtimev1.RegisterAppCallbackHealthCheckServer(s, srv)
	}
	var wg sync.WaitGroup
	wg.Go(func() { _ = s.Serve(ln) })
	var once sync.Once
	stop := func() { once.Do(func() { s.Stop(); wg.Wait() }) }
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// TestGRPCProbe probes a real gRPC server: OK is healthy; an error status,
// an app without the health service and an app gone are not; an app back
// on its port is seen again (back-off capped at the interval).
func TestGRPCProbe(t *testing.T) {
	srv := &healthServer{}
	addr, stop := serveGRPC(t, "127.0.0.1:0", srv)
	m := newTestMetrics(t)
	p, err := NewGRPCProbe(addr, insecure.NewCredentials(), 100*time.Millisecond, m)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	probe := func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		defer cancel()
		return p.Probe(ctx)
	}
	if !probe() {
		t.Fatal("OK answer: unhealthy")
	}
	srv.code.Store(uint32(codes.Internal))
	if probe() {
		t.Error("Internal answer: healthy")
	}
	srv.code.Store(uint32(codes.OK))
	if srv.calls.Load() != 2 {
		t.Errorf("app got %d health checks, want 2", srv.calls.Load())
	}
	for _, c := range []string{"OK", "Internal"} {
		if n := testutil.ToFloat64(m.grpcCount.WithLabelValues("app-a", c)); n != 1 {
			t.Errorf("dapr_grpc_io_healthprobes_completed_count{grpc_client_status=%q} = %v, want 1", c, n)
		}
	}

	stop()
	if probe() {
		t.Error("app stopped: healthy")
	}
	_, _ = serveGRPC(t, addr, srv) // the app restarts on its port
	deadline := time.Now().Add(5 * time.Second)
	for !probe() {
		if time.Now().After(deadline) {
			t.Fatal("restarted app not seen healthy within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}

	t.Run("no health service", func(t *testing.T) {
		addr, _ := serveGRPC(t, "127.0.0.1:0", nil)
		m := newTestMetrics(t)
		p, err := NewGRPCProbe(addr, insecure.NewCredentials(), time.Second, m)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.Probe(t.Context()) {
			t.Error("Unimplemented answer: healthy")
		}
		if n := testutil.ToFloat64(m.grpcCount.WithLabelValues("app-a", "Unimplemented")); n != 1 {
			t.Errorf("completed_count{grpc_client_status=Unimplemented} = %v, want 1", n)
		}
	})
}

// TestCheckerWithApps runs a checker with short intervals against real
// apps, HTTP and gRPC, whose health is switched: the app turns unhealthy
// only after Threshold failed probes, and healthy again after one success.
func TestCheckerWithApps(t *testing.T) {
	const threshold = 3
	cfg := Config{Interval: 20 * time.Millisecond, Timeout: 20 * time.Millisecond, Threshold: threshold}
	type app struct {
		probe  Prober
		set    func(ok bool)
		probes func() int64
	}
	tests := []struct {
		name string
		app  func(t *testing.T) app
	}{
		{"http", func(t *testing.T) app {
			var ok atomic.Bool
			var probes atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				probes.Add(1)
				if !ok.Load() {
					w.WriteHeader(http.StatusInternalServerError)
				}
			}))
			t.Cleanup(srv.Close)
			return app{NewHTTPProbe(srv.URL+"/healthz", srv.Client().Transport, nil), ok.Store, probes.Load}
		}},
		{"grpc", func(t *testing.T) app {
			srv := &healthServer{}
			addr, _ := serveGRPC(t, "127.0.0.1:0", srv)
			p, err := NewGRPCProbe(addr, insecure.NewCredentials(), cfg.Interval, nil)
			if err != nil {
				t.Fatal(err)
			}
			set := func(ok bool) {
				c := codes.Unavailable
				if ok {
					c = codes.OK
				}
				srv.code.Store(uint32(c))
			}
			return app{p, set, srv.calls.Load}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := tt.app(t)
			a.set(true)
			c := New(cfg, a.probe, nil, quiet)
			ctx, cancel := context.WithCancel(t.Context())
			var wg sync.WaitGroup
			wg.Go(func() { c.Run(ctx) })
			defer func() { cancel(); wg.Wait() }()

			waitUntil(t, "healthy at start", func() bool { return c.Healthy() })
			before := a.probes()
			a.set(false)
			waitUntil(t, "unhealthy", func() bool { return !c.Healthy() })
			if n := a.probes() - before; n < threshold {
				t.Errorf("unhealthy after %d probes, want at least %d", n, threshold)
			}
			a.set(true)
			waitUntil(t, "healthy again", func() bool { return c.Healthy() })
		})
	}
}

// waitUntil polls cond every 5 ms for up to 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
