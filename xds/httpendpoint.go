package xds

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skeinmesh/skein/httpendpoint"
)

// HTTPEndpoints (external service invocation) travel as a Cluster and a
// Listener named EndpointName(name, namespace), in the way Envoy reaches
// an external service: the Cluster is where to connect (LOGICAL_DNS, one
// address, UpstreamTlsContext for https), the Listener's inline route what
// to send (base path as prefix_rewrite, auto_host_rewrite, the headers as
// request_headers_to_add). Values from the environment stay references
// (DataSource.environment_variable, a header "%ENVIRONMENT(NAME)%"), which
// the sidecar reads in its own environment: no secret travels over ADS.
// docs/xds.md has the mapping; xds/controlplane builds it.

// EndpointPrefix starts the xDS name of every HTTPEndpoint's resources.
const EndpointPrefix = "httpendpoint|"

const upstreamTLSType = typePrefix + "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"

// EndpointName is the xDS name of an HTTPEndpoint:
// "httpendpoint|<name>.<namespace>".
func EndpointName(name, namespace string) string {
	return EndpointPrefix + name + "." + namespace
}

// parseEndpointName reads an EndpointName; ok is false for any other name.
// A Kubernetes namespace has no dot, so the last one ends the name.
func parseEndpointName(s string) (name, ns string, ok bool, err error) {
	rest, ok := strings.CutPrefix(s, EndpointPrefix)
	if !ok {
		return "", "", false, nil
	}
	i := strings.LastIndexByte(rest, '.')
	if i <= 0 || i == len(rest)-1 {
		return "", "", true, fmt.Errorf("%q is not %s<name>.<namespace>", s, EndpointPrefix)
	}
	name, ns = rest[:i], rest[i+1:]
	if strings.ContainsAny(name, "/\\% |") || strings.ContainsAny(ns, "/\\% |") {
		return "", "", true, fmt.Errorf("%q: the name or namespace has a forbidden character", s)
	}
	return name, ns, true, nil
}

// endpointCluster is a translated HTTPEndpoint Cluster: where calls go.
type endpointCluster struct {
	name, ns string
	scheme   string // http, or https with an UpstreamTlsContext
	host     string // host[:port] as in a URL, the port left out when the scheme's
	tls      *httpendpoint.ClientTLS
}

// endpointRoute is a translated HTTPEndpoint Listener: what calls carry.
type endpointRoute struct {
	path    string // the base URL's path
	headers []httpendpoint.Header
}

// translateEndpointCluster translates the Cluster of an HTTPEndpoint.
func translateEndpointCluster(c *clusterv3.Cluster, name, ns string) (*endpointCluster, error) {
	out := &endpointCluster{name: name, ns: ns, scheme: "http"}
	var errs []error
	if _, custom := c.GetClusterDiscoveryType().(*clusterv3.Cluster_ClusterType); custom || (c.GetType() != clusterv3.Cluster_LOGICAL_DNS && c.GetType() != clusterv3.Cluster_STRICT_DNS) {
		errs = append(errs, fieldError("type", "%s: an HTTPEndpoint's cluster is LOGICAL_DNS (or STRICT_DNS)", c.GetType()))
	}
	la := c.GetLoadAssignment()
	var sa *corev3.SocketAddress
	switch {
	case la == nil:
		errs = append(errs, fieldError("load_assignment", "required: the endpoint's host and port"))
	case la.GetClusterName() != "" && la.GetClusterName() != c.GetName():
		errs = append(errs, fieldError("load_assignment.cluster_name", "%q: must be empty or the cluster's name", la.GetClusterName()))
	case len(la.GetEndpoints()) != 1 || len(la.GetEndpoints()[0].GetLbEndpoints()) != 1:
		errs = append(errs, fieldError("load_assignment.endpoints", "exactly one lb_endpoint: the base URL's host and port"))
	default:
		sa = la.GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		const p = "load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address"
		switch {
		case sa == nil:
			errs = append(errs, fieldError(p, "required"))
		case sa.GetProtocol() != corev3.SocketAddress_TCP:
			errs = append(errs, fieldError(p+".protocol", "%s: want TCP", sa.GetProtocol()))
		case sa.GetAddress() == "" || strings.ContainsAny(sa.GetAddress(), "/@?#% "):
			errs = append(errs, fieldError(p+".address", "%q: want a host name or IP address", sa.GetAddress()))
		case sa.GetPortValue() == 0 || sa.GetPortValue() > 65535:
			errs = append(errs, fieldError(p+".port_value", "%d: want 1-65535", sa.GetPortValue()))
		}
	}
	if ts := c.GetTransportSocket(); ts != nil {
		out.scheme = "https"
		t, err := translateUpstreamTLS(ts, sa.GetAddress())
		if err != nil {
			errs = append(errs, prefixed("transport_socket.typed_config.", err))
		}
		out.tls = t
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	host, port := sa.GetAddress(), sa.GetPortValue()
	if (out.scheme == "http" && port == 80) || (out.scheme == "https" && port == 443) {
		if strings.Contains(host, ":") {
			host = "[" + host + "]"
		}
		out.host = host
	} else {
		out.host = net.JoinHostPort(host, strconv.Itoa(int(port)))
	}
	return out, nil
}

// translateUpstreamTLS reads an UpstreamTlsContext as an HTTPEndpoint's
// clientTLS. Skein always verifies the server: the context must say
// against what (trusted_ca, or system_root_certs).
func translateUpstreamTLS(ts *corev3.TransportSocket, host string) (*httpendpoint.ClientTLS, error) {
	a := ts.GetTypedConfig()
	if a.GetTypeUrl() != upstreamTLSType {
		return nil, fieldError("", "type %s: want UpstreamTlsContext", a.GetTypeUrl())
	}
	var u tlsv3.UpstreamTlsContext
	if err := anypb.UnmarshalTo(a, &u, proto.UnmarshalOptions{}); err != nil {
		return nil, fieldError("", "%v", err)
	}
	var errs []error
	if sni := u.GetSni(); sni != "" && sni != host {
		errs = append(errs, fieldError("sni", "%q: Skein sends the endpoint's host %q", sni, host))
	}
	cc := u.GetCommonTlsContext()
	out := &httpendpoint.ClientTLS{}
	if len(cc.GetTlsCertificateSdsSecretConfigs()) > 0 || cc.GetValidationContextSdsSecretConfig() != nil || cc.GetCombinedValidationContext() != nil || cc.GetTlsCertificateProviderInstance() != nil {
		errs = append(errs, fieldError("common_tls_context", "SDS and certificate providers are not supported: give the documents inline or by environment_variable"))
	}
	switch certs := cc.GetTlsCertificates(); len(certs) {
	case 0:
	case 1:
		var err error
		if out.Certificate, err = dataSource(certs[0].GetCertificateChain(), "common_tls_context.tls_certificates[0].certificate_chain"); err != nil {
			errs = append(errs, err)
		}
		if out.PrivateKey, err = dataSource(certs[0].GetPrivateKey(), "common_tls_context.tls_certificates[0].private_key"); err != nil {
			errs = append(errs, err)
		}
	default:
		errs = append(errs, fieldError("common_tls_context.tls_certificates", "%d certificates: at most one", len(certs)))
	}
	vc := cc.GetValidationContext()
	const vp = "common_tls_context.validation_context"
	switch {
	case vc == nil:
		if cc.GetValidationContextSdsSecretConfig() == nil && cc.GetCombinedValidationContext() == nil {
			errs = append(errs, fieldError(vp, "required: Skein always verifies the server (trusted_ca or system_root_certs)"))
		}
	case len(vc.GetMatchTypedSubjectAltNames()) > 0 || len(vc.GetVerifyCertificateSpki()) > 0 || len(vc.GetVerifyCertificateHash()) > 0 || vc.GetCrl() != nil || vc.GetCustomValidatorConfig() != nil:
		errs = append(errs, fieldError(vp, "only trusted_ca or system_root_certs is supported (the host name is verified)"))
	case vc.GetTrustedCa() != nil:
		var err error
		if out.RootCA, err = dataSource(vc.GetTrustedCa(), vp+".trusted_ca"); err != nil {
			errs = append(errs, err)
		}
	case vc.GetSystemRootCerts() == nil:
		errs = append(errs, fieldError(vp, "trusted_ca or system_root_certs required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// dataSource reads a DataSource as a value: inline, or an environment
// variable the sidecar reads. nil stays nil.
func dataSource(d *corev3.DataSource, path string) (*httpendpoint.Source, error) {
	switch s := d.GetSpecifier().(type) {
	case nil:
		if d == nil {
			return nil, nil
		}
		return nil, fieldError(path, "empty")
	case *corev3.DataSource_InlineString:
		return &httpendpoint.Source{Value: s.InlineString}, nil
	case *corev3.DataSource_InlineBytes:
		return &httpendpoint.Source{Value: string(s.InlineBytes)}, nil
	case *corev3.DataSource_EnvironmentVariable:
		if s.EnvironmentVariable == "" {
			return nil, fieldError(path+".environment_variable", "empty")
		}
		return &httpendpoint.Source{EnvRef: s.EnvironmentVariable}, nil
	}
	return nil, fieldError(path+"."+oneofName(d, "specifier"), "unsupported (want inline_string, inline_bytes or environment_variable)")
}

// translateEndpointListener translates the Listener of an HTTPEndpoint:
// an api_listener whose inline route sends every call to the cluster of
// the same name.
func translateEndpointListener(l *listenerv3.Listener) (*endpointRoute, error) {
	if l.GetAddress() != nil || len(l.GetFilterChains()) > 0 {
		return nil, fieldError("address", "only api_listener (proxyless) listeners are supported")
	}
	a := l.GetApiListener().GetApiListener()
	if a.GetTypeUrl() != hcmType {
		return nil, fieldError("api_listener.api_listener", "type %q: want HttpConnectionManager", a.GetTypeUrl())
	}
	var hcm hcmv3.HttpConnectionManager
	if err := anypb.UnmarshalTo(a, &hcm, proto.UnmarshalOptions{}); err != nil {
		return nil, fieldError("api_listener.api_listener", "%v", err)
	}
	const p = "api_listener.api_listener."
	f := hcm.GetHttpFilters()
	if len(f) != 1 || f[0].GetTypedConfig().GetTypeUrl() != routerType {
		return nil, fieldError(p+"http_filters", "an HTTPEndpoint's listener has the router filter alone")
	}
	rc := hcm.GetRouteConfig()
	if rc == nil {
		return nil, fieldError(p+oneofName(&hcm, "route_specifier"), "an HTTPEndpoint's listener carries its route inline (route_config)")
	}
	if len(rc.GetRequestHeadersToAdd()) > 0 || len(rc.GetRequestHeadersToRemove()) > 0 {
		return nil, fieldError(p+"route_config.request_headers_to_add", "unsupported here: put the headers on the route")
	}
	vhs := rc.GetVirtualHosts()
	if len(vhs) != 1 || len(vhs[0].GetRoutes()) != 1 {
		return nil, fieldError(p+"route_config.virtual_hosts", "exactly one virtual host with one route")
	}
	if len(vhs[0].GetRequestHeadersToAdd()) > 0 || len(vhs[0].GetRequestHeadersToRemove()) > 0 {
		return nil, fieldError(p+"route_config.virtual_hosts[0].request_headers_to_add", "unsupported here: put the headers on the route")
	}
	r := vhs[0].GetRoutes()[0]
	rp := p + "route_config.virtual_hosts[0].routes[0]"
	m := r.GetMatch()
	if pre, ok := m.GetPathSpecifier().(*routev3.RouteMatch_Prefix); !ok || (pre.Prefix != "/" && pre.Prefix != "") {
		return nil, fieldError(rp+".match", "an HTTPEndpoint's route matches prefix \"/\" (every call)")
	}
	if len(m.GetHeaders()) > 0 || len(m.GetQueryParameters()) > 0 || m.GetGrpc() != nil || m.GetRuntimeFraction() != nil || len(m.GetDynamicMetadata()) > 0 {
		return nil, fieldError(rp+".match", "only prefix \"/\"")
	}
	ra := r.GetRoute()
	switch {
	case ra == nil:
		return nil, fieldError(rp+"."+oneofName(r, "action"), "unsupported action (want route)")
	case ra.GetCluster() != l.GetName():
		return nil, fieldError(rp+".route.cluster", "%q: must be the listener's own name %q", ra.GetCluster(), l.GetName())
	case !ra.GetAutoHostRewrite().GetValue():
		return nil, fieldError(rp+".route.auto_host_rewrite", "must be true: calls carry the endpoint's host")
	case ra.GetTimeout() != nil || ra.GetRetryPolicy() != nil || ra.GetRegexRewrite() != nil || ra.GetHashPolicy() != nil:
		return nil, fieldError(rp+".route", "only cluster, prefix_rewrite and auto_host_rewrite (resiliency for an HTTPEndpoint comes from Resiliency resources)")
	case len(r.GetRequestHeadersToRemove()) > 0:
		return nil, fieldError(rp+".request_headers_to_remove", "unsupported")
	}
	out := &endpointRoute{path: ra.GetPrefixRewrite()}
	if out.path != "" && !strings.HasPrefix(out.path, "/") {
		return nil, fieldError(rp+".route.prefix_rewrite", "%q: must start with /", out.path)
	}
	var errs []error
	for i, h := range r.GetRequestHeadersToAdd() {
		hp := fmt.Sprintf("%s.request_headers_to_add[%d]", rp, i)
		if h.GetAppendAction() != corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD || h.GetAppend().GetValue() {
			errs = append(errs, fieldError(hp+".append_action", "%s: want OVERWRITE_IF_EXISTS_OR_ADD (an HTTPEndpoint's header replaces the caller's)", h.GetAppendAction()))
			continue
		}
		name, v := h.GetHeader().GetKey(), h.GetHeader().GetValue()
		if raw := h.GetHeader().GetRawValue(); len(raw) > 0 {
			v = string(raw)
		}
		if !httpendpoint.ValidHeaderName(name) || strings.HasPrefix(name, ":") {
			errs = append(errs, fieldError(hp+".header.key", "%q: not a header name", name))
			continue
		}
		src, err := headerValue(v)
		if err != nil {
			errs = append(errs, fieldError(hp+".header.value", "%v", err))
			continue
		}
		out.headers = append(out.headers, httpendpoint.Header{Name: name, Source: src})
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}

// headerValue reads an Envoy custom header value, a substitution format
// string: "%%" is "%", and a value that is exactly "%ENVIRONMENT(NAME)%"
// is the sidecar's environment variable NAME (where Envoy would send "-"
// for a missing one, Skein refuses the push). Other command operators are
// refused.
func headerValue(v string) (httpendpoint.Source, error) {
	if rest, ok := strings.CutPrefix(v, "%ENVIRONMENT("); ok {
		name, ok := strings.CutSuffix(rest, ")%")
		if !ok || name == "" || strings.ContainsAny(name, "()%:") {
			return httpendpoint.Source{}, fmt.Errorf("%q: want exactly %%ENVIRONMENT(NAME)%%", v)
		}
		return httpendpoint.Source{EnvRef: name}, nil
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '%' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 < len(v) && v[i+1] == '%' {
			b.WriteByte('%')
			i++
			continue
		}
		return httpendpoint.Source{}, fmt.Errorf("%q: a command operator other than a whole %%ENVIRONMENT(NAME)%% (write %%%% for %%)", v)
	}
	return httpendpoint.Source{Value: b.String()}, nil
}

// assembleEndpoints builds the HTTPEndpoints of namespace ns from the
// accepted clusters and listeners: a Cluster makes the endpoint, the
// Listener of the same name (if any) adds its path and headers.
// Endpoints of other namespaces are ignored: apps invoke HTTPEndpoints of
// their own namespace.
func assembleEndpoints(r resources, ns string) map[string]*httpendpoint.Spec {
	var out map[string]*httpendpoint.Spec
	for n, c := range r.clusters {
		e := c.ext
		if e == nil || e.ns != ns {
			continue
		}
		sp := &httpendpoint.Spec{BaseURL: e.scheme + "://" + e.host, ClientTLS: e.tls}
		if l := r.listeners[n].ext; l != nil {
			sp.BaseURL += l.path
			sp.Headers = l.headers
		}
		if out == nil {
			out = map[string]*httpendpoint.Spec{}
		}
		out[e.name] = sp
	}
	return out
}
