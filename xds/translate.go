package xds

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacconfigv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/resiliency"
)

// Type URLs of the resources Skein consumes.
const (
	typePrefix   = "type.googleapis.com/"
	ListenerType = typePrefix + "envoy.config.listener.v3.Listener"
	RouteType    = typePrefix + "envoy.config.route.v3.RouteConfiguration"
	ClusterType  = typePrefix + "envoy.config.cluster.v3.Cluster"
	EndpointType = typePrefix + "envoy.config.endpoint.v3.ClusterLoadAssignment"

	hcmType    = typePrefix + "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	rbacType   = typePrefix + "envoy.extensions.filters.http.rbac.v3.RBAC"
	routerType = typePrefix + "envoy.extensions.filters.http.router.v3.Router"
)

// Defaults Envoy documents for the fields Skein reads.
const (
	defaultConsecutive5xx   = 5
	defaultBaseEjection     = 30 * time.Second
	defaultMaxEjection      = 300 * time.Second
	defaultBudgetPercent    = 20.0
	defaultMinRetryConc     = 3
	defaultNumRetries       = 1
	defaultRetryBaseBackoff = 25 * time.Millisecond
)

// ClusterName is the xDS name of an app: "<app-id>" in the default
// namespace, "<app-id>.<namespace>" elsewhere (PRODUCT.md).
func ClusterName(t discovery.Target) string {
	if t.Namespace == "default" {
		return t.AppID
	}
	return t.AppID + "." + t.Namespace
}

// ParseClusterName is the inverse of ClusterName. Cluster, listener and
// ClusterLoadAssignment names are parsed here once, as they are translated;
// the rest of the sidecar gets the Target.
func ParseClusterName(name string) (discovery.Target, error) {
	app, ns, dotted := strings.Cut(name, ".")
	if !dotted {
		ns = "default"
	}
	if err := proxy.ValidateAppID(app); err != nil {
		return discovery.Target{}, fmt.Errorf("%q is not <app-id> or <app-id>.<namespace>: %w", name, err)
	}
	if ns == "" || strings.ContainsAny(ns, "./\\ %") {
		return discovery.Target{}, fmt.Errorf("%q is not <app-id> or <app-id>.<namespace>: bad namespace", name)
	}
	return discovery.Target{AppID: app, Namespace: ns}, nil
}

// cluster is a translated Cluster.
type cluster struct {
	target discovery.Target
	app    proxy.XDSApp     // without routes
	ext    *endpointCluster // an HTTPEndpoint's cluster: no app, target and app unset
}

// listener is a translated Listener: where its routes come from, and its
// RBAC filter.
type listener struct {
	rds    string         // RouteConfiguration name; "" with inline routes
	inline *routeConfig   // inline route_config
	rbac   *access.RBAC   // nil: no RBAC filter (or no rules)
	ext    *endpointRoute // an HTTPEndpoint's listener: the rest unset
}

// routeConfig is a translated RouteConfiguration: routes to one cluster.
type routeConfig struct {
	cluster string // the cluster every route names; "" without routes
	routes  []proxy.XDSRoute
}

// fieldError names the field path of a problem.
func fieldError(path string, format string, args ...any) error {
	return fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...))
}

// prefixed prefixes every error joined in err with prefix ("a.b" + "." +
// each error's text); nil stays nil.
func prefixed(prefix string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, prefixed(prefix, e))
		}
		return errors.Join(errs...)
	}
	return fmt.Errorf("%s%w", prefix, err)
}

// duration reads an optional Duration; nil is 0.
func duration(path string, d *durationpb.Duration) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fieldError(path, "invalid duration: %v", err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fieldError(path, "negative duration %v", v)
	}
	return v, nil
}

// setField names the first populated field of m, for "unsupported" errors.
func setField(m proto.Message) string {
	name := "?"
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name = string(fd.Name())
		return false
	})
	return name
}

// oneofName names the member set in the oneof called oneof of m.
func oneofName(m proto.Message, oneof string) string {
	r := m.ProtoReflect()
	od := r.Descriptor().Oneofs().ByName(protoreflect.Name(oneof))
	if od == nil {
		return oneof
	}
	if fd := r.WhichOneof(od); fd != nil {
		return string(fd.Name())
	}
	return oneof + " (unset)"
}

func isADS(cs *corev3.ConfigSource) bool {
	return cs != nil && (cs.GetAds() != nil || cs.GetSelf() != nil)
}

// translateCluster translates a Cluster (see doc.go for the fields).
func translateCluster(c *clusterv3.Cluster) (cluster, error) {
	if name, ns, ok, err := parseEndpointName(c.GetName()); ok {
		if err != nil {
			return cluster{}, fieldError("name", "%v", err)
		}
		e, err := translateEndpointCluster(c, name, ns)
		return cluster{ext: e}, err
	}
	t, err := ParseClusterName(c.GetName())
	if err != nil {
		return cluster{}, fieldError("name", "%v", err)
	}
	out := cluster{target: t, app: proxy.XDSApp{Cluster: c.GetName()}}
	var errs []error
	if _, custom := c.GetClusterDiscoveryType().(*clusterv3.Cluster_ClusterType); custom || c.GetType() != clusterv3.Cluster_EDS {
		errs = append(errs, fieldError("type", "%s: only EDS clusters are supported", c.GetType()))
	}
	if eds := c.GetEdsClusterConfig(); eds == nil || !isADS(eds.GetEdsConfig()) {
		errs = append(errs, fieldError("eds_cluster_config.eds_config", "must be ads"))
	} else if sn := eds.GetServiceName(); sn != "" && sn != c.GetName() {
		errs = append(errs, fieldError("eds_cluster_config.service_name", "%q: must be empty or the cluster's name", sn))
	}
	switch c.GetLbPolicy() {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.app.LoadBalancer = proxy.LBRoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.app.LoadBalancer = proxy.LBP2C
	default:
		errs = append(errs, fieldError("lb_policy", "%s: unsupported (want ROUND_ROBIN or LEAST_REQUEST)", c.GetLbPolicy()))
	}
	if c.GetLoadBalancingPolicy() != nil {
		errs = append(errs, fieldError("load_balancing_policy", "unsupported (use lb_policy)"))
	}
	if od := c.GetOutlierDetection(); od != nil {
		o := discovery.OutlierDetection{Consecutive: defaultConsecutive5xx, BaseEjection: defaultBaseEjection, MaxEjection: defaultMaxEjection}
		if v := od.GetConsecutive_5Xx(); v != nil {
			o.Consecutive = int(v.GetValue())
		}
		var derrs []error
		if od.GetBaseEjectionTime() != nil {
			d, err := duration("outlier_detection.base_ejection_time", od.GetBaseEjectionTime())
			derrs = append(derrs, err)
			o.BaseEjection = d
		}
		if od.GetMaxEjectionTime() != nil {
			d, err := duration("outlier_detection.max_ejection_time", od.GetMaxEjectionTime())
			derrs = append(derrs, err)
			o.MaxEjection = d
		}
		if err := errors.Join(derrs...); err != nil {
			errs = append(errs, err)
		} else if err := o.Validate(); err != nil {
			errs = append(errs, fieldError("outlier_detection", "%v", err))
		}
		out.app.Outlier = &o
	}
	if th := defaultThresholds(c.GetCircuitBreakers()); th != nil {
		if v := th.GetMaxRequests(); v != nil {
			out.app.MaxRequests = v.GetValue()
		}
		if rb := th.GetRetryBudget(); rb != nil {
			pct := defaultBudgetPercent
			if p := rb.GetBudgetPercent(); p != nil {
				pct = p.GetValue()
			}
			if pct < 0 || pct > 100 {
				errs = append(errs, fieldError("circuit_breakers.thresholds[0].retry_budget.budget_percent", "%v: must be within 0-100", pct))
			}
			floor := uint32(defaultMinRetryConc)
			if v := rb.GetMinRetryConcurrency(); v != nil {
				floor = v.GetValue()
			}
			if pct == 0 && floor == 0 {
				errs = append(errs, fieldError("circuit_breakers.thresholds[0].retry_budget", "budget_percent and min_retry_concurrency both 0 allow no retries; drop the retry policy instead"))
			}
			out.app.RetryBudget = &resiliency.BudgetConfig{Ratio: pct / 100, PerSecond: float64(floor)}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return cluster{}, err
	}
	return out, nil
}

// defaultThresholds returns the thresholds of priority DEFAULT.
func defaultThresholds(cb *clusterv3.CircuitBreakers) *clusterv3.CircuitBreakers_Thresholds {
	for _, th := range cb.GetThresholds() {
		if th.GetPriority() == corev3.RoutingPriority_DEFAULT {
			return th
		}
	}
	return nil
}

// translateEndpoints translates a ClusterLoadAssignment into the live
// instances of its app: endpoints UNHEALTHY, DRAINING or TIMEOUT are left
// out.
func translateEndpoints(cla *endpointv3.ClusterLoadAssignment) (discovery.Target, []discovery.Instance, error) {
	if cla.GetClusterName() == "" {
		return discovery.Target{}, nil, fieldError("cluster_name", "required")
	}
	t, err := ParseClusterName(cla.GetClusterName())
	if err != nil {
		return discovery.Target{}, nil, fieldError("cluster_name", "%v", err)
	}
	var errs []error
	var out []discovery.Instance
	if len(cla.GetNamedEndpoints()) > 0 {
		errs = append(errs, fieldError("named_endpoints", "unsupported"))
	}
	for i, loc := range cla.GetEndpoints() {
		lp := fmt.Sprintf("endpoints[%d]", i)
		if loc.GetPriority() != 0 {
			errs = append(errs, fieldError(lp+".priority", "%d: priorities are not supported", loc.GetPriority()))
			continue
		}
		if loc.GetLedsClusterLocalityConfig() != nil {
			errs = append(errs, fieldError(lp+".leds_cluster_locality_config", "unsupported"))
			continue
		}
		l := loc.GetLocality()
		for j, le := range loc.GetLbEndpoints() {
			ep := fmt.Sprintf("%s.lb_endpoints[%d]", lp, j)
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			e := le.GetEndpoint()
			if e == nil {
				errs = append(errs, fieldError(ep+".endpoint", "required"))
				continue
			}
			sa := e.GetAddress().GetSocketAddress()
			switch {
			case sa == nil:
				errs = append(errs, fieldError(ep+".endpoint.address.socket_address", "required"))
				continue
			case sa.GetProtocol() != corev3.SocketAddress_TCP:
				errs = append(errs, fieldError(ep+".endpoint.address.socket_address.protocol", "%s: want TCP", sa.GetProtocol()))
				continue
			case sa.GetAddress() == "":
				errs = append(errs, fieldError(ep+".endpoint.address.socket_address.address", "required"))
				continue
			case sa.GetPortValue() == 0 || sa.GetPortValue() > 65535:
				errs = append(errs, fieldError(ep+".endpoint.address.socket_address.port_value", "%d: want 1-65535 (named ports are not supported)", sa.GetPortValue()))
				continue
			}
			in := discovery.Instance{
				AppID:     t.AppID,
				Namespace: t.Namespace,
				Address:   net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue()))),
				Hostname:  e.GetHostname(),
				Weight:    1,
				Locality:  discovery.Locality{Region: l.GetRegion(), Zone: l.GetZone(), SubZone: l.GetSubZone()},
			}
			if w := le.GetLoadBalancingWeight(); w != nil {
				if w.GetValue() == 0 {
					errs = append(errs, fieldError(ep+".load_balancing_weight", "must be at least 1"))
					continue
				}
				in.Weight = w.GetValue()
			}
			if md := le.GetMetadata().GetFilterMetadata()["skein"]; md != nil {
				if v, ok := md.GetFields()["instance_id"]; ok {
					in.Hostname = v.GetStringValue()
				}
			}
			out = append(out, in)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return discovery.Target{}, nil, err
	}
	return t, out, nil
}

// translateListener translates a Listener: an api_listener holding an
// HttpConnectionManager.
func translateListener(l *listenerv3.Listener) (listener, error) {
	if _, _, ok, err := parseEndpointName(l.GetName()); ok {
		if err != nil {
			return listener{}, fieldError("name", "%v", err)
		}
		e, err := translateEndpointListener(l)
		return listener{ext: e}, err
	}
	if _, err := ParseClusterName(l.GetName()); err != nil {
		return listener{}, fieldError("name", "%v", err)
	}
	if l.GetAddress() != nil || len(l.GetFilterChains()) > 0 {
		return listener{}, fieldError("address", "only api_listener (proxyless) listeners are supported")
	}
	a := l.GetApiListener().GetApiListener()
	if a == nil {
		return listener{}, fieldError("api_listener.api_listener", "required")
	}
	if a.GetTypeUrl() != hcmType {
		return listener{}, fieldError("api_listener.api_listener", "type %s: want HttpConnectionManager", a.GetTypeUrl())
	}
	var hcm hcmv3.HttpConnectionManager
	if err := anypb.UnmarshalTo(a, &hcm, proto.UnmarshalOptions{}); err != nil {
		return listener{}, fieldError("api_listener.api_listener", "%v", err)
	}
	const p = "api_listener.api_listener"
	var out listener
	var errs []error
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		if !isADS(rs.Rds.GetConfigSource()) {
			errs = append(errs, fieldError(p+".rds.config_source", "must be ads"))
		}
		if rs.Rds.GetRouteConfigName() == "" {
			errs = append(errs, fieldError(p+".rds.route_config_name", "required"))
		}
		out.rds = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rc, err := translateRouteConfig(rs.RouteConfig)
		if err != nil {
			errs = append(errs, prefixed(p+".route_config.", err))
		}
		out.inline = &rc
	default:
		errs = append(errs, fieldError(p+"."+oneofName(&hcm, "route_specifier"), "unsupported (want rds or route_config)"))
	}
	filters := hcm.GetHttpFilters()
	for i, f := range filters {
		fp := fmt.Sprintf("%s.http_filters[%d]", p, i)
		if f.GetDisabled() {
			continue
		}
		tc := f.GetTypedConfig()
		switch {
		case tc.GetTypeUrl() == routerType:
			if i != len(filters)-1 {
				errs = append(errs, fieldError(fp, "the router filter must be last"))
			}
		case tc.GetTypeUrl() == rbacType:
			if out.rbac != nil {
				errs = append(errs, fieldError(fp, "only one RBAC filter is supported"))
				continue
			}
			var cfg rbacv3.RBAC
			if err := anypb.UnmarshalTo(tc, &cfg, proto.UnmarshalOptions{}); err != nil {
				errs = append(errs, fieldError(fp+".typed_config", "%v", err))
				continue
			}
			r, err := translateRBAC(&cfg)
			if err != nil {
				errs = append(errs, prefixed(fp+".typed_config.", err))
				continue
			}
			out.rbac = r
		case f.GetIsOptional():
			// An optional filter Skein does not know is skipped (HttpFilter.is_optional).
		default:
			errs = append(errs, fieldError(fp, "filter %q (%s) is not supported (want envoy.filters.http.rbac, envoy.filters.http.router)", f.GetName(), tc.GetTypeUrl()))
		}
	}
	if n := len(filters); n == 0 || filters[n-1].GetTypedConfig().GetTypeUrl() != routerType {
		errs = append(errs, fieldError(p+".http_filters", "the last filter must be envoy.filters.http.router"))
	}
	if err := errors.Join(errs...); err != nil {
		return listener{}, err
	}
	return out, nil
}

// translateRouteConfig translates a RouteConfiguration: one virtual host
// whose routes all go to one cluster.
func translateRouteConfig(rc *routev3.RouteConfiguration) (routeConfig, error) {
	var out routeConfig
	vhs := rc.GetVirtualHosts()
	if len(vhs) > 1 {
		return out, fieldError("virtual_hosts", "%d virtual hosts: only one is supported", len(vhs))
	}
	if len(vhs) == 0 {
		return out, nil
	}
	vh := vhs[0]
	var errs []error
	for i, r := range vh.GetRoutes() {
		p := fmt.Sprintf("virtual_hosts[0].routes[%d]", i)
		xr, cl, err := translateRoute(r, vh.GetRetryPolicy(), p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if out.cluster == "" {
			out.cluster = cl
		} else if cl != out.cluster {
			errs = append(errs, fieldError(p+".route.cluster", "%q: every route must go to the same cluster (%q): a RouteConfiguration configures calls to one app", cl, out.cluster))
			continue
		}
		if xr.Name == "" {
			xr.Name = fmt.Sprintf("%s/%d", rc.GetName(), i)
		}
		out.routes = append(out.routes, xr)
	}
	if err := errors.Join(errs...); err != nil {
		return routeConfig{}, err
	}
	return out, nil
}

// translateRoute translates one route; vhRetry is the virtual host's
// retry policy, used when the route has none.
func translateRoute(r *routev3.Route, vhRetry *routev3.RetryPolicy, p string) (proxy.XDSRoute, string, error) {
	out := proxy.XDSRoute{Name: r.GetName()}
	m := r.GetMatch()
	switch ps := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Prefix = ps.Prefix
		if out.Prefix == "" {
			out.Prefix = "/"
		}
		if !strings.HasPrefix(out.Prefix, "/") {
			return out, "", fieldError(p+".match.prefix", "%q: must start with /", ps.Prefix)
		}
	case *routev3.RouteMatch_Path:
		out.Path = ps.Path
		if !strings.HasPrefix(out.Path, "/") {
			return out, "", fieldError(p+".match.path", "%q: must start with /", ps.Path)
		}
	default:
		return out, "", fieldError(p+".match."+oneofName(m, "path_specifier"), "unsupported (want prefix or path)")
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		out.IgnoreCase = true
	}
	for _, f := range []struct {
		name string
		set  bool
	}{{"headers", len(m.GetHeaders()) > 0}, {"query_parameters", len(m.GetQueryParameters()) > 0},
		{"cookies", len(m.GetCookies()) > 0}, {"grpc", m.GetGrpc() != nil}, {"runtime_fraction", m.GetRuntimeFraction() != nil},
		{"tls_context", m.GetTlsContext() != nil}, {"dynamic_metadata", len(m.GetDynamicMetadata()) > 0}} {
		if f.set {
			return out, "", fieldError(p+".match."+f.name, "unsupported")
		}
	}
	ra := r.GetRoute()
	if ra == nil {
		return out, "", fieldError(p+"."+oneofName(r, "action"), "unsupported action (want route)")
	}
	if _, ok := ra.GetClusterSpecifier().(*routev3.RouteAction_Cluster); !ok {
		if ra.GetClusterSpecifier() == nil {
			return out, "", fieldError(p+".route.cluster", "required")
		}
		return out, "", fieldError(p+".route."+oneofName(ra, "cluster_specifier"), "unsupported (want cluster)")
	}
	cl := ra.GetCluster()
	if cl == "" {
		return out, "", fieldError(p+".route.cluster", "required")
	}
	if _, err := ParseClusterName(cl); err != nil {
		return out, "", fieldError(p+".route.cluster", "%v", err)
	}
	var err error
	if out.Timeout, err = duration(p+".route.timeout", ra.GetTimeout()); err != nil {
		return out, "", err
	}
	rp := ra.GetRetryPolicy()
	rpPath := p + ".route.retry_policy"
	if rp == nil {
		rp, rpPath = vhRetry, "virtual_hosts[0].retry_policy"
	}
	if rp != nil {
		if out.Retry, out.PerTryTimeout, err = translateRetry(rp, rpPath); err != nil {
			return out, "", err
		}
	}
	return out, cl, nil
}

// translateRetry translates a retry policy into Skein's exponential
// back-off retries: retry_on selects statuses (5xx, gateway-error,
// retriable-status-codes) and transport failures (connect-failure, reset,
// refused-stream), which Skein's retry layer always retries.
func translateRetry(rp *routev3.RetryPolicy, p string) (*resiliency.RetryPolicy, time.Duration, error) {
	perTry, err := duration(p+".per_try_timeout", rp.GetPerTryTimeout())
	if err != nil {
		return nil, 0, err
	}
	var codes []string
	conditions := 0
	for cond := range strings.SplitSeq(rp.GetRetryOn(), ",") {
		switch cond = strings.TrimSpace(cond); cond {
		case "":
			continue
		case "5xx":
			codes = append(codes, "500-599")
		case "gateway-error":
			codes = append(codes, "502-504")
		case "retriable-status-codes":
			for i, c := range rp.GetRetriableStatusCodes() {
				if c < 100 || c > 599 {
					return nil, 0, fieldError(fmt.Sprintf("%s.retriable_status_codes[%d]", p, i), "%d: not an HTTP status", c)
				}
				codes = append(codes, strconv.Itoa(int(c)))
			}
		case "connect-failure", "reset", "refused-stream":
		default:
			return nil, 0, fieldError(p+".retry_on", "%q: unsupported (want 5xx, gateway-error, connect-failure, retriable-status-codes, reset, refused-stream)", cond)
		}
		conditions++
	}
	if conditions == 0 {
		return nil, perTry, nil // Envoy: no condition, no retry
	}
	out := &resiliency.RetryPolicy{Exponential: true, MaxRetries: defaultNumRetries, Initial: defaultRetryBaseBackoff}
	if n := rp.GetNumRetries(); n != nil {
		out.MaxRetries = int(n.GetValue())
	}
	if bo := rp.GetRetryBackOff(); bo != nil {
		base, err := duration(p+".retry_back_off.base_interval", bo.GetBaseInterval())
		if err != nil {
			return nil, 0, err
		}
		if base <= 0 {
			return nil, 0, fieldError(p+".retry_back_off.base_interval", "required, above 0")
		}
		out.Initial = base
		if bo.GetMaxInterval() != nil {
			mx, err := duration(p+".retry_back_off.max_interval", bo.GetMaxInterval())
			if err != nil {
				return nil, 0, err
			}
			if mx < base {
				return nil, 0, fieldError(p+".retry_back_off.max_interval", "%v: below base_interval %v", mx, base)
			}
			out.MaxInterval = mx
		}
	}
	if out.MaxInterval == 0 {
		out.MaxInterval = 10 * out.Initial // Envoy's default
	}
	out.Duration = out.Initial
	if len(codes) == 0 {
		out.TransportOnly = true
	} else {
		c, err := resiliency.ParseCodes(strings.Join(codes, ","), 100, 599)
		if err != nil {
			return nil, 0, fieldError(p+".retry_on", "%v", err)
		}
		out.HTTPCodes = c
	}
	return out, perTry, nil
}

// translateRBAC translates the RBAC HTTP filter's config (rules only).
func translateRBAC(cfg *rbacv3.RBAC) (*access.RBAC, error) {
	switch {
	case cfg.GetShadowRules() != nil:
		return nil, fieldError("shadow_rules", "unsupported")
	case cfg.GetMatcher() != nil:
		return nil, fieldError("matcher", "unsupported (use rules)")
	case cfg.GetShadowMatcher() != nil:
		return nil, fieldError("shadow_matcher", "unsupported")
	}
	rules := cfg.GetRules()
	if rules == nil {
		return nil, nil // Envoy: no rules, no enforcement
	}
	out := &access.RBAC{}
	switch rules.GetAction() {
	case rbacconfigv3.RBAC_ALLOW:
		out.Action = access.ActionAllow
	case rbacconfigv3.RBAC_DENY:
		out.Action = access.ActionDeny
	default:
		return nil, fieldError("rules.action", "%s: want ALLOW or DENY", rules.GetAction())
	}
	if rules.GetAuditLoggingOptions() != nil {
		return nil, fieldError("rules.audit_logging_options", "unsupported")
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	sort.Strings(names)
	var errs []error
	for _, n := range names {
		pol := rules.GetPolicies()[n]
		p := fmt.Sprintf("rules.policies[%q]", n)
		if pol.GetCondition() != nil || pol.GetCheckedCondition() != nil || pol.GetCelConfig() != nil {
			errs = append(errs, fieldError(p+".condition", "unsupported"))
			continue
		}
		rp := access.RBACPolicy{Name: n}
		for i, pm := range pol.GetPermissions() {
			v, err := translatePermission(pm, fmt.Sprintf("%s.permissions[%d]", p, i))
			errs = append(errs, err)
			rp.Permissions = append(rp.Permissions, v)
		}
		for i, pr := range pol.GetPrincipals() {
			v, err := translatePrincipal(pr, fmt.Sprintf("%s.principals[%d]", p, i))
			errs = append(errs, err)
			rp.Principals = append(rp.Principals, v)
		}
		out.Policies = append(out.Policies, rp)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if err := out.Validate(); err != nil {
		return nil, prefixed("rules.", err)
	}
	return out, nil
}

func translatePermission(pm *rbacconfigv3.Permission, p string) (access.Permission, error) {
	switch r := pm.GetRule().(type) {
	case *rbacconfigv3.Permission_Any:
		return access.Permission{Any: r.Any}, nil
	case *rbacconfigv3.Permission_UrlPath:
		sm := r.UrlPath.GetPath()
		if sm == nil {
			return access.Permission{}, fieldError(p+".url_path.path", "required")
		}
		m, err := translateString(sm, p+".url_path.path")
		return access.Permission{Path: m}, err
	case *rbacconfigv3.Permission_Header:
		h := r.Header
		if h.GetName() != ":method" {
			return access.Permission{}, fieldError(p+".header.name", "%q: only :method is supported", h.GetName())
		}
		if h.GetInvertMatch() {
			return access.Permission{}, fieldError(p+".header.invert_match", "unsupported")
		}
		v := h.GetExactMatch()
		if sm := h.GetStringMatch(); sm != nil {
			if _, ok := sm.GetMatchPattern().(*matcherv3.StringMatcher_Exact); !ok || sm.GetIgnoreCase() {
				return access.Permission{}, fieldError(p+".header.string_match", "only exact, case-sensitive is supported")
			}
			v = sm.GetExact()
		} else if _, ok := h.GetHeaderMatchSpecifier().(*routev3.HeaderMatcher_ExactMatch); !ok {
			return access.Permission{}, fieldError(p+".header."+oneofName(h, "header_match_specifier"), "unsupported (want exact_match or string_match.exact)")
		}
		if v == "" {
			return access.Permission{}, fieldError(p+".header", "empty method")
		}
		return access.Permission{Method: v}, nil
	case *rbacconfigv3.Permission_OrRules:
		rules, err := translateSet(r.OrRules.GetRules(), p+".or_rules.rules", translatePermission)
		return access.Permission{Or: rules}, err
	case *rbacconfigv3.Permission_AndRules:
		rules, err := translateSet(r.AndRules.GetRules(), p+".and_rules.rules", translatePermission)
		return access.Permission{And: rules}, err
	case nil:
		return access.Permission{}, fieldError(p, "empty permission")
	}
	return access.Permission{}, fieldError(p+"."+oneofName(pm, "rule"), "unsupported permission")
}

// translateSet translates the rules of an or/and set, the list at path p
// (at least one required).
func translateSet[Q, T any](set []Q, p string, translate func(Q, string) (T, error)) ([]T, error) {
	out := []T{}
	var errs []error
	for i, q := range set {
		v, err := translate(q, fmt.Sprintf("%s[%d]", p, i))
		errs = append(errs, err)
		out = append(out, v)
	}
	if len(out) == 0 {
		errs = append(errs, fieldError(p, "at least one required"))
	}
	return out, errors.Join(errs...)
}

func translatePrincipal(pr *rbacconfigv3.Principal, p string) (access.Principal, error) {
	switch id := pr.GetIdentifier().(type) {
	case *rbacconfigv3.Principal_Any:
		return access.Principal{Any: id.Any}, nil
	case *rbacconfigv3.Principal_Authenticated_:
		sm := id.Authenticated.GetPrincipalName()
		if sm == nil {
			// Envoy: any authenticated caller.
			return access.Principal{ID: &access.StringMatch{IsPrefix: true}}, nil
		}
		m, err := translateString(sm, p+".authenticated.principal_name")
		return access.Principal{ID: m}, err
	case *rbacconfigv3.Principal_OrIds:
		ids, err := translateSet(id.OrIds.GetIds(), p+".or_ids.ids", translatePrincipal)
		return access.Principal{Or: ids}, err
	case *rbacconfigv3.Principal_AndIds:
		ids, err := translateSet(id.AndIds.GetIds(), p+".and_ids.ids", translatePrincipal)
		return access.Principal{And: ids}, err
	case nil:
		return access.Principal{}, fieldError(p, "empty principal")
	}
	return access.Principal{}, fieldError(p+"."+oneofName(pr, "identifier"), "unsupported principal")
}

func translateString(sm *matcherv3.StringMatcher, p string) (*access.StringMatch, error) {
	switch m := sm.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return &access.StringMatch{Exact: m.Exact, IgnoreCase: sm.GetIgnoreCase()}, nil
	case *matcherv3.StringMatcher_Prefix:
		return &access.StringMatch{Prefix: m.Prefix, IsPrefix: true, IgnoreCase: sm.GetIgnoreCase()}, nil
	case nil:
		return nil, fieldError(p, "empty matcher")
	}
	return nil, fieldError(p+"."+oneofName(sm, "match_pattern"), "unsupported matcher (want exact or prefix)")
}

// resources are the accepted resources of every type, translated, by name.
// A value is never modified once stored: updates build new maps.
type resources struct {
	listeners map[string]listener
	routes    map[string]routeConfig
	clusters  map[string]cluster
	endpoints map[string]endpointSet
}

type endpointSet struct {
	target    discovery.Target
	instances []discovery.Instance
}

// assemble builds the sidecar's view from the accepted resources: an
// XDSConfig (apps from Clusters, their routes from the RouteConfiguration
// their Listener names, the RBAC of self's Listener) and the instances of
// every Cluster (empty until its ClusterLoadAssignment arrives). Resources
// that nothing references are ignored.
func assemble(r resources, self discovery.Target, version string) (*proxy.XDSConfig, map[discovery.Target][]discovery.Instance) {
	cfg := &proxy.XDSConfig{Version: version, Apps: make(map[discovery.Target]proxy.XDSApp, len(r.clusters))}
	eps := make(map[discovery.Target][]discovery.Instance, len(r.clusters))
	for name, c := range r.clusters {
		if c.ext != nil {
			continue
		}
		cfg.Apps[c.target] = c.app
		eps[c.target] = r.endpoints[name].instances
	}
	lnames := make([]string, 0, len(r.listeners))
	for n := range r.listeners {
		lnames = append(lnames, n)
	}
	sort.Strings(lnames)
	for _, n := range lnames {
		l := r.listeners[n]
		rc := l.inline
		if rc == nil {
			if v, ok := r.routes[l.rds]; ok {
				rc = &v
			}
		}
		if rc != nil && rc.cluster != "" {
			if c, ok := r.clusters[rc.cluster]; ok && c.ext == nil {
				app := cfg.Apps[c.target]
				if app.Routes == nil {
					app.Routes = slices.Clone(rc.routes)
					cfg.Apps[c.target] = app
				}
			}
		}
		if n == ClusterName(self) {
			cfg.Access = l.rbac
		}
	}
	cfg.HTTPEndpoints = assembleEndpoints(r, self.Namespace)
	return cfg, eps
}
