package controlplane

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skeinmesh/skein/httpendpoint"
)

// HTTPEndpoints (Dapr's external service invocation) become, for the
// sidecars of their namespace that their scopes name, a Cluster and a
// Listener named "httpendpoint|<name>.<namespace>" (docs/xds.md; package
// xds reads them back). Values from secrets or the environment are served
// as references, never resolved here: ADS does not authenticate the node a
// client claims to be, so whatever a snapshot holds, anyone who reaches
// the port can read. The sidecar resolves them in its own environment, as
// it does for an HTTPEndpoint file.

// endpointPrefix starts the xDS name of an HTTPEndpoint's resources.
const endpointPrefix = "httpendpoint|"

// httpEndpoint is a validated HTTPEndpoint resource. Immutable.
type httpEndpoint struct {
	name, ns string
	scopes   []string // app ids; none: every app of the namespace
	spec     *httpendpoint.Spec
}

func (e *httpEndpoint) xdsName() string { return endpointPrefix + e.name + "." + e.ns }

// appliesTo reports whether the sidecars of app k get e.
func (e *httpEndpoint) appliesTo(k appKey) bool {
	return e.ns == k.ns && (len(e.scopes) == 0 || slices.Contains(e.scopes, k.app))
}

// newHTTPEndpoint checks an HTTPEndpoint read from a file or the cluster:
// its spec, its name, and that it translates.
func newHTTPEndpoint(name, ns string, scopes []string, sp *httpendpoint.Spec) (*httpEndpoint, error) {
	if err := sp.Validate(); err != nil {
		return nil, err
	}
	if name == "" || strings.ContainsAny(name, "/\\% |") {
		return nil, fmt.Errorf("metadata.name %q: want a Kubernetes object name", name)
	}
	e := &httpEndpoint{name: name, ns: ns, scopes: slices.Clone(scopes), spec: sp}
	if _, _, err := e.resources(); err != nil {
		return nil, err
	}
	return e, nil
}

// compileHTTPEndpoint decodes and checks an HTTPEndpoint of the cluster.
func compileHTTPEndpoint(r Resource) (*httpEndpoint, error) {
	n, err := specNode(r)
	if err != nil {
		return nil, err
	}
	sp, err := httpendpoint.Decode(n)
	if err != nil {
		return nil, err
	}
	return newHTTPEndpoint(r.Name, r.Namespace, r.Scopes, sp)
}

// resources translates e into its Cluster (where calls go) and Listener
// (what they carry).
func (e *httpEndpoint) resources() (*clusterv3.Cluster, *listenerv3.Listener, error) {
	u, err := httpendpoint.ParseBaseURL(e.spec.BaseURL)
	if err != nil {
		return nil, nil, err
	}
	name := e.xdsName()
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		port, _ = strconv.Atoi(p) // ParseBaseURL checked it
	}
	// LOGICAL_DNS: the host name is resolved when a connection opens, as
	// Skein's sidecar (and Dapr's) dial it.
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_LOGICAL_DNS},
		ConnectTimeout:       durationpb.New(5 * time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       u.Hostname(),
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
					}}},
				}},
			}}}},
		},
	}
	if u.Scheme == "https" {
		ts, err := upstreamTLS(u.Hostname(), e.spec.ClientTLS)
		if err != nil {
			return nil, nil, err
		}
		c.TransportSocket = ts
	}
	action := &routev3.RouteAction{
		ClusterSpecifier:     &routev3.RouteAction_Cluster{Cluster: name},
		PrefixRewrite:        u.EscapedPath(),
		HostRewriteSpecifier: &routev3.RouteAction_AutoHostRewrite{AutoHostRewrite: wrapperspb.Bool(true)},
	}
	route := &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: action},
	}
	for _, h := range e.spec.Headers {
		v := strings.ReplaceAll(h.Value, "%", "%%") // Envoy's header values are format strings
		if env := h.Env(); env != "" {
			v = "%ENVIRONMENT(" + env + ")%"
		}
		route.RequestHeadersToAdd = append(route.RequestHeadersToAdd, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: h.Name, Value: v},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{
			Name:         name,
			VirtualHosts: []*routev3.VirtualHost{{Name: name, Domains: []string{"*"}, Routes: []*routev3.Route{route}}},
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	})
	if err != nil {
		return nil, nil, err
	}
	return c, &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}, nil
}

// upstreamTLS is the transport socket of an https endpoint: verified
// against clientTLS.rootCA, else the system's roots (Envoy verifies
// nothing without a validation context), with the client certificate if
// one is given.
func upstreamTLS(host string, t *httpendpoint.ClientTLS) (*corev3.TransportSocket, error) {
	vc := &tlsv3.CertificateValidationContext{SystemRootCerts: &tlsv3.CertificateValidationContext_SystemRootCerts{}}
	cc := &tlsv3.CommonTlsContext{AlpnProtocols: []string{"http/1.1"}}
	if t != nil {
		if t.RootCA != nil && (t.RootCA.Value != "" || t.RootCA.Env() != "") {
			vc = &tlsv3.CertificateValidationContext{TrustedCa: dataSource(t.RootCA)}
		}
		if t.Certificate != nil && t.PrivateKey != nil {
			cc.TlsCertificates = []*tlsv3.TlsCertificate{{CertificateChain: dataSource(t.Certificate), PrivateKey: dataSource(t.PrivateKey)}}
		}
	}
	cc.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc}
	a, err := anypb.New(&tlsv3.UpstreamTlsContext{Sni: host, CommonTlsContext: cc})
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{Name: "envoy.transport_sockets.tls", ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a}}, nil
}

// dataSource is a TLS document as a DataSource: inline, or the
// environment variable the sidecar reads.
func dataSource(s *httpendpoint.Source) *corev3.DataSource {
	if env := s.Env(); env != "" {
		return &corev3.DataSource{Specifier: &corev3.DataSource_EnvironmentVariable{EnvironmentVariable: env}}
	}
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s.Value}}
}
