package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/internal/yamlfield"
	"github.com/skeinmesh/skein/resiliency"
	"github.com/skeinmesh/skein/telemetry"
)

// Config is everything the sidecar reads from files (and, later, xDS): the
// Dapr Configuration from --config and the resources found under
// --resources-path. Sidecar.Apply compiles it into a Snapshot.
type Config struct {
	// Version identifies the content (a hash of the files), for logs and
	// /v1.0/metadata.
	Version string
	// Configuration is the Dapr Configuration, nil when --config is unset.
	Configuration *Resource
	// Resources are the other resources, in file order.
	Resources []Resource
	// XDS is the configuration pushed by an xDS control plane; nil keeps
	// the one last applied (Sidecar.Apply) or means none (compile).
	XDS *XDSConfig
	// xdsOnly marks a push from xDS: the files last applied stay.
	xdsOnly bool
}

// Resource is the envelope shared by every Dapr resource. Spec stays a YAML
// node: each concern decodes and validates the part it owns.
type Resource struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name      string `yaml:"name"`
		Namespace string `yaml:"namespace"`
	} `yaml:"metadata"`
	Spec   yaml.Node `yaml:"spec"`
	Scopes []string  `yaml:"scopes"`
	// File is where the resource was read from.
	File string `yaml:"-"`
}

// validate checks the envelope.
func (r *Resource) validate() error {
	var errs []error
	if r.APIVersion == "" {
		errs = append(errs, errors.New("apiVersion: required"))
	}
	if r.Kind == "" {
		errs = append(errs, errors.New("kind: required"))
	}
	if r.Metadata.Name == "" {
		errs = append(errs, errors.New("metadata.name: required"))
	}
	if r.Spec.Kind != 0 && r.Spec.Kind != yaml.MappingNode {
		errs = append(errs, errors.New("spec: must be a mapping"))
	}
	return errors.Join(errs...)
}

// LoadConfig reads the Configuration file (may be "") and every YAML file
// in resourceDirs. It returns all problems found, each naming its file.
func LoadConfig(configFile string, resourceDirs []string) (Config, error) {
	var cfg Config
	h := sha256.New()
	var errs []error
	if configFile != "" {
		rs, err := readResources(configFile, h)
		switch {
		case err != nil:
			errs = append(errs, err)
		case len(rs) != 1 || rs[0].Kind != "Configuration":
			errs = append(errs, fmt.Errorf("%s: want exactly one resource of kind Configuration", configFile))
		default:
			cfg.Configuration = &rs[0]
		}
	}
	for _, dir := range resourceDirs {
		ents, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, fmt.Errorf("resources path: %w", err))
			continue
		}
		for _, e := range ents {
			ext := filepath.Ext(e.Name())
			if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
				continue
			}
			rs, err := readResources(filepath.Join(dir, e.Name()), h)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			cfg.Resources = append(cfg.Resources, rs...)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return Config{}, err
	}
	cfg.Version = hex.EncodeToString(h.Sum(nil))[:12]
	return cfg, nil
}

func readResources(file string, h io.Writer) ([]Resource, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	_, _ = h.Write(b)
	var out []Resource
	err = yamlfield.Documents(file, b, func(n int, r *Resource) error {
		if err := r.validate(); err != nil {
			return fmt.Errorf("%s: document %d: %w", file, n, err)
		}
		r.File = file
		out = append(out, *r)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Snapshot is a compiled Config. It is immutable once stored; a request
// loads the current one once and uses it to the end.
type Snapshot struct {
	Version string
	// ConfigName is the Configuration's metadata.name, "" without --config.
	ConfigName string
	// Kinds counts resources by kind, for /v1.0/metadata.
	Kinds map[string]int
	// Access decides calls from other sidecars (spec.accessControl); never
	// nil: without a policy it allows everything.
	Access *access.Matcher
	// Resiliency holds the merged Resiliency resources scoped to this app;
	// nil means no user policy.
	Resiliency *resiliency.Compiled
	// xds is the compiled XDSConfig; nil without a control plane.
	xds *xdsSnapshot
	// Tracing is spec.tracing, nil without one; the sidecar applies its
	// sampling rate on every swap (telemetry.Tracing.Update).
	Tracing *telemetry.TracingSpec
	// Metrics is spec.metrics; never nil (defaults without one).
	Metrics *MetricsSpec
	// meters record under Metrics; set by the sidecar that stores the
	// snapshot (they outlive snapshots, so compile cannot build them).
	meters *meters
}

// compile validates cfg and builds its snapshot. Each concern added later
// (access control, resiliency, tracing) compiles its section here and adds
// its matchers to Snapshot; any error rejects the whole config.
func compile(cfg Config, appID string) (*Snapshot, error) {
	s := &Snapshot{Version: cfg.Version, Kinds: map[string]int{}}
	if c := cfg.Configuration; c != nil {
		if !strings.HasPrefix(c.APIVersion, "dapr.io/") {
			return nil, fmt.Errorf("%s: apiVersion %q: want dapr.io/v1alpha1", c.File, c.APIVersion)
		}
		s.ConfigName = c.Metadata.Name
	}
	acl, err := AccessConfig(cfg)
	if err != nil {
		return nil, err
	}
	// Apps behind Skein speak HTTP (http, h2c, https): operations match
	// case-insensitively and verbs count (contract §4.2).
	m, err := access.Compile(acl, true)
	if err != nil {
		return nil, err
	}
	s.Access = m
	if s.Metrics, err = MetricsConfig(cfg); err != nil {
		return nil, err
	}
	if s.Tracing, err = TracingConfig(cfg); err != nil {
		return nil, err
	}
	if s.xds, err = compileXDS(cfg.XDS); err != nil {
		return nil, err
	}
	var specs []*resiliency.Spec
	for _, r := range cfg.Resources {
		s.Kinds[r.Kind]++
		if r.Kind != "Resiliency" {
			continue
		}
		sp, err := resiliency.Decode(&r.Spec)
		if err != nil {
			return nil, fmt.Errorf("%s: resiliency %s: %w", r.File, r.Metadata.Name, err)
		}
		sp.Name, sp.Namespace, sp.Scopes = r.Metadata.Name, r.Metadata.Namespace, r.Scopes
		if sp.AppliesTo(appID) {
			specs = append(specs, sp)
		}
	}
	if len(specs) > 0 {
		c, err := resiliency.Compile(resiliency.Merge(specs...))
		if err != nil {
			return nil, fmt.Errorf("resiliency: %w", err)
		}
		s.Resiliency = c
	}
	return s, nil
}

// TracingConfig decodes and validates the Configuration's spec.tracing;
// nil when there is none.
func TracingConfig(cfg Config) (*telemetry.TracingSpec, error) {
	c := cfg.Configuration
	if c == nil {
		return nil, nil
	}
	n := yamlfield.Field(&c.Spec, "tracing")
	if n == nil {
		return nil, nil
	}
	t, err := telemetry.DecodeTracing(n)
	if err != nil {
		return nil, fmt.Errorf("%s: spec.%w", c.File, err)
	}
	return t, nil
}

// AccessConfig decodes and validates the Configuration's
// spec.accessControl; nil when there is none.
func AccessConfig(cfg Config) (*access.Config, error) {
	c := cfg.Configuration
	if c == nil {
		return nil, nil
	}
	n := yamlfield.Field(&c.Spec, "accessControl")
	if n == nil {
		return nil, nil
	}
	acl, err := access.Decode(n)
	if err != nil {
		return nil, fmt.Errorf("%s: spec.%w", c.File, err)
	}
	if err := acl.Validate(); err != nil {
		return nil, fmt.Errorf("%s: spec.%w", c.File, err)
	}
	return acl, nil
}
