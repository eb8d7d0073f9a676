package xds

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/httpendpoint"
)

// dnsCluster is an HTTPEndpoint's Cluster for host:port; tls, when not
// nil, is its UpstreamTlsContext.
func dnsCluster(t *testing.T, name, host string, port uint32, tls *tlsv3.UpstreamTlsContext, edit func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(host, port, nil)},
		}}},
	}
	if tls != nil {
		c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(t, tls)}}
	}
	if edit != nil {
		edit(c)
	}
	return c
}

func systemRoots() *tlsv3.UpstreamTlsContext {
	return &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
		ValidationContext: &tlsv3.CertificateValidationContext{SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{}},
	}}}
}

func env(name string) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: name}}
}

// TestTranslateEndpointCluster: an HTTPEndpoint's Cluster is where calls
// go; anything Skein would not do exactly as written is refused (NACK).
func TestTranslateEndpointCluster(t *testing.T) {
	const name = "httpendpoint|api.v1.shop"
	for _, tc := range []struct {
		name    string
		in      *clusterv3.Cluster
		want    *endpointCluster
		wantErr []string
	}{
		{
			name: "http, default port left out",
			in:   dnsCluster(t, name, "api.example", 80, nil, nil),
			want: &endpointCluster{name: "api.v1", ns: "shop", scheme: "http", host: "api.example"},
		},
		{
			name: "https to an IPv6 address on its own port, system roots",
			in:   dnsCluster(t, name, "2001:db8::1", 8443, systemRoots(), nil),
			want: &endpointCluster{name: "api.v1", ns: "shop", scheme: "https", host: "[2001:db8::1]:8443", tls: &httpendpoint.ClientTLS{}},
		},
		{
			name: "client certificate and roots from the environment",
			in: dnsCluster(t, name, "api.example", 443, &tlsv3.UpstreamTlsContext{Sni: "api.example", CommonTlsContext: &tlsv3.CommonTlsContext{
				TlsCertificates: []*tlsv3.TlsCertificate{{CertificateChain: env("CERT"), PrivateKey: env("KEY")}},
				ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
					TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "PEM"}}}},
			}}, nil),
			want: &endpointCluster{name: "api.v1", ns: "shop", scheme: "https", host: "api.example", tls: &httpendpoint.ClientTLS{
				RootCA: &httpendpoint.Source{Value: "PEM"}, Certificate: &httpendpoint.Source{EnvRef: "CERT"}, PrivateKey: &httpendpoint.Source{EnvRef: "KEY"},
			}},
		},
		{
			name: "EDS",
			in: dnsCluster(t, name, "a", 80, nil, func(c *clusterv3.Cluster) {
				c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
			}),
			wantErr: []string{"type", "LOGICAL_DNS"},
		},
		{
			name:    "no address",
			in:      dnsCluster(t, name, "a", 80, nil, func(c *clusterv3.Cluster) { c.LoadAssignment = nil }),
			wantErr: []string{"load_assignment", "required"},
		},
		{
			name:    "TLS that verifies nothing",
			in:      dnsCluster(t, name, "a", 443, &tlsv3.UpstreamTlsContext{}, nil),
			wantErr: []string{"transport_socket.typed_config.common_tls_context.validation_context", "always verifies"},
		},
		{
			name: "a file the sidecar would read",
			in: dnsCluster(t, name, "a", 443, &tlsv3.UpstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{
				ValidationContext: &tlsv3.CertificateValidationContext{TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: "/etc/ca.pem"}}}}}}, nil),
			wantErr: []string{"trusted_ca.filename", "unsupported"},
		},
		{
			name: "another SNI",
			in: dnsCluster(t, name, "a", 443, func() *tlsv3.UpstreamTlsContext {
				u := systemRoots()
				u.Sni = "b"
				return u
			}(), nil),
			wantErr: []string{"sni", `"b"`},
		},
		{
			name:    "not a name of namespace",
			in:      dnsCluster(t, "httpendpoint|nodot", "a", 80, nil, nil),
			wantErr: []string{"name", "<name>.<namespace>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateCluster(tc.in)
			errHas(t, err, tc.wantErr...)
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, got.ext, cmp.AllowUnexported(endpointCluster{})); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// endpointRouteListener is an HTTPEndpoint's Listener with one route.
func endpointRouteListener(t *testing.T, name string, edit func(*routev3.Route)) *routev3.RouteConfiguration {
	r := &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: name},
			PrefixRewrite:        "/v2",
			HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)},
		}},
	}
	if edit != nil {
		edit(r)
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{r}}}}
}

func header(key, value string) *corev3.HeaderValueOption {
	return &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: key, Value: value}, AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD}
}

// TestTranslateEndpointListener: an HTTPEndpoint's Listener carries the
// base path and the headers; Envoy's header formatter is read exactly
// ("%%", a whole "%ENVIRONMENT(NAME)%") or refused.
func TestTranslateEndpointListener(t *testing.T) {
	const name = "httpendpoint|api.shop"
	for _, tc := range []struct {
		name    string
		route   func(*routev3.Route)
		hcm     func(*hcmv3.HttpConnectionManager)
		want    *endpointRoute
		wantErr []string
	}{
		{
			name: "path and headers",
			route: func(r *routev3.Route) {
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{header("X-Plain", "100%% sure"), header("X-Env", "%ENVIRONMENT(TOKEN)%")}
			},
			want: &endpointRoute{path: "/v2", headers: []httpendpoint.Header{
				{Name: "X-Plain", Source: httpendpoint.Source{Value: "100% sure"}},
				{Name: "X-Env", Source: httpendpoint.Source{EnvRef: "TOKEN"}},
			}},
		},
		{
			name: "another command operator",
			route: func(r *routev3.Route) {
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{header("X-A", "%DOWNSTREAM_REMOTE_ADDRESS%")}
			},
			wantErr: []string{"request_headers_to_add[0].header.value", "command operator"},
		},
		{
			name: "environment inside text",
			route: func(r *routev3.Route) {
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{header("X-A", "Bearer %ENVIRONMENT(T)%")}
			},
			wantErr: []string{"request_headers_to_add[0].header.value"},
		},
		{
			name: "appended, not replaced",
			route: func(r *routev3.Route) {
				h := header("X-A", "v")
				h.AppendAction = corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
				r.RequestHeadersToAdd = []*corev3.HeaderValueOption{h}
			},
			wantErr: []string{"append_action", "OVERWRITE_IF_EXISTS_OR_ADD"},
		},
		{
			name:    "the caller's Host kept",
			route:   func(r *routev3.Route) { r.GetRoute().HostRewriteSpecifier = nil },
			wantErr: []string{"auto_host_rewrite", "must be true"},
		},
		{
			name: "another cluster",
			route: func(r *routev3.Route) {
				r.GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "orders"}
			},
			wantErr: []string{"route.cluster", `"orders"`},
		},
		{
			name:    "a timeout",
			route:   func(r *routev3.Route) { r.GetRoute().Timeout = durationpb.New(1) },
			wantErr: []string{"Resiliency"},
		},
		{
			name: "routes by RDS",
			hcm: func(h *hcmv3.HttpConnectionManager) {
				h.RouteSpecifier = &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads(), RouteConfigName: name}}
			},
			wantErr: []string{"rds", "inline"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := translateListener(hcmListener(t, name, nil, endpointRouteListener(t, name, tc.route), tc.hcm))
			errHas(t, err, tc.wantErr...)
			if err != nil {
				return
			}
			if d := cmp.Diff(tc.want, got.ext, cmp.AllowUnexported(endpointRoute{})); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

// TestAssembleEndpoints: a Cluster makes an endpoint of the sidecar's
// namespace, its Listener adds path and headers; other namespaces'
// endpoints are ignored, and none is an app.
func TestAssembleEndpoints(t *testing.T) {
	h := []httpendpoint.Header{{Name: "X-A", Source: httpendpoint.Source{Value: "v"}}}
	r := resources{
		clusters: map[string]cluster{
			"httpendpoint|api.shop":  {ext: &endpointCluster{name: "api", ns: "shop", scheme: "https", host: "api.example", tls: &httpendpoint.ClientTLS{}}},
			"httpendpoint|bare.shop": {ext: &endpointCluster{name: "bare", ns: "shop", scheme: "http", host: "bare.example:8080"}},
			"httpendpoint|api.other": {ext: &endpointCluster{name: "api", ns: "other", scheme: "http", host: "x"}},
		},
		listeners: map[string]listener{"httpendpoint|api.shop": {ext: &endpointRoute{path: "/v2/", headers: h}}},
		endpoints: map[string]endpointSet{},
		routes:    map[string]routeConfig{},
	}
	cfg, eps := assemble(r, discovery.Target{AppID: "checkout", Namespace: "shop"}, "v")
	want := map[string]*httpendpoint.Spec{
		"api":  {BaseURL: "https://api.example/v2/", Headers: h, ClientTLS: &httpendpoint.ClientTLS{}},
		"bare": {BaseURL: "http://bare.example:8080"},
	}
	if d := cmp.Diff(want, cfg.HTTPEndpoints); d != "" {
		t.Errorf("HTTPEndpoints (-want +got)\n%s", d)
	}
	if len(cfg.Apps) != 0 || len(eps) != 0 {
		t.Errorf("apps %v, endpoints %v: want none", cfg.Apps, eps)
	}
}
