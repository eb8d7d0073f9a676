package controlplane

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbacfilter "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/skeinmesh/skein/identity/access"
)

// rbacRules is an app's access policy as an RBAC filter config, or nil
// when the policy allows every call.
type rbacRules = rbacfilter.RBAC

// translateAccess turns a Dapr accessControl into one RBAC filter in the
// subset Skein's sidecars read (docs/xds.md): principals are exact SPIFFE
// IDs, permissions are url_path exact/prefix on "/<method>", ":method"
// headers, any, and or/and sets of those.
//
// When the global default is deny, the filter ALLOWs what the policies
// allow; when it is allow, it DENYs what they deny. What that shape cannot
// say exactly is refused rather than approximated, with the reason:
// audit mode, a policy whose operations go against both its default and
// overlap the opposite action, and wildcards other than a trailing "/**".
func translateAccess(c *access.Config) (*rbacRules, error) {
	if c == nil || (len(c.Policies) == 0 && !strings.EqualFold(c.DefaultAction, access.ActionDeny)) {
		return nil, nil
	}
	if strings.EqualFold(c.Mode, access.ModeAudit) {
		return nil, errors.New("mode: audit has no RBAC equivalent served by Skein (shadow rules are not in the subset)")
	}
	globalDeny := strings.EqualFold(c.DefaultAction, access.ActionDeny) || (c.DefaultAction == "" && len(c.Policies) > 0)
	// A later policy for the same caller replaces an earlier one (Dapr).
	var pols []access.Policy
	for _, p := range c.Policies {
		pols = slices.DeleteFunc(pols, func(q access.Policy) bool { return q.AppID == p.AppID && q.Namespace == p.Namespace })
		pols = append(pols, p)
	}
	rules := &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: map[string]*rbacv3.Policy{}}
	if globalDeny {
		rules.Action = rbacv3.RBAC_ALLOW
	}
	var errs []error
	for i, p := range pols {
		path := fmt.Sprintf("policies[%d] (appId %s)", i, p.AppID)
		if strings.EqualFold(p.Mode, access.ModeAudit) {
			errs = append(errs, fmt.Errorf("%s.mode: audit has no RBAC equivalent", path))
			continue
		}
		def := globalDeny
		if p.DefaultAction != "" {
			def = strings.EqualFold(p.DefaultAction, access.ActionDeny)
		}
		// The operations whose action is the filter's: allowed ones in an
		// ALLOW filter, denied ones in a DENY filter. The others only
		// restate the default unless they overlap one of ours.
		var ours, others []access.Operation
		for _, op := range p.Operations {
			deny := op.Action == "" || strings.EqualFold(op.Action, access.ActionDeny)
			if deny != globalDeny {
				ours = append(ours, op)
			} else {
				others = append(others, op)
			}
		}
		var perm *rbacv3.Permission
		switch {
		case def != globalDeny:
			// The policy's default is the filter's action: every call of
			// this caller matches, unless some operation says otherwise,
			// which would need not_rule.
			if len(others) > 0 {
				errs = append(errs, fmt.Errorf("%s: defaultAction %s with operations that %s needs not_rule, outside the subset; write the RBAC filter as a raw xDS Listener instead", path, p.DefaultAction, actionWord(globalDeny)))
				continue
			}
			perm = &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
		default:
			var perms []*rbacv3.Permission
			for j, op := range ours {
				opPath := fmt.Sprintf("%s.operations[%d]", path, j)
				pm, prefix, err := operationPermission(op)
				if err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", opPath, err))
					continue
				}
				for _, o := range others {
					if overlaps(prefix, opPrefix(o.Name)) {
						errs = append(errs, fmt.Errorf("%s: %q overlaps operation %q of the opposite action; the subset has no not_rule to express it", opPath, op.Name, o.Name))
					}
				}
				if pm != nil {
					perms = append(perms, pm)
				}
			}
			if len(perms) == 0 {
				continue
			}
			perm = orPermissions(perms)
		}
		id := fmt.Sprintf("spiffe://%s/ns/%s/%s", p.TrustDomain, p.Namespace, p.AppID)
		rules.Policies[fmt.Sprintf("%02d-%s.%s", i, p.AppID, p.Namespace)] = &rbacv3.Policy{
			Permissions: []*rbacv3.Permission{perm},
			Principals: []*rbacv3.Principal{{Identifier: &rbacv3.Principal_Authenticated_{
				Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: exact(id, false)},
			}}},
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if rules.Action == rbacv3.RBAC_DENY && len(rules.Policies) == 0 {
		return nil, nil // nothing denied
	}
	return &rbacfilter.RBAC{Rules: rules}, nil
}

func actionWord(deny bool) string {
	if deny {
		return "deny"
	}
	return "allow"
}

// operationPermission is the permission of one operation: its path and,
// unless it lists "*", its verbs. It returns nil for an operation that
// lists no verb (it never decides), and the path prefix it covers.
func operationPermission(op access.Operation) (*rbacv3.Permission, string, error) {
	name := "/" + strings.TrimPrefix(strings.ToLower(op.Name), "/")
	prefix := opPrefix(op.Name)
	var paths []*rbacv3.Permission
	switch {
	case name == "/**" || name == "/":
		paths = append(paths, urlPath(prefixMatch("/")))
	case strings.HasSuffix(name, "/**") && !strings.Contains(strings.TrimSuffix(name, "/**"), "*"):
		paths = append(paths, urlPath(prefixMatch(strings.TrimSuffix(name, "**"))))
	case strings.Contains(name, "*"):
		return nil, prefix, fmt.Errorf("name %q: only a trailing /** wildcard has an exact url_path equivalent", op.Name)
	default:
		// A name without wildcard also matches every deeper path.
		base := strings.TrimSuffix(name, "/")
		paths = append(paths, urlPath(exact(base, true)), urlPath(prefixMatch(base+"/")))
	}
	perm := orPermissions(paths)
	if len(op.HTTPVerb) == 0 {
		return nil, prefix, nil
	}
	if slices.Contains(op.HTTPVerb, "*") {
		return perm, prefix, nil
	}
	var verbs []*rbacv3.Permission
	for _, v := range op.HTTPVerb {
		verbs = append(verbs, &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: &routev3.HeaderMatcher{
			Name:                 ":method",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: exact(v, false)},
		}}})
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{
		Rules: []*rbacv3.Permission{perm, orPermissions(verbs)},
	}}}, prefix, nil
}

// opPrefix is the literal path prefix an operation name covers.
func opPrefix(name string) string {
	n := "/" + strings.TrimPrefix(strings.ToLower(name), "/")
	if i := strings.IndexByte(n, '*'); i >= 0 {
		n = n[:i]
	}
	return strings.TrimSuffix(n, "/")
}

// overlaps reports whether one prefix covers the other (segment-wise).
func overlaps(a, b string) bool {
	within := func(x, y string) bool { return x == y || y == "" || strings.HasPrefix(x, y+"/") }
	return within(a, b) || within(b, a)
}

func orPermissions(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

func urlPath(m *matcherv3.StringMatcher) *rbacv3.Permission {
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: m},
	}}}
}

// exact and prefixMatch build string matchers; paths of HTTP apps match
// case-insensitively, as Dapr's operations do.
func exact(s string, ignoreCase bool) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}, IgnoreCase: ignoreCase}
}

func prefixMatch(s string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: s}, IgnoreCase: true}
}
