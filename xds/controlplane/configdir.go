package controlplane

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/skeinmesh/skein/httpendpoint"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/internal/yamlfield"
	"github.com/skeinmesh/skein/resiliency"
)

// appKey names an app: its id and namespace.
type appKey struct{ app, ns string }

// clusterName is the xDS name of an app: "<app-id>" in the default
// namespace, "<app-id>.<namespace>" elsewhere (PRODUCT.md).
func (k appKey) clusterName() string {
	if k.ns == "default" {
		return k.app
	}
	return k.app + "." + k.ns
}

// nodeID is the xDS node id of the app's sidecars.
func (k appKey) nodeID() string { return k.app + "." + k.ns }

// dirConfig is a config directory, decoded and validated: what every
// snapshot is built from besides the registrations. It is immutable.
type dirConfig struct {
	version string
	// access is each app's accessControl, already translated into RBAC
	// rules so a config the subset cannot express is refused at load.
	access map[appKey]*rbacRules
	// resiliency are the Resiliency resources, each with its scopes.
	resiliency []*resiliency.Spec
	// endpoints are the static Endpoints resources.
	endpoints map[appKey]*endpointsSpec
	// raw are xDS resources given as JSON files, served as they are.
	raw []proto.Message
	// cluster are the instances of the Dapr pods of a Kubernetes cluster
	// (SetCluster), by app.
	cluster map[appKey][]instance
	// httpEndpoints are the HTTPEndpoint resources, sorted by namespace
	// and name; each applies to the apps of its own namespace.
	httpEndpoints []*httpEndpoint
	// namespaced: a Resiliency applies only to callers in its namespace,
	// as Dapr's operator serves a sidecar its own namespace's resources.
	namespaced bool
}

// envelope is the part of a Dapr resource every kind shares.
type envelope struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string            `yaml:"name"`
		Namespace string            `yaml:"namespace"`
		Labels    map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec   yaml.Node `yaml:"spec"`
	Scopes []string  `yaml:"scopes"`
	Auth   yaml.Node `yaml:"auth"` // components carry it; unused
}

// endpointsSpec is the spec of Skein's Endpoints resource: instances of an
// app that do not register themselves, and the app's cluster settings.
type endpointsSpec struct {
	// LoadBalancing is least-request (default: Skein's P2C over peak-EWMA)
	// or round-robin.
	LoadBalancing string `yaml:"loadBalancing"`
	// MaxConcurrentCalls caps calls in flight to the app from one caller
	// (circuit_breakers max_requests); 0 means no cap.
	MaxConcurrentCalls uint32 `yaml:"maxConcurrentCalls"`
	// Instances are the app's peer-facing addresses.
	Instances []staticInstance `yaml:"instances"`
}

type staticInstance struct {
	// Address is host:port of the instance's sidecar peer port.
	Address string `yaml:"address"`
	// ID names the instance (endpoint metadata skein.instance_id); default
	// the address.
	ID string `yaml:"id"`
	// Weight is the load-balancing weight; 0 means 1.
	Weight uint32 `yaml:"weight"`
	// Locality places the instance.
	Locality struct {
		Region  string `yaml:"region"`
		Zone    string `yaml:"zone"`
		SubZone string `yaml:"subZone"`
	} `yaml:"locality"`
	// Health is healthy (default), unhealthy or draining.
	Health string `yaml:"health"`
}

// loadDir reads every .yaml/.yml file (Dapr resources: Configuration,
// Resiliency, HTTPEndpoint and Skein's Endpoints; other kinds are ignored) and every .json
// file (one xDS resource each, protobuf JSON with "@type") in dir. It
// returns every problem found, each naming its file and field.
func loadDir(dir string) (*dirConfig, error) {
	cfg := &dirConfig{access: map[appKey]*rbacRules{}, endpoints: map[appKey]*endpointsSpec{}}
	if dir == "" {
		cfg.version = "empty"
		return cfg, nil
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("config dir: %w", err)
	}
	h := sha256.New()
	var errs []error
	for _, e := range ents {
		file := filepath.Join(dir, e.Name())
		ext := filepath.Ext(e.Name())
		if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		switch ext {
		case ".yaml", ".yml":
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			h.Write(b)
			if err := cfg.addYAML(file, b); err != nil {
				errs = append(errs, err)
			}
		case ".json":
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			h.Write(b)
			m, err := decodeRaw(b)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", file, err))
				continue
			}
			cfg.raw = append(cfg.raw, m)
		}
	}
	if len(cfg.resiliency) > 0 {
		// Every policy must compile and translate, whichever callers load it.
		if _, err := resiliency.Compile(resiliency.Merge(cfg.resiliency...)); err != nil {
			errs = append(errs, err)
		}
		for _, sp := range cfg.resiliency {
			errs = append(errs, checkTrips(sp))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	cfg.version = hex.EncodeToString(h.Sum(nil))[:12]
	return cfg, nil
}

// checkTrips checks that every circuit breaker's trip expression
// translates into outlier detection.
func checkTrips(sp *resiliency.Spec) error {
	var errs []error
	for name, b := range sp.Policies.CircuitBreakers {
		if _, err := tripThreshold(b.Trip); err != nil {
			errs = append(errs, fmt.Errorf("resiliency %s: policies.circuitBreakers.%s.trip: %w", sp.Name, name, err))
		}
	}
	return errors.Join(errs...)
}

// addYAML decodes the resources of one YAML file.
func (c *dirConfig) addYAML(file string, b []byte) error {
	var errs []error
	err := yamlfield.Documents(file, bytes.NewReader(b), func(i int, r *envelope) error {
		where := fmt.Sprintf("%s: %s %s", file, r.Kind, r.Metadata.Name)
		if r.Metadata.Name == "" {
			errs = append(errs, fmt.Errorf("%s: document %d: metadata.name: required", file, i))
			return nil
		}
		ns := r.Metadata.Namespace
		if ns == "" {
			ns = "default"
		}
		switch r.Kind {
		case "Configuration":
			if err := c.addConfiguration(r, ns); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		case "Resiliency":
			sp, err := resiliency.Decode(&r.Spec)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				return nil
			}
			sp.Name, sp.Namespace, sp.Scopes = r.Metadata.Name, r.Metadata.Namespace, r.Scopes
			c.resiliency = append(c.resiliency, sp)
		case "Endpoints":
			sp, err := decodeEndpoints(&r.Spec)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
				return nil
			}
			k := appKey{r.Metadata.Name, ns}
			if _, dup := c.endpoints[k]; dup {
				errs = append(errs, fmt.Errorf("%s: a second Endpoints resource for %s", where, k.clusterName()))
				return nil
			}
			c.endpoints[k] = sp
		case "HTTPEndpoint":
			sp, err := httpendpoint.Decode(&r.Spec)
			if err == nil {
				var e *httpEndpoint
				if e, err = newHTTPEndpoint(r.Metadata.Name, ns, r.Scopes, sp); err == nil {
					err = c.addHTTPEndpoint(e)
				}
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", where, err))
			}
		}
		return nil
	})
	return errors.Join(append(errs, err)...)
}

// addHTTPEndpoint adds e in its place (namespace, then name); a second
// resource of the same name and namespace is an error.
func (c *dirConfig) addHTTPEndpoint(e *httpEndpoint) error {
	i, found := slices.BinarySearchFunc(c.httpEndpoints, e, compareEndpoints)
	if found {
		return fmt.Errorf("a second HTTPEndpoint %s in namespace %s", e.name, e.ns)
	}
	c.httpEndpoints = slices.Insert(c.httpEndpoints, i, e)
	return nil
}

func compareEndpoints(a, b *httpEndpoint) int {
	if c := strings.Compare(a.ns, b.ns); c != 0 {
		return c
	}
	return strings.Compare(a.name, b.name)
}

// addConfiguration takes a Configuration's spec.accessControl as the
// access policy of the apps it names: its scopes, else its metadata.name.
func (c *dirConfig) addConfiguration(r *envelope, ns string) error {
	rules, err := accessRulesOf(&r.Spec)
	if err != nil || rules == nil {
		return err
	}
	apps := r.Scopes
	if len(apps) == 0 {
		apps = []string{r.Metadata.Name}
	}
	for _, app := range apps {
		k := appKey{app, ns}
		if _, dup := c.access[k]; dup {
			return fmt.Errorf("a second accessControl for app %s", k.clusterName())
		}
		c.access[k] = rules
	}
	return nil
}

// accessRulesOf decodes, checks and translates a Configuration spec's
// accessControl; nil without one.
func accessRulesOf(spec *yaml.Node) (*rbacRules, error) {
	n := yamlfield.Field(spec, "accessControl")
	if n == nil {
		return nil, nil
	}
	acl, err := access.Decode(n)
	if err != nil {
		return nil, fmt.Errorf("spec.%w", err)
	}
	if err := acl.Validate(); err != nil {
		return nil, fmt.Errorf("spec.%w", err)
	}
	rules, err := translateAccess(acl)
	if err != nil {
		return nil, fmt.Errorf("spec.accessControl: %w", err)
	}
	return rules, nil
}

// decodeEndpoints strictly decodes and checks an Endpoints spec.
func decodeEndpoints(n *yaml.Node) (*endpointsSpec, error) {
	b, err := yaml.Marshal(n)
	if err != nil {
		return nil, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	sp := &endpointsSpec{}
	if err := dec.Decode(sp); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("spec: %w", err)
	}
	var errs []error
	switch sp.LoadBalancing {
	case "", "least-request", "round-robin":
	default:
		errs = append(errs, fmt.Errorf("spec.loadBalancing: %q: want least-request or round-robin", sp.LoadBalancing))
	}
	seen := map[string]bool{}
	for i, in := range sp.Instances {
		path := fmt.Sprintf("spec.instances[%d]", i)
		if _, err := netip.ParseAddrPort(in.Address); err != nil {
			errs = append(errs, fmt.Errorf("%s.address: %q: want ip:port", path, in.Address))
		}
		switch in.Health {
		case "", "healthy", "unhealthy", "draining":
		default:
			errs = append(errs, fmt.Errorf("%s.health: %q: want healthy, unhealthy or draining", path, in.Health))
		}
		id := cmpOr(in.ID, in.Address)
		if seen[id] {
			errs = append(errs, fmt.Errorf("%s: instance %q listed twice", path, id))
		}
		seen[id] = true
	}
	return sp, errors.Join(errs...)
}

// decodeRaw reads one xDS resource in protobuf JSON ("@type" names it)
// and validates it with its proto constraints.
func decodeRaw(b []byte) (proto.Message, error) {
	var a anypb.Any
	if err := protojson.Unmarshal(b, &a); err != nil {
		return nil, err
	}
	if !slices.Contains(servedTypes, a.TypeUrl) {
		return nil, fmt.Errorf("@type %s: want one of %s", a.TypeUrl, strings.Join(servedTypes, ", "))
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, err
	}
	if v, ok := m.(interface{ ValidateAll() error }); ok {
		if err := v.ValidateAll(); err != nil {
			return nil, err
		}
	}
	if resourceName(m) == "" {
		return nil, errors.New("name: required")
	}
	return m, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
