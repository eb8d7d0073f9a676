package proxy

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/telemetry"
)

// TestCallResolvesItsRouteOnce: a call that is tried four times (three
// retries of a failing target) looks its route up once; every retry,
// breaker and timeout decision reads the route resolved at the start.
func TestCallResolvesItsRouteOnce(t *testing.T) {
	var hits atomic.Int64
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer app.Close()
	dir := t.TempDir()
	reg, err := discovery.NewRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	lease, err := reg.Register(discovery.Instance{AppID: "orders", Namespace: "default", Address: app.Listener.Addr().String(), PID: os.Getpid(), Started: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	defer close(stop)
	go lease.KeepAlive(stop, slog.New(slog.DiscardHandler))
	s, err := New(Options{AppID: "checkout", Host: Host{IP: "127.0.0.1", Name: "test"}}, reg, reg, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	res := filepath.Join(dir, "res")
	if err := os.Mkdir(res, 0o700); err != nil {
		t.Fatal(err)
	}
	doc := `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    retries:
      three:
        policy: constant
        duration: 1ms
        maxRetries: 3
  targets:
    apps:
      orders:
        retry: three
`
	if err := os.WriteFile(filepath.Join(res, "res.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig("", []string{res})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	snap := s.snap.Load()
	w := httptest.NewRecorder()
	s.apiHandler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1.0/invoke/orders/method/x", nil))
	// The policy allows 3 retries; a loaded machine may see fewer reach
	// the app (the retry budget), but there must have been retries.
	if w.Code != http.StatusInternalServerError || hits.Load() < 2 {
		t.Fatalf("got %d after %d tries, want 500 after retries", w.Code, hits.Load())
	}
	if n := snap.routeLookups.Load(); n != 1 {
		t.Errorf("one call of %d tries looked its route up %d times, want 1", hits.Load(), n)
	}
}
