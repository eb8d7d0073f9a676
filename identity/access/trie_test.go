package access

import (
	"fmt"
	"strings"
	"testing"
)

// TestOperationMatchingTable checks every row of contract §4.5's table, on a
// gRPC app so that names compare case-sensitively as in the trie itself.
func TestOperationMatchingTable(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		want     map[string]string // request -> matched pattern, "" none
	}{
		{"trailing single wildcard", []string{"/a/*"},
			map[string]string{"/a": "/a/*", "/a/b": "/a/*", "/a/b/c": "", "/ab": ""}},
		{"trailing multi wildcard", []string{"/a/**"},
			map[string]string{"/a": "/a/**", "/a/b": "/a/**", "/a/b/c": "/a/**"}},
		{"prefix rule", []string{"/a"},
			map[string]string{"/a": "/a", "/a/b": "/a", "/a/b/c": "/a", "/ab": "", "/A": ""}},
		{"shorter prefix wins", []string{"/a", "/a/b"},
			map[string]string{"/a/b": "/a"}},
		{"root single wildcard", []string{"/*"},
			map[string]string{"/x": "/*", "/": "/*", "/x/y": ""}},
		{"root multi wildcard", []string{"/**"},
			map[string]string{"/x": "/**", "/x/y": "/**", "/": "/**"}},
		{"glob segment", []string{"/a*"},
			map[string]string{"/a": "/a*", "/abc": "/a*", "/abc/d": "/a*", "/b": ""}},
		{"wildcard sibling first", []string{"/*", "/foo"},
			map[string]string{"/foo": "/*"}},
		{"literal sibling first", []string{"/foo", "/*"},
			map[string]string{"/foo": "/foo", "/bar": "/*"}},
		{"single wildcard mid-name never matches", []string{"/a/*/c"},
			map[string]string{"/a/b/c": ""}},
		{"multi wildcard mid-name is one segment", []string{"/op1/**/a"},
			map[string]string{"/op1/x/a": "/op1/**/a", "/op1/x/y/a": "", "/op1/a": "", "/op1": ""}},
		{"mixed", []string{"/op7/a/b/*", "/op7/a/b/c/f", "/op7/a/b*", "/op7/c/**"},
			map[string]string{
				"/op7/a/b/c":   "/op7/a/b/*",
				"/op7/a/b/c/d": "",
				"/op7/a/b/c/f": "/op7/a/b/c/f",
				"/op7/a/bc":    "/op7/a/b*",
				"/op7/c/d/e":   "/op7/c/**",
				"/op7/a/b":     "/op7/a/b/*",
			}},
	}
	for _, tt := range tests {
		// With fillers first, the root has more than indexAbove children
		// and is searched through its indexes, in the same config order.
		for _, fillers := range []int{0, 2 * indexAbove} {
			t.Run(fmt.Sprintf("%s/%d fillers", tt.name, fillers), func(t *testing.T) {
				p := Policy{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "deny"}
				for i := range fillers {
					p.Operations = append(p.Operations, Operation{Name: fmt.Sprintf("/filler%d", i), Action: "allow"})
				}
				for _, n := range tt.patterns {
					p.Operations = append(p.Operations, Operation{Name: n, Action: "allow"})
				}
				m := mustCompile(t, &Config{DefaultAction: "deny", Policies: []Policy{p}}, false)
				for req, want := range tt.want {
					for _, op := range []string{strings.TrimPrefix(req, "/"), req} {
						d := m.Decide(Request{Caller: caller("public", "default", "app1"), Operation: op})
						if d.Operation != want {
							t.Errorf("%v: %q matched %q, want %q", tt.patterns, op, d.Operation, want)
						}
						if d.Allowed != (want != "") {
							t.Errorf("%v: %q allowed = %v, want %v", tt.patterns, op, d.Allowed, want != "")
						}
					}
				}
			})
		}
	}
}

// TestLiteralStarInRequest: a "*" in the called method is not a wildcard
// (contract §4.5); it only equals a "*" pattern segment.
func TestLiteralStarInRequest(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		op       string
		want     string
	}{
		{"star segment passed mid-path", []string{"/a/*"}, "a/*/c", ""},
		{"star segment at the end", []string{"/a/*"}, "a/*", "/a/*"},
		{"literal pattern not a wildcard", []string{"/a/b"}, "a/*", ""},
		{"star inside a segment", []string{"/ab"}, "a*", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{AppID: "app1", TrustDomain: "public", Namespace: "default"}
			for _, n := range tt.patterns {
				p.Operations = append(p.Operations, Operation{Name: n, Action: "allow"})
			}
			m := mustCompile(t, &Config{DefaultAction: "deny", Policies: []Policy{p}}, false)
			if got := m.Decide(Request{Caller: caller("public", "default", "app1"), Operation: tt.op}).Operation; got != tt.want {
				t.Errorf("%q matched %q, want %q", tt.op, got, tt.want)
			}
		})
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		p, s string
		want bool
	}{
		{"a*", "a", true},
		{"a*", "abc", true},
		{"a*", "ba", false},
		{"*c", "abc", true},
		{"*c", "abd", false},
		{"a*d", "ad", true},
		{"a*d", "abcd", true},
		{"a*d", "abcde", false},
		{"*", "", true},
		{"***", "", true},
		{"a**b", "ab", true},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYc", true},
		{"a*b*c", "acb", false},
		{"abc", "abc", true},
		{"", "", true},
		{"", "a", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s~%s", tt.p, tt.s), func(t *testing.T) {
			if got := glob(tt.p, tt.s); got != tt.want {
				t.Errorf("glob(%q, %q) = %v, want %v", tt.p, tt.s, got, tt.want)
			}
		})
	}
}

// TestGlobExhaustive compares glob with the textbook dynamic-programming
// definition of '*' matching for every pattern over {a, b, *} and every
// string over {a, b, *} up to length 4.
func TestGlobExhaustive(t *testing.T) {
	words := func(alpha string, max int) []string {
		out := []string{""}
		for prev := []string{""}; max > 0; max-- {
			var next []string
			for _, w := range prev {
				for _, c := range alpha {
					next = append(next, w+string(c))
				}
			}
			out = append(out, next...)
			prev = next
		}
		return out
	}
	for _, p := range words("ab*", 4) {
		for _, s := range words("ab*", 4) {
			if got, want := glob(p, s), globDP(p, s); got != want {
				t.Errorf("glob(%q, %q) = %v, want %v", p, s, got, want)
			}
		}
	}
}

// globDP: m[i][j] says s[:i] matches p[:j].
func globDP(p, s string) bool {
	m := make([][]bool, len(s)+1)
	for i := range m {
		m[i] = make([]bool, len(p)+1)
	}
	m[0][0] = true
	for j := 1; j <= len(p) && p[j-1] == '*'; j++ {
		m[0][j] = true
	}
	for i := 1; i <= len(s); i++ {
		for j := 1; j <= len(p); j++ {
			switch {
			case p[j-1] == '*':
				m[i][j] = m[i][j-1] || m[i-1][j]
			case p[j-1] == s[i-1]:
				m[i][j] = m[i-1][j-1]
			}
		}
	}
	return m[len(s)][len(p)]
}

func TestNormalize(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"/", ""},
		{"a", "a"},
		{"/a/b", "a/b"},
		{"a//b", "a/b"},
		{"a/b/", "a/b"},
		{"admin/../public", "public"},
		{"../../etc", "etc"},
		{"./a/./b", "a/b"},
		{"//a", "a"},
		{"..", ""},
		{"a/..", ""},
		{"a.b/..c", "a.b/..c"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := normalize(tt.in); got != tt.want {
				t.Errorf("normalize(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}
