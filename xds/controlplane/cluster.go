package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/resiliency"
)

// Cluster is the state of a Kubernetes cluster as a control plane started
// with Options.Cluster serves it (package kube builds it from informers):
// the peer ports of the Dapr pods, and Dapr's resources. Plain values, so
// this package knows nothing of Kubernetes' types. SetCluster does not
// keep a reference to its slices.
type Cluster struct {
	// Instances are the Dapr pods that have an IP.
	Instances []ClusterInstance
	// Configurations are Dapr Configuration resources (dapr.io/v1alpha1).
	Configurations []Resource
	// Resiliencies are Dapr Resiliency resources (dapr.io/v1alpha1).
	Resiliencies []Resource
	// HTTPEndpoints are Dapr HTTPEndpoint resources (dapr.io/v1alpha1).
	HTTPEndpoints []Resource
}

// ClusterInstance is one Dapr pod.
type ClusterInstance struct {
	AppID     string
	Namespace string
	// Address is the pod's IP and its sidecar's peer port.
	Address netip.AddrPort
	// ID names the instance: the pod's name.
	ID string
	// Health is the pod's readiness.
	Health Health
	// Config is the pod's dapr.io/config: the name of the Configuration,
	// in its namespace, whose accessControl guards calls to its app.
	Config string
}

// Health is an instance's readiness, as its EndpointSlices (or, without
// one, its pod's Ready condition) say.
type Health int

const (
	// Ready instances take calls.
	Ready Health = iota
	// NotReady instances are served as UNHEALTHY: sidecars send them nothing.
	NotReady
	// Terminating instances still serving are served as DRAINING:
	// sidecars send them no new calls.
	Terminating
)

// Resource is a Dapr resource: its metadata and its spec as JSON.
type Resource struct {
	Namespace, Name string
	Scopes          []string
	Spec            []byte
}

func (r Resource) key() string { return r.Namespace + "/" + r.Name }

// clusterCompiler turns Clusters into dirConfigs. It keeps the last good
// compiled form of each resource, so that a change the API server accepted
// but Skein refuses (a policy outside the xDS subset) leaves that resource
// serving as it was while every other change applies: one bad resource
// must not freeze the endpoints of the whole mesh. Not safe for
// concurrent use.
type clusterCompiler struct {
	access    map[string]compiled[*rbacRules]
	resil     map[string]compiled[*resiliency.Spec]
	endpoints map[string]compiled[*httpEndpoint]
}

type compiled[T any] struct {
	sum  [sha256.Size]byte
	v    T
	good bool  // v is a good form (some version compiled)
	err  error // of the last change, nil once it compiled
}

func newClusterCompiler() *clusterCompiler {
	return &clusterCompiler{
		access:    map[string]compiled[*rbacRules]{},
		resil:     map[string]compiled[*resiliency.Spec]{},
		endpoints: map[string]compiled[*httpEndpoint]{},
	}
}

// compile builds the config of c. Its error lists every resource refused
// (each keeps its last good form, if it had one) and every app whose
// dapr.io/config names no Configuration; the config is served either way.
func (cc *clusterCompiler) compile(c Cluster) (*dirConfig, error) {
	h := sha256.New()
	cfg := &dirConfig{
		access: map[appKey]*rbacRules{}, endpoints: map[appKey]*endpointsSpec{},
		cluster: map[appKey][]instance{}, namespaced: true,
	}
	var errs []error
	// Sorted, so that the version and the errors follow the content,
	// not the order the caches list it in.
	byKey := func(a, b Resource) int { return strings.Compare(a.key(), b.key()) }
	c.Configurations = slices.SortedFunc(slices.Values(c.Configurations), byKey)
	c.Resiliencies = slices.SortedFunc(slices.Values(c.Resiliencies), byKey)
	c.HTTPEndpoints = slices.SortedFunc(slices.Values(c.HTTPEndpoints), byKey)
	seen := map[string]bool{}
	for _, r := range c.Configurations {
		seen[r.key()] = true
		fmt.Fprintf(h, "Configuration %s %d\n", r.key(), len(r.Spec))
		h.Write(r.Spec)
		if err := update(cc.access, r, compileConfiguration); err != nil {
			errs = append(errs, fmt.Errorf("Configuration %s: %w", r.key(), err))
		}
	}
	deleteUnseen(cc.access, seen)
	seen = map[string]bool{}
	for _, r := range c.Resiliencies {
		seen[r.key()] = true
		fmt.Fprintf(h, "Resiliency %s %s %d\n", r.key(), strings.Join(r.Scopes, ","), len(r.Spec))
		h.Write(r.Spec)
		if err := update(cc.resil, r, compileResiliency); err != nil {
			errs = append(errs, fmt.Errorf("Resiliency %s: %w", r.key(), err))
		}
	}
	deleteUnseen(cc.resil, seen)
	for _, k := range slices.Sorted(maps.Keys(cc.resil)) {
		if sp := cc.resil[k].v; sp != nil {
			cfg.resiliency = append(cfg.resiliency, sp)
		}
	}
	seen = map[string]bool{}
	for _, r := range c.HTTPEndpoints {
		seen[r.key()] = true
		fmt.Fprintf(h, "HTTPEndpoint %s %s %d\n", r.key(), strings.Join(r.Scopes, ","), len(r.Spec))
		h.Write(r.Spec)
		if err := update(cc.endpoints, r, compileHTTPEndpoint); err != nil {
			errs = append(errs, fmt.Errorf("HTTPEndpoint %s: %w", r.key(), err))
		}
	}
	deleteUnseen(cc.endpoints, seen)
	for _, k := range slices.Sorted(maps.Keys(cc.endpoints)) {
		if e := cc.endpoints[k].v; e != nil {
			cfg.httpEndpoints = append(cfg.httpEndpoints, e)
		}
	}

	// Instances, sorted so that an app's config is picked the same way
	// every time: the first ready pod's, else the first pod's. During a
	// rollout that changes dapr.io/config, the old pods' config serves
	// until a new pod is ready.
	ins := slices.Clone(c.Instances)
	slices.SortFunc(ins, func(a, b ClusterInstance) int {
		return strings.Compare(a.Namespace+"/"+a.AppID+"/"+a.ID, b.Namespace+"/"+b.AppID+"/"+b.ID)
	})
	conf := map[appKey]string{}
	readyConf := map[appKey]bool{}
	for _, in := range ins {
		k := appKey{in.AppID, in.Namespace}
		fmt.Fprintf(h, "Instance %s %s %s %d %s\n", k.nodeID(), in.ID, in.Address, in.Health, in.Config)
		health := corev3.HealthStatus_HEALTHY
		switch in.Health {
		case NotReady:
			health = corev3.HealthStatus_UNHEALTHY
		case Terminating:
			health = corev3.HealthStatus_DRAINING
		}
		cfg.cluster[k] = append(cfg.cluster[k], instance{addr: in.Address, id: in.ID, health: health})
		if _, ok := conf[k]; !ok || (!readyConf[k] && in.Health == Ready) {
			conf[k], readyConf[k] = in.Config, in.Health == Ready
		}
	}
	for _, k := range slices.SortedFunc(maps.Keys(conf), func(a, b appKey) int { return strings.Compare(a.nodeID(), b.nodeID()) }) {
		name := conf[k]
		if name == "" {
			continue
		}
		c, ok := cc.access[k.ns+"/"+name]
		if !c.good {
			// Dapr's sidecar does not start without the Configuration its
			// pod names; here the app takes no call until it exists (or
			// compiles), rather than every call.
			rules, _ := translateAccess(&access.Config{DefaultAction: access.ActionDeny})
			cfg.access[k] = rules
			if !ok {
				errs = append(errs, fmt.Errorf("app %s: dapr.io/config names Configuration %s/%s, which does not exist: calls to the app are denied until it does", k.clusterName(), k.ns, name))
			}
			continue
		}
		if c.v != nil { // nil: no accessControl, every call allowed
			cfg.access[k] = c.v
		}
	}
	cfg.version = "k8s-" + hex.EncodeToString(h.Sum(nil))[:12]
	return cfg, errors.Join(errs...)
}

// update compiles r into m unless its spec is unchanged; a spec that does
// not compile keeps the last good value and records its error.
func update[T any](m map[string]compiled[T], r Resource, compile func(Resource) (T, error)) error {
	sum := sha256.Sum256(append([]byte(strings.Join(r.Scopes, ",")+"\n"), r.Spec...))
	old, ok := m[r.key()]
	if ok && old.sum == sum {
		return old.err
	}
	v, err := compile(r)
	if err != nil {
		old.sum, old.err = sum, err
		m[r.key()] = old
		return err
	}
	m[r.key()] = compiled[T]{sum: sum, v: v, good: true}
	return nil
}

// specNode parses a resource's JSON spec into the YAML node the config
// directory's decoders read.
func specNode(r Resource) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(r.Spec, &doc); err != nil {
		return nil, fmt.Errorf("spec: %w", err)
	}
	if len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}, nil
	}
	return doc.Content[0], nil
}

// compileConfiguration is a Configuration's accessControl (nil: none),
// as the config directory compiles it.
func compileConfiguration(r Resource) (*rbacRules, error) {
	n, err := specNode(r)
	if err != nil {
		return nil, err
	}
	return accessRulesOf(n)
}

// compileResiliency decodes a Resiliency and checks that it compiles and
// translates, as the config directory does.
func compileResiliency(r Resource) (*resiliency.Spec, error) {
	n, err := specNode(r)
	if err != nil {
		return nil, err
	}
	sp, err := resiliency.Decode(n)
	if err != nil {
		return nil, err
	}
	sp.Name, sp.Namespace, sp.Scopes = r.Name, r.Namespace, slices.Clone(r.Scopes)
	if _, err := resiliency.Compile(resiliency.Merge(sp)); err != nil {
		return nil, err
	}
	if err := checkTrips(sp); err != nil {
		return nil, err
	}
	return sp, nil
}

func deleteUnseen[T any](m map[string]compiled[T], seen map[string]bool) {
	maps.DeleteFunc(m, func(k string, _ compiled[T]) bool { return !seen[k] })
}

// SetCluster serves the state of the cluster (Options.Cluster): every
// node's snapshot is rebuilt from it. Resources Skein refuses are logged
// and shown in the status; each keeps its last good form. Safe for
// concurrent use; the latest call wins.
func (s *Server) SetCluster(c Cluster) {
	s.clusterMu.Lock()
	cfg, err := s.compiler.compile(c)
	s.clusterMu.Unlock()
	s.mu.Lock()
	prevErr, first := s.cfgErr, !s.clusterSet
	s.cfg, s.cfgErr, s.clusterSet = cfg, err, true
	s.mu.Unlock()
	switch {
	case err != nil && (prevErr == nil || prevErr.Error() != err.Error()):
		s.log.Error("cluster resources refused; each keeps its last good form", "version", cfg.version, "err", err)
	case err == nil && prevErr != nil:
		s.log.Info("cluster resources all accepted", "version", cfg.version)
	}
	if first {
		s.log.Info("cluster state loaded", "version", cfg.version, "instances", len(c.Instances), "configurations", len(c.Configurations), "resiliencies", len(c.Resiliencies), "http_endpoints", len(c.HTTPEndpoints))
	} else {
		s.log.Debug("cluster state changed", "version", cfg.version)
	}
	s.trigger()
}
