package faults

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// blackHole accepts TCP connections and never reads or answers: a
// collector that hangs, worse than one that is down. It closes when the
// test ends.
func blackHole(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().(*net.TCPAddr).Port
}

// TestTelemetryBackendsAbsent is issue 14 point 4, the OTLP collector and
// Prometheus absent: both sidecars trace every call to a collector that
// accepts connections and never answers (the caller over OTLP/HTTP, the
// callee over OTLP/gRPC), and nobody scrapes their metrics while steady
// calls run. No call fails, spans that cannot be exported are counted as
// dropped, and neither sidecar holds more goroutines or fds than before
// the load. (The collector's port closed: test.TestTracingCollectorDown.)
func TestTelemetryBackendsAbsent(t *testing.T) {
	hole := blackHole(t)
	config := func(protocol string) string {
		p := filepath.Join(t.TempDir(), "config.yaml")
		doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: tracing}
spec:
  tracing:
    samplingRate: "1"
    otel:
      endpointAddress: "127.0.0.1:%d"
      protocol: %s
      isSecure: false
      timeout: 500ms
`, hole, protocol)
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	env := []string{"OTEL_BSP_MAX_QUEUE_SIZE=64", "OTEL_BSP_SCHEDULE_DELAY=50"}
	m := harness.NewMesh(t, bin)
	port, _ := m.App("b", 0)
	b := m.SidecarEnv("app-b", port, env, "--config", config("grpc"))
	b.WaitReady(t)
	a := m.SidecarEnv("app-a", 0, env, "--config", config("http"))
	a.WaitReady(t)
	// The baselines once connection pools and exporters are at work.
	warm := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: 4})
	warm.Progress(t, 200, 20*time.Second)
	if res := warm.Stop(); res.Failed() != 0 {
		t.Fatalf("warm-up: %v", res.Failures)
	}
	baseA, baseB := a.Usage(t), b.Usage(t)

	load := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: 4, Posts: true})
	load.Progress(t, 1000, 30*time.Second)
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.Failed() != 0 {
		t.Errorf("%d calls failed with the collector hanging, first: %v", res.Failed(), res.Failures)
	}
	harness.Duplicates(t, res, harness.AppCounts(t, port))
	calls := float64(res.GETs + res.POSTs)
	for _, s := range []*harness.Sidecar{a, b} {
		if n := s.Metric(t, "skein_trace_spans_exported_total"); n != 0 {
			t.Errorf("%s: %v spans exported to a collector that never answers", s.AppID, n)
		}
		if n := s.Metric(t, "skein_trace_spans_dropped_total"); n < calls/2 {
			t.Errorf("%s: %v spans counted as dropped of %v calls traced, want most", s.AppID, n, calls)
		}
	}
	ua := a.Settles(t, baseA, margin, 15*time.Second)
	ub := b.Settles(t, baseB, margin, 15*time.Second)
	t.Logf("after: caller %v (was %v), callee %v (was %v)", ua, baseA, ub, baseB)
}
