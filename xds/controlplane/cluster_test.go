package controlplane

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/google/go-cmp/cmp"
)

const clusterAccess = `{"accessControl":{"defaultAction":"allow","trustDomain":"public","policies":[
 {"appId":"caller","namespace":"shop","defaultAction":"allow","trustDomain":"public",
  "operations":[{"name":"/admin","httpVerb":["*"],"action":"deny"}]}]}}`

const clusterRetry = `{"policies":{"retries":{"twice":{"policy":"constant","duration":"10ms","maxRetries":2}}},
 "targets":{"apps":{"callee":{"retry":"twice"}}}}`

func TestClusterCompile(t *testing.T) {
	ip := func(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }
	c := Cluster{
		Instances: []ClusterInstance{
			{AppID: "callee", Namespace: "shop", Address: ip("10.0.0.3:50002"), ID: "callee-0", Config: "guard"},
			{AppID: "callee", Namespace: "shop", Address: ip("10.0.0.4:50002"), ID: "callee-1", Health: NotReady, Config: "guard"},
			{AppID: "callee", Namespace: "shop", Address: ip("10.0.0.5:50002"), ID: "callee-2", Health: Terminating, Config: "guard"},
			{AppID: "caller", Namespace: "shop", Address: ip("10.0.0.2:50002"), ID: "caller-0"},
			{AppID: "lost", Namespace: "shop", Address: ip("10.0.0.6:50002"), ID: "lost-0", Config: "missing"},
		},
		Configurations: []Resource{{Namespace: "shop", Name: "guard", Spec: []byte(clusterAccess)}},
		Resiliencies:   []Resource{{Namespace: "shop", Name: "retry", Scopes: []string{"caller"}, Spec: []byte(clusterRetry)}},
	}
	cc := newClusterCompiler()
	cfg, err := cc.compile(c)
	if err == nil || !strings.Contains(err.Error(), "app lost.shop: dapr.io/config names Configuration shop/missing, which does not exist") {
		t.Errorf("error %v: want the missing Configuration named", err)
	}

	t.Run("instances with readiness", func(t *testing.T) {
		got := map[string]corev3.HealthStatus{}
		for _, in := range cfg.cluster[appKey{"callee", "shop"}] {
			got[in.id+" "+in.addr.String()] = in.health
		}
		want := map[string]corev3.HealthStatus{
			"callee-0 10.0.0.3:50002": corev3.HealthStatus_HEALTHY,
			"callee-1 10.0.0.4:50002": corev3.HealthStatus_UNHEALTHY,
			"callee-2 10.0.0.5:50002": corev3.HealthStatus_DRAINING,
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("callee's instances (-want +got):\n%s", d)
		}
	})

	t.Run("access from the pods' dapr.io/config", func(t *testing.T) {
		if cfg.access[appKey{"callee", "shop"}] == nil {
			t.Error("callee has no access rules, want guard's")
		}
		if cfg.access[appKey{"caller", "shop"}] != nil {
			t.Error("caller names no Configuration, yet has access rules")
		}
		// A missing Configuration denies every call (Dapr's sidecar
		// would not start without it): an ALLOW filter with no policy.
		if r := cfg.access[appKey{"lost", "shop"}]; r == nil || len(r.GetRules().GetPolicies()) != 0 || r.GetRules().GetAction().String() != "ALLOW" {
			t.Errorf("lost's rules %v: want deny-all", r)
		}
	})

	t.Run("resiliency in its namespace, for its scopes", func(t *testing.T) {
		retries := func(caller appKey) bool {
			rs, err := buildResources(caller, cfg, cfg.cluster)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rs[resource.RouteType] {
				rc := r.(*routev3.RouteConfiguration)
				if rc.GetName() == "callee.shop" {
					return rc.GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetRetryPolicy() != nil
				}
			}
			return false
		}
		if !retries(appKey{"caller", "shop"}) {
			t.Error("shop's caller gets no retry policy for callee")
		}
		if retries(appKey{"caller", "other"}) {
			t.Error("another namespace's caller gets shop's retry policy")
		}
		if retries(appKey{"callee", "shop"}) {
			t.Error("callee, outside the scopes, gets the retry policy")
		}
	})

	t.Run("a refused change keeps the last good form", func(t *testing.T) {
		good := cfg.access[appKey{"callee", "shop"}]
		bad := c
		bad.Configurations = []Resource{{Namespace: "shop", Name: "guard", Spec: []byte(`{"accessControl":{"defaultAction":"allow","policies":[{"appId":"caller","operations":[{"name":"/a/*/b","action":"deny"}]}]}}`)}}
		bad.Resiliencies = []Resource{{Namespace: "shop", Name: "retry", Spec: []byte(`{"policies":{"retries":{"r":{"bogus":1}}}}`)}}
		cfg2, err := cc.compile(bad)
		for _, want := range []string{"Configuration shop/guard: spec.accessControl", "Resiliency shop/retry:"} {
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("error %v: want %q", err, want)
			}
		}
		if cfg2.access[appKey{"callee", "shop"}] != good {
			t.Error("callee's rules changed with a refused Configuration")
		}
		if len(cfg2.resiliency) != 1 || cfg2.resiliency[0].Name != "retry" {
			t.Errorf("resiliency %v: want the last good retry", cfg2.resiliency)
		}
		// Deleted resources go, with their last good forms.
		gone := c
		gone.Configurations, gone.Resiliencies = nil, nil
		cfg3, _ := cc.compile(gone)
		if len(cfg3.resiliency) != 0 || len(cc.access) != 0 {
			t.Errorf("after deletion: %d resiliencies, %d configurations kept", len(cfg3.resiliency), len(cc.access))
		}
		if r := cfg3.access[appKey{"callee", "shop"}]; r == nil || len(r.GetRules().GetPolicies()) != 0 {
			t.Errorf("callee's rules with guard deleted: %v, want deny-all", r)
		}
	})

	t.Run("a refused change to a Configuration without accessControl keeps allowing", func(t *testing.T) {
		cc := newClusterCompiler()
		open := c
		open.Configurations = []Resource{{Namespace: "shop", Name: "guard", Spec: []byte(`{"tracing":{"samplingRate":"1"}}`)}}
		if cfg, _ := cc.compile(open); cfg.access[appKey{"callee", "shop"}] != nil {
			t.Fatal("a Configuration without accessControl gave rules")
		}
		open.Configurations = []Resource{{Namespace: "shop", Name: "guard", Spec: []byte(`{"accessControl":{"defaultAction":"allow","policies":[{"appId":"caller","operations":[{"name":"/a/*/b","action":"deny"}]}]}}`)}}
		cfg, err := cc.compile(open)
		if err == nil || cfg.access[appKey{"callee", "shop"}] != nil {
			t.Errorf("after a refused change: rules %v, error %v; want still none, and the error", cfg.access[appKey{"callee", "shop"}], err)
		}
	})

	t.Run("the version follows the content", func(t *testing.T) {
		a, _ := newClusterCompiler().compile(c)
		shuffled := c
		shuffled.Instances = slices.Clone(c.Instances)
		slices.Reverse(shuffled.Instances)
		b, _ := newClusterCompiler().compile(shuffled)
		moved := c
		moved.Instances = append([]ClusterInstance{}, c.Instances...)
		moved.Instances[0].Health = NotReady
		m, _ := newClusterCompiler().compile(moved)
		if a.version != b.version || a.version == m.version {
			t.Errorf("versions %s, %s, %s: want the first two equal, the third different", a.version, b.version, m.version)
		}
	})
}
