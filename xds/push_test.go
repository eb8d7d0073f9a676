package xds

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
)

// namedPeer is a stand-in for another sidecar's peer port (cleartext, so
// HTTP/1.1 or h2c): it answers every call with its name. It returns the
// port.
func namedPeer(t *testing.T, name string) uint32 {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, name)
	}))
	srv.Config.Protocols = new(http.Protocols)
	srv.Config.Protocols.SetHTTP1(true)
	srv.Config.Protocols.SetUnencryptedHTTP2(true)
	srv.Start()
	t.Cleanup(srv.Close)
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(p)
}

// TestClientEDSPushWithoutPolling runs a whole sidecar (app checkout) whose
// resolver never polls, configured by go-control-plane's server: an EDS
// push that moves orders to another instance moves the calls through the
// sidecar's API with it, so the push itself reached the picker.
func TestClientEDSPushWithoutPolling(t *testing.T) {
	for _, mode := range []string{ModeSotW, ModeDelta} {
		t.Run(mode, func(t *testing.T) {
			a, b := namedPeer(t, "a"), namedPeer(t, "b")
			cp := startControlPlane(t, "127.0.0.1:0")
			cp.set(t, "v1", meshResources(t, ordersCluster(10), []uint32{a}, time.Second))

			dr, err := discovery.NewRegistry(t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			log := slog.New(slog.DiscardHandler)
			eds := NewEndpoints(dr)
			sc, err := proxy.New(proxy.Options{
				AppID:              "checkout",
				ListenAddresses:    []string{"127.0.0.1"},
				InternalListenAddr: "127.0.0.1",
				Host:               proxy.Host{IP: "127.0.0.1", Name: "test"},
				GracePeriod:        time.Second,
				DiscoveryRefresh:   -1, // no polling: only a push can move orders
			}, dr, eds, prometheus.NewRegistry(), log)
			if err != nil {
				t.Fatal(err)
			}
			rec := &recorder{sc: sc}
			reg := prometheus.NewRegistry()
			c, err := New(Options{Address: cp.addr, Mode: mode, AppID: "checkout",
				BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, rec, eds, reg, log)
			if err != nil {
				t.Fatal(err)
			}
			sc.SetControlPlane(c)
			if err := sc.Listen(); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sc.Run(ctx) }()
			t.Cleanup(func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("sidecar run: %v", err)
				}
			})
			h := &harness{client: c, rec: rec, eds: eds, reg: reg}

			url := "http://127.0.0.1:" + strconv.Itoa(sc.Ports().HTTP) + "/v1.0/invoke/orders/method/hello"
			call := func() string {
				resp, err := http.Get(url)
				if err != nil {
					return err.Error()
				}
				defer resp.Body.Close()
				body, _ := io.ReadAll(resp.Body)
				return string(body)
			}

			waitFor(t, "v1 synced", h.synced("v1"))
			waitFor(t, "calls to a", func() bool { return call() == "a" }) // also waits for the sidecar to be ready

			cp.set(t, "v2", meshResources(t, ordersCluster(10), []uint32{b}, time.Second))
			waitFor(t, "v2 synced", h.synced("v2", EndpointType))
			// a still answers, and the resolver does not poll: only the
			// push can send calls to b.
			waitFor(t, "calls to b after the push", func() bool { return call() == "b" })
			for range 5 {
				if got := call(); got != "b" {
					t.Fatalf("after the push, a call went to %q, want b", got)
				}
			}
		})
	}
}

// TestEndpointsNotifiesChangedApps pins which apps an EDS update tells the
// resolver about: those whose instances were added, changed or removed.
func TestEndpointsNotifiesChangedApps(t *testing.T) {
	orders, payments, stock := discovery.Target{AppID: "orders", Namespace: "default"}, discovery.Target{AppID: "payments", Namespace: "default"}, discovery.Target{AppID: "stock", Namespace: "prod"}
	in := func(addr string, weight uint32) discovery.Instance {
		return discovery.Instance{AppID: "x", Namespace: "default", Address: addr, Weight: weight}
	}
	e := NewEndpoints(nil)
	e.set(map[discovery.Target][]discovery.Instance{orders: {in("10.0.0.1:1", 1)}, payments: {in("10.0.0.2:1", 1)}})
	var got []string
	cancel := e.Subscribe(func(appID, namespace string) { got = append(got, appID+"."+namespace) })
	for _, tc := range []struct {
		name string
		m    map[discovery.Target][]discovery.Instance
		want []string
	}{
		{"unchanged", map[discovery.Target][]discovery.Instance{orders: {in("10.0.0.1:1", 1)}, payments: {in("10.0.0.2:1", 1)}}, nil},
		{"weight changed", map[discovery.Target][]discovery.Instance{orders: {in("10.0.0.1:1", 2)}, payments: {in("10.0.0.2:1", 1)}}, []string{"orders.default"}},
		{"instance moved, app added", map[discovery.Target][]discovery.Instance{orders: {in("10.0.0.1:1", 2)}, payments: {in("10.0.0.3:1", 1)}, stock: nil}, []string{"payments.default", "stock.prod"}},
		{"apps removed", map[discovery.Target][]discovery.Instance{orders: {in("10.0.0.1:1", 2)}}, []string{"payments.default", "stock.prod"}},
	} {
		t.Run(tc.name, func(t *testing.T) { // in order: each step starts from the last
			got = nil
			e.set(tc.m)
			slices.Sort(got)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("apps notified (-want +got):\n%s", diff)
			}
		})
	}
	cancel()
	got = nil
	e.set(map[discovery.Target][]discovery.Instance{})
	if got != nil {
		t.Errorf("after cancel, notified of %v", got)
	}
}
