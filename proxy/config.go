package proxy

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

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

// MaxConfigFileSize is the largest Configuration or resource file the
// sidecar reads: 4 MiB. That is more than Kubernetes stores in one object
// (etcd's 1.5 MiB request limit), so a Dapr file that works there works
// here, and little enough that loading and compiling the largest file
// takes one core 1 to 2.5 s (60,000 operations: 1.2 s), not the minutes
// a 50 MB file took. A larger file is refused before it is read past the
// limit.
const MaxConfigFileSize = 4 << 20

// maxConfigNodes bounds the YAML nodes one resource's spec may stand for
// with its aliases expanded, 1 Mi: a 4 MiB file written as configs are
// holds about 600,000 (9 per 60-byte operation), half what the densest
// YAML ("a," per node) would. So aliases cannot make a small file cost
// more to decode than the size limit allows, and the worst file that
// passes costs half as much as the densest 4 MiB would.
const maxConfigNodes = 1 << 20

// ErrConfigTooLarge is wrapped by the error of a configuration file larger
// than MaxConfigFileSize, or whose aliases expand beyond what that size
// holds.
var ErrConfigTooLarge = errors.New("configuration too large")

// LoadConfig reads the Configuration file (may be "") and every YAML file
// in resourceDirs. It returns all problems found, each naming its file; a
// file over MaxConfigFileSize is one (ErrConfigTooLarge).
func LoadConfig(configFile string, resourceDirs []string) (Config, error) {
	return loadConfig(context.Background(), configFile, resourceDirs)
}

// loadConfig is LoadConfig that stops with ctx's error once ctx is done,
// even in the middle of parsing a file.
func loadConfig(ctx context.Context, configFile string, resourceDirs []string) (Config, error) {
	var cfg Config
	h := sha256.New()
	var errs []error
	if configFile != "" {
		rs, err := readResources(ctx, configFile, h)
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
			rs, err := readResources(ctx, filepath.Join(dir, e.Name()), h)
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

func readResources(ctx context.Context, file string, h io.Writer) ([]Resource, error) {
	b, err := readLimited(file, MaxConfigFileSize)
	if err != nil {
		return nil, err
	}
	_, _ = h.Write(b)
	return decodeResources(ctx, file, b)
}

// decodeResources decodes the resources of file, whose content is b.
func decodeResources(ctx context.Context, file string, b []byte) ([]Resource, error) {
	var out []Resource
	err := yamlfield.Documents(file, ctxReader{ctx, bytes.NewReader(b)}, func(n int, r *Resource) error {
		if yamlfield.Nodes(&r.Spec, maxConfigNodes) > maxConfigNodes {
			return fmt.Errorf("%s: document %d: %w: its spec stands for more than %d YAML nodes with its aliases expanded", file, n, ErrConfigTooLarge, maxConfigNodes)
		}
		if err := r.validate(); err != nil {
			return fmt.Errorf("%s: document %d: %w", file, n, err)
		}
		r.File = file
		out = append(out, *r)
		return nil
	})
	if err != nil {
		if ctx.Err() != nil {
			// yaml flattens its reader's error into text.
			return nil, fmt.Errorf("%s: %w", file, context.Cause(ctx))
		}
		return nil, err
	}
	return out, nil
}

// readLimited reads file whole unless it is larger than limit bytes,
// reading no more than one byte past the limit (the file may be a 50 MB
// one, or a pipe that never ends).
func readLimited(file string, limit int) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, int64(limit)+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(b) > limit {
		size := ""
		if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
			size = fmt.Sprintf("%d bytes, ", st.Size())
		}
		inMiB := ""
		if limit%(1<<20) == 0 {
			inMiB = fmt.Sprintf(" (%d MiB)", limit>>20)
		}
		return nil, fmt.Errorf("%s: %w: %sover the limit of %d bytes%s", file, ErrConfigTooLarge, size, limit, inMiB)
	}
	return b, nil
}

// ctxReader reads from r until ctx is done, then fails with ctx's error:
// YAML's parser reads as it parses, so this stops a parse at shutdown.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
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
	// Endpoints are the HTTPEndpoint resources scoped to this app, by name
	// (external invocation, proxy/external.go).
	Endpoints map[string]*externalEndpoint
	// xds is the compiled XDSConfig; nil without a control plane.
	xds *xdsSnapshot
	// Tracing is spec.tracing, nil without one; the sidecar applies its
	// sampling rate on every swap (telemetry.Tracing.Update).
	Tracing *telemetry.TracingSpec
	// Metrics is spec.metrics; never nil (defaults without one).
	Metrics *MetricsSpec
	// limits are the rate limits: the middleware.http.ratelimit components
	// spec.httpPipeline and spec.appHttpPipeline name, and
	// spec.callerRateLimits (ratelimit.go). Their buckets are the one
	// mutable part, safe for concurrent use; Apply carries the buckets of
	// unchanged limits over from the snapshot it replaces.
	limits rateLimits
	// meters record under Metrics; set by the sidecar that stores the
	// snapshot (they outlive snapshots, so compile cannot build them).
	meters *meters
	// routeLookups counts routeFor calls: one per outbound call.
	routeLookups atomic.Int64
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
	if s.Endpoints, err = compileEndpoints(cfg, appID); err != nil {
		return nil, err
	}
	if s.limits, err = compileRateLimits(cfg, appID); err != nil {
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
