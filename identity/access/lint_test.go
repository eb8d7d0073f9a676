package access

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestLint(t *testing.T) {
	ops := func(names ...string) []Operation {
		var out []Operation
		for _, n := range names {
			out = append(out, Operation{Name: n, HTTPVerb: []string{"GET"}, Action: "allow"})
		}
		return out
	}
	config := func(o []Operation) *Config {
		return &Config{DefaultAction: "deny", Policies: []Policy{{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "deny", Operations: o}}}
	}
	const op = "accessControl.policies[0].operations"
	tests := []struct {
		name   string
		config *Config
		want   []string
	}{
		{"nil", nil, nil},
		{"clean", config(append([]Operation{{Name: "/any", HTTPVerb: []string{"*", "DELETE", "PATCH", "OPTIONS", "HEAD", "TRACE", "CONNECT", "PUT", "POST"}, Action: "deny"}},
			ops("/foo", "/*", "/a/b", "/a/c/**", "/op7/a/b/*", "/op7/a/b/c/f", "/op7/a/b*", "/op7/c/**", "/a/x/*", "/a/x/**")...)), nil},
		{"root wildcard shadows later names", config(ops("/*", "/any", "/a/b")), []string{
			op + `[1]: shadowed by operations[0] "/*", which comes first and matches the same calls`,
		}},
		{"star mid-name", config(ops("/a/*/c")), []string{
			op + `[0].name: "/a/*/c": a "*" segment before the end never matches, so this operation never applies ("**" there matches one segment)`,
		}},
		{"double star mid-name", config(ops("/op1/**/a")), []string{
			op + `[0].name: "/op1/**/a": a "**" before the end matches exactly one segment, not several`,
		}},
		{"earlier wildcard sibling", config(ops("/*", "/foo")), []string{
			op + `[1]: shadowed by operations[0] "/*", which comes first and matches the same calls`,
		}},
		{"earlier glob sibling", config(ops("/a*", "/abc", "/b/**", "/b/*")), []string{
			op + `[1]: shadowed by operations[0] "/a*", which comes first and matches the same calls`,
			op + `[3]: shadowed by operations[2] "/b/**", which comes first and matches the same calls`,
		}},
		{"shorter prefix first", config(ops("/a", "/a/b", "/a/*")), []string{
			op + `[1]: shadowed by operations[0] "/a": a shorter name also matches every path below it, whatever the order`,
			op + `[2]: shadowed by operations[0] "/a": a shorter name also matches every path below it, whatever the order`,
		}},
		{"root multi wildcard first", config(ops("/**", "/x/y")), []string{
			op + `[1]: shadowed by operations[0] "/**", which comes first and matches the same calls`,
		}},
		{"glob prefix first", config(ops("/a*", "/abc/d")), []string{
			op + `[1]: shadowed by operations[0] "/a*", which comes first and matches the same calls`,
		}},
		{"glob prefix later is not shadowing", config(ops("/abc/d", "/a*")), nil},
		{"shorter prefix later", config(ops("/a/b/c", "/a/b")), []string{
			op + `[0]: shadowed by operations[1] "/a/b": a shorter name also matches every path below it, whatever the order`,
		}},
		{"duplicate", config(ops("/x", "x")), []string{
			op + `[1]: duplicate of operations[0] "/x": the first one wins and this one is ignored`,
		}},
		{"duplicate on HTTP only", config(ops("/Orders", "/orders")), []string{
			op + `[1]: duplicate of operations[0] "/Orders": the first one wins and this one is ignored on HTTP apps, where names are compared without regard to case`,
		}},
		{"verbs", config([]Operation{{Name: "/x", HTTPVerb: []string{"post", "Get", "PROPFIND", "NONE", "GET"}, Action: "allow"}}), []string{
			op + `[0].httpVerb[0]: "post": verbs are compared case-sensitively with upper-case names, so this never matches (write "POST")`,
			op + `[0].httpVerb[1]: "Get": verbs are compared case-sensitively with upper-case names, so this never matches (write "GET")`,
			op + `[0].httpVerb[2]: "PROPFIND" is not a verb Dapr knows, so it never matches (Dapr treats other methods as POST)`,
			op + `[0].httpVerb[3]: "NONE" never matches: verbs are looked up only for calls that have one`,
		}},
		{"operation name and action", config([]Operation{{Name: "/a/", Action: "allow"}, {Name: "", Action: "allow"}, {Name: "/b/../c", Action: "deny"}, {Name: "/d"}}), []string{
			op + `[0].name: "/a/" is not a clean path (trailing '/', '//', '.' or '..'); methods are cleaned before matching, so it may never match`,
			op + `[1].name: empty: it matches only the root path "/"`,
			op + `[2].name: "/b/../c" is not a clean path (trailing '/', '//', '.' or '..'); methods are cleaned before matching, so it may never match`,
			op + `[3].action: empty: denies (as Dapr's runtime does, though Dapr's docs say allow); write allow or deny`,
		}},
		{"policies", &Config{Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default"},
			{AppID: "app2"},
			{AppID: "app1", TrustDomain: "Public", Namespace: "default"},
			{TrustDomain: "public", Namespace: "default"},
		}}, []string{
			`accessControl.defaultAction: unset while policies exist: Skein denies calls no policy allows (Dapr's documented rule); Dapr's runtime would allow them`,
			`accessControl.policies[1].trustDomain: missing: Dapr refuses the whole accessControl without it`,
			`accessControl.policies[1].namespace: missing: Dapr refuses the whole accessControl without it`,
			`accessControl.policies[2].trustDomain: "Public" is not a SPIFFE trust domain, so no caller ever matches this policy`,
			`accessControl.policies[0]: ignored: policies[2] has the same appId and namespace and replaces it`,
			`accessControl.policies[3].appId: missing: Dapr refuses the whole accessControl without it`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Lint(tt.config)); diff != "" {
				t.Errorf("Lint (-want +got):\n%s", diff)
			}
		})
	}
}

// TestLintExamplesClean: the contract's example configurations are clean.
func TestLintExamplesClean(t *testing.T) {
	for name, doc := range map[string]string{"A": exampleA, "B": exampleB, "C": exampleC, "D": exampleD} {
		t.Run(name, func(t *testing.T) {
			if got := Lint(mustParse(t, doc)); len(got) != 0 {
				t.Errorf("Lint = %q, want none", got)
			}
		})
	}
}
