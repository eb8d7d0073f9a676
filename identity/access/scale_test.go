package access

import (
	"fmt"
	"testing"
)

// manyOperations returns a policy with n operations of distinct names:
// ten services of n/10 siblings each, so a sibling scan would show, with
// some trailing "*", "**" and glob names, and mixed verbs and actions.
func manyOperations(n int) Policy {
	verbs := [][]string{{"GET"}, {"POST", "PUT"}, {"*"}, {"DELETE", "GET", "PATCH"}}
	p := Policy{AppID: "caller", TrustDomain: "public", Namespace: "default", DefaultAction: "deny"}
	p.Operations = make([]Operation, n)
	for i := range p.Operations {
		name := fmt.Sprintf("/svc%d/res%d", i%10, i)
		switch {
		case i%11 == 0:
			name += "/**"
		case i%7 == 0:
			name += "/*"
		case i%101 == 0:
			name += "-*"
		}
		action := ActionAllow
		if i%3 == 0 {
			action = ActionDeny
		}
		p.Operations[i] = Operation{Name: name, HTTPVerb: verbs[i%len(verbs)], Action: action}
	}
	return p
}

func BenchmarkCompileOperations(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		c := &Config{DefaultAction: "deny", Policies: []Policy{manyOperations(n)}}
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Compile(c, true); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecideManyOperations decides against 100,000 operations, 10,000
// siblings under each service: the literal sibling is looked up, and only
// the wildcard siblings before it (99 globs here) are tried, not all 10,000.
func BenchmarkDecideManyOperations(b *testing.B) {
	m := mustCompile(b, &Config{DefaultAction: "deny", Policies: []Policy{manyOperations(100_000)}}, true)
	r := Request{Caller: caller("public", "default", "caller"), Operation: "svc8/res99998", Verb: "GET"}
	b.ReportAllocs()
	for b.Loop() {
		m.Decide(r)
	}
}

// TestCompileManyOperations compiles 100,000 operations and checks that
// sampled ones decide as written: the trie's indexes (bySeg, wild) give
// what a scan of the siblings in config order gives.
func TestCompileManyOperations(t *testing.T) {
	const n = 100_000
	p := manyOperations(n)
	m := mustCompile(t, &Config{DefaultAction: "deny", Policies: []Policy{p}}, true)
	c := caller("public", "default", "caller")
	tests := []struct {
		op, verb  string
		wantOp    string // "" when no operation matches
		wantAllow bool
	}{
		{"svc1/res1", "PUT", "/svc1/res1", true},                // verbs [POST PUT]
		{"svc1/res1", "GET", "/svc1/res1", false},               // GET not listed: the app default denies
		{"svc2/res2", "PUT", "/svc2/res2", true},                // [*]
		{"svc3/res3", "PATCH", "/svc3/res3", false},             // deny
		{"svc0/res0/a/b", "GET", "/svc0/res0/**", false},        // "**", deny
		{"svc7/res7", "DELETE", "/svc7/res7/*", true},           // "/*" matches one segment less
		{"svc7/res7/x", "DELETE", "/svc7/res7/*", true},         // and one more
		{"svc7/res7/x/y", "DELETE", "", false},                  // not two
		{"svc1/res101-abc", "PUT", "/svc1/res101-*", true},      // a glob among 10,000 siblings
		{"svc8/res99998", "GET", "/svc8/res99998", true},        // the last allowed one
		{"svc8/res99998/deeper", "GET", "/svc8/res99998", true}, // a name without wildcard matches below it
		{"svc9/res100000", "GET", "", false},                    // none
		{"SVC2/Res54322", "PUT", "/svc2/res54322", true},        // HTTP: names compare without case
	}
	for _, tt := range tests {
		d := m.Decide(Request{Caller: c, Operation: tt.op, Verb: tt.verb})
		if d.Operation != tt.wantOp || d.Allowed != tt.wantAllow {
			t.Errorf("%s %s: matched %q allowed %v, want %q %v (rule %s)", tt.verb, tt.op, d.Operation, d.Allowed, tt.wantOp, tt.wantAllow, d.Rule)
		}
	}
}
