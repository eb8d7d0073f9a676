package ratelimit

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// Defaults of a caller policy's identity fields: the mesh's own (the
// embedded CA's trust domain, Dapr's default namespace).
const (
	DefaultTrustDomain = "public"
	DefaultNamespace   = "default"
)

// Config is Configuration spec.callerRateLimits, a Skein extension in the
// style of spec.accessControl: limits the callee's sidecar applies to calls
// from other apps, per calling app, identified by its verified SPIFFE ID.
//
//	callerRateLimits:
//	  default: {requestsPerSecond: 100, burst: 200}
//	  policies:
//	  - appId: batch
//	    namespace: default
//	    trustDomain: public
//	    requestsPerSecond: 5
//	    burst: 10
//
// A nil or empty Config limits nothing. Config is plain data; Compile turns
// it into Callers.
type Config struct {
	// Default, when set, is one bucket shared by every caller no policy
	// names, and by calls without a verified caller (mTLS off); nil leaves
	// them unlimited.
	Default *Rate `yaml:"default"`
	// Policies are per caller; each caller (appId, namespace, trustDomain)
	// may appear once.
	Policies []Policy `yaml:"policies"`
}

// Rate is a limit as written: requestsPerSecond (> 0, fractions allowed)
// and burst (>= 1; 0 or absent: DefaultBurst of the rate).
type Rate struct {
	RequestsPerSecond float64 `yaml:"requestsPerSecond"`
	Burst             int     `yaml:"burst"`
}

// Limit is r with its default burst filled in.
func (r Rate) Limit() Limit {
	l := Limit{RequestsPerSecond: r.RequestsPerSecond, Burst: r.Burst}
	if l.Burst == 0 && r.RequestsPerSecond > 0 {
		l.Burst = DefaultBurst(r.RequestsPerSecond)
	}
	return l
}

// Policy limits one calling app.
type Policy struct {
	// AppID is the caller's app id. Required.
	AppID string `yaml:"appId"`
	// Namespace is the caller's namespace; default "default".
	Namespace string `yaml:"namespace"`
	// TrustDomain is the caller's trust domain; default "public".
	TrustDomain string `yaml:"trustDomain"`
	Rate        `yaml:",inline"`
}

// Caller is a verified caller as the limits see it, from its SPIFFE ID
// spiffe://<TrustDomain>/ns/<Namespace>/<AppID>.
type Caller struct {
	TrustDomain, Namespace, AppID string
}

// caller is p's Caller with the defaults filled in.
func (p Policy) caller() Caller {
	c := Caller{TrustDomain: p.TrustDomain, Namespace: p.Namespace, AppID: p.AppID}
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.Namespace == "" {
		c.Namespace = DefaultNamespace
	}
	return c
}

// Decode strictly decodes spec.callerRateLimits from n (a mapping node).
// Unknown and duplicate fields and values of the wrong kind are errors
// naming the field path and line; all are reported. A nil or null node
// decodes to an empty Config. Decode does not Validate.
func Decode(n *yaml.Node) (*Config, error) {
	var d yamlfield.Decoder
	c := &Config{}
	d.Mapping(n, "callerRateLimits", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "default":
			if !yamlfield.IsNull(yamlfield.Resolve(v)) {
				r := Rate{}
				d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
					return decodeRate(&d, key, v, path, &r)
				})
				c.Default = &r
			}
		case "policies":
			d.List(v, path, func(i int, v *yaml.Node, path string) {
				var p Policy
				d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
					switch key {
					case "appId":
						d.Str(v, path, &p.AppID)
					case "namespace":
						d.Str(v, path, &p.Namespace)
					case "trustDomain":
						d.Str(v, path, &p.TrustDomain)
					default:
						return decodeRate(&d, key, v, path, &p.Rate)
					}
					return true
				})
				c.Policies = append(c.Policies, p)
			})
		default:
			return false
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeRate decodes one field of a Rate; it reports whether key is one.
func decodeRate(d *yamlfield.Decoder, key string, v *yaml.Node, path string, r *Rate) bool {
	switch key {
	case "requestsPerSecond":
		var s string
		d.Str(v, path, &s)
		if s == "" {
			d.Errorf(v, path, "required")
			return true
		}
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			d.Errorf(v, path, "%q: must be a number", s)
			return true
		}
		r.RequestsPerSecond = f
	case "burst":
		d.Int(v, path, &r.Burst)
	default:
		return false
	}
	return true
}

// Validate returns every problem in c (errors.Join), each naming its field
// path: a policy's appId is required and must be an app id a SPIFFE ID
// can carry (letters, digits, '-' and '_', no dots, up to 64 bytes), its
// namespace a SPIFFE path segment and its trust domain a SPIFFE trust
// domain; each caller appears once; every rate is greater than 0 and at
// most MaxRequestsPerSecond; a burst given is within 1-MaxBurst. A nil
// Config is valid.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	if c.Default != nil {
		errs = append(errs, c.Default.validate("callerRateLimits.default")...)
	}
	seen := make(map[Caller]int, len(c.Policies))
	for i, p := range c.Policies {
		path := fmt.Sprintf("callerRateLimits.policies[%d]", i)
		errs = append(errs, p.validateCaller(path)...)
		errs = append(errs, p.Rate.validate(path)...)
		k := p.caller()
		if j, dup := seen[k]; dup {
			errs = append(errs, fmt.Errorf("%s: caller %s/ns/%s/%s already limited by policies[%d]", path, k.TrustDomain, k.Namespace, k.AppID, j))
		} else {
			seen[k] = i
		}
	}
	return errors.Join(errs...)
}

// validate returns r's problems, each prefixed with path.
func (r Rate) validate(path string) []error {
	var errs []error
	switch rps := r.RequestsPerSecond; {
	case !(rps > 0): // NaN too
		errs = append(errs, fmt.Errorf("%s.requestsPerSecond: %v: must be greater than 0 (required)", path, rps))
	case rps > MaxRequestsPerSecond: // +Inf too
		errs = append(errs, fmt.Errorf("%s.requestsPerSecond: %v: must be at most %g", path, rps, float64(MaxRequestsPerSecond)))
	}
	if r.Burst < 0 || r.Burst > MaxBurst {
		errs = append(errs, fmt.Errorf("%s.burst: %d: must be within 1-%d (0 or absent: the rate's whole part, at least 1)", path, r.Burst, MaxBurst))
	}
	return errs
}

// validateCaller checks that p names a caller a SPIFFE ID can carry.
func (p Policy) validateCaller(path string) []error {
	var errs []error
	k := p.caller()
	switch {
	case p.AppID == "":
		errs = append(errs, fmt.Errorf("%s.appId: required", path))
	case len(p.AppID) > 64:
		errs = append(errs, fmt.Errorf("%s.appId: %q: longer than 64 bytes", path, p.AppID))
	case strings.HasPrefix(p.AppID, "spiffe://"):
		errs = append(errs, fmt.Errorf("%s.appId: %q: an app id, not a SPIFFE ID (give trustDomain, namespace and appId)", path, p.AppID))
	case strings.ContainsRune(p.AppID, '.'):
		errs = append(errs, fmt.Errorf("%s.appId: %q: app ids cannot contain dots (the namespace goes in namespace)", path, p.AppID))
	default:
		if err := spiffeid.ValidatePathSegment(p.AppID); err != nil {
			errs = append(errs, fmt.Errorf("%s.appId: %q: %v", path, p.AppID, err))
		}
	}
	if err := spiffeid.ValidatePathSegment(k.Namespace); err != nil {
		errs = append(errs, fmt.Errorf("%s.namespace: %q: %v", path, p.Namespace, err))
	}
	if _, err := spiffeid.TrustDomainFromString(k.TrustDomain); err != nil {
		errs = append(errs, fmt.Errorf("%s.trustDomain: %q: %v", path, p.TrustDomain, err))
	}
	return errs
}

// Callers is a compiled Config: which bucket limits which caller. It is
// immutable once shared (after Inherit); its buckets are safe for
// concurrent use. A nil *Callers limits nothing.
type Callers struct {
	by  map[Caller]entry
	def *entry
}

type entry struct {
	b    *Bucket
	name string // the metric label: the policy's appId ("<appId>.<namespace>" outside the default namespace), or "default"
}

// Compile validates c and builds its Callers, each with a full bucket; nil
// when c limits nothing.
func Compile(c *Config) (*Callers, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c == nil || (c.Default == nil && len(c.Policies) == 0) {
		return nil, nil
	}
	cs := &Callers{by: make(map[Caller]entry, len(c.Policies))}
	if c.Default != nil {
		cs.def = &entry{b: NewBucket(c.Default.Limit()), name: "default"}
	}
	for _, p := range c.Policies {
		k := p.caller()
		name := k.AppID
		if k.Namespace != DefaultNamespace {
			name += "." + k.Namespace
		}
		cs.by[k] = entry{b: NewBucket(p.Rate.Limit()), name: name}
	}
	return cs, nil
}

// For returns the bucket limiting calls from caller (verified: false for a
// call without a verified SPIFFE ID, which only the default limits) and
// the name its refusals are counted under; nil when nothing limits them.
func (cs *Callers) For(caller Caller, verified bool) (*Bucket, string) {
	if cs == nil {
		return nil, ""
	}
	if verified {
		if e, ok := cs.by[caller]; ok {
			return e.b, e.name
		}
	}
	if cs.def != nil {
		return cs.def.b, cs.def.name
	}
	return nil, ""
}

// Inherit makes cs use old's bucket for every caller (and the default)
// whose limit is unchanged, so that a reload does not hand every caller a
// fresh burst; a changed limit starts full. Call it before cs is shared.
func (cs *Callers) Inherit(old *Callers) {
	if cs == nil || old == nil {
		return
	}
	for k, e := range cs.by {
		if o, ok := old.by[k]; ok && o.b.limit == e.b.limit {
			e.b = o.b
			cs.by[k] = e
		}
	}
	if cs.def != nil && old.def != nil && old.def.b.limit == cs.def.b.limit {
		cs.def.b = old.def.b
	}
}
