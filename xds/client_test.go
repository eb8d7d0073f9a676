package xds

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
)

const selfNode = "checkout.default"

// controlPlane is go-control-plane's real snapshot cache and ADS server on a
// loopback port, recording the requests it receives.
type controlPlane struct {
	cache cachev3.SnapshotCache
	addr  string
	stop  func()

	mu   sync.Mutex
	reqs []string // "<type> nack: <message>" for each NACK received
	node string
}

func startControlPlane(t *testing.T, addr string) *controlPlane {
	t.Helper()
	cp := &controlPlane{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
	cp.serve(t, addr)
	return cp
}

func (cp *controlPlane) serve(t *testing.T, addr string) {
	t.Helper()
	var ln net.Listener
	var err error
	for range 50 { // a restarted control plane takes its old port back
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			cp.record(r.GetNode().GetId(), r.GetTypeUrl(), r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			cp.record(r.GetNode().GetId(), r.GetTypeUrl(), r.GetErrorDetail().GetMessage())
			return nil
		},
	}
	gs := grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(gs, serverv3.NewServer(ctx, cp.cache, cb))
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(ln)
	}()
	var once sync.Once
	cp.stop = func() {
		once.Do(func() {
			gs.Stop()
			cancel()
			<-done
		})
	}
	t.Cleanup(cp.stop)
}

func (cp *controlPlane) record(node, typ, nack string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if node != "" {
		cp.node = node
	}
	if nack != "" {
		cp.reqs = append(cp.reqs, shortNames[typ]+" nack: "+nack)
	}
}

func (cp *controlPlane) nacks() []string {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return append([]string(nil), cp.reqs...)
}

func (cp *controlPlane) set(t *testing.T, version string, res map[string][]types.Resource) {
	t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.cache.SetSnapshot(context.Background(), selfNode, snap); err != nil {
		t.Fatal(err)
	}
}

// recorder applies to a real sidecar and remembers what it accepted.
type recorder struct {
	sc *proxy.Sidecar
	mu sync.Mutex

	last   *proxy.XDSConfig
	status proxy.XDSStatus
}

func (r *recorder) ApplyXDS(x *proxy.XDSConfig) error {
	if err := r.sc.ApplyXDS(x); err != nil {
		return err
	}
	r.mu.Lock()
	r.last = x
	r.mu.Unlock()
	return nil
}

func (r *recorder) SetXDSStatus(st proxy.XDSStatus) {
	r.sc.SetXDSStatus(st)
	r.mu.Lock()
	r.status = st
	r.mu.Unlock()
}

func (r *recorder) get() (*proxy.XDSConfig, proxy.XDSStatus) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last, r.status
}

type harness struct {
	client *Client
	rec    *recorder
	eds    *Endpoints
	reg    *prometheus.Registry
}

// startClient runs a client of a real sidecar (app checkout) against addr
// until the test ends.
func startClient(t *testing.T, addr, mode string) *harness {
	t.Helper()
	dr, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	eds := NewEndpoints(dr)
	sreg := prometheus.NewRegistry()
	sc, err := proxy.New(proxy.Options{AppID: "checkout", Host: proxy.Host{IP: "127.0.0.1", Name: "test"}}, dr, eds, sreg, log)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{sc: sc}
	reg := prometheus.NewRegistry()
	c, err := New(Options{Address: addr, Mode: mode, AppID: "checkout", SPIFFEID: "spiffe://public/ns/default/checkout",
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond}, rec, eds, reg, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return &harness{client: c, rec: rec, eds: eds, reg: reg}
}

// waitFor polls cond until it holds; it fails the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// synced reports whether every type is ACKED, and those of changed (all
// when none given, or in state-of-the-world mode, where every response
// carries the version) at version. Incremental responses come only for
// types whose resources changed.
func (h *harness) synced(version string, changed ...string) func() bool {
	if len(changed) == 0 || h.client.opts.Mode == ModeSotW {
		changed = typeOrder
	}
	return func() bool {
		_, st := h.rec.get()
		for _, u := range typeOrder {
			if st.Types[u].Status != StatusACKed {
				return false
			}
		}
		for _, u := range changed {
			if st.Types[u].Version != version {
				return false
			}
		}
		return st.Connected
	}
}

func (h *harness) addrs(app string) []string {
	ins, _ := h.eds.Lookup(app, "default")
	var out []string
	for _, in := range ins {
		out = append(out, in.Address)
	}
	return out
}

// meshResources are the resources of a small mesh: app orders with the
// given instances, routes and cluster, and checkout's own Listener with
// an RBAC filter.
func meshResources(t *testing.T, orders *clusterv3.Cluster, ports []uint32, timeout time.Duration) map[string][]types.Resource {
	var les []*endpointv3.LbEndpoint
	for _, p := range ports {
		les = append(les, lbEndpoint("127.0.0.1", p, nil))
	}
	rbac := &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"orders": {
		Principals:  []*rbacconfigv3.Principal{principalName(exact("spiffe://public/ns/default/orders"))},
		Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}},
	}}}}
	return map[string][]types.Resource{
		resourcev3.ClusterType:  {orders, edsCluster("checkout", nil)},
		resourcev3.EndpointType: {&endpointv3.ClusterLoadAssignment{ClusterName: "orders", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: les}}}, &endpointv3.ClusterLoadAssignment{ClusterName: "checkout"}},
		resourcev3.ListenerType: {hcmListener(t, "orders", nil, nil, nil), hcmListener(t, "checkout", rbac, nil, nil)},
		resourcev3.RouteType: {routeConfigOf("orders", routeTo("orders", prefix("/"), func(ra *routev3.RouteAction) { ra.Timeout = durationpb.New(timeout) })),
			routeConfigOf("checkout")},
	}
}

func ordersCluster(maxRequests uint32) *clusterv3.Cluster {
	return edsCluster("orders", func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxRequests: wrapperspb.UInt32(maxRequests)}}}
	})
}

func testSyncUpdateNACK(t *testing.T, mode string) {
	cp := startControlPlane(t, "127.0.0.1:0")
	cp.set(t, "v1", meshResources(t, ordersCluster(10), []uint32{5001, 5002}, time.Second))
	h := startClient(t, cp.addr, mode)

	// Initial sync: every type, with the node id of the profile.
	waitFor(t, "v1 synced", h.synced("v1"))
	if got := strings.Join(h.addrs("orders"), ","); got != "127.0.0.1:5001,127.0.0.1:5002" {
		t.Errorf("orders instances = %s", got)
	}
	cfg, _ := h.rec.get()
	orders := cfg.Apps[discovery.Target{AppID: "orders", Namespace: "default"}]
	if orders.MaxRequests != 10 || len(orders.Routes) != 1 || orders.Routes[0].Timeout != time.Second {
		t.Errorf("orders app = %+v", orders)
	}
	if cfg.Access == nil || len(cfg.Access.Policies) != 1 {
		t.Errorf("checkout's RBAC not applied: %+v", cfg.Access)
	}
	cp.mu.Lock()
	node := cp.node
	cp.mu.Unlock()
	if node != selfNode {
		t.Errorf("node id = %q, want %q", node, selfNode)
	}

	// Update: one instance gone, a longer route timeout.
	cp.set(t, "v2", meshResources(t, ordersCluster(10), []uint32{5002}, 3*time.Second))
	waitFor(t, "v2 synced", h.synced("v2", EndpointType, RouteType))
	if got := strings.Join(h.addrs("orders"), ","); got != "127.0.0.1:5002" {
		t.Errorf("after v2, orders instances = %s", got)
	}
	cfg, _ = h.rec.get()
	if r := cfg.Apps[discovery.Target{AppID: "orders", Namespace: "default"}].Routes; len(r) != 1 || r[0].Timeout != 3*time.Second {
		t.Errorf("after v2, routes = %+v", r)
	}

	// NACK: a Cluster with a bad duration is refused naming it and the
	// field; the last good clusters keep serving, other types move on.
	bad := ordersCluster(99)
	bad.OutlierDetection = &clusterv3.OutlierDetection{BaseEjectionTime: &durationpb.Duration{Seconds: -1, Nanos: 1}}
	cp.set(t, "v3", meshResources(t, bad, []uint32{5003}, 3*time.Second))
	waitFor(t, "cds NACKED", func() bool {
		_, st := h.rec.get()
		return st.Types[ClusterType].Status == StatusNACKed && st.Types[EndpointType].Version == "v3"
	})
	_, st := h.rec.get()
	cds := st.Types[ClusterType]
	lastGood := "v2"
	if mode == ModeDelta {
		lastGood = "v1" // v2 changed no cluster: no delta response for them
	}
	if cds.Version != lastGood || cds.RejectedVersion != "v3" || !strings.Contains(cds.Error, `Cluster "orders"`) || !strings.Contains(cds.Error, "outlier_detection.base_ejection_time") {
		t.Errorf("cds status = %+v", cds)
	}
	cfg, _ = h.rec.get()
	if got := cfg.Apps[discovery.Target{AppID: "orders", Namespace: "default"}].MaxRequests; got != 10 {
		t.Errorf("after the NACK, orders max requests = %d, want the last good 10", got)
	}
	if got := strings.Join(h.addrs("orders"), ","); got != "127.0.0.1:5003" {
		t.Errorf("endpoints of the accepted v3 EDS = %s", got)
	}
	waitFor(t, "the NACK at the server", func() bool {
		for _, n := range cp.nacks() {
			if strings.HasPrefix(n, "cds nack: ") && strings.Contains(n, "base_ejection_time") {
				return true
			}
		}
		return false
	})
	if got := testutil.ToFloat64(h.client.metrics.updates.WithLabelValues("cds", "nack")); got < 1 {
		t.Errorf("skein_xds_updates_total{type=cds,result=nack} = %v", got)
	}
	if got := testutil.ToFloat64(h.client.metrics.version.WithLabelValues("cds", lastGood)); got != 1 {
		t.Errorf("skein_xds_resource_version_info{type=cds,version=%s} = %v", lastGood, got)
	}

	// Fixed: the next good version is taken.
	cp.set(t, "v4", meshResources(t, ordersCluster(7), []uint32{5003}, 3*time.Second))
	waitFor(t, "v4 synced", h.synced("v4", ClusterType))
	cfg, _ = h.rec.get()
	if got := cfg.Apps[discovery.Target{AppID: "orders", Namespace: "default"}].MaxRequests; got != 7 {
		t.Errorf("after v4, max requests = %d", got)
	}
	if n := testutil.CollectAndCount(h.reg, "skein_xds_resource_version_info"); n != 4 {
		t.Errorf("skein_xds_resource_version_info has %d series, want one per type", n)
	}
}

func TestClientSotW(t *testing.T)  { testSyncUpdateNACK(t, ModeSotW) }
func TestClientDelta(t *testing.T) { testSyncUpdateNACK(t, ModeDelta) }

// TestClientRemovesCluster checks that a Cluster removed from the state
// of the world takes its app and instances with it.
func TestClientRemovesCluster(t *testing.T) {
	for _, mode := range []string{ModeSotW, ModeDelta} {
		t.Run(mode, func(t *testing.T) {
			cp := startControlPlane(t, "127.0.0.1:0")
			cp.set(t, "v1", meshResources(t, ordersCluster(1), []uint32{5001}, time.Second))
			h := startClient(t, cp.addr, mode)
			waitFor(t, "v1 synced", h.synced("v1"))
			res := meshResources(t, ordersCluster(1), nil, time.Second)
			res[resourcev3.ClusterType] = res[resourcev3.ClusterType][1:]
			res[resourcev3.EndpointType] = res[resourcev3.EndpointType][1:]
			res[resourcev3.ListenerType] = res[resourcev3.ListenerType][1:]
			res[resourcev3.RouteType] = res[resourcev3.RouteType][1:]
			cp.set(t, "v2", res)
			waitFor(t, "orders gone", func() bool {
				cfg, _ := h.rec.get()
				_, ok := cfg.Apps[discovery.Target{AppID: "orders", Namespace: "default"}]
				return !ok && len(h.addrs("orders")) == 0
			})
		})
	}
}

// TestClientReconnects stops the control plane: the sidecar keeps its last
// good config, reconnects with back-off when the control plane is back
// and resyncs to its new state.
func TestClientReconnects(t *testing.T) {
	for _, mode := range []string{ModeSotW, ModeDelta} {
		t.Run(mode, func(t *testing.T) {
			cp := startControlPlane(t, "127.0.0.1:0")
			cp.set(t, "v1", meshResources(t, ordersCluster(1), []uint32{5001}, time.Second))
			h := startClient(t, cp.addr, mode)
			waitFor(t, "v1 synced", h.synced("v1"))

			cp.stop()
			waitFor(t, "disconnected", func() bool {
				_, st := h.rec.get()
				return !st.Connected
			})
			if got := strings.Join(h.addrs("orders"), ","); got != "127.0.0.1:5001" {
				t.Errorf("while the control plane is down, orders instances = %q, want the last good", got)
			}
			if got := testutil.ToFloat64(h.client.metrics.connected); got != 0 {
				t.Errorf("skein_xds_connected = %v while down", got)
			}

			// A new control plane process on the same address, with new state.
			cp2 := &controlPlane{cache: cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)}
			cp2.set(t, "v2", meshResources(t, ordersCluster(1), []uint32{5009}, time.Second))
			cp2.serve(t, cp.addr)
			waitFor(t, "v2 synced after reconnect", h.synced("v2", EndpointType))
			if got := strings.Join(h.addrs("orders"), ","); got != "127.0.0.1:5009" {
				t.Errorf("after the resync, orders instances = %q", got)
			}
			if got := testutil.ToFloat64(h.client.metrics.restarts); got < 1 {
				t.Errorf("skein_xds_stream_restarts_total = %v", got)
			}
		})
	}
}
