package access

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// Values of the action and mode fields, and the defaults of contract §4.2.
const (
	ActionAllow = "allow"
	ActionDeny  = "deny"

	// ModeEnforce (or an empty mode) refuses denied calls.
	ModeEnforce = "enforce"
	// ModeAudit lets denied calls through and marks their Decision audited.
	ModeAudit = "audit"

	// DefaultTrustDomain is the trust domain of an accessControl without one.
	DefaultTrustDomain = "public"
)

// Config is Configuration spec.accessControl (contract §4.1), applied by the
// callee's sidecar to calls from other apps.
//
// The zero value and a nil *Config mean "no access control": every call is
// allowed. Decode fills it strictly from YAML; Validate reports every problem;
// Compile turns it into a Matcher. A Config is plain data: callers own it and
// may change it, but a compiled Matcher never sees later changes.
type Config struct {
	// DefaultAction applies when no policy decides: allow or deny, any case.
	// Empty means deny when Policies is non-empty (Dapr's documented rule,
	// PRODUCT.md difference 3; Dapr's runtime would allow) and allow otherwise.
	DefaultAction string `yaml:"defaultAction"`
	// TrustDomain is this app's own trust domain; default "public". It plays
	// no part in matching callers (each policy names its callers' domain).
	TrustDomain string `yaml:"trustDomain"`
	// Mode is a Skein extension: "" or "enforce" (default) refuses denied
	// calls; "audit" allows them and marks the Decision audited.
	Mode string `yaml:"mode"`
	// Policies are per caller (appId and namespace); a later policy with the
	// same appId and namespace replaces an earlier one, as in Dapr.
	Policies []Policy `yaml:"policies"`
}

// Policy is the access a caller app gets (contract §4.1).
type Policy struct {
	// AppID is the caller's app ID. Required.
	AppID string `yaml:"appId"`
	// DefaultAction applies to the caller's calls no operation decides:
	// allow, deny (any case) or empty, which leaves the global default.
	DefaultAction string `yaml:"defaultAction"`
	// TrustDomain is the caller's trust domain, compared exactly. Required.
	TrustDomain string `yaml:"trustDomain"`
	// Namespace is the caller's namespace. Required.
	Namespace string `yaml:"namespace"`
	// Mode is a Skein extension: "", "enforce" or "audit". With "audit", a
	// deny decided by this policy's own rules is let through and audited. It
	// cannot turn a global audit mode back into enforcement.
	Mode string `yaml:"mode"`
	// Operations are matched against the called method in config order
	// (contract §4.5); the first of two equal names wins.
	Operations []Operation `yaml:"operations"`
}

// Operation is one rule of a Policy.
type Operation struct {
	// Name is the method pattern; the leading "/" is optional. A segment may
	// hold "*" (any characters within the segment); a trailing "/*" also
	// matches one more segment, a trailing "/**" any deeper path, and a name
	// without wildcard also matches every deeper path.
	Name string `yaml:"name"`
	// HTTPVerb lists the methods the rule covers, compared case-sensitively
	// with upper-case names ("GET"); "*" covers any. Unused for gRPC apps.
	HTTPVerb []string `yaml:"httpVerb"`
	// Action is allow or deny, any case. Empty means deny, as in Dapr's
	// runtime (its docs say allow; Lint warns).
	Action string `yaml:"action"`
}

// Decode strictly decodes spec.accessControl from n: a mapping node, or the
// document holding it. Unknown and duplicate fields and wrong kinds of value
// are errors naming the field path and line; all are reported (errors.Join).
// A nil or null node decodes to an empty Config. Decode does not Validate.
func Decode(n *yaml.Node) (*Config, error) {
	var d decoder
	c := &Config{}
	d.Mapping(n, "accessControl", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "defaultAction":
			d.Str(v, path, &c.DefaultAction)
		case "trustDomain":
			d.Str(v, path, &c.TrustDomain)
		case "mode":
			d.Str(v, path, &c.Mode)
		case "policies":
			d.List(v, path, func(i int, v *yaml.Node, path string) {
				c.Policies = append(c.Policies, d.policy(v, path))
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

// DecodeConfiguration finds spec.accessControl in a Dapr Configuration
// document and decodes it with Decode; the rest of the document is not
// checked. It returns nil, nil when the document has no accessControl.
func DecodeConfiguration(data []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	spec := yamlfield.Field(&doc, "spec")
	ac := yamlfield.Field(spec, "accessControl")
	if ac == nil {
		return nil, nil
	}
	return Decode(ac)
}

// decoder walks YAML nodes by hand rather than with yaml's struct decoding,
// so that every error names its field path and all of them are reported.
type decoder struct {
	yamlfield.Decoder
}

func (d *decoder) policy(n *yaml.Node, path string) Policy {
	var p Policy
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "appId":
			d.Str(v, path, &p.AppID)
		case "defaultAction":
			d.Str(v, path, &p.DefaultAction)
		case "trustDomain":
			d.Str(v, path, &p.TrustDomain)
		case "namespace":
			d.Str(v, path, &p.Namespace)
		case "mode":
			d.Str(v, path, &p.Mode)
		case "operations":
			d.List(v, path, func(i int, v *yaml.Node, path string) {
				p.Operations = append(p.Operations, d.operation(v, path))
			})
		default:
			return false
		}
		return true
	})
	return p
}

func (d *decoder) operation(n *yaml.Node, path string) Operation {
	var o Operation
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "name":
			d.Str(v, path, &o.Name)
		case "action":
			d.Str(v, path, &o.Action)
		case "httpVerb":
			d.List(v, path, func(i int, v *yaml.Node, path string) {
				var s string
				d.Str(v, path, &s)
				o.HTTPVerb = append(o.HTTPVerb, s)
			})
		default:
			return false
		}
		return true
	})
	return o
}

// Validate returns every problem in c (errors.Join), each naming its field
// path, following Dapr's rules (contract §4.2): appId, trustDomain and
// namespace are required on every policy (Dapr refuses the whole spec
// otherwise); actions are allow or deny in any case, or empty where Dapr
// accepts empty (both defaultActions and an operation's action); modes are
// "", enforce or audit. A nil Config is valid.
func (c *Config) Validate() error {
	if c == nil {
		return nil
	}
	var errs []error
	add := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	badAction := func(v string) bool {
		return v != "" && !strings.EqualFold(v, ActionAllow) && !strings.EqualFold(v, ActionDeny)
	}
	action := func(path, v string) {
		if badAction(v) {
			add(path, "%q: must be allow or deny", v)
		}
	}
	mode := func(path, v string) {
		if v != "" && v != ModeEnforce && v != ModeAudit {
			add(path, "%q: must be enforce or audit", v)
		}
	}
	action("accessControl.defaultAction", c.DefaultAction)
	mode("accessControl.mode", c.Mode)
	for i, p := range c.Policies {
		pp := fmt.Sprintf("accessControl.policies[%d]", i)
		if p.AppID == "" {
			add(pp+".appId", "required")
		}
		if p.TrustDomain == "" {
			add(pp+".trustDomain", "required")
		}
		if p.Namespace == "" {
			add(pp+".namespace", "required")
		}
		action(pp+".defaultAction", p.DefaultAction)
		mode(pp+".mode", p.Mode)
		for k, o := range p.Operations {
			if badAction(o.Action) { // the path is built only when needed: there may be 100,000
				action(fmt.Sprintf("%s.operations[%d].action", pp, k), o.Action)
			}
		}
	}
	return errors.Join(errs...)
}

// isAllow reports whether an action allows; anything but "allow" in any
// case denies, including empty (contract §4.1).
func isAllow(action string) bool {
	return strings.EqualFold(action, ActionAllow)
}
