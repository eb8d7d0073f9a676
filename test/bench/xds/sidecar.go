package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// Type URLs of Skein's xDS profile, in the order a sidecar subscribes
// (xds/client.go typeOrder).
const (
	clusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	routeType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// typeIndex numbers the four types for the per-type arrays of a sidecar.
var typeIndex = map[string]int{clusterType: 0, endpointType: 1, listenerType: 2, routeType: 3}

// Field numbers read with protowire (envoy/config/endpoint/v3): a
// ClusterLoadAssignment's cluster_name (1) and endpoints (2), a
// LocalityLbEndpoints' lb_endpoints (2), an LbEndpoint's health_status (2);
// the name of a Cluster, Listener and RouteConfiguration is field 1.
const (
	fieldName        = 1
	fieldEndpoints   = 2
	fieldLbEndpoints = 2
	fieldHealth      = 2
	healthUnhealthy  = uint64(corev3.HealthStatus_UNHEALTHY)
)

// phase is what the bytes a sidecar receives are counted against.
type phase int32

const (
	phaseConnect phase = iota // initial subscription, until every sidecar has it all
	phaseChange               // the steady rate of endpoint changes
	phases
)

// change is one endpoint change: instance inst (app inst % apps, the
// (inst / apps)-th of its app) turns unhealthy at time at.
type change struct {
	inst int
	at   time.Time
}

// world is what every simulated sidecar shares: the sizes, the changes
// made so far and where each sidecar records when it ACKed each.
type world struct {
	apps, endpoints int
	appNames        []string // "app-0000"... index = app number
	phase           atomic.Int32
	changes         []change // written before published grows past them
	published       atomic.Int32
	// ackAt[s*len(changes)+k] is when sidecar s sent the ACK of the first
	// response that carried change k (unix ns); 0 until then.
	ackAt []int64
}

func appName(i int) string { return fmt.Sprintf("app-%04d", i) }

// appIndex reads "app-NNNN"; -1 for any other name.
func (w *world) appIndex(name string) int {
	n, ok := strings.CutPrefix(name, "app-")
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(n)
	if err != nil || i < 0 || i >= w.apps {
		return -1
	}
	return i
}

// sidecar is one simulated sidecar: an ADS stream that subscribes as
// Skein's xds.Client does (Clusters and Listeners by wildcard, then the
// ClusterLoadAssignments and RouteConfigurations they name), ACKs every
// response, and keeps only counts: per app its endpoints and unhealthy
// ones, and which apps each type holds. It decodes no more than it must
// (names and counts with protowire) so that thousands fit in one process
// on a small machine; a real sidecar translates each response too, which
// is its own cost, not the control plane's.
type sidecar struct {
	w     *world
	n     int // index among the sidecars
	node  *corev3.Node
	delta bool

	// Owned by run.
	have      [4][]bool // per type, per app: held
	eps, bad  []int32   // per app: endpoints, unhealthy endpoints
	seen      int       // changes seen: a prefix, as versions hold every change made before them
	subEDS    []string  // names of the EDS subscription (sorted)
	subRDS    []string
	version   [4]string
	nonce     [4]string
	protoErrs int

	bytes     [phases]atomic.Int64 // marshalled size of the responses received
	responses [phases]atomic.Int64
	synced    atomic.Bool  // holds every app's four resources with all endpoints
	seenN     atomic.Int32 // seen, published after its ackAt slots are written
	err       atomic.Pointer[error]
}

func newSidecar(w *world, n int, delta bool) *sidecar {
	app := w.appNames[n%w.apps]
	md, _ := structpb.NewStruct(map[string]any{"app_id": app, "namespace": "default", "spiffe_id": "spiffe://public/ns/default/" + app})
	s := &sidecar{w: w, n: n, delta: delta, eps: make([]int32, w.apps), bad: make([]int32, w.apps),
		node: &corev3.Node{Id: app + ".default", Cluster: app, Metadata: md, UserAgentName: "skein-bench"}}
	for i := range s.have {
		s.have[i] = make([]bool, w.apps)
	}
	return s
}

// run keeps the stream until ctx ends; a stream error ends it (the
// benchmark counts it: a real sidecar would reconnect).
func (s *sidecar) run(ctx context.Context, conn *grpc.ClientConn) {
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	var err error
	if s.delta {
		err = s.runDelta(ctx, ads)
	} else {
		err = s.runSotW(ctx, ads)
	}
	if err != nil && ctx.Err() == nil {
		s.err.Store(&err)
	}
}

func (s *sidecar) account(size int) {
	p := phase(s.w.phase.Load())
	s.bytes[p].Add(int64(size))
	s.responses[p].Add(1)
}

func (s *sidecar) runSotW(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	st, err := ads.StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	first := true
	send := func(url string, names []string) error {
		i := typeIndex[url]
		r := &discoveryv3.DiscoveryRequest{TypeUrl: url, VersionInfo: s.version[i], ResponseNonce: s.nonce[i], ResourceNames: names}
		if first {
			r.Node, first = s.node, false
		}
		return st.Send(r)
	}
	if err := send(clusterType, nil); err != nil {
		return err
	}
	if err := send(listenerType, nil); err != nil {
		return err
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.account(proto.Size(resp))
		url := resp.GetTypeUrl()
		i, ok := typeIndex[url]
		if !ok {
			return fmt.Errorf("response of unrequested type %s", url)
		}
		s.version[i], s.nonce[i] = resp.GetVersionInfo(), resp.GetNonce()
		var deps []string // names that a new CDS/LDS makes us follow
		switch url {
		case clusterType, listenerType:
			held := make([]bool, s.w.apps) // full state: what is not listed is gone
			for _, a := range resp.GetResources() {
				name, err := s.depName(url, a.GetValue())
				if err != nil {
					return err
				}
				if k := s.w.appIndex(name); k >= 0 {
					held[k] = true
				}
				deps = append(deps, name)
			}
			s.have[i] = held
			slices.Sort(deps)
		case endpointType, routeType:
			for _, a := range resp.GetResources() {
				if err := s.take(url, a.GetValue()); err != nil {
					return err
				}
			}
		}
		names := s.subEDS
		if url == routeType {
			names = s.subRDS
		}
		if url == clusterType || url == listenerType {
			names = nil // wildcard
		}
		if err := send(url, names); err != nil { // the ACK
			return err
		}
		if url == endpointType {
			s.markSeen()
		}
		switch {
		case url == clusterType && !slices.Equal(deps, s.subEDS):
			s.subEDS = deps
			if err := send(endpointType, deps); err != nil {
				return err
			}
		case url == listenerType && !slices.Equal(deps, s.subRDS):
			s.subRDS = deps
			if err := send(routeType, deps); err != nil {
				return err
			}
		}
		s.checkSynced()
	}
}

func (s *sidecar) runDelta(ctx context.Context, ads discoveryv3.AggregatedDiscoveryServiceClient) error {
	st, err := ads.DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	first := true
	send := func(r *discoveryv3.DeltaDiscoveryRequest) error {
		if first {
			r.Node, first = s.node, false
		}
		return st.Send(r)
	}
	for _, url := range []string{clusterType, listenerType} {
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: url, ResourceNamesSubscribe: []string{"*"}}); err != nil {
			return err
		}
	}
	for {
		resp, err := st.Recv()
		if err != nil {
			return err
		}
		s.account(proto.Size(resp))
		url := resp.GetTypeUrl()
		i, ok := typeIndex[url]
		if !ok {
			return fmt.Errorf("response of unrequested type %s", url)
		}
		var subscribe []string
		for _, r := range resp.GetResources() {
			k := s.w.appIndex(r.GetName())
			switch url {
			case clusterType, listenerType:
				name, err := s.depName(url, r.GetResource().GetValue())
				if err != nil {
					return err
				}
				if k >= 0 && !s.have[i][k] {
					subscribe = append(subscribe, name)
				}
			default:
				if err := s.take(url, r.GetResource().GetValue()); err != nil {
					return err
				}
			}
			if k >= 0 {
				s.have[i][k] = true
			}
		}
		for _, name := range resp.GetRemovedResources() {
			if k := s.w.appIndex(name); k >= 0 {
				s.have[i][k] = false
				if url == endpointType {
					s.eps[k], s.bad[k] = 0, 0
				}
			}
		}
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: url, ResponseNonce: resp.GetNonce()}); err != nil { // the ACK
			return err
		}
		if url == endpointType {
			s.markSeen()
		}
		if len(subscribe) > 0 {
			dep := endpointType
			if url == listenerType {
				dep = routeType
			}
			if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep, ResourceNamesSubscribe: subscribe}); err != nil {
				return err
			}
		}
		s.checkSynced()
	}
}

// depName is what a Cluster or Listener makes a sidecar subscribe to: the
// Cluster's name (its ClusterLoadAssignment), the Listener's RDS route
// name (read from its HTTP connection manager, as xds/translate.go does).
func (s *sidecar) depName(url string, b []byte) (string, error) {
	if url == clusterType {
		name, _, _, err := scanNamed(b, false)
		return name, err
	}
	var l listenerv3.Listener
	if err := proto.Unmarshal(b, &l); err != nil {
		return "", fmt.Errorf("listener: %w", err)
	}
	var hcm hcmv3.HttpConnectionManager
	if err := anypb.UnmarshalTo(l.GetApiListener().GetApiListener(), &hcm, proto.UnmarshalOptions{}); err != nil {
		return "", fmt.Errorf("listener %s: %w", l.GetName(), err)
	}
	if hcm.GetRds().GetRouteConfigName() == "" {
		return "", fmt.Errorf("listener %s: no RDS route name", l.GetName())
	}
	return hcm.GetRds().GetRouteConfigName(), nil
}

// take records a ClusterLoadAssignment's counts, or that a route is held.
func (s *sidecar) take(url string, b []byte) error {
	name, eps, bad, err := scanNamed(b, url == endpointType)
	if err != nil {
		return err
	}
	k := s.w.appIndex(name)
	if k < 0 {
		return fmt.Errorf("resource %q: not an app of the benchmark", name)
	}
	s.have[typeIndex[url]][k] = true
	if url == endpointType {
		s.eps[k], s.bad[k] = eps, bad
	}
	return nil
}

// markSeen records, after the ACK of an EDS response, the changes it
// carried: change j (instance j turns unhealthy, the (j / apps)-th of app
// j % apps to do so) is held once that app has more than j / apps
// unhealthy endpoints. A version holds every change made before it, so
// the changes seen are a prefix and the first one missing ends the scan.
func (s *sidecar) markSeen() {
	now := time.Now().UnixNano()
	n := int(s.w.published.Load())
	k := len(s.w.changes)
	for s.seen < n {
		c := s.w.changes[s.seen]
		if int(s.bad[c.inst%s.w.apps]) <= c.inst/s.w.apps {
			break
		}
		s.w.ackAt[s.n*k+s.seen] = now
		s.seen++
	}
	s.seenN.Store(int32(s.seen))
}

func (s *sidecar) checkSynced() {
	if s.synced.Load() {
		return
	}
	total := 0
	for k := range s.w.apps {
		for i := range s.have {
			if !s.have[i][k] {
				return
			}
		}
		total += int(s.eps[k])
	}
	if total == s.w.endpoints {
		s.synced.Store(true)
	}
}

// scanNamed reads field 1 (the name) of a resource and, with counting, a
// ClusterLoadAssignment's endpoints and unhealthy endpoints, without
// decoding it into Go structs.
func scanNamed(b []byte, counting bool) (name string, eps, bad int32, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == fieldName && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", 0, 0, protowire.ParseError(n)
			}
			name, b = string(v), b[n:]
			if !counting {
				return name, 0, 0, nil
			}
		case counting && num == fieldEndpoints && typ == protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			e, u, err := countLocality(v)
			if err != nil {
				return "", 0, 0, err
			}
			eps, bad = eps+e, bad+u
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return "", 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
		}
	}
	if name == "" {
		return "", 0, 0, errors.New("resource without a name")
	}
	return name, eps, bad, nil
}

// countLocality counts a LocalityLbEndpoints' lb_endpoints and those
// whose health_status is UNHEALTHY.
func countLocality(b []byte) (eps, bad int32, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		if num != fieldLbEndpoints || typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return 0, 0, protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return 0, 0, protowire.ParseError(n)
		}
		b = b[n:]
		eps++
		for len(v) > 0 {
			num, typ, n := protowire.ConsumeTag(v)
			if n < 0 {
				return 0, 0, protowire.ParseError(n)
			}
			v = v[n:]
			if num == fieldHealth && typ == protowire.VarintType {
				h, n := protowire.ConsumeVarint(v)
				if n < 0 {
					return 0, 0, protowire.ParseError(n)
				}
				v = v[n:]
				if h == healthUnhealthy {
					bad++
				}
				continue
			}
			n = protowire.ConsumeFieldValue(num, typ, v)
			if n < 0 {
				return 0, 0, protowire.ParseError(n)
			}
			v = v[n:]
		}
	}
	return eps, bad, nil
}
