package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	sotw "github.com/envoyproxy/go-control-plane/pkg/client/sotw/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
)

const testToken = "s3cret-join-token"

// syncBuffer collects logs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type testCP struct {
	*Server
	addr string
	logs *syncBuffer
	dir  string
}

// startCP runs a control plane on a loopback port until the test ends.
func startCP(t *testing.T, dir string, opts Options) *testCP {
	t.Helper()
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts.ConfigDir = dir
	opts.CADir = filepath.Join(t.TempDir(), "ca")
	opts.TrustDomain = spiffeid.RequireTrustDomainFromString("public")
	if opts.Tokens == nil {
		opts.Tokens = []string{testToken}
	}
	s, err := New(opts, log)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
		if t.Failed() {
			t.Logf("control plane log:\n%s", logs)
		}
	})
	return &testCP{Server: s, addr: ln.Addr().String(), logs: logs, dir: dir}
}

// bundle is the control plane's trust bundle.
func (c *testCP) bundle() *x509bundle.Bundle { return c.ca.Bundle() }

func (c *testCP) registrar(t *testing.T, token string) *Registrar {
	b := c.bundle()
	return NewRegistrar(c.addr, token, identity.ControlPlaneClientConfig(func() *x509bundle.Bundle { return b }, c.TrustDomain()))
}

// adsStream is a raw state-of-the-world ADS client for one type.
type adsStream struct {
	t   *testing.T
	cli sotw.ADSClient
}

func dialADS(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newADS(t *testing.T, conn *grpc.ClientConn, nodeID, typeURL string) *adsStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	cli := sotw.NewADSClient(ctx, &corev3.Node{Id: nodeID}, typeURL)
	if err := cli.InitConnect(conn); err != nil {
		t.Fatal(err)
	}
	return &adsStream{t: t, cli: cli}
}

// next waits (up to 10 s) for the next response, ACKs it, and returns
// its resources by name.
func (a *adsStream) next() map[string]proto.Message {
	a.t.Helper()
	type res struct {
		r   *sotw.Response
		err error
	}
	ch := make(chan res, 1)
	go func() {
		r, err := a.cli.Fetch()
		ch <- res{r, err}
	}()
	var r res
	select {
	case r = <-ch:
	case <-time.After(10 * time.Second):
		a.t.Fatal("no xDS response within 10s")
	}
	if r.err != nil {
		a.t.Fatal(r.err)
	}
	if err := a.cli.Ack(); err != nil {
		a.t.Fatal(err)
	}
	out := map[string]proto.Message{}
	for _, any := range r.r.Resources {
		m, err := any.UnmarshalNew()
		if err != nil {
			a.t.Fatal(err)
		}
		out[resourceName(m)] = m
	}
	return out
}

func writeFile(t *testing.T, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

const configB = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: b
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      namespace: default
      trustDomain: public
      defaultAction: deny
      operations:
      - name: /orders/**
        httpVerb: [GET]
        action: allow
`

const resiliencyYAML = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    timeouts:
      short: 2s
    retries:
      three:
        policy: constant
        duration: 100ms
        maxRetries: %d
        matching:
          httpStatusCodes: "503"
    circuitBreakers:
      cb:
        trip: consecutiveFailures > 4
        timeout: 20s
  targets:
    apps:
      b:
        timeout: short
        retry: three
        circuitBreaker: cb
`

const endpointsC = `apiVersion: skein.dev/v1alpha1
kind: Endpoints
metadata:
  name: c
spec:
  loadBalancing: round-robin
  maxConcurrentCalls: 50
  instances:
  - address: 10.0.0.1:5000
    locality: {region: eu, zone: a}
    weight: 3
  - address: 10.0.0.2:5000
    health: draining
`

func TestSnapshotFromConfigDirAndRegistrations(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "config-b.yaml", configB)
	writeFile(t, dir, "resiliency.yaml", strings.Replace(resiliencyYAML, "%d", "3", 1))
	writeFile(t, dir, "endpoints-c.yaml", endpointsC)
	cp := startCP(t, dir, Options{})

	lease, err := cp.registrar(t, testToken).Register(discovery.Instance{AppID: "b", Namespace: "default", Address: "127.0.0.1:40001", PID: 7, Hostname: "h"})
	if err != nil {
		t.Fatal(err)
	}
	conn := dialADS(t, cp.addr)
	cds := newADS(t, conn, "a.default", resource.ClusterType).next()
	eds := newADS(t, conn, "a.default", resource.EndpointType).next()
	lds := newADS(t, conn, "a.default", resource.ListenerType).next()
	rdsStream := newADS(t, conn, "a.default", resource.RouteType)
	rds := rdsStream.next()

	for _, n := range []string{"b", "c"} {
		if cds[n] == nil || eds[n] == nil || lds[n] == nil || rds[n] == nil {
			t.Fatalf("app %s: missing a resource: cds %v eds %v lds %v rds %v", n, cds[n] != nil, eds[n] != nil, lds[n] != nil, rds[n] != nil)
		}
	}
	c := cds["c"].(*clusterv3.Cluster)
	if c.LbPolicy != clusterv3.Cluster_ROUND_ROBIN || c.GetCircuitBreakers().GetThresholds()[0].GetMaxRequests().GetValue() != 50 {
		t.Errorf("cluster c: lb %v, max_requests %v", c.LbPolicy, c.GetCircuitBreakers())
	}
	if c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Error("cluster c: eds_config is not ADS")
	}
	b := cds["b"].(*clusterv3.Cluster)
	if b.LbPolicy != clusterv3.Cluster_LEAST_REQUEST || b.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 5 ||
		b.GetOutlierDetection().GetBaseEjectionTime().AsDuration() != 20*time.Second {
		t.Errorf("cluster b: lb %v, outlier %v", b.LbPolicy, b.GetOutlierDetection())
	}
	cla := eds["c"].(*endpointv3.ClusterLoadAssignment)
	if len(cla.Endpoints) != 2 || cla.Endpoints[0].Locality.GetRegion() != "eu" || cla.Endpoints[0].LbEndpoints[0].LoadBalancingWeight.GetValue() != 3 {
		t.Errorf("cla c: %v", cla)
	}
	if h := cla.Endpoints[1].LbEndpoints[0].HealthStatus; h != corev3.HealthStatus_DRAINING {
		t.Errorf("cla c second endpoint health = %v", h)
	}
	claB := eds["b"].(*endpointv3.ClusterLoadAssignment)
	if got := endpointAddrs(claB); len(got) != 1 || got[0] != "127.0.0.1:40001" {
		t.Errorf("cla b = %v, want the registered instance", got)
	}
	if id := claB.Endpoints[0].LbEndpoints[0].GetMetadata().GetFilterMetadata()["skein"].GetFields()["instance_id"].GetStringValue(); id == "" {
		t.Error("cla b: no skein.instance_id metadata")
	}
	rp := rds["b"].(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].GetRoute()
	if rp.GetTimeout().AsDuration() != 2*time.Second || rp.GetRetryPolicy().GetNumRetries().GetValue() != 3 ||
		rp.GetRetryPolicy().GetRetryOn() != "retriable-status-codes,connect-failure,reset" ||
		len(rp.GetRetryPolicy().GetRetriableStatusCodes()) != 1 || rp.GetRetryPolicy().GetRetriableStatusCodes()[0] != 503 {
		t.Errorf("route b: %v", rp)
	}
	if rc := rds["c"].(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].GetRoute(); rc.GetRetryPolicy() != nil || rc.GetTimeout() != nil {
		t.Errorf("route c has a policy: %v", rc)
	}
	rules := rbacOf(t, lds["b"].(*listenerv3.Listener))
	if rules == nil || rules.Action != rbacv3.RBAC_ALLOW || len(rules.Policies) != 1 {
		t.Fatalf("listener b rbac = %v", rules)
	}
	for _, p := range rules.Policies {
		if got := p.Principals[0].GetAuthenticated().GetPrincipalName().GetExact(); got != "spiffe://public/ns/default/a" {
			t.Errorf("principal = %q", got)
		}
	}
	if rbacOf(t, lds["c"].(*listenerv3.Listener)) != nil {
		t.Error("listener c has an RBAC filter without any policy")
	}

	// A config change reaches the open stream as a new version.
	writeFile(t, dir, "resiliency.yaml", strings.Replace(resiliencyYAML, "%d", "5", 1))
	rds = rdsStream.next()
	if n := rds["b"].(*routev3.RouteConfiguration).VirtualHosts[0].Routes[0].GetRoute().GetRetryPolicy().GetNumRetries().GetValue(); n != 5 {
		t.Errorf("after the change num_retries = %d, want 5", n)
	}

	// An invalid change is refused and the last good config keeps serving.
	before, err := cp.cache.GetSnapshot("a.default")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "resiliency.yaml", strings.Replace(resiliencyYAML, "maxRetries: %d", "maxRetries: 2\n        bogus: 1", 1))
	waitFor(t, "config rejected", func() bool { return strings.Contains(cp.logs.String(), "config rejected") })
	if !strings.Contains(cp.logs.String(), "bogus") {
		t.Errorf("the rejection does not name the field:\n%s", cp.logs)
	}
	after, _ := cp.cache.GetSnapshot("a.default")
	if before.GetVersion(resource.RouteType) != after.GetVersion(resource.RouteType) {
		t.Error("a rejected config changed the snapshot")
	}

	// A released instance leaves the assignment.
	edsStream := newADS(t, conn, "a.default", resource.EndpointType)
	edsStream.next()
	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	eds = edsStream.next()
	if got := endpointAddrs(eds["b"].(*endpointv3.ClusterLoadAssignment)); len(got) != 0 {
		t.Errorf("after release cla b = %v", got)
	}
}

func TestLeaseExpiresAndDeltaADS(t *testing.T) {
	cp := startCP(t, "", Options{LeaseTTL: time.Second})
	if _, err := cp.registrar(t, testToken).Register(discovery.Instance{AppID: "x", Namespace: "ns1", Address: "127.0.0.1:40002"}); err != nil {
		t.Fatal(err)
	}
	conn := dialADS(t, cp.addr)
	// Incremental ADS: subscribe to every ClusterLoadAssignment.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	node := &corev3.Node{Id: "y.default"}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType}); err != nil {
		t.Fatal(err)
	}
	resp, err := st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Resources) != 1 || resp.Resources[0].Name != "x.ns1" {
		t.Fatalf("delta response: %v", resp.Resources)
	}
	var cla endpointv3.ClusterLoadAssignment
	if err := resp.Resources[0].Resource.UnmarshalTo(&cla); err != nil {
		t.Fatal(err)
	}
	if got := endpointAddrs(&cla); len(got) != 1 || got[0] != "127.0.0.1:40002" {
		t.Fatalf("cla x.ns1 = %v", got)
	}
	if err := st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: node, TypeUrl: resource.EndpointType, ResponseNonce: resp.Nonce}); err != nil {
		t.Fatal(err)
	}
	// No heartbeat: the lease runs out and the delta stream says so.
	resp, err = st.Recv()
	if err != nil {
		t.Fatal(err)
	}
	gone := len(resp.RemovedResources) == 1
	for _, r := range resp.Resources {
		var c endpointv3.ClusterLoadAssignment
		if r.Resource.UnmarshalTo(&c) == nil && len(endpointAddrs(&c)) == 0 {
			gone = true
		}
	}
	if !gone {
		t.Errorf("after expiry: resources %v removed %v", resp.Resources, resp.RemovedResources)
	}
	if !strings.Contains(cp.logs.String(), "leases expired") {
		t.Error("expiry not logged")
	}
}

func endpointAddrs(cla *endpointv3.ClusterLoadAssignment) []string {
	var out []string
	for _, g := range cla.Endpoints {
		for _, e := range g.LbEndpoints {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			out = append(out, net.JoinHostPort(sa.Address, itoa(sa.GetPortValue())))
		}
	}
	return out
}

func itoa(n uint32) string { return strconv.FormatUint(uint64(n), 10) }

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

// protojsonMarshalAny is a resource as a raw xDS JSON file holds it.
func protojsonMarshalAny(m proto.Message) (string, error) {
	a, err := anypb.New(m)
	if err != nil {
		return "", err
	}
	b, err := protojson.Marshal(a)
	return string(b), err
}

func rbacOf(t *testing.T, l *listenerv3.Listener) *rbacv3.RBAC {
	t.Helper()
	var hcm hcmv3.HttpConnectionManager
	if err := l.ApiListener.ApiListener.UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	if n := len(hcm.HttpFilters); n == 0 || hcm.HttpFilters[n-1].Name != filterRouter {
		t.Fatalf("listener %s: the router is not the last filter: %v", l.Name, hcm.HttpFilters)
	}
	for _, f := range hcm.HttpFilters {
		if f.Name == filterRBAC {
			var r rbacfilter.RBAC
			if err := f.GetTypedConfig().UnmarshalTo(&r); err != nil {
				t.Fatal(err)
			}
			return r.Rules
		}
	}
	return nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// csrPEM makes a CSR for the given URIs.
func csrPEM(t *testing.T, uris ...string) string {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.CertificateRequest{}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
}

func TestSigningEndpoint(t *testing.T) {
	cp := startCP(t, "", Options{SVIDTTL: time.Minute})
	b := cp.bundle()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: identity.ControlPlaneClientConfig(func() *x509bundle.Bundle { return b }, cp.TrustDomain())}}
	post := func(token string, body any) (int, []byte) {
		t.Helper()
		js, _ := json.Marshal(body)
		req, _ := http.NewRequest(http.MethodPost, "https://"+cp.addr+identity.SignPath, bytes.NewReader(js))
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, out
	}
	const id = "spiffe://public/ns/default/a"
	good := identity.SignRequest{SPIFFEID: id, CSR: csrPEM(t, id)}

	code, out := post(testToken, good)
	if code != http.StatusOK {
		t.Fatalf("good request: %d %s", code, out)
	}
	var sr identity.SignResponse
	if err := json.Unmarshal(out, &sr); err != nil {
		t.Fatal(err)
	}
	chain, err := identity.ParseCertsPEM([]byte(sr.Chain))
	if err != nil {
		t.Fatal(err)
	}
	roots, err := x509bundle.Parse(spiffeid.RequireTrustDomainFromString("public"), []byte(sr.Bundle))
	if err != nil {
		t.Fatal(err)
	}
	gotID, _, err := x509svid.Verify(chain, roots)
	if err != nil || gotID.String() != id {
		t.Fatalf("issued svid: %v %v", gotID, err)
	}
	if life := chain[0].NotAfter.Sub(chain[0].NotBefore); life > 2*time.Minute {
		t.Errorf("svid lifetime %s, want the 1m TTL (+ skew)", life)
	}

	cases := []struct {
		name  string
		token string
		req   identity.SignRequest
		code  int
		want  string
	}{
		{"no token", "", good, 401, "join token"},
		{"wrong token", "guess", good, 401, "join token"},
		{"malformed csr", testToken, identity.SignRequest{SPIFFEID: id, CSR: "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"}, 400, "malformed"},
		{"not pem", testToken, identity.SignRequest{SPIFFEID: id, CSR: "hello"}, 400, "PEM"},
		{"csr for another id", testToken, identity.SignRequest{SPIFFEID: id, CSR: csrPEM(t, "spiffe://public/ns/default/b")}, 403, "not exactly"},
		{"control plane id", testToken, identity.SignRequest{SPIFFEID: "spiffe://public/skein/control-plane", CSR: csrPEM(t, "spiffe://public/skein/control-plane")}, 403, "/ns/<namespace>/<app-id>"},
		{"other trust domain", testToken, identity.SignRequest{SPIFFEID: "spiffe://evil/ns/default/a", CSR: csrPEM(t, "spiffe://evil/ns/default/a")}, 403, "trust domain"},
		{"bad spiffe id", testToken, identity.SignRequest{SPIFFEID: "http://x", CSR: csrPEM(t, id)}, 400, "spiffeId"},
	}
	for _, c := range cases {
		code, out := post(c.token, c.req)
		if code != c.code || !strings.Contains(string(out), c.want) {
			t.Errorf("%s: %d %s, want %d with %q", c.name, code, out, c.code, c.want)
		}
	}
	if logs := cp.logs.String(); strings.Contains(logs, "guess") || strings.Contains(logs, testToken) {
		t.Errorf("a token reached the log:\n%s", logs)
	}
	if !strings.Contains(cp.logs.String(), "join token missing or not accepted") {
		t.Error("refused token not logged")
	}
	// Registration needs the token too.
	if _, err := cp.registrar(t, "guess").Register(discovery.Instance{AppID: "a", Address: "127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("registration with a wrong token: %v", err)
	}
	// Cleartext carries ADS only.
	resp, err := http.Post("http://"+cp.addr+identity.SignPath, "application/json", strings.NewReader("{}"))
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Error("signing endpoint answered over cleartext")
		}
	}
}

func TestControlPlaneSource(t *testing.T) {
	cp := startCP(t, "", Options{SVIDTTL: 4 * time.Second})
	td := cp.TrustDomain()
	id := spiffeid.RequireFromString("spiffe://public/ns/default/a")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	newMetrics := func() *identity.Metrics { return identity.NewMetrics(prometheusRegistry(), "a") }

	// Trust on first use, then renewal at half life over the pinned bundle.
	src, err := identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, Token: testToken}, id, newMetrics(), log)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := src.GetX509SVID()
	if first.ID != id {
		t.Fatalf("svid id %s", first.ID)
	}
	if b, err := src.GetX509BundleForTrustDomain(td); err != nil || len(b.X509Authorities()) == 0 {
		t.Fatalf("bundle: %v", err)
	}
	if src.ControlPlaneBundle() == nil {
		t.Fatal("bundle not pinned after first use")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)
	waitFor(t, "renewal", func() bool {
		sv, _ := src.GetX509SVID()
		return sv.Certificates[0].SerialNumber.Cmp(first.Certificates[0].SerialNumber) != 0
	})
	sv, _ := src.GetX509SVID()
	if sv.PrivateKey == first.PrivateKey {
		t.Error("renewal kept the old key")
	}

	// A pinned bundle of another CA refuses the server.
	other, err := identity.LoadOrInit(filepath.Join(t.TempDir(), "other"), td, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, Token: testToken, Bundle: other.Bundle()}, id, newMetrics(), log)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("pinned to another CA: %v", err)
	}
	// The right pinned bundle works; a wrong token is a clear error.
	if _, err := identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, Token: testToken, Bundle: cp.bundle()}, id, newMetrics(), log); err != nil {
		t.Errorf("pinned to the right CA: %v", err)
	}
	_, err = identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, Token: "nope", Bundle: cp.bundle()}, id, newMetrics(), log)
	if err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("wrong token: %v", err)
	}
	// mTLS between two sidecars' sources works with these SVIDs.
	srcB, err := identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{Address: cp.addr, Token: testToken, Bundle: cp.bundle()}, spiffeid.RequireFromString("spiffe://public/ns/default/b"), identity.NewMetrics(prometheusRegistry(), "b"), log)
	if err != nil {
		t.Fatal(err)
	}
	checkMTLS(t, src, srcB)
}

// checkMTLS handshakes a client with a's SVID to a server with b's.
func checkMTLS(t *testing.T, a, b identity.Source) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", identity.ServerConfig(b, "h2"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	want := spiffeid.RequireFromString("spiffe://public/ns/default/b")
	c, err := tls.Dial("tcp", ln.Addr().String(), identity.ClientConfig(a, want, "h2"))
	if err != nil {
		t.Fatalf("mTLS with control-plane SVIDs: %v", err)
	}
	c.Close()
}

func TestRawResourceOverridesAndUnknownType(t *testing.T) {
	dir := t.TempDir()
	// A raw Listener b with a deny-all RBAC using not_rule (outside the
	// generated subset, served as given).
	hcm, _ := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     "b",
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "b", ConfigSource: ads()}},
		HttpFilters:    []*hcmv3.HttpFilter{{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &rbacfilter.RBAC{})}}},
	})
	raw, err := protojsonMarshalAny(&listenerv3.Listener{Name: "b", ApiListener: &listenerv3.ApiListener{ApiListener: hcm}})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "listener-b.json", raw)
	writeFile(t, dir, "endpoints-b.yaml", "apiVersion: skein.dev/v1alpha1\nkind: Endpoints\nmetadata: {name: b}\nspec:\n  instances: [{address: 127.0.0.1:1}]\n")
	cp := startCP(t, dir, Options{})
	conn := dialADS(t, cp.addr)
	lds := newADS(t, conn, "a.default", resource.ListenerType).next()
	l := lds["b"].(*listenerv3.Listener)
	var h hcmv3.HttpConnectionManager
	if err := l.ApiListener.ApiListener.UnmarshalTo(&h); err != nil {
		t.Fatal(err)
	}
	if len(h.HttpFilters) != 1 || h.StatPrefix != "b" {
		t.Errorf("raw listener not served as given: %v", &h)
	}

	if _, err := loadDirWith(t, map[string]string{"x.json": `{"@type":"type.googleapis.com/google.protobuf.Duration","value":"1s"}`}); err == nil || !strings.Contains(err.Error(), "@type") {
		t.Errorf("unknown raw type: %v", err)
	}
	if _, err := loadDirWith(t, map[string]string{"x.json": `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":""}`}); err == nil {
		t.Error("raw cluster without name accepted")
	}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func loadDirWith(t *testing.T, files map[string]string) (*dirConfig, error) {
	dir := t.TempDir()
	for n, c := range files {
		writeFile(t, dir, n, c)
	}
	return loadDir(dir)
}

func TestLoadDirErrors(t *testing.T) {
	cases := []struct {
		name, file, want string
	}{
		{"bad endpoint address", "apiVersion: skein.dev/v1alpha1\nkind: Endpoints\nmetadata: {name: c}\nspec:\n  instances: [{address: nowhere}]\n", "spec.instances[0].address"},
		{"unknown endpoints field", "apiVersion: skein.dev/v1alpha1\nkind: Endpoints\nmetadata: {name: c}\nspec:\n  lb: x\n", "field lb not found"},
		{"bad lb", "apiVersion: skein.dev/v1alpha1\nkind: Endpoints\nmetadata: {name: c}\nspec:\n  loadBalancing: random\n", "spec.loadBalancing"},
		{"trip without xds equivalent", strings.Replace(strings.Replace(resiliencyYAML, "%d", "1", 1), "consecutiveFailures > 4", "requests > 10 && totalFailures > 5", 1), "trip"},
		{"bad access field", strings.Replace(configB, "httpVerb", "verbs", 1), "verbs"},
		{"audit mode", strings.Replace(configB, "defaultAction: deny\n    trustDomain", "mode: audit\n    defaultAction: deny\n    trustDomain", 1), "audit"},
		{"no name", "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {}\n", "metadata.name"},
	}
	for _, c := range cases {
		_, err := loadDirWith(t, map[string]string{"f.yaml": c.file})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error naming %q", c.name, err, c.want)
		}
	}
}

// TestHealthChangeIsPushed checks that a renewal which only changes an
// instance's health reaches the EDS stream: the address is the same, so
// nothing else would rebuild the snapshot.
func TestHealthChangeIsPushed(t *testing.T) {
	cp := startCP(t, "", Options{LeaseTTL: time.Hour})
	reg := cp.registrar(t, testToken)
	in := discovery.Instance{AppID: "h", Address: "127.0.0.1:40003", Hostname: "pod-h", PID: 1}
	if _, err := reg.Register(in); err != nil {
		t.Fatal(err)
	}
	eds := newADS(t, dialADS(t, cp.addr), "h.default", resource.EndpointType)
	health := func(m map[string]proto.Message) []corev3.HealthStatus {
		var out []corev3.HealthStatus
		if cla, ok := m["h"].(*endpointv3.ClusterLoadAssignment); ok {
			for _, g := range cla.Endpoints {
				for _, e := range g.LbEndpoints {
					out = append(out, e.HealthStatus)
				}
			}
		}
		return out
	}
	if got := health(eds.next()); len(got) != 1 || got[0] != corev3.HealthStatus_HEALTHY {
		t.Fatalf("before: health %v, want [HEALTHY]", got)
	}
	in.Unhealthy = true
	if _, err := reg.Register(in); err != nil {
		t.Fatal(err)
	}
	if got := health(eds.next()); len(got) != 1 || got[0] != corev3.HealthStatus_UNHEALTHY {
		t.Errorf("after: health %v, want [UNHEALTHY]", got)
	}
	if !strings.Contains(cp.logs.String(), "instance health changed") {
		t.Error("health change not logged")
	}
}

// TestEndpointChangeSharesAndVersionsByType checks what keeps an endpoint
// change from costing O(nodes × endpoints): nodes that the same
// Resiliency resources apply to share one snapshot, and each type is
// versioned by its content, so a new endpoint changes the EDS version
// only (state of the world resends nothing else).
func TestEndpointChangeSharesAndVersionsByType(t *testing.T) {
	cp := startCP(t, "", Options{LeaseTTL: time.Hour})
	reg := cp.registrar(t, testToken)
	for _, in := range []discovery.Instance{
		{AppID: "a", Address: "127.0.0.1:40011", Hostname: "pod-a", PID: 1},
		{AppID: "b", Address: "127.0.0.1:40012", Hostname: "pod-b", PID: 1},
	} {
		if _, err := reg.Register(in); err != nil {
			t.Fatal(err)
		}
	}
	eds := func(node string) int {
		snap, err := cp.cache.GetSnapshot(node)
		if err != nil {
			return 0
		}
		n := 0
		for _, r := range snap.GetResources(resource.EndpointType) {
			n += len(endpointAddrs(r.(*endpointv3.ClusterLoadAssignment)))
		}
		return n
	}
	waitFor(t, "both endpoints in both snapshots", func() bool { return eds("a.default") == 2 && eds("b.default") == 2 })
	before, _ := cp.cache.GetSnapshot("a.default")
	if b, _ := cp.cache.GetSnapshot("b.default"); b != before {
		t.Error("nodes a and b, with no Resiliency resources, do not share one snapshot")
	}
	if _, err := reg.Register(discovery.Instance{AppID: "a", Address: "127.0.0.1:40013", Hostname: "pod-a2", PID: 1}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the new endpoint", func() bool { return eds("a.default") == 3 })
	after, _ := cp.cache.GetSnapshot("a.default")
	for _, typ := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if before.GetVersion(typ) != after.GetVersion(typ) || after.GetVersion(typ) == "" {
			t.Errorf("%s version %q → %q: want unchanged by an endpoint change", shortType(typ), before.GetVersion(typ), after.GetVersion(typ))
		}
	}
	if before.GetVersion(resource.EndpointType) == after.GetVersion(resource.EndpointType) {
		t.Errorf("EDS version %q unchanged by an endpoint change", after.GetVersion(resource.EndpointType))
	}
}
