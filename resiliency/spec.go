package resiliency

import (
	"fmt"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// Spec is the spec of a Dapr Resiliency resource (contract §5.1).
//
// A Spec is plain data decoded strictly by Decode; Validate reports every
// problem; Compile turns it into an immutable Compiled. Callers own a Spec and
// may change it; a Compiled never sees later changes. The zero value is an
// empty, valid Spec.
type Spec struct {
	// Name and Namespace are the resource's metadata.name and
	// metadata.namespace, set by the loader (not part of spec). They label
	// the dapr_resiliency_* metrics.
	Name      string `yaml:"-"`
	Namespace string `yaml:"-"`
	// Scopes are the resource's scopes: if set, only these app IDs load it
	// (see AppliesTo). Set by DecodeResource; Merge drops them.
	Scopes []string `yaml:"-"`

	Policies Policies `yaml:"policies"`
	Targets  Targets  `yaml:"targets"`
}

// Policies are the named policies of a Spec.
type Policies struct {
	// Timeouts maps a policy name to a duration: an integer string is
	// milliseconds, anything else a Go duration (contract §5.2).
	Timeouts map[string]string `yaml:"timeouts"`
	// Retries maps a policy name to a retry policy.
	Retries map[string]RetrySpec `yaml:"retries"`
	// CircuitBreakers maps a policy name to a circuit breaker policy.
	CircuitBreakers map[string]CircuitBreakerSpec `yaml:"circuitBreakers"`
}

// RetrySpec is a retry policy as written (contract §5.4).
type RetrySpec struct {
	// Policy is constant (default) or exponential, any case.
	Policy string `yaml:"policy"`
	// Duration is the constant back-off; default 5s.
	Duration string `yaml:"duration"`
	// MaxInterval caps the exponential back-off; default 60s.
	MaxInterval string `yaml:"maxInterval"`
	// MaxRetries counts retries after the first attempt: -1 unlimited, 0
	// none. Nil (omitted) means unlimited, as in Dapr.
	MaxRetries *int `yaml:"maxRetries"`
	// Matching restricts which statuses are retried.
	Matching Matching `yaml:"matching"`
}

// Matching lists the status codes a retry policy retries, as comma lists of
// codes and ranges "a-b". Empty means every error status.
type Matching struct {
	HTTPStatusCodes string `yaml:"httpStatusCodes"` // each within 100-599
	GRPCStatusCodes string `yaml:"gRPCStatusCodes"` // each within 0-16
}

// CircuitBreakerSpec is a circuit breaker policy as written (contract §5.5).
type CircuitBreakerSpec struct {
	// MaxRequests are the requests allowed while half-open; 0 means 1.
	MaxRequests int `yaml:"maxRequests"`
	// Interval is the closed-state counter reset period; empty or 0 never.
	Interval string `yaml:"interval"`
	// Timeout is the open → half-open delay; empty or 0 means 60s.
	Timeout string `yaml:"timeout"`
	// Trip is a boolean CEL expression over the int64 variables requests,
	// totalSuccesses, totalFailures, consecutiveSuccesses and
	// consecutiveFailures; default "consecutiveFailures > 5".
	Trip string `yaml:"trip"`
}

// Targets says which policies apply to which callees.
type Targets struct {
	// Apps maps the target as the caller writes it (app ID, appid.ns, an
	// HTTPEndpoint name or a URL) to its policies.
	Apps map[string]AppTarget `yaml:"apps"`
	// Actors and Components are kept as written and not checked: Skein
	// invokes apps only.
	Actors     *yaml.Node `yaml:"actors"`
	Components *yaml.Node `yaml:"components"`
}

// AppTarget names the policies of one app target. An empty name means no
// policy of that kind (defaults are not mixed in, contract §5.6).
type AppTarget struct {
	Timeout        string `yaml:"timeout"`
	Retry          string `yaml:"retry"`
	CircuitBreaker string `yaml:"circuitBreaker"`
	// CircuitBreakerCacheSize bounds the breakers kept for the target (one
	// per method); 0 means DefaultBreakerCacheSize.
	CircuitBreakerCacheSize int `yaml:"circuitBreakerCacheSize"`
}

// Decode strictly decodes the spec of a Resiliency resource from n: a
// mapping node, or the document holding it. Unknown and duplicate fields and
// wrong kinds of value are errors naming the field path and line; all are
// reported (errors.Join). A nil or null node decodes to an empty Spec.
// Decode does not Validate.
func Decode(n *yaml.Node) (*Spec, error) {
	var d decoder
	s := &Spec{}
	d.Mapping(n, "spec", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "policies":
			d.policies(v, path, &s.Policies)
		case "targets":
			d.targets(v, path, &s.Targets)
		default:
			return false
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

// DecodeResource decodes a whole Resiliency document (apiVersion, kind,
// metadata, scopes, spec): Name, Namespace and Scopes come from metadata
// and scopes, the rest from spec with Decode. Only the spec is decoded
// strictly; a kind other than Resiliency is an error. DecodeResource does
// not Validate.
func DecodeResource(data []byte) (*Spec, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("resiliency: %w", err)
	}
	var d decoder
	var kind, name, namespace string
	var scopes []string
	var spec *yaml.Node
	d.Mapping(&doc, "", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "kind":
			d.Str(v, path, &kind)
		case "metadata":
			d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
				switch key {
				case "name":
					d.Str(v, path, &name)
				case "namespace":
					d.Str(v, path, &namespace)
				}
				return true // labels, annotations, ...: not ours
			})
		case "scopes":
			n := yamlfield.Resolve(v)
			if yamlfield.IsNull(n) {
				break
			}
			if n.Kind != yaml.SequenceNode {
				d.Errorf(n, path, "must be a list")
				break
			}
			for i, item := range n.Content {
				var sc string
				d.Str(item, fmt.Sprintf("%s[%d]", path, i), &sc)
				scopes = append(scopes, sc)
			}
		case "spec":
			spec = v
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("resiliency %s: %w", name, err)
	}
	if kind != "Resiliency" {
		return nil, fmt.Errorf("resiliency %s: kind is %q, want Resiliency", name, kind)
	}
	s, err := Decode(spec)
	if err != nil {
		return nil, fmt.Errorf("resiliency %s: %w", name, err)
	}
	s.Name, s.Namespace, s.Scopes = name, namespace, scopes
	return s, nil
}

// AppliesTo reports whether the resource is loaded by app appID: it has no
// scopes or lists appID.
func (s *Spec) AppliesTo(appID string) bool {
	if len(s.Scopes) == 0 {
		return true
	}
	return slices.Contains(s.Scopes, appID)
}

// decoder walks YAML nodes by hand so that every error names its field path
// and all of them are reported.
type decoder struct {
	yamlfield.Decoder
}

func (d *decoder) policies(n *yaml.Node, path string, p *Policies) {
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "timeouts":
			d.Mapping(v, path, func(name string, v *yaml.Node, path string) bool {
				var s string
				d.Str(v, path, &s)
				if p.Timeouts == nil {
					p.Timeouts = map[string]string{}
				}
				p.Timeouts[name] = s
				return true
			})
		case "retries":
			d.Mapping(v, path, func(name string, v *yaml.Node, path string) bool {
				if p.Retries == nil {
					p.Retries = map[string]RetrySpec{}
				}
				p.Retries[name] = d.retry(v, path)
				return true
			})
		case "circuitBreakers":
			d.Mapping(v, path, func(name string, v *yaml.Node, path string) bool {
				if p.CircuitBreakers == nil {
					p.CircuitBreakers = map[string]CircuitBreakerSpec{}
				}
				p.CircuitBreakers[name] = d.breaker(v, path)
				return true
			})
		default:
			return false
		}
		return true
	})
}

func (d *decoder) retry(n *yaml.Node, path string) RetrySpec {
	var r RetrySpec
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "policy":
			d.Str(v, path, &r.Policy)
		case "duration":
			d.Str(v, path, &r.Duration)
		case "maxInterval":
			d.Str(v, path, &r.MaxInterval)
		case "maxRetries":
			var i int
			if d.Int(v, path, &i) {
				r.MaxRetries = &i
			}
		case "matching":
			d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
				switch key {
				case "httpStatusCodes":
					d.Str(v, path, &r.Matching.HTTPStatusCodes)
				case "gRPCStatusCodes":
					d.Str(v, path, &r.Matching.GRPCStatusCodes)
				default:
					return false
				}
				return true
			})
		default:
			return false
		}
		return true
	})
	return r
}

func (d *decoder) breaker(n *yaml.Node, path string) CircuitBreakerSpec {
	var b CircuitBreakerSpec
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "maxRequests":
			d.Int(v, path, &b.MaxRequests)
		case "interval":
			d.Str(v, path, &b.Interval)
		case "timeout":
			d.Str(v, path, &b.Timeout)
		case "trip":
			d.Str(v, path, &b.Trip)
		default:
			return false
		}
		return true
	})
	return b
}

func (d *decoder) targets(n *yaml.Node, path string, t *Targets) {
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "apps":
			d.Mapping(v, path, func(name string, v *yaml.Node, path string) bool {
				if t.Apps == nil {
					t.Apps = map[string]AppTarget{}
				}
				t.Apps[name] = d.app(v, path)
				return true
			})
		case "actors":
			t.Actors = yamlfield.Resolve(v)
		case "components":
			t.Components = yamlfield.Resolve(v)
		default:
			return false
		}
		return true
	})
}

func (d *decoder) app(n *yaml.Node, path string) AppTarget {
	var a AppTarget
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "timeout":
			d.Str(v, path, &a.Timeout)
		case "retry":
			d.Str(v, path, &a.Retry)
		case "circuitBreaker":
			d.Str(v, path, &a.CircuitBreaker)
		case "circuitBreakerCacheSize":
			d.Int(v, path, &a.CircuitBreakerCacheSize)
		default:
			return false
		}
		return true
	})
	return a
}
