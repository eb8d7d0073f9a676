package xds

import (
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/resiliency"
)

func mustAny(t testing.TB, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
}

// edsCluster is a valid Cluster of the profile; edit modifies it.
func edsCluster(name string, edit func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST,
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func dur(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// errHas fails unless err mentions every part (or is nil when none).
func errHas(t *testing.T, err error, parts ...string) {
	t.Helper()
	if len(parts) == 0 {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if err == nil {
		t.Fatalf("no error, want one mentioning %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not mention %q", err, p)
		}
	}
}

// sameCodes compares matching lists by what they contain.
func sameCodes(a, b resiliency.Codes) bool {
	for c := 0; c <= 600; c++ {
		if a.Contains(c) != b.Contains(c) {
			return false
		}
	}
	return a.Set() == b.Set()
}

var cmpOpts = cmp.Options{cmp.Comparer(sameCodes), cmpopts.EquateEmpty()}

func TestTranslateCluster(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      *clusterv3.Cluster
		want    cluster
		wantErr []string
	}{
		{
			name: "minimal least request",
			in:   edsCluster("orders", nil),
			want: cluster{target: discovery.Target{AppID: "orders", Namespace: "default"}, app: proxy.XDSApp{Cluster: "orders", LoadBalancer: proxy.LBP2C}},
		},
		{
			name: "namespace, round robin, outlier defaults, breaker and budget",
			in: edsCluster("orders.prod", func(c *clusterv3.Cluster) {
				c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
				c.OutlierDetection = &clusterv3.OutlierDetection{}
				c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
					{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(1)},
					{MaxRequests: wrapperspb.UInt32(50), RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
						BudgetPercent: &typev3.Percent{Value: 10}, MinRetryConcurrency: wrapperspb.UInt32(4)}},
				}}
			}),
			want: cluster{target: discovery.Target{AppID: "orders", Namespace: "prod"}, app: proxy.XDSApp{
				Cluster: "orders.prod", LoadBalancer: proxy.LBRoundRobin, MaxRequests: 50,
				RetryBudget: &resiliency.BudgetConfig{Ratio: 0.1, PerSecond: 4},
				Outlier:     &discovery.OutlierDetection{Consecutive: 5, BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second},
			}},
		},
		{
			name: "outlier and budget defaults",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.OutlierDetection = &clusterv3.OutlierDetection{Consecutive_5Xx: wrapperspb.UInt32(3), BaseEjectionTime: dur(time.Second), MaxEjectionTime: dur(10 * time.Second)}
				c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}}}}
			}),
			want: cluster{target: discovery.Target{AppID: "a", Namespace: "default"}, app: proxy.XDSApp{
				Cluster: "a", LoadBalancer: proxy.LBP2C,
				RetryBudget: &resiliency.BudgetConfig{Ratio: 0.2, PerSecond: 3},
				Outlier:     &discovery.OutlierDetection{Consecutive: 3, BaseEjection: time.Second, MaxEjection: 10 * time.Second},
			}},
		},
		{
			name: "bad duration",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.OutlierDetection = &clusterv3.OutlierDetection{BaseEjectionTime: &durationpb.Duration{Seconds: 1, Nanos: -5}}
			}),
			wantErr: []string{"outlier_detection.base_ejection_time", "invalid duration"},
		},
		{
			name: "negative duration",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.OutlierDetection = &clusterv3.OutlierDetection{MaxEjectionTime: dur(-time.Second)}
			}),
			wantErr: []string{"outlier_detection.max_ejection_time", "negative"},
		},
		{
			name: "max ejection below base",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.OutlierDetection = &clusterv3.OutlierDetection{MaxEjectionTime: dur(time.Second)}
			}),
			wantErr: []string{"outlier_detection", "below the base"},
		},
		{
			name: "static cluster",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			}),
			wantErr: []string{"type", "STATIC", "only EDS"},
		},
		{
			name:    "eds not over ads",
			in:      edsCluster("a", func(c *clusterv3.Cluster) { c.EdsClusterConfig.EdsConfig = nil }),
			wantErr: []string{"eds_cluster_config.eds_config"},
		},
		{
			name:    "other service name",
			in:      edsCluster("a", func(c *clusterv3.Cluster) { c.EdsClusterConfig.ServiceName = "b" }),
			wantErr: []string{"eds_cluster_config.service_name"},
		},
		{
			name:    "ring hash",
			in:      edsCluster("a", func(c *clusterv3.Cluster) { c.LbPolicy = clusterv3.Cluster_RING_HASH }),
			wantErr: []string{"lb_policy", "RING_HASH"},
		},
		{
			name:    "not an app id",
			in:      edsCluster("a/b", nil),
			wantErr: []string{"name", `"a/b"`},
		},
		{
			name:    "two dots",
			in:      edsCluster("a.b.c", nil),
			wantErr: []string{"name", "namespace"},
		},
		{
			name: "budget percent out of range",
			in: edsCluster("a", func(c *clusterv3.Cluster) {
				c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 150}}}}}
			}),
			wantErr: []string{"circuit_breakers.thresholds[0].retry_budget.budget_percent"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateCluster(tc.in)
			errHas(t, err, tc.wantErr...)
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(cluster{}), cmpOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func lbEndpoint(addr string, port uint32, edit func(*endpointv3.LbEndpoint)) *endpointv3.LbEndpoint {
	le := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: addr, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}},
	}}}
	if edit != nil {
		edit(le)
	}
	return le
}

func TestTranslateEndpoints(t *testing.T) {
	md, _ := structpb.NewStruct(map[string]any{"instance_id": "host-7"})
	loc := &corev3.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack3"}
	for _, tc := range []struct {
		name    string
		in      *endpointv3.ClusterLoadAssignment
		want    []discovery.Instance
		wantErr []string
	}{
		{
			name: "locality, weights, metadata, health",
			in: &endpointv3.ClusterLoadAssignment{ClusterName: "orders.prod", Endpoints: []*endpointv3.LocalityLbEndpoints{{
				Locality: loc,
				LbEndpoints: []*endpointv3.LbEndpoint{
					lbEndpoint("10.0.0.1", 5001, func(le *endpointv3.LbEndpoint) {
						le.LoadBalancingWeight = wrapperspb.UInt32(3)
						le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"skein": md}}
					}),
					lbEndpoint("10.0.0.2", 5001, func(le *endpointv3.LbEndpoint) { le.HealthStatus = corev3.HealthStatus_UNHEALTHY }),
					lbEndpoint("10.0.0.3", 5001, func(le *endpointv3.LbEndpoint) { le.HealthStatus = corev3.HealthStatus_DRAINING }),
					lbEndpoint("10.0.0.4", 5001, func(le *endpointv3.LbEndpoint) { le.HealthStatus = corev3.HealthStatus_TIMEOUT }),
					lbEndpoint("::1", 5002, func(le *endpointv3.LbEndpoint) { le.HealthStatus = corev3.HealthStatus_HEALTHY }),
				},
			}}},
			want: []discovery.Instance{
				{AppID: "orders", Namespace: "prod", Address: "10.0.0.1:5001", Hostname: "host-7", Weight: 3, Locality: discovery.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack3"}},
				{AppID: "orders", Namespace: "prod", Address: "[::1]:5002", Weight: 1, Locality: discovery.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack3"}},
			},
		},
		{name: "empty", in: &endpointv3.ClusterLoadAssignment{ClusterName: "a"}},
		{name: "missing cluster name", in: &endpointv3.ClusterLoadAssignment{}, wantErr: []string{"cluster_name", "required"}},
		{
			name:    "named port",
			in:      &endpointv3.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("h", 0, nil)}}}},
			wantErr: []string{"endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value"},
		},
		{
			name:    "priority",
			in:      &endpointv3.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpointv3.LocalityLbEndpoints{{Priority: 1}}},
			wantErr: []string{"endpoints[0].priority"},
		},
		{
			name: "zero weight",
			in: &endpointv3.ClusterLoadAssignment{ClusterName: "a", Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{
				lbEndpoint("h", 1, func(le *endpointv3.LbEndpoint) { le.LoadBalancingWeight = wrapperspb.UInt32(0) })}}}},
			wantErr: []string{"load_balancing_weight"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, got, err := translateEndpoints(tc.in)
			errHas(t, err, tc.wantErr...)
			if d := cmp.Diff(tc.want, got, cmpOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func routeTo(cluster string, match *routev3.RouteMatch, edit func(*routev3.RouteAction)) *routev3.Route {
	ra := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}
	if edit != nil {
		edit(ra)
	}
	return &routev3.Route{Match: match, Action: &routev3.Route_Route{Route: ra}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func routeConfigOf(name string, routes ...*routev3.Route) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: routes}}}
}

func mustCodes(t *testing.T, s string) resiliency.Codes {
	t.Helper()
	c, err := resiliency.ParseCodes(s, 100, 599)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestTranslateRouteConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		in      *routev3.RouteConfiguration
		want    routeConfig
		wantErr []string
	}{
		{
			name: "timeouts and retries",
			in: routeConfigOf("orders",
				routeTo("orders", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/slow"}, CaseSensitive: wrapperspb.Bool(false)}, func(ra *routev3.RouteAction) {
					ra.Timeout = dur(2 * time.Second)
					ra.RetryPolicy = &routev3.RetryPolicy{
						RetryOn: "5xx, retriable-status-codes", NumRetries: wrapperspb.UInt32(4), PerTryTimeout: dur(300 * time.Millisecond),
						RetryBackOff:         &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(10 * time.Millisecond), MaxInterval: dur(time.Second)},
						RetriableStatusCodes: []uint32{409},
					}
				}),
				routeTo("orders", prefix("/"), func(ra *routev3.RouteAction) {
					ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure,reset"}
				}),
			),
			want: routeConfig{cluster: "orders", routes: []proxy.XDSRoute{
				{Name: "orders/0", Path: "/slow", IgnoreCase: true, Timeout: 2 * time.Second, PerTryTimeout: 300 * time.Millisecond,
					Retry: &resiliency.RetryPolicy{Exponential: true, Initial: 10 * time.Millisecond, Duration: 10 * time.Millisecond, MaxInterval: time.Second, MaxRetries: 4, HTTPCodes: mustCodes(t, "500-599,409")}},
				{Name: "orders/1", Prefix: "/",
					Retry: &resiliency.RetryPolicy{Exponential: true, Initial: 25 * time.Millisecond, Duration: 25 * time.Millisecond, MaxInterval: 250 * time.Millisecond, MaxRetries: 1, TransportOnly: true}},
			}},
		},
		{
			name: "virtual host retry policy, gateway errors, empty retry_on",
			in: &routev3.RouteConfiguration{Name: "a", VirtualHosts: []*routev3.VirtualHost{{
				RetryPolicy: &routev3.RetryPolicy{RetryOn: "gateway-error"},
				Routes: []*routev3.Route{
					routeTo("a", prefix("/x"), nil),
					routeTo("a", prefix("/y"), func(ra *routev3.RouteAction) { ra.RetryPolicy = &routev3.RetryPolicy{} }),
				},
			}}},
			want: routeConfig{cluster: "a", routes: []proxy.XDSRoute{
				{Name: "a/0", Prefix: "/x", Retry: &resiliency.RetryPolicy{Exponential: true, Initial: 25 * time.Millisecond, Duration: 25 * time.Millisecond, MaxInterval: 250 * time.Millisecond, MaxRetries: 1, HTTPCodes: mustCodes(t, "502-504")}},
				{Name: "a/1", Prefix: "/y"},
			}},
		},
		{name: "no virtual host", in: &routev3.RouteConfiguration{Name: "a"}},
		{
			name:    "missing cluster",
			in:      routeConfigOf("a", &routev3.Route{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{}}}),
			wantErr: []string{"virtual_hosts[0].routes[0].route.cluster", "required"},
		},
		{
			name: "weighted clusters",
			in: routeConfigOf("a", &routev3.Route{Match: prefix("/"), Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{}}}}}),
			wantErr: []string{"route.weighted_clusters", "unsupported"},
		},
		{
			name:    "two clusters",
			in:      routeConfigOf("a", routeTo("a", prefix("/x"), nil), routeTo("b", prefix("/"), nil)),
			wantErr: []string{"routes[1].route.cluster", `"b"`},
		},
		{
			name:    "bad timeout",
			in:      routeConfigOf("a", routeTo("a", prefix("/"), func(ra *routev3.RouteAction) { ra.Timeout = &durationpb.Duration{Seconds: -1, Nanos: 5} })),
			wantErr: []string{"routes[0].route.timeout", "invalid duration"},
		},
		{
			name: "unknown retry_on",
			in: routeConfigOf("a", routeTo("a", prefix("/"), func(ra *routev3.RouteAction) {
				ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,envoy-ratelimited"}
			})),
			wantErr: []string{"routes[0].route.retry_policy.retry_on", "envoy-ratelimited"},
		},
		{
			name: "max interval below base",
			in: routeConfigOf("a", routeTo("a", prefix("/"), func(ra *routev3.RouteAction) {
				ra.RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", RetryBackOff: &routev3.RetryPolicy_RetryBackOff{BaseInterval: dur(time.Second), MaxInterval: dur(time.Millisecond)}}
			})),
			wantErr: []string{"retry_back_off.max_interval"},
		},
		{
			name:    "regex match",
			in:      routeConfigOf("a", routeTo("a", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}}, nil)),
			wantErr: []string{"match.safe_regex", "unsupported"},
		},
		{
			name: "header match",
			in: routeConfigOf("a", routeTo("a", &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
				Headers: []*routev3.HeaderMatcher{{Name: "x"}}}, nil)),
			wantErr: []string{"match.headers", "unsupported"},
		},
		{
			name:    "redirect",
			in:      routeConfigOf("a", &routev3.Route{Match: prefix("/"), Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{}}}),
			wantErr: []string{"routes[0].redirect", "unsupported action"},
		},
		{
			name:    "two virtual hosts",
			in:      &routev3.RouteConfiguration{Name: "a", VirtualHosts: []*routev3.VirtualHost{{}, {}}},
			wantErr: []string{"virtual_hosts", "only one"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateRouteConfig(tc.in)
			errHas(t, err, tc.wantErr...)
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(routeConfig{}), cmpOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func exact(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
}

func prefixMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}}
}

func principalName(m *matcherv3.StringMatcher) *rbacconfigv3.Principal {
	return &rbacconfigv3.Principal{Identifier: &rbacconfigv3.Principal_Authenticated_{Authenticated: &rbacconfigv3.Principal_Authenticated{PrincipalName: m}}}
}

func urlPath(m *matcherv3.StringMatcher) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{Rule: &matcherv3.PathMatcher_Path{Path: m}}}}
}

func method(v string) *rbacconfigv3.Permission {
	return &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: ":method", HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: v}}}}
}

func TestTranslateRBAC(t *testing.T) {
	anyPerm := &rbacconfigv3.Permission{Rule: &rbacconfigv3.Permission_Any{Any: true}}
	rules := func(action rbacconfigv3.RBAC_Action, pols map[string]*rbacconfigv3.Policy) *rbacv3.RBAC {
		return &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Action: action, Policies: pols}}
	}
	for _, tc := range []struct {
		name    string
		in      *rbacv3.RBAC
		want    *access.RBAC
		wantErr []string
	}{
		{name: "no rules", in: &rbacv3.RBAC{}},
		{
			name: "allow, policies sorted",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{
				"z-checkout": {
					Principals: []*rbacconfigv3.Principal{principalName(exact("spiffe://public/ns/default/checkout"))},
					Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_AndRules{AndRules: &rbacconfigv3.Permission_Set{Rules: []*rbacconfigv3.Permission{
						urlPath(prefixMatch("/orders/")), method("POST"),
					}}}}},
				},
				"a-prod": {
					Principals:  []*rbacconfigv3.Principal{principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "spiffe://public/ns/prod/"}, IgnoreCase: true})},
					Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_OrRules{OrRules: &rbacconfigv3.Permission_Set{Rules: []*rbacconfigv3.Permission{urlPath(exact("/health")), anyPerm}}}}},
				},
			}),
			want: &access.RBAC{Action: access.ActionAllow, Policies: []access.RBACPolicy{
				{Name: "a-prod",
					Principals:  []access.Principal{{ID: &access.StringMatch{Prefix: "spiffe://public/ns/prod/", IsPrefix: true, IgnoreCase: true}}},
					Permissions: []access.Permission{{Or: []access.Permission{{Path: &access.StringMatch{Exact: "/health"}}, {Any: true}}}}},
				{Name: "z-checkout",
					Principals:  []access.Principal{{ID: &access.StringMatch{Exact: "spiffe://public/ns/default/checkout"}}},
					Permissions: []access.Permission{{And: []access.Permission{{Path: &access.StringMatch{Prefix: "/orders/", IsPrefix: true}}, {Method: "POST"}}}}},
			}},
		},
		{
			name: "deny any",
			in: rules(rbacconfigv3.RBAC_DENY, map[string]*rbacconfigv3.Policy{"all": {
				Principals: []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}}, Permissions: []*rbacconfigv3.Permission{anyPerm}}}),
			want: &access.RBAC{Action: access.ActionDeny, Policies: []access.RBACPolicy{{Name: "all", Principals: []access.Principal{{Any: true}}, Permissions: []access.Permission{{Any: true}}}}},
		},
		{
			name: "unsupported matcher",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": {
				Principals:  []*rbacconfigv3.Principal{principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: ".*"}}})},
				Permissions: []*rbacconfigv3.Permission{anyPerm}}}),
			wantErr: []string{`rules.policies["p"].principals[0].authenticated.principal_name.safe_regex`, "unsupported matcher"},
		},
		{
			name: "unsupported permission",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": {
				Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}},
				Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_DestinationPort{DestinationPort: 80}}}}}),
			wantErr: []string{`permissions[0].destination_port`, "unsupported permission"},
		},
		{
			name: "unsupported principal",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": {
				Principals:  []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_SourceIp{SourceIp: &corev3.CidrRange{}}}},
				Permissions: []*rbacconfigv3.Permission{anyPerm}}}),
			wantErr: []string{`principals[0].source_ip`, "unsupported principal"},
		},
		{
			name: "other header",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": {
				Principals: []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}},
				Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Header{Header: &routev3.HeaderMatcher{Name: "x-user",
					HeaderMatchSpecifier: &routev3.HeaderMatcher_ExactMatch{ExactMatch: "a"}}}}}}}),
			wantErr: []string{"header.name", "only :method"},
		},
		{
			name:    "log action",
			in:      rules(rbacconfigv3.RBAC_LOG, nil),
			wantErr: []string{"rules.action", "LOG"},
		},
		{
			name:    "shadow rules",
			in:      &rbacv3.RBAC{ShadowRules: &rbacconfigv3.RBAC{}},
			wantErr: []string{"shadow_rules"},
		},
		{
			name: "policy without principals",
			in: rules(rbacconfigv3.RBAC_ALLOW, map[string]*rbacconfigv3.Policy{"p": {
				Permissions: []*rbacconfigv3.Permission{anyPerm}}}),
			wantErr: []string{`rules.policies["p"].principals`, "at least one"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateRBAC(tc.in)
			errHas(t, err, tc.wantErr...)
			if d := cmp.Diff(tc.want, got, cmpOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// hcmListener is a valid Listener of the profile: RDS (or inline routes),
// an optional RBAC filter, the router.
func hcmListener(t testing.TB, name string, rbac *rbacv3.RBAC, inline *routev3.RouteConfiguration, edit func(*hcmv3.HttpConnectionManager)) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{StatPrefix: name}
	if inline != nil {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inline}
	} else {
		hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: name}}
	}
	if rbac != nil {
		hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.rbac", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, rbac)}})
	}
	hcm.HttpFilters = append(hcm.HttpFilters, &hcmv3.HttpFilter{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routerv3.Router{})}})
	if edit != nil {
		edit(hcm)
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: mustAny(t, hcm)}}
}

func TestTranslateListener(t *testing.T) {
	allowAll := &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"all": {
		Principals: []*rbacconfigv3.Principal{{Identifier: &rbacconfigv3.Principal_Any{Any: true}}}, Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}}}}}
	badRBAC := &rbacv3.RBAC{Rules: &rbacconfigv3.RBAC{Policies: map[string]*rbacconfigv3.Policy{"p": {
		Principals:  []*rbacconfigv3.Principal{principalName(&matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "/x"}})},
		Permissions: []*rbacconfigv3.Permission{{Rule: &rbacconfigv3.Permission_Any{Any: true}}}}}}}
	for _, tc := range []struct {
		name    string
		in      *listenerv3.Listener
		want    listener
		wantErr []string
	}{
		{name: "rds", in: hcmListener(t, "orders", nil, nil, nil), want: listener{rds: "orders"}},
		{
			name: "rbac and inline routes",
			in:   hcmListener(t, "orders", allowAll, routeConfigOf("inline", routeTo("orders", prefix("/"), nil)), nil),
			want: listener{
				inline: &routeConfig{cluster: "orders", routes: []proxy.XDSRoute{{Name: "inline/0", Prefix: "/"}}},
				rbac:   &access.RBAC{Action: access.ActionAllow, Policies: []access.RBACPolicy{{Name: "all", Principals: []access.Principal{{Any: true}}, Permissions: []access.Permission{{Any: true}}}}},
			},
		},
		{
			name: "optional unknown filter skipped",
			in: hcmListener(t, "a", nil, nil, func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "x", IsOptional: true, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routev3.Route{})}}}, h.HttpFilters...)
			}),
			want: listener{rds: "a"},
		},
		{
			name:    "unsupported RBAC matcher",
			in:      hcmListener(t, "a", badRBAC, nil, nil),
			wantErr: []string{`api_listener.api_listener.http_filters[0].typed_config.rules.policies["p"].principals[0].authenticated.principal_name.suffix`, "unsupported matcher"},
		},
		{
			name: "unknown filter",
			in: hcmListener(t, "a", nil, nil, func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, &routev3.Route{})}}}, h.HttpFilters...)
			}),
			wantErr: []string{"http_filters[0]", "envoy.filters.http.fault", "not supported"},
		},
		{
			name:    "no router",
			in:      hcmListener(t, "a", nil, nil, func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = nil }),
			wantErr: []string{"http_filters", "router"},
		},
		{
			name:    "rds not over ads",
			in:      hcmListener(t, "a", nil, nil, func(h *hcmv3.HttpConnectionManager) { h.GetRds().ConfigSource = nil }),
			wantErr: []string{"rds.config_source"},
		},
		{
			name:    "scoped routes",
			in:      hcmListener(t, "a", nil, nil, func(h *hcmv3.HttpConnectionManager) { h.RouteSpecifier = &hcmv3.HttpConnectionManager_ScopedRoutes{} }),
			wantErr: []string{"scoped_routes", "unsupported"},
		},
		{
			name:    "inline routes with a bad route",
			in:      hcmListener(t, "a", nil, routeConfigOf("i", routeTo("", prefix("/"), nil)), nil),
			wantErr: []string{"route_config.virtual_hosts[0].routes[0].route.cluster", "required"},
		},
		{
			name:    "socket listener",
			in:      &listenerv3.Listener{Name: "a", Address: &corev3.Address{}},
			wantErr: []string{"address", "api_listener"},
		},
		{
			name:    "no api listener",
			in:      &listenerv3.Listener{Name: "a"},
			wantErr: []string{"api_listener.api_listener", "required"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateListener(tc.in)
			errHas(t, err, tc.wantErr...)
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(listener{}, routeConfig{}), cmpOpts); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestAssemble(t *testing.T) {
	orders := discovery.Target{AppID: "orders", Namespace: "default"}
	pay := discovery.Target{AppID: "pay", Namespace: "prod"}
	self := discovery.Target{AppID: "checkout", Namespace: "default"}
	rbac := &access.RBAC{Action: access.ActionDeny}
	r := resources{
		clusters: map[string]cluster{
			"orders":   {target: orders, app: proxy.XDSApp{Cluster: "orders", LoadBalancer: proxy.LBP2C}},
			"pay.prod": {target: pay, app: proxy.XDSApp{Cluster: "pay.prod", MaxRequests: 3}},
		},
		endpoints: map[string]endpointSet{
			"orders": {target: orders, instances: []discovery.Instance{{AppID: "orders", Namespace: "default", Address: "a:1"}}},
			"gone":   {instances: []discovery.Instance{{Address: "x:1"}}},
		},
		listeners: map[string]listener{
			"orders":   {rds: "orders-routes"},
			"checkout": {rbac: rbac},
			"ghost":    {inline: &routeConfig{cluster: "ghost", routes: []proxy.XDSRoute{{Prefix: "/"}}}},
		},
		routes: map[string]routeConfig{
			"orders-routes": {cluster: "orders", routes: []proxy.XDSRoute{{Name: "r", Prefix: "/", Timeout: time.Second}}},
		},
	}
	cfg, eps := assemble(r, self, "v")
	want := &proxy.XDSConfig{Version: "v", Access: rbac, Apps: map[discovery.Target]proxy.XDSApp{
		orders: {Cluster: "orders", LoadBalancer: proxy.LBP2C, Routes: []proxy.XDSRoute{{Name: "r", Prefix: "/", Timeout: time.Second}}},
		pay:    {Cluster: "pay.prod", MaxRequests: 3},
	}}
	if d := cmp.Diff(want, cfg, cmpOpts); d != "" {
		t.Errorf("config (-want +got)\n%s", d)
	}
	wantEps := map[discovery.Target][]discovery.Instance{orders: {{AppID: "orders", Namespace: "default", Address: "a:1"}}, pay: nil}
	if d := cmp.Diff(wantEps, eps, cmpOpts); d != "" {
		t.Errorf("endpoints (-want +got)\n%s", d)
	}
}

func TestClusterName(t *testing.T) {
	for _, tc := range []struct {
		name string
		t    discovery.Target
	}{{"orders", discovery.Target{AppID: "orders", Namespace: "default"}}, {"orders.prod", discovery.Target{AppID: "orders", Namespace: "prod"}}} {
		if got := ClusterName(tc.t); got != tc.name {
			t.Errorf("ClusterName(%v) = %q, want %q", tc.t, got, tc.name)
		}
		if got, err := ParseClusterName(tc.name); err != nil || got != tc.t {
			t.Errorf("ParseClusterName(%q) = %v, %v; want %v", tc.name, got, err, tc.t)
		}
	}
}
