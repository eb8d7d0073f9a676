package controlplane

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
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
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/skeinmesh/skein/resiliency"
)

// servedTypes are the resource types of every snapshot, in ADS order.
var servedTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// Filter names of the HTTP connection manager.
const (
	filterRBAC   = "envoy.filters.http.rbac"
	filterRouter = "envoy.filters.http.router"
)

// unlimitedRetries is what a Dapr retry policy without maxRetries (or
// with -1, unlimited) becomes: xDS's num_retries has no "unlimited".
const unlimitedRetries = 10

// instance is one live endpoint of an app, registered or static.
type instance struct {
	addr    netip.AddrPort
	id      string
	weight  uint32
	region  string
	zone    string
	subZone string
	health  corev3.HealthStatus
}

// resourceSet is one node's resources by type.
type resourceSet map[string][]types.Resource

// buildResources builds the resources of the node of app caller: for every
// app it knows, a Cluster and ClusterLoadAssignment, a RouteConfiguration
// with the caller's Resiliency policy for it, and a Listener carrying the
// app's access policy; for every HTTPEndpoint of the caller's namespace
// that applies to it, a Cluster and a Listener (httpendpoint.go). Raw resources from the config dir replace generated
// ones of the same type and name.
func buildResources(caller appKey, cfg *dirConfig, instances map[appKey][]instance) (resourceSet, error) {
	apps := map[appKey]bool{}
	for k := range instances {
		apps[k] = true
	}
	for k := range cfg.endpoints {
		apps[k] = true
	}
	for k := range cfg.access {
		apps[k] = true
	}
	keys := make([]appKey, 0, len(apps))
	for k := range apps {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b appKey) int { return strings.Compare(a.clusterName(), b.clusterName()) })

	specs, _ := callerSpecs(caller, cfg)
	var pol *resiliency.Compiled
	if len(specs) > 0 {
		var err error
		if pol, err = resiliency.Compile(resiliency.Merge(specs...)); err != nil {
			return nil, err
		}
	}
	out := resourceSet{}
	for _, k := range keys {
		name := k.clusterName()
		// Resiliency targets name apps as the caller invokes them: by
		// app id in its own namespace, <app-id>.<namespace> elsewhere.
		target := name
		if k.ns == caller.ns {
			target = k.app
		}
		p := pol.ForApp(target)
		eps := cfg.endpoints[k]
		cl, err := buildCluster(name, eps, p)
		if err != nil {
			return nil, err
		}
		out[resource.ClusterType] = append(out[resource.ClusterType], cl)
		out[resource.EndpointType] = append(out[resource.EndpointType], buildLoadAssignment(name, instances[k]))
		out[resource.RouteType] = append(out[resource.RouteType], buildRoute(name, p))
		ln, err := buildListener(name, cfg.access[k])
		if err != nil {
			return nil, err
		}
		out[resource.ListenerType] = append(out[resource.ListenerType], ln)
	}
	for _, e := range cfg.httpEndpoints {
		if !e.appliesTo(caller) {
			continue
		}
		cl, ln, err := e.resources()
		if err != nil {
			return nil, fmt.Errorf("HTTPEndpoint %s/%s: %w", e.ns, e.name, err)
		}
		out[resource.ClusterType] = append(out[resource.ClusterType], cl)
		out[resource.ListenerType] = append(out[resource.ListenerType], ln)
	}
	for _, m := range cfg.raw {
		url := "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
		name := resourceName(m)
		list := slices.DeleteFunc(out[url], func(r types.Resource) bool { return resourceName(r) == name })
		out[url] = append(list, m)
	}
	return out, nil
}

// callerSpecs are the Resiliency resources that apply to calls from app
// caller, and a key naming everything of buildResources that depends on
// the caller (those resources, its namespace when they name targets, the
// HTTPEndpoints it gets), so nodes with equal keys get equal resources.
func callerSpecs(caller appKey, cfg *dirConfig) ([]*resiliency.Spec, string) {
	var specs []*resiliency.Spec
	var key []byte
	for i, sp := range cfg.resiliency {
		if cfg.namespaced && sp.Namespace != caller.ns {
			continue // on Kubernetes a Resiliency resource scopes apps of its own namespace
		}
		if sp.AppliesTo(caller.app) {
			specs = append(specs, sp)
			key = strconv.AppendInt(append(key, ','), int64(i), 10)
		}
	}
	if len(specs) > 0 {
		// The policies' targets name apps of the caller's own namespace by
		// app id alone (buildResources): the namespace is part of the set.
		key = append(append(key, '@'), caller.ns...)
	}
	// So are the HTTPEndpoints the caller gets (its namespace's, that its
	// scopes allow).
	for i, e := range cfg.httpEndpoints {
		if e.appliesTo(caller) {
			key = strconv.AppendInt(append(key, '+'), int64(i), 10)
		}
	}
	return specs, string(key)
}

// resourceName is the name of a served resource.
func resourceName(m proto.Message) string {
	return cachev3.GetResourceName(m)
}

// ads is the config source "over the same ADS stream".
func ads() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// buildCluster is an app's Cluster: EDS over ADS, its load-balancing
// policy and concurrency cap from its Endpoints resource, and outlier
// detection from the caller's circuit breaker policy for it.
func buildCluster(name string, eps *endpointsSpec, p resiliency.Policy) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads()},
		LbPolicy:             clusterv3.Cluster_LEAST_REQUEST,
		ConnectTimeout:       durationpb.New(5 * time.Second),
	}
	if eps != nil {
		if eps.LoadBalancing == "round-robin" {
			c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}
		if eps.MaxConcurrentCalls > 0 {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				MaxRequests: wrapperspb.UInt32(eps.MaxConcurrentCalls),
			}}}
		}
	}
	if b := p.Breaker; b != nil {
		n, err := tripThreshold(b.Trip)
		if err != nil {
			return nil, fmt.Errorf("circuit breaker %s: %w", b.Name, err)
		}
		c.OutlierDetection = &clusterv3.OutlierDetection{
			Consecutive_5Xx:  wrapperspb.UInt32(n),
			BaseEjectionTime: durationpb.New(b.Timeout),
			MaxEjectionTime:  durationpb.New(max(b.Timeout, 300*time.Second)),
		}
	}
	return c, nil
}

var tripRE = regexp.MustCompile(`^\s*consecutiveFailures\s*(>=|>)\s*(\d+)\s*$`)

// tripThreshold reads a Dapr trip expression as outlier detection's
// consecutive_5xx: only "consecutiveFailures > N" (or >= N) has an xDS
// equivalent; an empty trip is Dapr's default, > 5.
func tripThreshold(trip string) (uint32, error) {
	if trip == "" {
		trip = resiliency.DefaultTrip
	}
	m := tripRE.FindStringSubmatch(trip)
	if m == nil {
		return 0, fmt.Errorf("trip %q: only \"consecutiveFailures > N\" maps to outlier_detection.consecutive_5xx", trip)
	}
	n, err := strconv.ParseUint(m[2], 10, 31)
	if err != nil {
		return 0, fmt.Errorf("trip %q: %w", trip, err)
	}
	if m[1] == ">" {
		n++
	}
	if n == 0 {
		return 0, fmt.Errorf("trip %q: trips before any failure", trip)
	}
	return uint32(n), nil
}

// buildLoadAssignment lists an app's live instances, one locality group
// per distinct locality (weight 1 each, as grpc-go needs a weight).
func buildLoadAssignment(name string, ins []instance) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	type loc struct{ region, zone, subZone string }
	groups := map[loc]*endpointv3.LocalityLbEndpoints{}
	var order []loc
	for _, in := range ins {
		l := loc{in.region, in.zone, in.subZone}
		g := groups[l]
		if g == nil {
			g = &endpointv3.LocalityLbEndpoints{
				Locality:            &corev3.Locality{Region: l.region, Zone: l.zone, SubZone: l.subZone},
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}
			groups[l] = g
			order = append(order, l)
		}
		ep := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address:       in.addr.Addr().String(),
					PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(in.addr.Port())},
				}}},
			}},
			HealthStatus:        in.health,
			LoadBalancingWeight: wrapperspb.UInt32(max(in.weight, 1)),
		}
		if in.id != "" {
			ep.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
				"skein": {Fields: map[string]*structpb.Value{"instance_id": structpb.NewStringValue(in.id)}},
			}}
		}
		g.LbEndpoints = append(g.LbEndpoints, ep)
	}
	for _, l := range order {
		cla.Endpoints = append(cla.Endpoints, groups[l])
	}
	return cla
}

// buildRoute is the RouteConfiguration of calls to app name: one route,
// every method, with the caller's timeout and retry policy for it.
func buildRoute(name string, p resiliency.Policy) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name}}
	if p.Timeout > 0 {
		action.Timeout = durationpb.New(p.Timeout)
	}
	if r := p.Retry; r != nil {
		action.RetryPolicy = retryPolicy(r)
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: action},
			}},
		}},
	}
}

// retryPolicy maps a Dapr retry policy: its matching codes become
// retriable_status_codes (else every error status: 5xx and 400-499),
// connection failures and resets are retried too, maxRetries is
// num_retries (unlimited: 10), and the back-off keeps its intervals.
func retryPolicy(r *resiliency.RetryPolicy) *routev3.RetryPolicy {
	rp := &routev3.RetryPolicy{RetryOn: "5xx,retriable-status-codes,connect-failure,reset"}
	n := r.MaxRetries
	if n < 0 {
		n = unlimitedRetries
	}
	rp.NumRetries = wrapperspb.UInt32(uint32(n))
	for code := 100; code <= 599; code++ {
		if r.RetryHTTP(code) && (code < 500 || r.HTTPCodes.Set()) {
			rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(code))
		}
	}
	if r.HTTPCodes.Set() {
		rp.RetryOn = "retriable-status-codes,connect-failure,reset"
	}
	base, maxI := r.Duration, r.Duration
	if r.Exponential {
		base, maxI = resiliency.ExponentialInitial, r.MaxInterval
	}
	if base > 0 {
		rp.RetryBackOff = &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(base), MaxInterval: durationpb.New(max(maxI, base))}
	}
	return rp
}

// buildListener is app name's api_listener: an HTTP connection manager
// reading routes over ADS, with the app's RBAC filter (if any) before the
// router.
func buildListener(name string, rules *rbacRules) (*listenerv3.Listener, error) {
	var filters []*hcmv3.HttpFilter
	if rules != nil {
		a, err := anypb.New(rules)
		if err != nil {
			return nil, err
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: filterRBAC, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}})
	}
	router, err := anypb.New(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	filters = append(filters, &hcmv3.HttpFilter{Name: filterRouter, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}})
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: name,
			ConfigSource:    ads(),
		}},
		HttpFilters: filters,
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{Name: name, ApiListener: &listenerv3.ApiListener{ApiListener: hcm}}, nil
}

// validate checks a node's resources: each against its proto constraints,
// and their references: every EDS Cluster has its ClusterLoadAssignment
// and every Listener's RDS name its RouteConfiguration. (The snapshot's
// own Consistent does not follow RDS names inside api_listener.)
func (rs resourceSet) validate() error {
	var errs []error
	names := map[string]map[string]bool{}
	for typ, list := range rs {
		names[typ] = map[string]bool{}
		for _, r := range list {
			n := resourceName(r)
			if names[typ][n] {
				errs = append(errs, fmt.Errorf("%s %s: listed twice", shortType(typ), n))
			}
			names[typ][n] = true
			if v, ok := r.(interface{ ValidateAll() error }); ok {
				if err := v.ValidateAll(); err != nil {
					errs = append(errs, fmt.Errorf("%s %s: %w", shortType(typ), n, err))
				}
			}
		}
	}
	for _, r := range rs[resource.ClusterType] {
		c := r.(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			want := cmpOr(c.GetEdsClusterConfig().GetServiceName(), c.Name)
			if !names[resource.EndpointType][want] {
				errs = append(errs, fmt.Errorf("Cluster %s: no ClusterLoadAssignment %s", c.Name, want))
			}
		}
	}
	for _, r := range rs[resource.ListenerType] {
		l := r.(*listenerv3.Listener)
		var hcm hcmv3.HttpConnectionManager
		if l.GetApiListener().GetApiListener().UnmarshalTo(&hcm) != nil {
			continue
		}
		if rds := hcm.GetRds(); rds != nil && !names[resource.RouteType][rds.RouteConfigName] {
			errs = append(errs, fmt.Errorf("Listener %s: no RouteConfiguration %s", l.Name, rds.RouteConfigName))
		}
	}
	return errors.Join(errs...)
}

func shortType(url string) string {
	return url[strings.LastIndexByte(url, '.')+1:]
}
