package proxy

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/telemetry"
)

// toggledApp is an app whose /healthz answers 200 or 500 as set, and
// which counts the other calls it gets.
type toggledApp struct {
	*httptest.Server
	sick  atomic.Bool
	calls atomic.Int64
}

func newToggledApp(t *testing.T) *toggledApp {
	a := &toggledApp{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			if a.sick.Load() {
				w.WriteHeader(http.StatusInternalServerError)
			}
			return
		}
		a.calls.Add(1)
		_, _ = w.Write([]byte("hi"))
	}))
	t.Cleanup(a.Close)
	return a
}

// fakeRegistrar records registrations (and whether the last one said the
// app was unhealthy) and releases of its leases.
type fakeRegistrar struct {
	registered, released atomic.Int64
	unhealthy            atomic.Bool
}

func (f *fakeRegistrar) Register(in discovery.Instance) (*discovery.Lease, error) {
	f.unhealthy.Store(in.Unhealthy)
	f.registered.Add(1)
	return discovery.NewLease(func() error { return nil }, func() error { f.released.Add(1); return nil }), nil
}

// newHealthSidecar builds sidecar "a" in front of app with health checks
// every 10 ms, threshold 1, and starts probing; it stops at the end of
// the test.
func newHealthSidecar(t *testing.T, app *toggledApp, reg Registrar) *Sidecar {
	t.Helper()
	u, _ := url.Parse(app.URL)
	port, _ := strconv.Atoi(u.Port())
	opts := Options{AppID: "a", AppPort: port, AppHealth: &apphealth.Config{Interval: 10 * time.Millisecond, Timeout: 10 * time.Millisecond, Threshold: 1}}
	s, err := New(opts, reg, fixedSource{addr: "127.0.0.1:1"}, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { s.health.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
	return s
}

func waitHealth(t *testing.T, s *Sidecar, healthy bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for s.health.Healthy() != healthy {
		if time.Now().After(deadline) {
			t.Fatalf("Healthy() not %v within 5s", healthy)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAppHealthRefusesCalls: while the app is unhealthy (and before its
// first successful probe) calls from peers and self-invocation get Dapr's
// 500 with reason APP_UNHEALTHY and never reach the app; once healthy they
// pass. The metadata shows the settings and the state.
func TestAppHealthRefusesCalls(t *testing.T) {
	app := newToggledApp(t)
	app.sick.Store(true)
	s := newHealthSidecar(t, app, &fakeRegistrar{})
	peerCall := func() *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodGet, "/orders", nil)
		r.Host = "a.default"
		w := httptest.NewRecorder()
		s.peerHandler.ServeHTTP(w, r)
		return w
	}
	selfCall := func() *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.apiHandler.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1.0/invoke/a/method/orders", nil))
		return w
	}
	for name, call := range map[string]func() *httptest.ResponseRecorder{"peer": peerCall, "self": selfCall} {
		w := call()
		var e errorBody
		_ = json.Unmarshal(w.Body.Bytes(), &e)
		code, reason := reasonOf(t, w)
		got := []any{code, e.ErrorCode, e.Message, reason}
		want := []any{500, "ERR_DIRECT_INVOKE", "failed to invoke, id: a, err: rpc error: code = Internal desc = app is not in a healthy state", ReasonAppUnhealthy}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s call to an unhealthy app (-want +got):\n%s", name, diff)
		}
	}
	if n := app.calls.Load(); n != 0 {
		t.Errorf("the unhealthy app got %d calls, want 0", n)
	}
	if h := metadataHealth(t, s); h.Status != "unhealthy" {
		t.Errorf("metadata status %q, want unhealthy", h.Status)
	}

	app.sick.Store(false)
	waitHealth(t, s, true)
	for name, call := range map[string]func() *httptest.ResponseRecorder{"peer": peerCall, "self": selfCall} {
		if w := call(); w.Code != http.StatusOK || w.Body.String() != "hi" {
			t.Errorf("%s call to a healthy app: %d %s, want 200 hi", name, w.Code, w.Body)
		}
	}
	want := appHealthStatus{HealthCheckPath: "/healthz", HealthProbeInterval: "10ms", HealthProbeTimeout: "10ms", HealthThreshold: 1, Status: "healthy"}
	if diff := cmp.Diff(want, metadataHealth(t, s)); diff != "" {
		t.Errorf("appConnectionProperties.health (-want +got):\n%s", diff)
	}
}

func metadataHealth(t *testing.T, s *Sidecar) appHealthStatus {
	t.Helper()
	w := httptest.NewRecorder()
	s.serveMetadata(w)
	var md struct {
		AppConnection struct {
			Health *appHealthStatus `json:"health"`
		} `json:"appConnectionProperties"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &md); err != nil || md.AppConnection.Health == nil {
		t.Fatalf("no appConnectionProperties.health in %s (%v)", w.Body, err)
	}
	return *md.AppConnection.Health
}

// TestAdvertiseFollowsHealth: the instance's record says unhealthy when
// the app turns unhealthy (it stays listed: callers pick it last), healthy
// again when it recovers, and is released on stop.
func TestAdvertiseFollowsHealth(t *testing.T) {
	app := newToggledApp(t)
	reg := &fakeRegistrar{}
	s := newHealthSidecar(t, app, reg)
	waitHealth(t, s, true)
	lease, _ := reg.Register(discovery.Instance{}) // as becomeReady does for a healthy app
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() { s.advertise(discovery.Instance{AppID: "a"}, lease, stop) })

	waitCount := func(what string, n *atomic.Int64, want int64) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for n.Load() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s = %d, want %d within 5s", what, n.Load(), want)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	app.sick.Store(true)
	waitCount("registrations after the app turned unhealthy", &reg.registered, 2)
	if !reg.unhealthy.Load() {
		t.Error("the record written when the app turned unhealthy does not say so")
	}
	app.sick.Store(false)
	waitCount("registrations after it recovered", &reg.registered, 3)
	if reg.unhealthy.Load() {
		t.Error("the record written when the app recovered still says unhealthy")
	}
	if n := reg.released.Load(); n != 0 {
		t.Errorf("releases while running = %d, want 0: the instance stays listed", n)
	}
	close(stop)
	wg.Wait()
	if n := reg.released.Load(); n != 1 {
		t.Errorf("releases after stop = %d, want 1", n)
	}
}

// TestNoAppHealth: without --enable-app-health-check there is no checker,
// no health in the metadata and calls pass.
func TestNoAppHealth(t *testing.T) {
	app := newToggledApp(t)
	app.sick.Store(true) // never asked
	s := newPanicSidecar(t, app.Server, Options{})
	if s.health != nil || !s.health.Healthy() {
		t.Fatal("a checker without --enable-app-health-check")
	}
	w := httptest.NewRecorder()
	s.serveMetadata(w)
	var md struct {
		AppConnection map[string]any `json:"appConnectionProperties"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &md); err != nil {
		t.Fatal(err)
	}
	if h, ok := md.AppConnection["health"]; ok {
		t.Errorf("appConnectionProperties.health = %v, want none", h)
	}
	r := httptest.NewRequest(http.MethodGet, "/orders", nil)
	r.Host = "a.default"
	w = httptest.NewRecorder()
	s.peerHandler.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Errorf("call: %d %s, want 200", w.Code, w.Body)
	}
}
