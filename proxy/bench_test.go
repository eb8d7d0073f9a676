package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/telemetry"
)

// startSidecar runs a sidecar in-process on free loopback ports.
func startSidecar(tb testing.TB, reg *discovery.Registry, appID string, appPort int) *Sidecar {
	tb.Helper()
	s, err := New(Options{
		AppID: appID, AppPort: appPort, ListenAddresses: []string{"127.0.0.1"},
		InternalListenAddr: "127.0.0.1", MaxHeaderBytes: 4096, GracePeriod: time.Second,
		Host: Host{IP: "127.0.0.1", Name: "bench"},
	}, reg, reg, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	tb.Cleanup(func() {
		cancel()
		<-done
	})
	deadline := time.Now().Add(5 * time.Second)
	for !s.ready.Load() {
		if time.Now().After(deadline) {
			tb.Fatal("sidecar not ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

// BenchmarkPipeline measures one call through two in-process sidecars to a
// 1 KiB app response: client → API → picker → h2c → peer → app channel.
// CPU and allocations include the client and the app, so compare runs of
// this benchmark with each other (benchstat), not with absolute targets.
func BenchmarkPipeline(b *testing.B) {
	body := strings.Repeat("x", 1024)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, body)
	}))
	defer app.Close()
	appPort, _ := strconv.Atoi(app.URL[strings.LastIndex(app.URL, ":")+1:])
	reg, err := discovery.NewRegistry(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	startSidecar(b, reg, "callee", appPort)
	caller := startSidecar(b, reg, "caller", 0)
	url := "http://127.0.0.1:" + strconv.Itoa(caller.Ports().HTTP) + "/v1.0/invoke/callee/method/work"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil {
			b.Fatal(err)
		}
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || n != 1024 {
			b.Fatalf("status %d, %d bytes", resp.StatusCode, n)
		}
	}
}

// BenchmarkParseInvocation measures target and method extraction.
func BenchmarkParseInvocation(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/v1.0/invoke/orders/method/orders/42", nil)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInvocation(r, "default"); err != nil {
			b.Fatal(err)
		}
	}
}
