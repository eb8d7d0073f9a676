package xds

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/prometheus/client_golang/prometheus"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy"
)

// Modes of the ADS stream.
const (
	ModeSotW  = "sotw"  // StreamAggregatedResources, state of the world
	ModeDelta = "delta" // DeltaAggregatedResources, incremental
)

// Reconnection back-off defaults.
const (
	DefaultBackoffInitial = 100 * time.Millisecond
	DefaultBackoffMax     = 30 * time.Second
)

// Options configure a Client.
type Options struct {
	// Address is the control plane's host:port (gRPC), or several
	// comma-separated: replicas, tried in order by gRPC's pick_first
	// whenever the stream needs a connection, so a stream broken by a
	// replica's death reconnects to the next one.
	Address string
	// Mode is ModeSotW (default, "") or ModeDelta.
	Mode string
	// AppID and Namespace are this sidecar's; the node id is
	// "<app-id>.<namespace>" and node.cluster the app id.
	AppID, Namespace string
	// SPIFFEID is this sidecar's SPIFFE ID, sent as node metadata.
	SPIFFEID string
	// Credentials secure the connection; nil means plaintext (loopback or
	// a trusted network only).
	Credentials credentials.TransportCredentials
	// BackoffInitial and BackoffMax bound the reconnection back-off
	// (defaults DefaultBackoffInitial, DefaultBackoffMax); each wait is
	// jittered by ±20%.
	BackoffInitial, BackoffMax time.Duration
}

// Applier is what the client configures: *proxy.Sidecar.
type Applier interface {
	ApplyXDS(*proxy.XDSConfig) error
	SetXDSStatus(proxy.XDSStatus)
}

// typeOrder is the order of the initial subscriptions: clusters before
// their endpoints, listeners before their routes (xDS's make-before-break
// order for ADS).
var typeOrder = []string{ClusterType, EndpointType, ListenerType, RouteType}

// shortNames label the metrics.
var shortNames = map[string]string{ListenerType: "lds", RouteType: "rds", ClusterType: "cds", EndpointType: "eds"}

// typeState is the client's view of one resource type. It belongs to the
// goroutine running Run.
type typeState struct {
	url      string
	wildcard bool     // LDS and CDS: every resource
	names    []string // subscribed names (RDS, EDS), sorted
	version  string   // last accepted version_info (delta: system_version_info)
	nonce    string   // nonce of the last response on this stream
	// versions are the delta resource versions, by name.
	versions map[string]string
	status   proxy.XDSTypeStatus
}

// Client is an xDS client over ADS: it subscribes to every Listener and
// Cluster, then to the RouteConfigurations and ClusterLoadAssignments they
// name, translates each response, applies it to the sidecar and ACKs it,
// or NACKs it with the error and keeps the last good config. When the
// stream breaks it keeps that config and reconnects with jittered
// exponential back-off, resubscribing with the versions it holds.
//
// Create it with New, then Run it (once). Lookup (the discovery.Source
// of the Endpoints it feeds) is safe for concurrent use.
type Client struct {
	opts    Options
	apply   Applier
	eds     *Endpoints
	log     *slog.Logger
	metrics *metrics
	node    *corev3.Node
	self    discovery.Target

	// Owned by Run.
	types   map[string]*typeState
	res     resources
	applied *proxy.XDSConfig // the last config the sidecar accepted

	mu        sync.Mutex // guards connected for status
	connected bool
}

// New returns a client that configures apply and feeds eds, with metrics
// registered on reg.
func New(opts Options, apply Applier, eds *Endpoints, reg prometheus.Registerer, log *slog.Logger) (*Client, error) {
	switch opts.Mode {
	case "":
		opts.Mode = ModeSotW
	case ModeSotW, ModeDelta:
	default:
		return nil, fmt.Errorf("xds mode %q: want %s or %s", opts.Mode, ModeSotW, ModeDelta)
	}
	if opts.Address == "" {
		return nil, errors.New("xds: no control plane address")
	}
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.BackoffInitial <= 0 {
		opts.BackoffInitial = DefaultBackoffInitial
	}
	if opts.BackoffMax < opts.BackoffInitial {
		opts.BackoffMax = max(DefaultBackoffMax, opts.BackoffInitial)
	}
	if eds == nil {
		eds = NewEndpoints(nil)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	md, err := structpb.NewStruct(map[string]any{"spiffe_id": opts.SPIFFEID, "app_id": opts.AppID, "namespace": opts.Namespace})
	if err != nil {
		return nil, err
	}
	c := &Client{
		opts:    opts,
		apply:   apply,
		eds:     eds,
		log:     log.With("component", "xds", "server", opts.Address),
		metrics: m,
		node: &corev3.Node{
			Id:                   opts.AppID + "." + opts.Namespace,
			Cluster:              opts.AppID,
			Metadata:             md,
			UserAgentName:        "skein",
			UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: proxy.Version},
		},
		self:  discovery.Target{AppID: opts.AppID, Namespace: opts.Namespace},
		types: map[string]*typeState{},
		res:   resources{listeners: map[string]listener{}, routes: map[string]routeConfig{}, clusters: map[string]cluster{}, endpoints: map[string]endpointSet{}},
	}
	for _, u := range typeOrder {
		c.types[u] = &typeState{url: u, wildcard: u == ListenerType || u == ClusterType, versions: map[string]string{}}
	}
	return c, nil
}

// NodeID returns the node id the client announces.
func (c *Client) NodeID() string { return c.node.GetId() }

// Run connects and serves until ctx ends.
func (c *Client) Run(ctx context.Context) {
	creds := c.opts.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	target, dopts := c.opts.Address, []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
	if addrs := strings.Split(c.opts.Address, ","); len(addrs) > 1 {
		// Several replicas: a resolver of this client's own that lists
		// them all (the default, pick_first, keeps to the first that
		// connects and moves on when it fails).
		r := manual.NewBuilderWithScheme("skein-control-plane")
		var st resolver.State
		for _, a := range addrs {
			st.Addresses = append(st.Addresses, resolver.Address{Addr: strings.TrimSpace(a)})
		}
		r.InitialState(st)
		target, dopts = r.Scheme()+":///control-plane", append(dopts, grpc.WithResolvers(r))
	}
	conn, err := grpc.NewClient(target, dopts...)
	if err != nil {
		c.log.Error("xds client not started", "err", err)
		return
	}
	defer conn.Close()
	c.publish()
	wait := c.opts.BackoffInitial
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for {
		var got bool
		var err error
		if c.opts.Mode == ModeDelta {
			got, err = c.runDelta(ctx, conn)
		} else {
			got, err = c.runSotW(ctx, conn)
		}
		c.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		if got {
			wait = c.opts.BackoffInitial // the stream worked: start over
		}
		d := jitter(wait)
		c.metrics.restarts.Inc()
		c.log.Warn("xds stream ended, last good config keeps serving", "err", err, "retry_in", d.Round(time.Millisecond))
		timer.Reset(d)
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		wait = min(2*wait, c.opts.BackoffMax)
	}
}

// jitter spreads d by ±20% so that sidecars cut off together do not
// reconnect together.
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// runSotW runs one state-of-the-world stream. It reports whether any
// response arrived.
func (c *Client) runSotW(ctx context.Context, conn *grpc.ClientConn) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	sentNode := false
	send := func(ts *typeState, detail error) error {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: ts.url, VersionInfo: ts.version, ResponseNonce: ts.nonce}
		if !ts.wildcard {
			req.ResourceNames = ts.names
		}
		req.ErrorDetail = nackDetail(detail)
		if !sentNode {
			req.Node, sentNode = c.node, true
		}
		return stream.Send(req)
	}
	for _, u := range typeOrder {
		ts := c.types[u]
		ts.nonce = "" // nonces belong to a stream
		if ts.wildcard || len(ts.names) > 0 {
			if err := send(ts, nil); err != nil {
				return false, err
			}
		}
	}
	got := false
	for {
		resp, ts, err := nextResponse(c, ModeSotW, &got, stream.Context, stream.Recv)
		if err != nil {
			return got, err
		}
		uerr := c.updateSotW(ts, resp)
		c.finish(ts, resp.GetVersionInfo(), uerr)
		if err := send(ts, uerr); err != nil {
			return got, err
		}
		// New names to follow (routes of new listeners, endpoints of new
		// clusters): update those subscriptions.
		for _, dep := range c.resubscribe() {
			if err := send(dep, nil); err != nil {
				return got, err
			}
		}
	}
}

// nextResponse receives the next response of a type the client asked for
// on a stream of either mode, recording its nonce; a response of another
// type is logged and skipped. The first response (*got still false) marks
// the client connected (logged with the control plane's address).
func nextResponse[R interface {
	GetTypeUrl() string
	GetNonce() string
}](c *Client, mode string, got *bool, streamCtx func() context.Context, recv func() (R, error)) (R, *typeState, error) {
	for {
		resp, err := recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("control plane closed the stream")
			}
			return resp, nil, err
		}
		if !*got {
			*got = true
			c.setConnected(true)
			addr := "" // the replica the stream reached
			if p, ok := peer.FromContext(streamCtx()); ok && p.Addr != nil {
				addr = p.Addr.String()
			}
			c.log.Info("xds connected", "mode", mode, "node", c.node.GetId(), "peer", addr)
		}
		if ts := c.types[resp.GetTypeUrl()]; ts != nil {
			ts.nonce = resp.GetNonce()
			return resp, ts, nil
		}
		c.log.Warn("xds response of an unrequested type ignored", "type", resp.GetTypeUrl())
	}
}

// nackDetail is the error_detail of a request answering a response: nil
// for an ACK, the update's error for a NACK.
func nackDetail(err error) *statuspb.Status {
	if err == nil {
		return nil
	}
	return &statuspb.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// updateSotW translates a state-of-the-world response and applies it.
// Listeners and clusters are the full set; routes and endpoints only
// replace the resources named (xDS: not full-state types).
func (c *Client) updateSotW(ts *typeState, resp *discoveryv3.DiscoveryResponse) error {
	upserts := map[string]any{}
	var errs []error
	for i, a := range resp.GetResources() {
		name, v, err := decode(ts.url, a)
		if err != nil {
			errs = append(errs, prefixed(fmt.Sprintf("%s %q (resources[%d]): ", kindOf(ts.url), name, i), err))
			continue
		}
		if _, dup := upserts[name]; dup {
			errs = append(errs, fmt.Errorf("resources[%d]: %s %q sent twice", i, kindOf(ts.url), name))
			continue
		}
		upserts[name] = v
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	var removed []string
	if ts.wildcard {
		for name := range c.names(ts.url) {
			if _, ok := upserts[name]; !ok {
				removed = append(removed, name)
			}
		}
	}
	return c.update(ts, upserts, removed, resp.GetVersionInfo())
}

// runDelta runs one incremental stream. It reports whether any response
// arrived.
func (c *Client) runDelta(ctx context.Context, conn *grpc.ClientConn) (bool, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return false, err
	}
	sentNode := false
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if !sentNode {
			req.Node, sentNode = c.node, true
		}
		return stream.Send(req)
	}
	for _, u := range typeOrder {
		ts := c.types[u]
		ts.nonce = ""
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: u, InitialResourceVersions: maps.Clone(ts.versions)}
		switch {
		case ts.wildcard:
			req.ResourceNamesSubscribe = []string{"*"}
		case len(ts.names) > 0:
			req.ResourceNamesSubscribe = ts.names
		default:
			continue
		}
		if err := send(req); err != nil {
			return false, err
		}
	}
	got := false
	for {
		resp, ts, err := nextResponse(c, ModeDelta, &got, stream.Context, stream.Recv)
		if err != nil {
			return got, err
		}
		version := resp.GetSystemVersionInfo()
		uerr := c.updateDelta(ts, resp)
		if version == "" {
			version = versionHash(ts.versions)
		}
		c.finish(ts, version, uerr)
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: ts.url, ResponseNonce: ts.nonce, ErrorDetail: nackDetail(uerr)}
		if err := send(ack); err != nil {
			return got, err
		}
		for _, dep := range c.types {
			old := dep.names
			if c.resubscribeOne(dep) {
				sub, unsub := diff(old, dep.names)
				if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep.url, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}); err != nil {
					return got, err
				}
			}
		}
	}
}

// updateDelta translates an incremental response and applies it.
func (c *Client) updateDelta(ts *typeState, resp *discoveryv3.DeltaDiscoveryResponse) error {
	upserts := map[string]any{}
	versions := map[string]string{}
	var errs []error
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			continue // a name the server only acknowledges
		}
		name, v, err := decode(ts.url, r.GetResource())
		if err == nil && r.GetName() != "" && r.GetName() != name {
			err = fmt.Errorf("name %q differs from the resource's %q", r.GetName(), name)
		}
		if err != nil {
			errs = append(errs, prefixed(fmt.Sprintf("%s %q (resources[%d]): ", kindOf(ts.url), name, i), err))
			continue
		}
		upserts[name], versions[name] = v, r.GetVersion()
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := c.update(ts, upserts, resp.GetRemovedResources(), resp.GetSystemVersionInfo()); err != nil {
		return err
	}
	maps.Copy(ts.versions, versions)
	for _, n := range resp.GetRemovedResources() {
		delete(ts.versions, n)
	}
	return nil
}

// update applies upserts and removals of ts's type: it assembles the
// config they make with the other types', applies it to the sidecar and,
// only if the sidecar accepted it, keeps it and publishes the endpoints.
func (c *Client) update(ts *typeState, upserts map[string]any, removed []string, version string) error {
	next := c.res
	switch ts.url {
	case ListenerType:
		next.listeners = merged(c.res.listeners, upserts, removed, ts)
	case RouteType:
		next.routes = merged(c.res.routes, upserts, removed, ts)
	case ClusterType:
		next.clusters = merged(c.res.clusters, upserts, removed, ts)
	case EndpointType:
		next.endpoints = merged(c.res.endpoints, upserts, removed, ts)
	}
	versions := c.versionSummary(ts.url, version)
	cfg, eps := assemble(next, c.self, versions)
	// Most pushes only move endpoints: recompile the snapshot only when
	// the config changed.
	if same := c.applied != nil && sameConfig(c.applied, cfg); !same {
		if err := c.apply.ApplyXDS(cfg); err != nil {
			return err
		}
		c.applied = cfg
	}
	c.res = next
	c.eds.set(eps)
	return nil
}

// sameConfig reports whether two configs differ only in Version.
func sameConfig(a, b *proxy.XDSConfig) bool {
	x, y := *a, *b
	x.Version, y.Version = "", ""
	return reflect.DeepEqual(x, y)
}

// merged returns a copy of old with upserts (values of type V) and without
// removed; for a subscription by name, resources no longer subscribed are
// dropped too.
func merged[V any](old map[string]V, upserts map[string]any, removed []string, ts *typeState) map[string]V {
	out := maps.Clone(old)
	for _, n := range removed {
		delete(out, n)
	}
	for n, v := range upserts {
		out[n] = v.(V)
	}
	if !ts.wildcard {
		for n := range out {
			if !slices.Contains(ts.names, n) {
				delete(out, n)
			}
		}
	}
	return out
}

// names lists the accepted resources of a type.
func (c *Client) names(url string) map[string]struct{} {
	out := map[string]struct{}{}
	switch url {
	case ListenerType:
		for n := range c.res.listeners {
			out[n] = struct{}{}
		}
	case ClusterType:
		for n := range c.res.clusters {
			out[n] = struct{}{}
		}
	case RouteType:
		for n := range c.res.routes {
			out[n] = struct{}{}
		}
	case EndpointType:
		for n := range c.res.endpoints {
			out[n] = struct{}{}
		}
	}
	return out
}

// versionSummary is XDSConfig.Version: the type versions, with url's
// replaced by version.
func (c *Client) versionSummary(url, version string) string {
	var b strings.Builder
	for i, u := range typeOrder {
		v := c.types[u].version
		if u == url {
			v = version
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(shortNames[u] + "=" + v)
	}
	return b.String()
}

// kindOf names the resource kind of a type URL.
func kindOf(url string) string {
	return url[strings.LastIndexByte(url, '.')+1:]
}

// decode unmarshals one resource of type url and translates it. It returns
// the resource's name even when the translation fails.
func decode(url string, a *anypb.Any) (string, any, error) {
	if a.GetTypeUrl() != url {
		return "", nil, fmt.Errorf("type %s: want %s", a.GetTypeUrl(), url)
	}
	switch url {
	case ListenerType:
		return decodeAs(a, (*listenerv3.Listener).GetName, translateListener)
	case RouteType:
		return decodeAs(a, (*routev3.RouteConfiguration).GetName, translateRouteConfig)
	case ClusterType:
		return decodeAs(a, (*clusterv3.Cluster).GetName, translateCluster)
	case EndpointType:
		return decodeAs(a, (*endpointv3.ClusterLoadAssignment).GetClusterName, func(m *endpointv3.ClusterLoadAssignment) (endpointSet, error) {
			t, ins, err := translateEndpoints(m)
			return endpointSet{target: t, instances: ins}, err
		})
	}
	return "", nil, fmt.Errorf("type %s: not consumed", url)
}

// decodeAs unmarshals a into an M, translates it and names it (decode for
// one type).
func decodeAs[M any, P interface {
	*M
	proto.Message
}, V any](a *anypb.Any, name func(P) string, translate func(P) (V, error)) (string, any, error) {
	m := P(new(M))
	if err := anypb.UnmarshalTo(a, m, proto.UnmarshalOptions{}); err != nil {
		return "", nil, err
	}
	v, err := translate(m)
	return name(m), v, err
}

// resubscribe updates the subscriptions by name (routes named by
// listeners, endpoints of clusters) and returns the types that changed.
func (c *Client) resubscribe() []*typeState {
	var out []*typeState
	for _, u := range typeOrder {
		if ts := c.types[u]; c.resubscribeOne(ts) {
			out = append(out, ts)
		}
	}
	return out
}

// resubscribeOne sets ts.names to what the accepted resources name and
// reports whether that changed.
func (c *Client) resubscribeOne(ts *typeState) bool {
	var want []string
	switch ts.url {
	case EndpointType:
		for n, cl := range c.res.clusters {
			if cl.ext == nil { // an HTTPEndpoint's address is in its Cluster
				want = append(want, n)
			}
		}
	case RouteType:
		for _, l := range c.res.listeners {
			if l.rds != "" && !slices.Contains(want, l.rds) {
				want = append(want, l.rds)
			}
		}
	default:
		return false
	}
	sort.Strings(want)
	if slices.Equal(want, ts.names) {
		return false
	}
	ts.names = want
	return true
}

// diff returns the names in b and not in a, and those in a and not in b.
func diff(a, b []string) (added, removed []string) {
	for _, n := range b {
		if !slices.Contains(a, n) {
			added = append(added, n)
		}
	}
	for _, n := range a {
		if !slices.Contains(b, n) {
			removed = append(removed, n)
		}
	}
	return added, removed
}

// versionHash summarises delta resource versions when the server sends
// no system_version_info.
func versionHash(versions map[string]string) string {
	names := slices.Sorted(maps.Keys(versions))
	h := fnv.New64a()
	for _, n := range names {
		h.Write([]byte(n + "=" + versions[n] + ";"))
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// finish records the outcome of a response of ts's type: status,
// metrics, log.
func (c *Client) finish(ts *typeState, version string, err error) {
	short := shortNames[ts.url]
	ts.status.Updated = time.Now()
	if err != nil {
		ts.status.Status, ts.status.Error, ts.status.RejectedVersion = StatusNACKed, err.Error(), version
		c.metrics.updates.WithLabelValues(short, "nack").Inc()
		c.log.Warn("xds update rejected (NACK), the last good config keeps serving", "type", short, "version", version, "err", err)
	} else {
		if ts.version != version || ts.status.Status == "" {
			c.metrics.version.DeletePartialMatch(prometheus.Labels{"type": short})
			c.metrics.version.WithLabelValues(short, version).Set(1)
		}
		ts.version = version
		n := len(c.names(ts.url))
		ts.status = proxy.XDSTypeStatus{Version: version, Status: StatusACKed, Resources: n, Updated: ts.status.Updated}
		c.metrics.updates.WithLabelValues(short, "ack").Inc()
		c.metrics.resources.WithLabelValues(short).Set(float64(n))
		c.log.Debug("xds update applied", "type", short, "version", version, "resources", n)
	}
	c.publish()
}

// Values of XDSTypeStatus.Status.
const (
	StatusACKed  = "ACKED"
	StatusNACKed = "NACKED"
)

func (c *Client) setConnected(v bool) {
	c.mu.Lock()
	c.connected = v
	c.mu.Unlock()
	if v {
		c.metrics.connected.Set(1)
	} else {
		c.metrics.connected.Set(0)
	}
	c.publish()
}

// publish hands the status to the sidecar's metadata endpoint.
func (c *Client) publish() {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := proxy.XDSStatus{Server: c.opts.Address, Mode: c.opts.Mode, Node: c.node.GetId(), Connected: c.connected, Types: map[string]proxy.XDSTypeStatus{}}
	for u, ts := range c.types {
		st.Types[u] = ts.status
	}
	c.apply.SetXDSStatus(st)
}
