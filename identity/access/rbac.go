package access

import (
	"errors"
	"fmt"
	"strings"
)

// RBAC is the subset of Envoy's RBAC HTTP filter
// (envoy.extensions.filters.http.rbac.v3.RBAC, rules only) that an xDS
// control plane uses to carry access policy; package xds translates the
// protos into it. It is decided on the callee, like a Dapr accessControl,
// and applies in addition to one: a call must pass both.
//
// Semantics are Envoy's (envoy.config.rbac.v3.RBAC): a policy matches when
// any of its permissions and any of its principals match; with action
// allow a call is allowed only if some policy matches, with action deny it
// is denied if some policy matches. Policies are tried in the given order
// (xds sorts them by name, as Envoy's map has no order) and the first match
// names the deciding rule.
//
// An RBAC is plain data; CompileRBAC validates it into an RBACMatcher.
type RBAC struct {
	// Action is ActionAllow or ActionDeny.
	Action string
	// Policies are tried in order.
	Policies []RBACPolicy
}

// RBACPolicy is one named policy: a call matches it when one of the
// Permissions and one of the Principals match.
type RBACPolicy struct {
	Name        string
	Permissions []Permission
	Principals  []Principal
}

// Permission matches a request by what it asks for. Exactly one field is
// set.
type Permission struct {
	// Any matches every request.
	Any bool
	// Path matches "/" + the normalised method (url_path).
	Path *StringMatch
	// Method matches the HTTP verb exactly (header ":method").
	Method string
	// Or matches when one of the rules does, And when all do.
	Or, And []Permission
}

// Principal matches the caller. Exactly one field is set.
type Principal struct {
	// Any matches every caller, authenticated or not.
	Any bool
	// ID matches the caller's verified SPIFFE ID
	// (authenticated.principal_name); a caller without one never matches.
	ID *StringMatch
	// Or matches when one of the ids does, And when all do.
	Or, And []Principal
}

// StringMatch is Envoy's StringMatcher subset: Exact or Prefix (one of
// them; an empty Prefix matches everything), optionally ignoring case.
type StringMatch struct {
	Exact, Prefix string
	// IsPrefix tells Prefix "" (everything) from an unset one.
	IsPrefix   bool
	IgnoreCase bool
}

func (m *StringMatch) match(s string) bool {
	if m.IsPrefix {
		if len(s) < len(m.Prefix) {
			return false
		}
		if m.IgnoreCase {
			return strings.EqualFold(s[:len(m.Prefix)], m.Prefix)
		}
		return s[:len(m.Prefix)] == m.Prefix
	}
	if m.IgnoreCase {
		return strings.EqualFold(s, m.Exact)
	}
	return s == m.Exact
}

// matchPath matches "/" + op without building it.
func (m *StringMatch) matchPath(op string) bool {
	if m.IsPrefix {
		if m.Prefix == "" {
			return true
		}
		if m.Prefix[0] != '/' {
			return false
		}
		p := StringMatch{Prefix: m.Prefix[1:], IsPrefix: true, IgnoreCase: m.IgnoreCase}
		return p.match(op)
	}
	if m.Exact == "" || m.Exact[0] != '/' {
		return false
	}
	e := StringMatch{Exact: m.Exact[1:], IgnoreCase: m.IgnoreCase}
	return e.match(op)
}

// Validate reports every problem, naming the field (errors.Join). A nil
// RBAC is valid.
func (r *RBAC) Validate() error {
	if r == nil {
		return nil
	}
	var errs []error
	if r.Action != ActionAllow && r.Action != ActionDeny {
		errs = append(errs, fmt.Errorf("action: %q: must be allow or deny", r.Action))
	}
	for _, p := range r.Policies {
		path := fmt.Sprintf("policies[%q]", p.Name)
		if len(p.Permissions) == 0 {
			errs = append(errs, fmt.Errorf("%s.permissions: at least one required", path))
		}
		if len(p.Principals) == 0 {
			errs = append(errs, fmt.Errorf("%s.principals: at least one required", path))
		}
		errs = append(errs, validateEach(path, "permissions", p.Permissions)...)
		errs = append(errs, validateEach(path, "principals", p.Principals)...)
	}
	return errors.Join(errs...)
}

func (p *Permission) validate(path string) error {
	if n := countSet(p.Any, p.Path != nil, p.Method != "", p.Or != nil, p.And != nil); n != 1 {
		return fmt.Errorf("%s: exactly one rule required, %d set", path, n)
	}
	return errors.Join(append(validateEach(path, "or_rules", p.Or), validateEach(path, "and_rules", p.And)...)...)
}

func (p *Principal) validate(path string) error {
	if n := countSet(p.Any, p.ID != nil, p.Or != nil, p.And != nil); n != 1 {
		return fmt.Errorf("%s: exactly one identifier required, %d set", path, n)
	}
	return errors.Join(append(validateEach(path, "or_ids", p.Or), validateEach(path, "and_ids", p.And)...)...)
}

// countSet counts the fields set of a rule whose fields are exclusive.
func countSet(set ...bool) int {
	n := 0
	for _, s := range set {
		if s {
			n++
		}
	}
	return n
}

// validateEach validates rules, the list path.field, naming each
// path.field[i].
func validateEach[T any, V interface {
	*T
	validate(path string) error
}](path, field string, rules []T) []error {
	var errs []error
	for i := range rules {
		errs = append(errs, V(&rules[i]).validate(fmt.Sprintf("%s.%s[%d]", path, field, i)))
	}
	return errs
}

// match decides a permission. Its Or and And loops stand again in
// Principal.match on purpose: a generic helper makes req escape to the
// heap, and Decide must not allocate (TestRBACDecide).
func (p *Permission) match(req *Request) bool {
	switch {
	case p.Any:
		return true
	case p.Path != nil:
		return p.Path.matchPath(strings.TrimPrefix(req.Operation, "/"))
	case p.Method != "":
		return req.Verb == p.Method
	case p.Or != nil:
		for i := range p.Or {
			if p.Or[i].match(req) {
				return true
			}
		}
		return false
	case p.And != nil:
		for i := range p.And {
			if !p.And[i].match(req) {
				return false
			}
		}
		return true
	}
	return false
}

func (p *Principal) match(req *Request) bool {
	switch {
	case p.Any:
		return true
	case p.ID != nil:
		return req.CallerID != "" && p.ID.match(req.CallerID)
	case p.Or != nil:
		for i := range p.Or {
			if p.Or[i].match(req) {
				return true
			}
		}
		return false
	case p.And != nil:
		for i := range p.And {
			if !p.And[i].match(req) {
				return false
			}
		}
		return true
	}
	return false
}

// Rule names of RBAC decisions.
const (
	ruleRBACPrefix  = "rbac policy "
	ruleRBACDefault = "rbac default"
)

// RBACMatcher is a validated RBAC ready to decide calls. It is immutable
// and safe for concurrent use; a nil *RBACMatcher allows every call.
type RBACMatcher struct {
	allow    bool
	policies []RBACPolicy
	rules    []string // "rbac policy <name>", per policy
}

// CompileRBAC validates r and compiles it. The matcher shares r's nested
// rules: callers must not change r afterwards. A nil r compiles to nil
// (allow everything).
func CompileRBAC(r *RBAC) (*RBACMatcher, error) {
	if r == nil {
		return nil, nil
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	m := &RBACMatcher{allow: r.Action == ActionAllow, policies: append([]RBACPolicy(nil), r.Policies...)}
	for _, p := range r.Policies {
		m.rules = append(m.rules, ruleRBACPrefix+p.Name)
	}
	return m, nil
}

// Decide decides req by the RBAC rules. The Decision's Rule is
// "rbac policy <name>" for the policy that matched or "rbac default" when
// none did; Level is empty (Dapr's acl metrics do not count RBAC). A nil
// matcher allows with Rule "". Decide does not allocate.
func (m *RBACMatcher) Decide(req Request) Decision {
	if m == nil {
		return Decision{Allowed: true}
	}
	for i := range m.policies {
		p := &m.policies[i]
		if !anyPermission(p.Permissions, &req) || !anyPrincipal(p.Principals, &req) {
			continue
		}
		if m.allow {
			return Decision{Allowed: true, Rule: m.rules[i], Policy: p.Name, Reason: "an allow policy matched"}
		}
		return Decision{Denied: true, Rule: m.rules[i], Policy: p.Name, Reason: "a deny policy matched"}
	}
	if m.allow {
		return Decision{Denied: true, Rule: ruleRBACDefault, Reason: "no allow policy matched"}
	}
	return Decision{Allowed: true, Rule: ruleRBACDefault, Reason: "no deny policy matched"}
}

func anyPermission(ps []Permission, req *Request) bool {
	for i := range ps {
		if ps[i].match(req) {
			return true
		}
	}
	return false
}

func anyPrincipal(ps []Principal, req *Request) bool {
	for i := range ps {
		if ps[i].match(req) {
			return true
		}
	}
	return false
}
