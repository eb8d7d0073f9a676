package access

import (
	"errors"
	"path"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var app1 = caller("public", "default", "app1")

func policy1(ops ...Operation) Policy {
	return Policy{AppID: "app1", TrustDomain: "public", Namespace: "default", Operations: ops}
}

func TestDefaults(t *testing.T) {
	noACL := Decision{Allowed: true, Rule: "no access control", Reason: reasonNoACL}
	tests := []struct {
		name   string
		config *Config
		caller *Caller
		want   Decision
		wantTD string
	}{
		{"nil config", nil, app1, noACL, "public"},
		{"empty config", &Config{}, app1, noACL, "public"},
		{"audit mode alone is no ACL", &Config{Mode: "audit"}, app1, noACL, "public"},
		{"only trust domain allows everything", &Config{TrustDomain: "example.org"}, app1,
			Decision{Allowed: true, Level: "global", Rule: "global default", Reason: reasonNoPolicy}, "example.org"},
		{"empty policy list allows", &Config{TrustDomain: "public", Policies: []Policy{}}, nil,
			Decision{Allowed: true, Level: "global", Rule: "global default", Reason: reasonNoIdentity}, "public"},
		{"policies without global default deny (difference 3)", &Config{Policies: []Policy{policy1()}}, caller("public", "default", "app2"),
			Decision{Denied: true, Level: "global", Rule: "global default", Reason: reasonNoPolicy}, "public"},
		{"difference 3 without identity", &Config{Policies: []Policy{policy1()}}, nil,
			Decision{Denied: true, Level: "global", Rule: "global default", Reason: reasonNoIdentity}, "public"},
		{"global allow, any case", &Config{DefaultAction: "ALLOW", Policies: []Policy{policy1()}}, caller("public", "default", "app2"),
			Decision{Allowed: true, Level: "global", Rule: "global default", Reason: reasonNoPolicy}, "public"},
		{"global deny, any case", &Config{DefaultAction: "Deny"}, app1,
			Decision{Denied: true, Level: "global", Rule: "global default", Reason: reasonNoPolicy}, "public"},
		{"global allow without mTLS", &Config{DefaultAction: "allow", Policies: []Policy{policy1()}}, nil,
			Decision{Allowed: true, Level: "global", Rule: "global default", Reason: reasonNoIdentity}, "public"},
		{"caller without app ID", &Config{DefaultAction: "deny"}, caller("public", "default", ""),
			Decision{Denied: true, Level: "global", Rule: "global default", Reason: reasonNoAppID}, "public"},
		{"policy without operations: app default", &Config{DefaultAction: "deny", Policies: []Policy{{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "allow"}}}, app1,
			Decision{Allowed: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Reason: reasonNoOperation}, "public"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, tt.config, true)
			got := m.Decide(Request{Caller: tt.caller, Operation: "orders", Verb: "GET"})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
			if td := m.TrustDomain(); td != tt.wantTD {
				t.Errorf("TrustDomain() = %q, want %q", td, tt.wantTD)
			}
		})
	}
}

func TestNilMatcherAllows(t *testing.T) {
	var m *Matcher
	if d := m.Decide(Request{Operation: "x"}); !d.Allowed || d.Denied {
		t.Errorf("nil Matcher: %+v, want allowed", d)
	}
	if td := m.TrustDomain(); td != "public" {
		t.Errorf("nil Matcher TrustDomain() = %q", td)
	}
}

func TestDuplicates(t *testing.T) {
	tests := []struct {
		name   string
		config *Config
		op     string
		want   outcome
	}{
		{"later policy with same key replaces earlier", &Config{DefaultAction: "deny", Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "allow"},
			{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "deny"},
		}}, "x", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}},
		{"same app in another namespace is another policy", &Config{DefaultAction: "deny", Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "allow"},
			{AppID: "app1", TrustDomain: "public", Namespace: "other", DefaultAction: "deny"},
		}}, "x", outcome{Allowed: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}},
		{"first duplicate operation wins", &Config{DefaultAction: "deny", Policies: []Policy{policy1(
			Operation{Name: "/x", HTTPVerb: []string{"*"}, Action: "allow"},
			Operation{Name: "x", HTTPVerb: []string{"*"}, Action: "deny"},
		)}}, "x", outcome{Allowed: true, Level: "global", Rule: "operation /x verb *", Policy: "app1", Operation: "/x"}},
		{"first duplicate on HTTP regardless of case", &Config{DefaultAction: "deny", Policies: []Policy{policy1(
			Operation{Name: "/X", HTTPVerb: []string{"*"}, Action: "deny"},
			Operation{Name: "/x", HTTPVerb: []string{"*"}, Action: "allow"},
		)}}, "x", outcome{Denied: true, Level: "global", Rule: "operation /X verb *", Policy: "app1", Operation: "/X"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustCompile(t, tt.config, true).Decide(Request{Caller: app1, Operation: tt.op, Verb: "GET"})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCaseRules(t *testing.T) {
	c := &Config{DefaultAction: "deny", Policies: []Policy{policy1(
		Operation{Name: "/Orders/*", HTTPVerb: []string{"*"}, Action: "allow"},
		Operation{Name: "/Pay*", HTTPVerb: []string{"*"}, Action: "allow"},
	)}}
	tests := []struct {
		name   string
		isHTTP bool
		op     string
		want   string // matched operation
	}{
		{"HTTP lower", true, "orders/1", "/Orders/*"},
		{"HTTP upper", true, "ORDERS/1", "/Orders/*"},
		{"HTTP as written", true, "Orders/1", "/Orders/*"},
		{"HTTP glob", true, "PAYMENT", "/Pay*"},
		{"HTTP non-ASCII", true, "ORDERS/Ä", "/Orders/*"},
		{"gRPC as written", false, "Orders/1", "/Orders/*"},
		{"gRPC lower misses", false, "orders/1", ""},
		{"gRPC glob as written", false, "Payment", "/Pay*"},
		{"gRPC glob lower misses", false, "payment", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustCompile(t, c, tt.isHTTP).Decide(Request{Caller: app1, Operation: tt.op, Verb: "GET"})
			if d.Operation != tt.want || d.Allowed != (tt.want != "") {
				t.Errorf("%q: matched %q (allowed %v), want %q", tt.op, d.Operation, d.Allowed, tt.want)
			}
		})
	}
}

func TestVerbs(t *testing.T) {
	ops := []Operation{
		{Name: "/get", HTTPVerb: []string{"GET"}, Action: "allow"},
		{Name: "/lower", HTTPVerb: []string{"post"}, Action: "allow"},
		{Name: "/any", HTTPVerb: []string{"*"}, Action: "allow"},
		{Name: "/mixed", HTTPVerb: []string{"DELETE", "*"}, Action: "deny"},
		{Name: "/post", HTTPVerb: []string{"POST"}, Action: "allow"},
		{Name: "/none", HTTPVerb: []string{"NONE"}, Action: "allow"},
		{Name: "/noverbs", Action: "allow"},
	}
	withDefault := &Config{DefaultAction: "allow", Policies: []Policy{{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "deny", Operations: ops}}}
	noDefault := &Config{DefaultAction: "allow", Policies: []Policy{policy1(ops...)}}
	tests := []struct {
		name   string
		config *Config
		isHTTP bool
		op     string
		verb   string
		want   outcome
	}{
		{"listed", withDefault, true, "get", "GET", outcome{Allowed: true, Level: "app", Rule: "operation /get verb GET", Policy: "app1", Operation: "/get"}},
		{"sent lower-case is upper-cased", withDefault, true, "get", "get", outcome{Allowed: true, Level: "app", Rule: "operation /get verb GET", Policy: "app1", Operation: "/get"}},
		{"not listed", withDefault, true, "get", "POST", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/get"}},
		{"lower-case in config never matches", withDefault, true, "lower", "POST", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/lower"}},
		{"lower-case in config, lower-case sent", withDefault, true, "lower", "post", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/lower"}},
		{"star", withDefault, true, "any", "PATCH", outcome{Allowed: true, Level: "app", Rule: "operation /any verb *", Policy: "app1", Operation: "/any"}},
		{"listed verb before star", withDefault, true, "mixed", "DELETE", outcome{Denied: true, Level: "app", Rule: "operation /mixed verb DELETE", Policy: "app1", Operation: "/mixed"}},
		{"star after listed verbs", withDefault, true, "mixed", "GET", outcome{Denied: true, Level: "app", Rule: "operation /mixed verb *", Policy: "app1", Operation: "/mixed"}},
		{"unknown method counts as POST", withDefault, true, "post", "PROPFIND", outcome{Allowed: true, Level: "app", Rule: "operation /post verb POST", Policy: "app1", Operation: "/post"}},
		{"NONE uses the app default", withDefault, true, "any", "", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/any"}},
		{"NONE listed never matches", withDefault, true, "none", "", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/none"}},
		{"NONE sent as a method", withDefault, true, "any", "none", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/any"}},
		{"NONE without app default denies despite global allow", noDefault, true, "any", "", outcome{Denied: true, Level: "global", Rule: "app default (app1, unset: deny)", Policy: "app1", Operation: "/any"}},
		{"no verbs listed keeps the default", noDefault, true, "noverbs", "GET", outcome{Allowed: true, Level: "global", Rule: "global default", Policy: "app1", Operation: "/noverbs"}},
		{"gRPC ignores verbs", withDefault, false, "lower", "GET", outcome{Allowed: true, Level: "app", Rule: "operation /lower", Policy: "app1", Operation: "/lower"}},
		{"gRPC without verb", withDefault, false, "get", "", outcome{Allowed: true, Level: "app", Rule: "operation /get", Policy: "app1", Operation: "/get"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := mustCompile(t, tt.config, tt.isHTTP).Decide(Request{Caller: app1, Operation: tt.op, Verb: tt.verb})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Decide(%s %s) (-want +got):\n%s", tt.verb, tt.op, diff)
			}
		})
	}
}

func TestAudit(t *testing.T) {
	ops := []Operation{
		{Name: "/open", HTTPVerb: []string{"*"}, Action: "allow"},
		{Name: "/closed", HTTPVerb: []string{"*"}, Action: "deny"},
	}
	audited := Policy{AppID: "app1", TrustDomain: "public", Namespace: "default", Mode: "audit", DefaultAction: "deny", Operations: ops}
	auditedNoDefault := Policy{AppID: "app2", TrustDomain: "public", Namespace: "default", Mode: "audit", Operations: ops}
	enforced := Policy{AppID: "app3", TrustDomain: "public", Namespace: "default", Mode: "enforce", DefaultAction: "deny", Operations: ops}
	tests := []struct {
		name    string
		config  *Config
		caller  *Caller
		op      string
		want    outcome
		wantErr bool
	}{
		{"whole config: deny is audited", &Config{Mode: "audit", DefaultAction: "deny"}, app1, "x",
			outcome{Allowed: true, Denied: true, Audit: true, Level: "global", Rule: "global default"}, false},
		{"whole config: no identity audited", &Config{Mode: "audit", DefaultAction: "deny"}, nil, "x",
			outcome{Allowed: true, Denied: true, Audit: true, Level: "global", Rule: "global default"}, false},
		{"whole config: allow stays allow", &Config{Mode: "audit", DefaultAction: "allow"}, app1, "x",
			outcome{Allowed: true, Audit: true, Level: "global", Rule: "global default"}, false},
		{"whole config beats policy enforce", &Config{Mode: "audit", DefaultAction: "deny", Policies: []Policy{enforced}}, caller("public", "default", "app3"), "closed",
			outcome{Allowed: true, Denied: true, Audit: true, Level: "app", Rule: "operation /closed verb *", Policy: "app3", Operation: "/closed"}, false},
		{"enforce mode refuses", &Config{Mode: "enforce", DefaultAction: "deny"}, app1, "x",
			outcome{Denied: true, Level: "global", Rule: "global default"}, true},
		{"policy: its operation deny is audited", &Config{DefaultAction: "deny", Policies: []Policy{audited}}, app1, "closed",
			outcome{Allowed: true, Denied: true, Audit: true, Level: "app", Rule: "operation /closed verb *", Policy: "app1", Operation: "/closed"}, false},
		{"policy: its default deny is audited", &Config{DefaultAction: "deny", Policies: []Policy{audited}}, app1, "other",
			outcome{Allowed: true, Denied: true, Audit: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}, false},
		{"policy: its allow is marked audit", &Config{DefaultAction: "deny", Policies: []Policy{audited}}, app1, "open",
			outcome{Allowed: true, Audit: true, Level: "app", Rule: "operation /open verb *", Policy: "app1", Operation: "/open"}, false},
		{"policy: global default for its caller is enforced", &Config{DefaultAction: "deny", Policies: []Policy{auditedNoDefault}}, caller("public", "default", "app2"), "other",
			outcome{Denied: true, Level: "global", Rule: "global default", Policy: "app2"}, true},
		{"policy: other callers are enforced", &Config{DefaultAction: "deny", Policies: []Policy{audited}}, caller("public", "default", "app9"), "closed",
			outcome{Denied: true, Level: "global", Rule: "global default"}, true},
		{"policy: enforce mode refuses", &Config{DefaultAction: "deny", Policies: []Policy{enforced}}, caller("public", "default", "app3"), "closed",
			outcome{Denied: true, Level: "app", Rule: "operation /closed verb *", Policy: "app3", Operation: "/closed"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := mustCompile(t, tt.config, true).Check(Request{Caller: tt.caller, Operation: tt.op, Verb: "GET"})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Check (-want +got):\n%s", diff)
			}
			var denied *DeniedError
			if got := errors.As(err, &denied); got != tt.wantErr {
				t.Errorf("Check error = %v, want a *DeniedError: %v", err, tt.wantErr)
			}
		})
	}
}

func TestDeniedErrorText(t *testing.T) {
	tests := []struct {
		name string
		err  *DeniedError
		want string
	}{
		{"HTTP", &DeniedError{CallerID: "spiffe://public/ns/dapr-tests/allowlists-caller", Operation: "opDeny", Verb: "POST"},
			"access control policy has denied access to id: spiffe://public/ns/dapr-tests/allowlists-caller operation: opDeny verb: POST"},
		{"no verb", &DeniedError{CallerID: "spiffe://public/ns/dapr-tests/allowlists-caller", Operation: "httpToGrpcTest"},
			"access control policy has denied access to id: spiffe://public/ns/dapr-tests/allowlists-caller operation: httpToGrpcTest verb: NONE"},
		{"no caller", &DeniedError{Operation: "x", Verb: "GET"},
			"access control policy has denied access to id:  operation: x verb: GET"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error()\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestCheckErrorVerb(t *testing.T) {
	c := &Config{DefaultAction: "deny"}
	tests := []struct {
		name   string
		isHTTP bool
		verb   string
		want   string
	}{
		{"HTTP verb as Dapr names it", true, "post", "access control policy has denied access to id:  operation: a/b verb: POST"},
		{"HTTP unknown verb is POST", true, "PROPFIND", "access control policy has denied access to id:  operation: a/b verb: POST"},
		{"HTTP without verb", true, "", "access control policy has denied access to id:  operation: a/b verb: NONE"},
		{"gRPC app", false, "GET", "access control policy has denied access to id:  operation: a/b verb: NONE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := mustCompile(t, c, tt.isHTTP).Check(Request{Operation: "a/b", Verb: tt.verb})
			checkErr(t, err, tt.want)
			var denied *DeniedError
			if errors.As(err, &denied) && !denied.Decision.Denied {
				t.Errorf("DeniedError.Decision = %+v, want Denied", denied.Decision)
			}
		})
	}
}

func TestCallerFromID(t *testing.T) {
	tests := []struct {
		id      string
		want    *Caller
		wantErr bool
	}{
		{"spiffe://public/ns/default/app1", &Caller{TrustDomain: "public", Namespace: "default", AppID: "app1"}, false},
		{"spiffe://example.org/ns/prod/orders/extra", &Caller{TrustDomain: "example.org", Namespace: "prod", AppID: "orders"}, false},
		{"spiffe://public/ns/default", nil, true},
		{"spiffe://public/x/default/app1", nil, true},
		{"spiffe://public", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			got, err := CallerFromID(spiffeid.RequireFromString(tt.id))
			if (err != nil) != tt.wantErr {
				t.Fatalf("CallerFromID error = %v, want error %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrMalformedID) || !strings.HasPrefix(err.Error(), "malformed SPIFFE ID: ") {
					t.Errorf("error %q, want ErrMalformedID", err)
				}
				return
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("CallerFromID (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := CallerFromID(spiffeid.ID{}); !errors.Is(err, ErrMalformedID) {
		t.Errorf("zero ID: %v, want ErrMalformedID", err)
	}
}

// allocConfig is a typical callee policy: a few callers with exact,
// wildcard and verb rules.
var allocConfig = &Config{DefaultAction: "deny", Policies: []Policy{
	{AppID: "checkout", TrustDomain: "public", Namespace: "default", DefaultAction: "deny", Operations: []Operation{
		{Name: "/orders/create", HTTPVerb: []string{"POST"}, Action: "allow"},
		{Name: "/orders/*", HTTPVerb: []string{"GET"}, Action: "allow"},
		{Name: "/admin/**", HTTPVerb: []string{"*"}, Action: "deny"},
		{Name: "/health*", HTTPVerb: []string{"GET", "HEAD"}, Action: "allow"},
	}},
	{AppID: "billing", TrustDomain: "public", Namespace: "default", DefaultAction: "allow"},
}}

func TestDecideDoesNotAllocate(t *testing.T) {
	c := caller("public", "default", "checkout")
	tests := []struct {
		name        string
		isHTTP      bool
		r           Request
		wantAllowed bool
	}{
		{"allowed exact match", true, Request{Caller: c, CallerID: "spiffe://public/ns/default/checkout", Operation: "orders/create", Verb: "POST"}, true},
		{"allowed wildcard", true, Request{Caller: c, Operation: "orders/42", Verb: "GET"}, true},
		{"allowed glob", true, Request{Caller: c, Operation: "healthz", Verb: "HEAD"}, true},
		{"denied by operation", true, Request{Caller: c, Operation: "admin/users/1", Verb: "GET"}, false},
		{"denied by global default", true, Request{Caller: caller("public", "default", "other"), Operation: "orders/create", Verb: "POST"}, false},
		{"gRPC mixed case", false, Request{Caller: c, Operation: "orders/Create", Verb: ""}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, allocConfig, tt.isHTTP)
			if d := m.Decide(tt.r); d.Allowed != tt.wantAllowed {
				t.Fatalf("Decide = %+v, want allowed %v", d, tt.wantAllowed)
			}
			if n := testing.AllocsPerRun(100, func() { m.Decide(tt.r) }); n != 0 {
				t.Errorf("Decide allocates %v times per call, want 0", n)
			}
		})
	}
}

func BenchmarkDecide(b *testing.B) {
	m := mustCompile(b, allocConfig, true)
	c := caller("public", "default", "checkout")
	for _, bc := range []struct {
		name string
		r    Request
	}{
		{"exact", Request{Caller: c, Operation: "orders/create", Verb: "POST"}},
		{"wildcard", Request{Caller: c, Operation: "orders/42", Verb: "GET"}},
		{"mixed case", Request{Caller: c, Operation: "Orders/Create", Verb: "POST"}},
		{"unclean", Request{Caller: c, Operation: "orders//create/", Verb: "POST"}},
		{"no policy", Request{Caller: caller("public", "default", "other"), Operation: "orders/create", Verb: "POST"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				m.Decide(bc.r)
			}
		})
	}
}

// fuzzConfig holds every kind of pattern, for both protocols.
var fuzzConfig = &Config{DefaultAction: "deny", Policies: []Policy{
	{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "deny", Mode: "audit", Operations: []Operation{
		{Name: "/a/*", HTTPVerb: []string{"GET"}, Action: "allow"},
		{Name: "/b/**", HTTPVerb: []string{"*"}, Action: "allow"},
		{Name: "/c", HTTPVerb: []string{"POST"}, Action: "allow"},
		{Name: "/*", HTTPVerb: []string{"*"}, Action: "deny"},
		{Name: "/op1/**/x", Action: "allow"},
		{Name: "/op7/a/b/*", Action: "allow"},
		{Name: "/op7/a/b/c/f", Action: "deny"},
		{Name: "/op7/a/b*", Action: "allow"},
		{Name: "/Mixed/*Case*", Action: "allow"},
		{Name: "/a/*/c", Action: "allow"},
		{Name: "", Action: "allow"},
	}},
	{AppID: "app2", TrustDomain: "public", Namespace: "default", Operations: []Operation{
		{Name: "/**", HTTPVerb: []string{"GET"}, Action: "allow"},
	}},
}}

func FuzzDecide(f *testing.F) {
	for _, s := range []string{"", "/", "a", "a/b", "a/b/c", "b/x/y", "op1/q/x", "op7/a/b/c/f", "../a", "a//b/", "./c", "MIXED/xcasex", "a/*/c", "%2F", "a?b", "ä/ß"} {
		f.Add(s, "GET", "app1")
		f.Add(s, "", "app2")
	}
	ms := []*Matcher{mustCompile(f, fuzzConfig, true), mustCompile(f, fuzzConfig, false)}
	f.Fuzz(func(t *testing.T, op, verb, app string) {
		for _, m := range ms {
			r := Request{Caller: caller("public", "default", app), Operation: op, Verb: verb}
			d := m.Decide(r)
			if !d.Allowed && !d.Denied || d.Allowed && d.Denied && !d.Audit {
				t.Fatalf("Decide(%+v) = %+v: inconsistent", r, d)
			}
			if strings.ContainsFunc(op, func(c rune) bool { return c == '#' || c == '?' || c == '%' || c < 0x20 || c == 0x7f }) {
				continue
			}
			r.Operation = path.Clean("/" + op)[1:]
			if got := m.Decide(r); got != d {
				t.Fatalf("Decide(%q) = %+v, but Decide(%q) = %+v", op, d, r.Operation, got)
			}
		}
	})
}

// TestDecideConcurrent: a Matcher is shared by every request (run with -race).
func TestDecideConcurrent(t *testing.T) {
	m := mustCompile(t, allocConfig, true)
	r := Request{Caller: caller("public", "default", "checkout"), Operation: "Orders/Create", Verb: "post"}
	want := m.Decide(r)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if got := m.Decide(r); got != want {
					t.Errorf("Decide = %+v, want %+v", got, want)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestGRPCCallOnHTTPApp: a gRPC call (proxy mode) to an HTTP app matches
// its method case-sensitively and ignores the verb, as for a gRPC app.
func TestGRPCCallOnHTTPApp(t *testing.T) {
	c := &Config{DefaultAction: ActionDeny, TrustDomain: "public", Policies: []Policy{{
		AppID: "app1", DefaultAction: ActionDeny, TrustDomain: "public", Namespace: "default",
		Operations: []Operation{{Name: "/pkg.Svc/Get", HTTPVerb: []string{"GET"}, Action: ActionAllow}},
	}}}
	m := mustCompile(t, c, true)
	for _, tt := range []struct {
		op, verb string
		grpc     bool
		allowed  bool
	}{
		{"pkg.Svc/Get", "POST", true, true},   // the verb does not matter
		{"pkg.svc/get", "POST", true, false},  // nor does case-insensitivity apply
		{"pkg.svc/get", "GET", false, true},   // an HTTP call: both as before
		{"pkg.Svc/Get", "POST", false, false}, // an HTTP POST is not listed
	} {
		d := m.Decide(Request{Caller: app1, Operation: tt.op, Verb: tt.verb, GRPC: tt.grpc})
		if d.Allowed != tt.allowed {
			t.Errorf("%s %s grpc=%v: allowed %v, want %v (%s)", tt.verb, tt.op, tt.grpc, d.Allowed, tt.allowed, d.Reason)
		}
	}
	if _, err := m.Check(Request{Caller: app1, Operation: "pkg.Svc/Put", Verb: "POST", GRPC: true}); err == nil || !strings.Contains(err.Error(), "verb: NONE") {
		t.Errorf("denied gRPC call: %v, want verb NONE in the error", err)
	}
}
