package access

import (
	"strings"
	"testing"
)

func TestRBACDecide(t *testing.T) {
	const orders = "spiffe://public/ns/default/orders"
	allow := &RBAC{Action: ActionAllow, Policies: []RBACPolicy{
		{Name: "orders-writes",
			Principals:  []Principal{{ID: &StringMatch{Exact: orders}}},
			Permissions: []Permission{{And: []Permission{{Path: &StringMatch{Prefix: "/items/", IsPrefix: true}}, {Method: "POST"}}}}},
		{Name: "prod-reads",
			Principals:  []Principal{{ID: &StringMatch{Prefix: "SPIFFE://public/ns/prod/", IsPrefix: true, IgnoreCase: true}}},
			Permissions: []Permission{{Or: []Permission{{Path: &StringMatch{Exact: "/health"}}, {Method: "GET"}}}}},
		{Name: "anyone-public",
			Principals:  []Principal{{Any: true}},
			Permissions: []Permission{{Path: &StringMatch{Prefix: "/public", IsPrefix: true}}}},
	}}
	deny := &RBAC{Action: ActionDeny, Policies: []RBACPolicy{{Name: "no-admin",
		Principals: []Principal{{Or: []Principal{{ID: &StringMatch{IsPrefix: true}}}}}, Permissions: []Permission{{Path: &StringMatch{Prefix: "/admin", IsPrefix: true}}}}}}
	for _, tc := range []struct {
		name     string
		rbac     *RBAC
		caller   string
		op, verb string
		allowed  bool
		wantRule string
	}{
		{"allow policy", allow, orders, "items/1", "POST", true, "rbac policy orders-writes"},
		{"and needs both", allow, orders, "items/1", "GET", false, "rbac default"},
		{"exact path", allow, "spiffe://public/ns/prod/web", "health", "PUT", true, "rbac policy prod-reads"},
		{"ignore case principal", allow, "spiffe://public/ns/prod/web", "x", "GET", true, "rbac policy prod-reads"},
		{"other namespace", allow, "spiffe://public/ns/dev/web", "x", "GET", false, "rbac default"},
		{"any principal, no identity", allow, "", "public/x", "GET", true, "rbac policy anyone-public"},
		{"no identity never matches an id", allow, "", "health", "GET", false, "rbac default"},
		{"leading slash in operation", allow, orders, "/items/2", "POST", true, "rbac policy orders-writes"},
		{"deny match", deny, orders, "admin/x", "GET", false, "rbac policy no-admin"},
		{"deny: unauthenticated does not match", deny, "", "admin/x", "GET", true, "rbac default"},
		{"deny: no match allows", deny, orders, "x", "GET", true, "rbac default"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompileRBAC(tc.rbac)
			if err != nil {
				t.Fatal(err)
			}
			d := m.Decide(Request{CallerID: tc.caller, Operation: tc.op, Verb: tc.verb})
			if d.Allowed != tc.allowed || d.Denied == tc.allowed || d.Rule != tc.wantRule {
				t.Errorf("Decide = %+v, want allowed %v by %q", d, tc.allowed, tc.wantRule)
			}
		})
	}
	m, _ := CompileRBAC(allow)
	req := Request{CallerID: orders, Operation: "items/1", Verb: "POST"}
	if n := testing.AllocsPerRun(100, func() { m.Decide(req) }); n != 0 {
		t.Errorf("Decide allocates %v times", n)
	}
	var none *RBACMatcher
	if d := none.Decide(req); !d.Allowed {
		t.Errorf("nil matcher: %+v", d)
	}
}

func TestRBACValidate(t *testing.T) {
	for _, tc := range []struct {
		rbac *RBAC
		want string
	}{
		{&RBAC{Action: "log"}, "action"},
		{&RBAC{Action: ActionAllow, Policies: []RBACPolicy{{Name: "p", Principals: []Principal{{Any: true}}}}}, `policies["p"].permissions: at least one`},
		{&RBAC{Action: ActionAllow, Policies: []RBACPolicy{{Name: "p", Principals: []Principal{{}}, Permissions: []Permission{{Any: true, Method: "GET"}}}}}, `principals[0]: exactly one`},
		{&RBAC{Action: ActionAllow, Policies: []RBACPolicy{{Name: "p", Principals: []Principal{{Any: true}}, Permissions: []Permission{{Or: []Permission{{}}}}}}}, `permissions[0].or_rules[0]: exactly one`},
	} {
		if _, err := CompileRBAC(tc.rbac); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CompileRBAC(%+v) = %v, want an error mentioning %q", tc.rbac, err, tc.want)
		}
	}
}
