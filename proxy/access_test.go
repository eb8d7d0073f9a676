package proxy

import (
	"net/http"
	"net/url"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/identity/access"
)

const fuzzPolicy = `
defaultAction: deny
trustDomain: public
policies:
- appId: app-a
  defaultAction: deny
  trustDomain: public
  namespace: default
  operations:
  - name: /public
    httpVerb: ['*']
    action: allow
  - name: /admin
    httpVerb: ['*']
    action: deny
  - name: /api/*/items
    httpVerb: ['GET']
    action: allow
  - name: /files/**
    httpVerb: ['GET']
    action: allow
`

// FuzzAccessDecisionIsTheDeliveredPath checks access-control point 3: for
// any request target, the decision the callee makes equals the decision on
// the path the app actually receives, after both hops' encoding and
// decoding.
func FuzzAccessDecisionIsTheDeliveredPath(f *testing.F) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(fuzzPolicy), &n); err != nil {
		f.Fatal(err)
	}
	cfg, err := access.Decode(n.Content[0])
	if err != nil {
		f.Fatal(err)
	}
	m, err := access.Compile(cfg, true)
	if err != nil {
		f.Fatal(err)
	}
	caller := &access.Caller{TrustDomain: "public", Namespace: "default", AppID: "app-a"}
	decide := func(op string) access.Decision {
		return m.Decide(access.Request{Caller: caller, CallerID: "spiffe://public/ns/default/app-a", Operation: op, Verb: "GET"})
	}
	for _, s := range []string{"public", "admin%2F..%2Fpublic", "public%2F..%2Fadmin", "PUBLIC/x", "a//b/../admin", "api/x/items", "files/%2e%2e/admin", ";x/admin", "admin;x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI("/v1.0/invoke/app-b/method/" + raw)
		if err != nil {
			return // the server answers 400 before any decision
		}
		inv, err := ParseInvocation(&http.Request{Method: http.MethodGet, URL: u, Header: http.Header{}}, "default")
		if err != nil {
			return // refused before forwarding
		}
		// Caller → callee: the method travels as an escaped path.
		hop := &url.URL{}
		setPath(hop, inv.Method, "")
		atCallee, err := url.ParseRequestURI(hop.EscapedPath())
		if err != nil {
			t.Fatalf("%q: the caller sent an unparsable path %q", raw, hop.EscapedPath())
		}
		op, err := NormalizeMethod(atCallee.Path)
		if err != nil {
			t.Fatalf("%q: the callee refuses the caller's path %q: %v", raw, atCallee.Path, err)
		}
		decided := decide(op)
		// Callee → app.
		toApp := &url.URL{}
		setPath(toApp, op, "")
		atApp, err := url.ParseRequestURI(toApp.EscapedPath())
		if err != nil {
			t.Fatalf("%q: unparsable path to the app %q", raw, toApp.EscapedPath())
		}
		delivered := atApp.Path[1:]
		if got := decide(delivered); got != decided {
			t.Fatalf("%q: decided %+v on %q, but the app receives %q, decided %+v", raw, decided, op, delivered, got)
		}
		if op != inv.Method {
			t.Fatalf("%q: caller forwarded %q, callee decided on %q", raw, inv.Method, op)
		}
	})
}
