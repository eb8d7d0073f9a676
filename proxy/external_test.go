package proxy

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/httpendpoint"
)

func endpointResource(t *testing.T, spec string) *Resource {
	t.Helper()
	r := &Resource{APIVersion: "dapr.io/v1alpha1", Kind: "HTTPEndpoint", File: "x.yaml"}
	r.Metadata.Name = "ep"
	if err := yaml.Unmarshal([]byte(spec), &r.Spec); err != nil {
		t.Fatal(err)
	}
	if r.Spec.Kind == yaml.DocumentNode {
		r.Spec = *r.Spec.Content[0]
	}
	return r
}

// TestCompileEndpointRejects: a bad HTTPEndpoint is refused with a reason
// naming the field, so the last good configuration keeps serving.
func TestCompileEndpointRejects(t *testing.T) {
	t.Setenv("EP_SET", "v")
	for _, tc := range []struct{ spec, want string }{
		{"baseUrl: ftp://x", "scheme must be http or https"},
		{"baseUrl: http://", "no host"},
		{"baseUrl: http://u:p@host", "no user information"},
		{"baseUrl: http://host?q=1", "no user information, query or fragment"},
		{"baseUrl: http://host\nheaders:\n- name: 'bad name'\n  value: x", "invalid name"},
		{"baseUrl: http://host\nheaders:\n- name: X\n  value: \"a\\r\\nb\"", "CR, LF or NUL"},
		{"baseUrl: http://host\nheaders:\n- name: X\n  secretKeyRef: {name: EP_UNSET_VAR}", "no such environment variable"},
		{"baseUrl: http://host\nheaders:\n- name: X\n  secretKeyRef: {name: EP_SET, key: other}", "one key per secret"},
		{"baseUrl: http://host\nheaders:\n- name: X\n  envRef: EP_UNSET_VAR", "no such environment variable"},
		{"baseUrl: http://host\nclientTLS: {rootCA: {value: x}}", "needs an https baseUrl"},
		{"baseUrl: https://host\nclientTLS: {rootCA: {value: not-pem}}", "no PEM certificate"},
		{"baseUrl: https://host\nclientTLS: {certificate: {value: x}}", "go together"},
	} {
		_, err := compileEndpoint(endpointResource(t, tc.spec))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
	e, err := compileEndpoint(endpointResource(t, "baseUrl: https://host:8443/api\nheaders:\n- name: x-key\n  envRef: EP_SET"))
	if err != nil {
		t.Fatal(err)
	}
	if e.base.Host != "host:8443" || len(e.headers) != 1 || e.headers[0] != (endpointHeader{"X-Key", "v"}) {
		t.Errorf("compiled %+v", e)
	}
}

// TestURLTargets: URL targets are external invocations in every form of
// the invoke API; other targets stay app ids.
func TestURLTargets(t *testing.T) {
	for target, want := range map[string]bool{
		"http://127.0.0.1:3000": true, "https://example.com": true, "app-b": false, "httpbin": false, "HTTP://x": false,
	} {
		if got := isURLTarget(target); got != want {
			t.Errorf("isURLTarget(%q) = %v, want %v", target, got, want)
		}
	}
}

// TestXDSEndpointsWinOverFiles: HTTPEndpoints the control plane pushes
// join the files' and, per name, replace them; their environment
// references are read in the sidecar's environment, and one that cannot
// be read rejects the push (NACK).
func TestXDSEndpointsWinOverFiles(t *testing.T) {
	t.Setenv("EP_XDS_TOKEN", "t0ken")
	file := *endpointResource(t, "baseUrl: http://file.example")
	other := *endpointResource(t, "baseUrl: http://other.example")
	other.Metadata.Name = "other"
	cfg := Config{Resources: []Resource{file, other}, XDS: &XDSConfig{Version: "v1", HTTPEndpoints: map[string]*httpendpoint.Spec{
		"ep": {BaseURL: "https://xds.example/v2", Headers: []httpendpoint.Header{{Name: "x-token", Source: httpendpoint.Source{EnvRef: "EP_XDS_TOKEN"}}}},
	}}}
	s, err := compile(cfg, "app")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for n, e := range s.Endpoints {
		got[n] = e.base.String()
		for _, h := range e.headers {
			got[n] += " " + h.name + "=" + h.value
		}
	}
	want := map[string]string{"ep": "https://xds.example/v2 X-Token=t0ken", "other": "http://other.example"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("endpoints (-want +got)\n%s", d)
	}
	cfg.XDS.HTTPEndpoints["ep"].Headers[0].EnvRef = "EP_XDS_UNSET"
	if _, err := compile(cfg, "app"); err == nil || !strings.Contains(err.Error(), "xds v1: HTTPEndpoint ep: headers[0] (x-token): envRef EP_XDS_UNSET: no such environment variable") {
		t.Errorf("unreadable reference: %v, want the push refused naming it", err)
	}
}
