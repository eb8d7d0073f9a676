// Package bench holds Skein's benchmarks: run.sh compares the built binary
// with HAProxy under load (see README.md); the Go benchmarks here run the
// whole invocation pipeline in-process, for CPU profiles and allocation
// counts:
//
//	go test ./test/bench -run '^$' -bench . -benchmem
//	go test ./test/bench -run '^$' -bench 'TwoSidecars/parallel' -cpuprofile /tmp/cpu.out
//	go tool pprof -top -focus 'skein/(proxy|discovery|telemetry)' /tmp/cpu.out
//
// CPU and allocations include the client and the app, which share the
// process; compare a sidecar run with the Direct baseline, and runs with
// each other (benchstat), not with run.sh's per-process numbers.
package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/telemetry"
)

const bodySize = 1024

// startApp serves 1 KiB on every path, as run.sh's backend does.
func startApp(tb testing.TB) int {
	tb.Helper()
	body := strings.Repeat("x", bodySize)
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(bodySize))
		_, _ = io.WriteString(w, body)
	}))
	tb.Cleanup(app.Close)
	return app.Listener.Addr().(*net.TCPAddr).Port
}

// startSidecar runs a sidecar in-process on free loopback ports and waits
// until its healthz answers 204. tune, if given, adjusts the options.
func startSidecar(tb testing.TB, reg *discovery.Registry, appID string, appPort int, tune ...func(*proxy.Options)) proxy.Ports {
	tb.Helper()
	opts := proxy.Options{
		AppID: appID, AppPort: appPort, ListenAddresses: []string{"127.0.0.1"},
		InternalListenAddr: "127.0.0.1", MetricsListenAddr: "127.0.0.1", EnableMetrics: true,
		MaxHeaderBytes: 4096, GracePeriod: time.Second,
		Host: proxy.Host{IP: "127.0.0.1", Name: "bench"},
	}
	for _, f := range tune {
		f(&opts)
	}
	s, err := proxy.New(opts, reg, reg, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
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
	p := s.Ports()
	health := "http://127.0.0.1:" + strconv.Itoa(p.HTTP) + "/v1.0/healthz"
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return p
			}
		}
		if time.Now().After(deadline) {
			tb.Fatal("sidecar not ready")
		}
	}
}

func get(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK || n != bodySize {
		return fmt.Errorf("status %d, %d bytes, %v", resp.StatusCode, n, err)
	}
	return nil
}

// run benchmarks GETs of url one at a time (serial) and from GOMAXPROCS
// goroutines (parallel).
func run(b *testing.B, url string) {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}}
	defer client.CloseIdleConnections()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := get(client, url); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := get(client, url); err != nil {
					b.Error(err) // not Fatal: this is not the benchmark's goroutine
					return
				}
			}
		})
	})
}

// BenchmarkDirect is the baseline: client → app.
func BenchmarkDirect(b *testing.B) {
	run(b, "http://127.0.0.1:"+strconv.Itoa(startApp(b))+"/bench")
}

// BenchmarkTwoSidecars is client → sidecar a → (h2c) sidecar b → app.
func BenchmarkTwoSidecars(b *testing.B) {
	appPort := startApp(b)
	reg, err := discovery.NewRegistry(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	startSidecar(b, reg, "b", appPort)
	a := startSidecar(b, reg, "a", 0)
	run(b, "http://127.0.0.1:"+strconv.Itoa(a.HTTP)+"/v1.0/invoke/b/method/bench")
}
