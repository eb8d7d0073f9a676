package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/resiliency"
	"github.com/skeinmesh/skein/telemetry"
)

var ordersT = Target{AppID: "orders", Namespace: "default"}

func newXDSSidecar(t *testing.T) *Sidecar {
	t.Helper()
	reg, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{AppID: "checkout", AppPort: 1, Host: Host{IP: "127.0.0.1", Name: "test"}}, reg, reg, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// resiliencyFiles is a Resiliency resource for target orders: a timeout,
// a retry and a breaker.
func resiliencyFiles(t *testing.T) Config {
	t.Helper()
	dir := t.TempDir()
	doc := `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    timeouts:
      short: 50ms
    retries:
      three:
        maxRetries: 3
    circuitBreakers:
      cb:
        trip: consecutiveFailures > 2
  targets:
    apps:
      orders:
        timeout: short
        retry: three
        circuitBreaker: cb
`
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig("", []string{dir})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestCompileXDSErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		x    XDSConfig
		want string
	}{
		{"prefix without slash", XDSConfig{Apps: map[Target]XDSApp{ordersT: {Routes: []XDSRoute{{Prefix: "x"}}}}}, "cluster orders.default: routes[0]: prefix"},
		{"prefix and path", XDSConfig{Apps: map[Target]XDSApp{ordersT: {Routes: []XDSRoute{{Prefix: "/x", Path: "/y"}}}}}, "exactly one of prefix and path"},
		{"bad balancer", XDSConfig{Apps: map[Target]XDSApp{ordersT: {Cluster: "orders", LoadBalancer: "random"}}}, `cluster orders: load balancer "random"`},
		{"bad outlier", XDSConfig{Apps: map[Target]XDSApp{ordersT: {Outlier: &discovery.OutlierDetection{Consecutive: 1}}}}, "base ejection time"},
		{"bad budget", XDSConfig{Apps: map[Target]XDSApp{ordersT: {RetryBudget: &resiliency.BudgetConfig{}}}}, "retry budget"},
		{"bad app", XDSConfig{Apps: map[Target]XDSApp{{AppID: "a/b", Namespace: "x"}: {}}}, "not an app id"},
		{"bad rbac", XDSConfig{Access: &access.RBAC{Action: "log"}}, "rbac: action"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := compileXDS(&tc.x)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("compileXDS error = %v, want it to mention %q", err, tc.want)
			}
		})
	}
}

func TestXDSRouteMatch(t *testing.T) {
	x, err := compileXDS(&XDSConfig{Apps: map[Target]XDSApp{ordersT: {Routes: []XDSRoute{
		{Name: "exact", Path: "/orders/new"},
		{Name: "fold", Prefix: "/Admin/", IgnoreCase: true},
		{Name: "orders", Prefix: "/orders"},
		{Name: "all", Prefix: "/"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	a := x.apps[ordersT]
	for method, want := range map[string]string{
		"orders/new":   "exact",
		"orders/new/x": "orders",
		"ordersX":      "orders",
		"admin/users":  "fold",
		"ADMIN/":       "fold",
		"admin":        "all",
		"":             "all",
	} {
		if r := a.match(method); r == nil || r.name != want {
			t.Errorf("match(%q) = %+v, want route %s", method, r, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { a.match("orders/new/x") }); n != 0 {
		t.Errorf("match allocates %v times", n)
	}
}

// TestXDSPolicyPrecedence: per app, a matching xDS route's timeout and
// retry replace the files'; the files' breaker stays; without a matching
// route the files' policy applies; the cluster's retry budget always does;
// a target xDS does not know keeps the files' policy.
func TestXDSPolicyPrecedence(t *testing.T) {
	s := newXDSSidecar(t)
	if err := s.Apply(resiliencyFiles(t)); err != nil {
		t.Fatal(err)
	}
	filesOnly := s.snap.Load()
	retry := &resiliency.RetryPolicy{Exponential: true, Initial: 10 * time.Millisecond, MaxInterval: 100 * time.Millisecond, MaxRetries: 2}
	budget := &resiliency.BudgetConfig{Ratio: 0.1, PerSecond: 1}
	if err := s.ApplyXDS(&XDSConfig{Version: "x1", Apps: map[Target]XDSApp{ordersT: {
		RetryBudget: budget,
		Routes:      []XDSRoute{{Name: "slow", Prefix: "/slow", PerTryTimeout: time.Second, Retry: retry}},
	}}}); err != nil {
		t.Fatal(err)
	}
	withXDS := s.snap.Load()
	type want struct {
		timeout    time.Duration
		retries    int
		breaker    bool
		budget     *resiliency.BudgetConfig
		retryName  string
		builtIn    bool
		xdsCluster bool
	}
	for _, tc := range []struct {
		name   string
		snap   *Snapshot
		target Target
		method string
		want   want
	}{
		{"files only", filesOnly, ordersT, "slow/x", want{timeout: 50 * time.Millisecond, retries: 3, breaker: true, retryName: "three"}},
		{"xds route matches", withXDS, ordersT, "slow/x", want{timeout: time.Second, retries: 2, breaker: true, budget: budget, retryName: "slow", xdsCluster: true}},
		{"xds cluster, no route matches", withXDS, ordersT, "fast", want{timeout: 50 * time.Millisecond, retries: 3, breaker: true, budget: budget, retryName: "three", xdsCluster: true}},
		{"target unknown to both", withXDS, Target{AppID: "other", Namespace: "default"}, "slow/x", want{builtIn: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := tc.snap.routeFor(&call{target: tc.target, method: tc.method, name: tc.target.AppID, snap: tc.snap})
			p := rt.Policy
			got := want{timeout: p.Timeout, breaker: p.Breaker != nil, budget: p.Budget, retryName: p.RetryName, builtIn: p.BuiltInRetries, xdsCluster: rt.xds != nil}
			if p.Retry != nil {
				got.retries = p.Retry.MaxRetries
			}
			if got != tc.want {
				t.Errorf("route policy = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// blockingTransport answers once release is closed, or fails with the
// request's context.
type blockingTransport struct{ release chan struct{} }

func (b blockingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	select {
	case <-b.release:
		return &http.Response{StatusCode: 200, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
}

func xdsCallRequest(s *Sidecar, method string) *http.Request {
	c := &call{target: ordersT, method: method, snap: s.snap.Load()}
	c.route = c.snap.routeFor(c)
	r := httptest.NewRequest(http.MethodGet, "http://orders.default/"+method, nil)
	return r.WithContext(context.WithValue(r.Context(), callKey{}, c))
}

func TestXDSMaxRequests(t *testing.T) {
	s := newXDSSidecar(t)
	if err := s.ApplyXDS(&XDSConfig{Apps: map[Target]XDSApp{ordersT: {MaxRequests: 1}}}); err != nil {
		t.Fatal(err)
	}
	bt := blockingTransport{release: make(chan struct{})}
	rt := s.xdsCalls(bt)
	first := make(chan *http.Response)
	go func() {
		resp, err := rt.RoundTrip(xdsCallRequest(s, "a"))
		if err != nil {
			t.Error(err)
		}
		first <- resp
	}()
	// The first call holds the only slot until its body is closed.
	deadline := time.Now().Add(5 * time.Second)
	for s.snap.Load().xds.apps[ordersT].inflight.Load() != 1 {
		if time.Now().After(deadline) {
			t.Fatal("first call never started")
		}
		time.Sleep(time.Millisecond)
	}
	_, err := rt.RoundTrip(xdsCallRequest(s, "b"))
	if !errors.Is(err, errOverflow) || !errors.Is(err, resiliency.ErrCircuitOpen) {
		t.Fatalf("second call: err = %v, want the overflow (a circuit-open error)", err)
	}
	if st, reason := classify(err); st != http.StatusServiceUnavailable || reason != ReasonCircuitOpen {
		t.Errorf("overflow answers %d %s, want 503 CIRCUIT_OPEN", st, reason)
	}
	close(bt.release)
	resp := <-first
	resp.Body.Close()
	// The slot survives a push (the counter outlives snapshots) and is free.
	if err := s.ApplyXDS(&XDSConfig{Version: "2", Apps: map[Target]XDSApp{ordersT: {MaxRequests: 1}}}); err != nil {
		t.Fatal(err)
	}
	resp, err = rt.RoundTrip(xdsCallRequest(s, "c"))
	if err != nil {
		t.Fatalf("after the first call ended: %v", err)
	}
	resp.Body.Close()
}

func TestXDSRouteTimeoutCoversTheCall(t *testing.T) {
	s := newXDSSidecar(t)
	if err := s.ApplyXDS(&XDSConfig{Apps: map[Target]XDSApp{ordersT: {Routes: []XDSRoute{{Name: "r", Prefix: "/", Timeout: 20 * time.Millisecond}}}}}); err != nil {
		t.Fatal(err)
	}
	_, err := s.xdsCalls(blockingTransport{release: make(chan struct{})}).RoundTrip(xdsCallRequest(s, "x"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "route r timed out") {
		t.Fatalf("err = %v, want the route's deadline", err)
	}
}

func TestXDSAccess(t *testing.T) {
	rbac := &access.RBAC{Action: access.ActionAllow, Policies: []access.RBACPolicy{{
		Name:        "orders",
		Principals:  []access.Principal{{ID: &access.StringMatch{Exact: "spiffe://public/ns/default/orders"}}},
		Permissions: []access.Permission{{Any: true}},
	}}}
	s := newXDSSidecar(t)
	files := configWithSpec(t, `
accessControl:
  defaultAction: allow
  trustDomain: public
  policies:
  - appId: billing
    trustDomain: public
    namespace: default
    defaultAction: deny
`)
	if err := s.Apply(files); err != nil {
		t.Fatal(err)
	}
	if err := s.ApplyXDS(&XDSConfig{Access: rbac}); err != nil {
		t.Fatal(err)
	}
	snap := s.snap.Load()
	decide := func(app string) access.Decision {
		req := access.Request{Caller: &access.Caller{TrustDomain: "public", Namespace: "default", AppID: app}, CallerID: "spiffe://public/ns/default/" + app, Operation: "x", Verb: "GET"}
		return xdsAccess(snap, req, snap.Access.Decide(req))
	}
	if d := decide("orders"); !d.Allowed || d.Denied {
		t.Errorf("orders: %+v, want allowed by both", d)
	}
	if d := decide("web"); d.Allowed || d.Rule != "rbac default" {
		t.Errorf("web: %+v, want denied by RBAC (no policy matched)", d)
	}
	if d := decide("billing"); d.Allowed || !strings.Contains(d.Rule, "billing") {
		t.Errorf("billing: %+v, want denied by the files' accessControl", d)
	}
}

// TestXDSAndFilesMerge: a file reload keeps the pushed xDS config and a
// push keeps the files; a rejected push leaves both serving.
func TestXDSAndFilesMerge(t *testing.T) {
	s := newXDSSidecar(t)
	if err := s.ApplyXDS(&XDSConfig{Version: "x1", Apps: map[Target]XDSApp{ordersT: {MaxRequests: 3}}}); err != nil {
		t.Fatal(err)
	}
	files := resiliencyFiles(t)
	if err := s.Apply(files); err != nil {
		t.Fatal(err)
	}
	snap := s.snap.Load()
	if snap.xds == nil || snap.xds.apps[ordersT].maxRequests != 3 || snap.Resiliency == nil {
		t.Fatalf("after a file reload: xds %+v, resiliency %v", snap.xds, snap.Resiliency)
	}
	err := s.ApplyXDS(&XDSConfig{Version: "x2", Apps: map[Target]XDSApp{ordersT: {Routes: []XDSRoute{{Prefix: "nope"}}}}})
	if err == nil || !strings.Contains(err.Error(), "routes[0]") {
		t.Fatalf("bad push: err = %v", err)
	}
	if got := s.snap.Load(); got != snap {
		t.Error("a rejected push replaced the snapshot")
	}
	if err := s.ApplyXDS(&XDSConfig{Version: "x3"}); err != nil {
		t.Fatal(err)
	}
	if snap := s.snap.Load(); snap.Version != files.Version || snap.Resiliency == nil || snap.xds.version != "x3" {
		t.Errorf("after a push, version %s (files %s), resiliency %v, xds %q", snap.Version, files.Version, snap.Resiliency, snap.xds.version)
	}
}

func TestMetadataShowsXDSStatus(t *testing.T) {
	s := newXDSSidecar(t)
	s.SetXDSStatus(XDSStatus{Server: "127.0.0.1:1", Mode: "sotw", Connected: true, Types: map[string]XDSTypeStatus{
		"type.googleapis.com/envoy.config.cluster.v3.Cluster": {Version: "v1", Status: "NACKED", Error: "bad"},
	}})
	w := httptest.NewRecorder()
	s.serveMetadata(w)
	var md struct {
		XDS struct {
			Connected bool
			Types     map[string]struct{ Version, Status, Error string }
		} `json:"xds"`
	}
	if err := json.Unmarshal(w.Body.Bytes(), &md); err != nil {
		t.Fatal(err)
	}
	ct := md.XDS.Types["type.googleapis.com/envoy.config.cluster.v3.Cluster"]
	if !md.XDS.Connected || ct.Version != "v1" || ct.Status != "NACKED" || ct.Error != "bad" {
		t.Errorf("metadata xds = %+v", md.XDS)
	}
}
