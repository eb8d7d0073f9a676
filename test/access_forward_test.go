package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// forwardPolicy lets app-a GET /orders (and below) and POST /dav; nothing
// else.
const forwardPolicy = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app-a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /orders
        httpVerb: ['GET']
        action: allow
      - name: /dav
        httpVerb: ['POST']
        action: allow
`

// TestAccessDecidesWhatTheAppReceives covers issue 11 point 4, bullet 8:
// the callee decides on the very path and verb its app receives. As in
// Dapr, an HTTP app's operations match without regard to case and the app
// gets the path in the case it was sent; the verb is Dapr's enum name, so
// "get" is decided and delivered as GET and PROPFIND as POST.
func TestAccessDecidesWhatTheAppReceives(t *testing.T) {
	m := newMesh(t)
	cfg := filepath.Join(t.TempDir(), "callee.yaml")
	if err := os.WriteFile(cfg, []byte(forwardPolicy), 0o600); err != nil {
		t.Fatal(err)
	}
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort, "--config", cfg)
	a := m.sidecar("app-a", 0)
	tests := []struct {
		name, verb, method string
		want               int
		appVerb, appPath   string // what the app receives when allowed
		deniedVerb         string // the verb a denial names
	}{
		{name: "as written", verb: "GET", method: "orders/7", want: 200, appVerb: "GET", appPath: "/orders/7"},
		{name: "other case, delivered as sent", verb: "GET", method: "ORDERS/Item-7", want: 200, appVerb: "GET", appPath: "/ORDERS/Item-7"},
		{name: "lower-case verb decided and delivered upper-cased", verb: "get", method: "Orders", want: 200, appVerb: "GET", appPath: "/Orders"},
		{name: "lower-case verb not allowed", verb: "post", method: "orders", want: 403, deniedVerb: "POST"},
		{name: "verb outside Dapr's enum is POST", verb: "PROPFIND", method: "dav/x", want: 200, appVerb: "POST", appPath: "/dav/x"},
		{name: "verb outside Dapr's enum denied as POST", verb: "PROPFIND", method: "orders", want: 403, deniedVerb: "POST"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := appRequests(t, bPort)
			resp, b := do(t, newRequest(t, tt.verb, a.invokeURL("app-b", tt.method), nil))
			if resp.StatusCode != tt.want {
				t.Fatalf("%s %s: %d, want %d: %s", tt.verb, tt.method, resp.StatusCode, tt.want, b)
			}
			if tt.want != 200 {
				if n := appRequests(t, bPort) - before; n != 0 {
					t.Errorf("the app was called %d times for a denied call", n)
				}
				if e := decodeError(t, resp, b); e.reason() != "ACCESS_DENIED" || !strings.HasSuffix(e.Message, "verb: "+tt.deniedVerb) {
					t.Errorf("denial %s, want ACCESS_DENIED deciding on verb %s", b, tt.deniedVerb)
				}
				return
			}
			if e := decodeEcho(t, b); e.Method != tt.appVerb || e.Path != tt.appPath {
				t.Errorf("app received %s %s, want %s %s (what was decided)", e.Method, e.Path, tt.appVerb, tt.appPath)
			}
		})
	}
}
