package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/httpendpoint"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/xds"
)

// xdsRecorder is a sidecar as the xDS client sees it: it keeps the last
// config applied.
type xdsRecorder struct {
	mu   sync.Mutex
	last *proxy.XDSConfig
}

func (r *xdsRecorder) ApplyXDS(x *proxy.XDSConfig) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = x
	return nil
}

func (r *xdsRecorder) SetXDSStatus(proxy.XDSStatus) {}

func (r *xdsRecorder) endpoints() map[string]*httpendpoint.Spec {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		return nil
	}
	return r.last.HTTPEndpoints
}

// runXDSClient runs Skein's xDS client, as the sidecar of app in ns,
// against the control plane at addr until the test ends.
func runXDSClient(t *testing.T, addr, app, ns string) *xdsRecorder {
	t.Helper()
	rec := &xdsRecorder{}
	c, err := xds.New(xds.Options{Address: addr, AppID: app, Namespace: ns, BackoffInitial: 20 * time.Millisecond},
		rec, nil, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
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
	return rec
}

// testCertPEM is a self-signed certificate.
func testCertPEM(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

const endpointsYAML = `apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: ext}
spec:
  baseUrl: https://api.example.com:8443/v2
  headers:
  - {name: X-Plain, value: "50%% off"}
  - {name: X-Env, envRef: EXT_TOKEN}
  - name: X-Secret
    secretKeyRef: {name: EXT_SECRET, key: EXT_SECRET}
  clientTLS:
    rootCA:
      value: |
%s
    certificate: {envRef: EXT_CERT}
    privateKey: {secretKeyRef: {name: EXT_KEY}}
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: plain}
spec:
  baseUrl: %s
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: system-roots.v1}
spec:
  baseUrl: https://[2001:db8::1]
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: only-orders}
scopes: [orders]
spec:
  baseUrl: http://orders.example
---
apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: elsewhere, namespace: shop}
spec:
  baseUrl: http://shop.example
`

// TestHTTPEndpointsOverADS: HTTPEndpoints in the config directory reach
// the sidecars of their namespace that their scopes name, over a real ADS
// stream, and Skein's xDS client reads back exactly the spec each was
// written with: base URL, headers (inline values with "%", and
// environment references, which travel as references), clientTLS. A
// change is pushed; a bad base URL is refused and the last good config
// keeps serving.
func TestHTTPEndpointsOverADS(t *testing.T) {
	ca := testCertPEM(t)
	indented := "        " + strings.ReplaceAll(strings.TrimSpace(ca), "\n", "\n        ")
	dir := t.TempDir()
	writeFile(t, dir, "endpoints.yaml", fmt.Sprintf(endpointsYAML, indented, "http://127.0.0.1:9000"))
	cp := startCP(t, dir, Options{PollInterval: 20 * time.Millisecond})
	checkout := runXDSClient(t, cp.addr, "checkout", "default")
	orders := runXDSClient(t, cp.addr, "orders", "default")
	shop := runXDSClient(t, cp.addr, "checkout", "shop")

	ext := &httpendpoint.Spec{
		BaseURL: "https://api.example.com:8443/v2",
		Headers: []httpendpoint.Header{
			{Name: "X-Plain", Source: httpendpoint.Source{Value: "50% off"}},
			{Name: "X-Env", Source: httpendpoint.Source{EnvRef: "EXT_TOKEN"}},
			{Name: "X-Secret", Source: httpendpoint.Source{EnvRef: "EXT_SECRET"}},
		},
		ClientTLS: &httpendpoint.ClientTLS{
			RootCA:      &httpendpoint.Source{Value: strings.TrimSpace(ca) + "\n"},
			Certificate: &httpendpoint.Source{EnvRef: "EXT_CERT"},
			PrivateKey:  &httpendpoint.Source{EnvRef: "EXT_KEY"},
		},
	}
	systemRoots := &httpendpoint.Spec{BaseURL: "https://[2001:db8::1]", ClientTLS: &httpendpoint.ClientTLS{}}
	plain := func(url string) *httpendpoint.Spec { return &httpendpoint.Spec{BaseURL: url} }
	until := func(rec *xdsRecorder, want map[string]*httpendpoint.Spec) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			got := rec.endpoints()
			d := cmp.Diff(want, got)
			if d == "" {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("HTTPEndpoints (-want +got):\n%s", d)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	until(checkout, map[string]*httpendpoint.Spec{"ext": ext, "plain": plain("http://127.0.0.1:9000"), "system-roots.v1": systemRoots})
	until(orders, map[string]*httpendpoint.Spec{"ext": ext, "plain": plain("http://127.0.0.1:9000"), "system-roots.v1": systemRoots, "only-orders": plain("http://orders.example")})
	until(shop, map[string]*httpendpoint.Spec{"elsewhere": plain("http://shop.example")})

	writeFile(t, dir, "endpoints.yaml", fmt.Sprintf(endpointsYAML, indented, "http://127.0.0.1:9001/base/"))
	until(checkout, map[string]*httpendpoint.Spec{"ext": ext, "plain": plain("http://127.0.0.1:9001/base/"), "system-roots.v1": systemRoots})

	writeFile(t, dir, "endpoints.yaml", fmt.Sprintf(endpointsYAML, indented, "ftp://127.0.0.1:9002"))
	waitFor(t, "the bad base URL refused", func() bool {
		return strings.Contains(cp.logs.String(), "HTTPEndpoint plain") && strings.Contains(cp.logs.String(), "scheme must be http or https")
	})
	until(checkout, map[string]*httpendpoint.Spec{"ext": ext, "plain": plain("http://127.0.0.1:9001/base/"), "system-roots.v1": systemRoots})
}

// TestClusterHTTPEndpoints: HTTPEndpoint CRs of a cluster. One Skein
// refuses (a bad base URL) is reported and keeps its last good form while
// the others apply; one that never compiled is not served. Each node gets
// the endpoints of its namespace that its scopes name.
func TestClusterHTTPEndpoints(t *testing.T) {
	spec := func(url string, headers ...string) []byte {
		m := map[string]any{"baseUrl": url}
		var hs []any
		for _, h := range headers {
			hs = append(hs, map[string]any{"name": "X-Key", "value": h})
		}
		if hs != nil {
			m["headers"] = hs
		}
		b, _ := json.Marshal(m)
		return b
	}
	cc := newClusterCompiler()
	c := Cluster{HTTPEndpoints: []Resource{
		{Namespace: "shop", Name: "pay", Spec: spec("https://pay.example/v1", "k1")},
		{Namespace: "shop", Name: "geo", Scopes: []string{"caller"}, Spec: spec("http://geo.example:8080")},
		{Namespace: "other", Name: "pay", Spec: spec("http://pay.other")},
	}}
	cfg, err := cc.compile(c)
	if err != nil {
		t.Fatal(err)
	}
	names := func(cfg *dirConfig, app, ns string) []string {
		t.Helper()
		rs, err := buildResources(appKey{app, ns}, cfg, nil)
		if err == nil {
			err = rs.validate()
		}
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, typ := range []string{resource.ClusterType, resource.ListenerType} {
			for _, r := range rs[typ] {
				out = append(out, shortType(typ)+" "+resourceName(r))
			}
		}
		slices.Sort(out)
		return out
	}
	want := []string{"Cluster httpendpoint|geo.shop", "Cluster httpendpoint|pay.shop", "Listener httpendpoint|geo.shop", "Listener httpendpoint|pay.shop"}
	if d := cmp.Diff(want, names(cfg, "caller", "shop")); d != "" {
		t.Errorf("caller.shop's resources (-want +got):\n%s", d)
	}
	want = []string{"Cluster httpendpoint|pay.shop", "Listener httpendpoint|pay.shop"}
	if d := cmp.Diff(want, names(cfg, "callee", "shop")); d != "" {
		t.Errorf("callee.shop's resources (scoped out of geo) (-want +got):\n%s", d)
	}
	want = []string{"Cluster httpendpoint|pay.other", "Listener httpendpoint|pay.other"}
	if d := cmp.Diff(want, names(cfg, "callee", "other")); d != "" {
		t.Errorf("callee.other's resources (-want +got):\n%s", d)
	}

	// pay turns bad, a new bad one arrives, geo changes.
	c.HTTPEndpoints[0].Spec = spec("pay.example/v1")
	c.HTTPEndpoints[1].Spec = spec("http://geo.example:9090")
	c.HTTPEndpoints = append(c.HTTPEndpoints, Resource{Namespace: "shop", Name: "broken", Spec: spec("https://x.example", "bad\nvalue")})
	cfg, err = cc.compile(c)
	for _, part := range []string{"HTTPEndpoint shop/pay", "scheme must be http or https", "HTTPEndpoint shop/broken", "CR, LF or NUL"} {
		if err == nil || !strings.Contains(err.Error(), part) {
			t.Errorf("error %v: want %q in it", err, part)
		}
	}
	bases := map[string]string{}
	for _, e := range cfg.httpEndpoints {
		bases[e.ns+"/"+e.name] = e.spec.BaseURL
	}
	wantBases := map[string]string{"shop/pay": "https://pay.example/v1", "shop/geo": "http://geo.example:9090", "other/pay": "http://pay.other"}
	if d := cmp.Diff(wantBases, bases); d != "" {
		t.Errorf("served endpoints (-want +got):\n%s", d)
	}
	// Deleted from the cluster: gone.
	c.HTTPEndpoints = c.HTTPEndpoints[1:3]
	if cfg, err = cc.compile(c); err != nil {
		t.Fatal(err)
	}
	if n := len(cfg.httpEndpoints); n != 2 {
		t.Errorf("%d endpoints served after shop/pay and shop/broken were deleted, want 2", n)
	}
}

// TestHTTPEndpointResources pins the Envoy form of an HTTPEndpoint: what
// another xDS client would read.
func TestHTTPEndpointResources(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("baseUrl: https://api.example.com/v2\nheaders:\n- {name: X-A, value: \"100%\"}\n- {name: X-B, envRef: TOKEN}\n"), &n); err != nil {
		t.Fatal(err)
	}
	sp, err := httpendpoint.Decode(&n)
	if err != nil {
		t.Fatal(err)
	}
	e, err := newHTTPEndpoint("api", "shop", nil, sp)
	if err != nil {
		t.Fatal(err)
	}
	cl, ln, err := e.resources()
	if err != nil {
		t.Fatal(err)
	}
	sa := cl.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	var tc tlsv3.UpstreamTlsContext
	if err := cl.GetTransportSocket().GetTypedConfig().UnmarshalTo(&tc); err != nil {
		t.Fatal(err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := ln.GetApiListener().GetApiListener().UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	route := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0]
	var headers []string
	for _, h := range route.GetRequestHeadersToAdd() {
		headers = append(headers, h.GetHeader().GetKey()+"="+h.GetHeader().GetValue()+" "+h.GetAppendAction().String())
	}
	got := []string{
		cl.GetName(), cl.GetType().String(), sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())),
		tc.GetSni(), fmt.Sprint(tc.GetCommonTlsContext().GetValidationContext().GetSystemRootCerts() != nil),
		ln.GetName(), route.GetRoute().GetCluster(), route.GetRoute().GetPrefixRewrite(), fmt.Sprint(route.GetRoute().GetAutoHostRewrite().GetValue()),
	}
	got = append(got, headers...)
	want := []string{
		"httpendpoint|api.shop", "LOGICAL_DNS", "api.example.com", "443", "api.example.com", "true",
		"httpendpoint|api.shop", "httpendpoint|api.shop", "/v2", "true",
		"X-A=100%% OVERWRITE_IF_EXISTS_OR_ADD", "X-B=%ENVIRONMENT(TOKEN)% OVERWRITE_IF_EXISTS_OR_ADD",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("resources (-want +got):\n%s", d)
	}
}
