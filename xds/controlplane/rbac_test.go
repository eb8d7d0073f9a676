package controlplane

import (
	"strings"
	"testing"

	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"

	"github.com/skeinmesh/skein/identity/access"
)

func TestTranslateAccess(t *testing.T) {
	caller := func(app, def string, ops ...access.Operation) access.Policy {
		return access.Policy{AppID: app, Namespace: "default", TrustDomain: "public", DefaultAction: def, Operations: ops}
	}
	op := func(name, action string, verbs ...string) access.Operation {
		return access.Operation{Name: name, Action: action, HTTPVerb: verbs}
	}
	cases := []struct {
		name     string
		cfg      *access.Config
		action   rbacv3.RBAC_Action
		policies int
		none     bool   // no filter
		err      string // refused, naming this
	}{
		{name: "nil", cfg: nil, none: true},
		{name: "global allow, no policies", cfg: &access.Config{DefaultAction: "allow"}, none: true},
		{name: "global deny, no policies: deny all", cfg: &access.Config{DefaultAction: "deny"}, action: rbacv3.RBAC_ALLOW, policies: 0},
		{name: "implied deny, caller allowed by default", cfg: &access.Config{Policies: []access.Policy{caller("a", "allow")}}, action: rbacv3.RBAC_ALLOW, policies: 1},
		{name: "global deny, allowed ops", cfg: &access.Config{DefaultAction: "deny", Policies: []access.Policy{caller("a", "deny", op("/x/**", "allow", "GET"), op("/y", "allow", "*"))}}, action: rbacv3.RBAC_ALLOW, policies: 1},
		{name: "global allow, caller denied", cfg: &access.Config{DefaultAction: "allow", Policies: []access.Policy{caller("a", "deny")}}, action: rbacv3.RBAC_DENY, policies: 1},
		{name: "global allow, denied op", cfg: &access.Config{DefaultAction: "allow", Policies: []access.Policy{caller("a", "allow", op("/admin", "deny", "POST"))}}, action: rbacv3.RBAC_DENY, policies: 1},
		{name: "global allow, caller allowed: nothing to deny", cfg: &access.Config{DefaultAction: "allow", Policies: []access.Policy{caller("a", "allow")}}, none: true},
		{name: "later policy replaces earlier", cfg: &access.Config{DefaultAction: "allow", Policies: []access.Policy{caller("a", "deny"), caller("a", "allow")}}, none: true},
		{name: "default allow with a deny op needs not_rule", cfg: &access.Config{DefaultAction: "deny", Policies: []access.Policy{caller("a", "allow", op("/admin", "deny", "*"))}}, err: "not_rule"},
		{name: "overlapping opposite ops", cfg: &access.Config{DefaultAction: "deny", Policies: []access.Policy{caller("a", "deny", op("/x/**", "allow", "*"), op("/x/admin", "deny", "*"))}}, err: "overlaps"},
		{name: "middle wildcard", cfg: &access.Config{DefaultAction: "deny", Policies: []access.Policy{caller("a", "deny", op("/x/*/y", "allow", "*"))}}, err: "trailing /**"},
		{name: "audit", cfg: &access.Config{Mode: "audit", DefaultAction: "deny"}, err: "audit"},
	}
	for _, c := range cases {
		r, err := translateAccess(c.cfg)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: err %v, want one naming %q", c.name, err, c.err)
			}
		case err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.none:
			if r != nil {
				t.Errorf("%s: got a filter %v, want none", c.name, r)
			}
		case r == nil:
			t.Errorf("%s: no filter", c.name)
		default:
			if r.Rules.Action != c.action || len(r.Rules.Policies) != c.policies {
				t.Errorf("%s: action %v with %d policies, want %v with %d", c.name, r.Rules.Action, len(r.Rules.Policies), c.action, c.policies)
			}
			if err := r.ValidateAll(); err != nil {
				t.Errorf("%s: invalid RBAC: %v", c.name, err)
			}
		}
	}
}

// TestOperationPermission checks the path matchers of operation names.
func TestOperationPermission(t *testing.T) {
	p, _, err := operationPermission(access.Operation{Name: "Orders", HTTPVerb: []string{"GET", "POST"}})
	if err != nil {
		t.Fatal(err)
	}
	and := p.GetAndRules().GetRules()
	if len(and) != 2 {
		t.Fatalf("want path AND verbs: %v", p)
	}
	paths := and[0].GetOrRules().GetRules()
	if len(paths) != 2 || paths[0].GetUrlPath().GetPath().GetExact() != "/orders" || paths[1].GetUrlPath().GetPath().GetPrefix() != "/orders/" ||
		!paths[0].GetUrlPath().GetPath().GetIgnoreCase() {
		t.Errorf("paths of a plain name: %v", paths)
	}
	if verbs := and[1].GetOrRules().GetRules(); len(verbs) != 2 || verbs[1].GetHeader().GetName() != ":method" || verbs[1].GetHeader().GetStringMatch().GetExact() != "POST" {
		t.Errorf("verbs: %v", verbs)
	}
	p, _, _ = operationPermission(access.Operation{Name: "/a/**", HTTPVerb: []string{"*"}})
	if p.GetUrlPath().GetPath().GetPrefix() != "/a/" {
		t.Errorf("trailing /**: %v", p)
	}
	if p, _, _ := operationPermission(access.Operation{Name: "/a"}); p != nil {
		t.Errorf("an operation without verbs never decides, got %v", p)
	}
}
