package proxy

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/identity/access"
)

// TestPeerDecidesOnTheVerbTheAppReceives: whatever verb the calling
// sidecar sends, the callee decides access on the verb its app receives,
// Dapr's enum name (contract §1.4), so a peer sending "get" cannot pass a
// GET-only rule and reach the app as another verb.
func TestPeerDecidesOnTheVerbTheAppReceives(t *testing.T) {
	s := newXDSSidecar(t)
	rbac := &access.RBAC{Action: access.ActionAllow, Policies: []access.RBACPolicy{{
		Name:        "get-only",
		Permissions: []access.Permission{{Method: http.MethodGet}},
		Principals:  []access.Principal{{Any: true}},
	}}}
	if err := s.ApplyXDS(&XDSConfig{Access: rbac}); err != nil {
		t.Fatal(err)
	}
	var appVerb string
	s.local.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		appVerb = r.Method
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
	tests := []struct {
		verb    string
		want    int
		appVerb string
	}{
		{"GET", http.StatusOK, "GET"},
		{"get", http.StatusOK, "GET"},
		{"Get", http.StatusOK, "GET"},
		{"post", http.StatusForbidden, ""},
		{"PROPFIND", http.StatusForbidden, ""}, // POST, as Dapr carries it
	}
	for _, tt := range tests {
		t.Run(tt.verb, func(t *testing.T) {
			appVerb = ""
			r := httptest.NewRequest(tt.verb, "http://checkout.default/orders", nil)
			r.Host = s.self.String()
			w := httptest.NewRecorder()
			s.inbound.ServeHTTP(w, r)
			if w.Code != tt.want || appVerb != tt.appVerb {
				t.Errorf("%s: status %d, app got %q; want %d and %q: %s", tt.verb, w.Code, appVerb, tt.want, tt.appVerb, w.Body)
			}
			if r.Method != tt.verb {
				t.Errorf("the inbound request's verb was changed to %q", r.Method)
			}
		})
	}
}
