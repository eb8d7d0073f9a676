package httpendpoint

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func decode(t *testing.T, doc string) (*Spec, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	return Decode(&n)
}

// TestDecode reads every field of Dapr's HTTPEndpoint spec, strictly.
func TestDecode(t *testing.T) {
	got, err := decode(t, `
baseUrl: https://api.example.com/v1
headers:
- {name: X-A, value: 7}
- {name: X-B, envRef: B}
- {name: X-C, secretKeyRef: {name: C, key: C}}
clientTLS:
  rootCA: {value: PEM}
  certificate: {envRef: CERT}
  privateKey: {secretKeyRef: {name: KEY}}
  renegotiation: Never
`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{
		BaseURL: "https://api.example.com/v1",
		Headers: []Header{
			{Name: "X-A", Source: Source{Value: "7"}},
			{Name: "X-B", Source: Source{EnvRef: "B"}},
			{Name: "X-C", Source: Source{SecretKeyRef: &SecretRef{Name: "C", Key: "C"}}},
		},
		ClientTLS: &ClientTLS{RootCA: &Source{Value: "PEM"}, Certificate: &Source{EnvRef: "CERT"},
			PrivateKey: &Source{SecretKeyRef: &SecretRef{Name: "KEY"}}, Renegotiation: "Never"},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	if _, err := decode(t, "baseUrl: http://x\nheaders:\n- {nmae: X}\n"); err == nil || !strings.Contains(err.Error(), "spec.headers[0].nmae: unknown field") {
		t.Errorf("unknown field: %v, want it named with its path", err)
	}
}

// TestValidate reports every problem, each naming its field.
func TestValidate(t *testing.T) {
	for _, tc := range []struct{ spec, want string }{
		{"baseUrl: ftp://x", "spec.baseUrl: \"ftp://x\": scheme must be http or https"},
		{"baseUrl: http://", "no host"},
		{"baseUrl: http://u:p@host", "no user information"},
		{"baseUrl: http://host?q=1", "no user information, query or fragment"},
		{"baseUrl: http://host:0", "want 1-65535"},
		{"baseUrl: http://host\nheaders:\n- {name: 'bad name', value: x}", "spec.headers[0].name: invalid name"},
		{"baseUrl: http://host\nheaders:\n- {name: X, value: \"a\\r\\nb\"}", "spec.headers[0]: value contains CR, LF or NUL"},
		{"baseUrl: http://host\nheaders:\n- {name: X, secretKeyRef: {name: S, key: other}}", "one key per secret"},
		{"baseUrl: http://host\nclientTLS: {rootCA: {envRef: CA}}", "clientTLS needs an https baseUrl"},
		{"baseUrl: https://host\nclientTLS: {rootCA: {value: not-pem}}", "no PEM certificate"},
		{"baseUrl: https://host\nclientTLS: {certificate: {envRef: C}}", "go together"},
		{"baseUrl: https://host\nclientTLS: {certificate: {value: x}, privateKey: {value: y}}", "certificate and key"},
		{"baseUrl: https://host\nclientTLS: {renegotiation: Always}", "want Never, OnceAsClient or FreelyAsClient"},
	} {
		sp, err := decode(t, tc.spec)
		if err == nil {
			err = sp.Validate()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error with %q", tc.spec, err, tc.want)
		}
	}
	sp, _ := decode(t, "baseUrl: ftp://x\nheaders:\n- {name: '', value: x}")
	if err := sp.Validate(); err == nil || strings.Count(err.Error(), "\n") != 1 {
		t.Errorf("%v: want both problems", err)
	}
}

// TestResolve reads inline values and the environment, secretKeyRef
// first (Dapr's order).
func TestResolve(t *testing.T) {
	env := map[string]string{"A": "from-a", "S": "from-s"}
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		s       Source
		want    string
		wantErr string
	}{
		{Source{Value: "v"}, "v", ""},
		{Source{Value: "v", EnvRef: "A"}, "from-a", ""},
		{Source{EnvRef: "A", SecretKeyRef: &SecretRef{Name: "S"}}, "from-s", ""},
		{Source{EnvRef: "MISSING"}, "", "envRef MISSING: no such environment variable"},
		{Source{SecretKeyRef: &SecretRef{Name: "MISSING"}}, "", "secretKeyRef MISSING: no such environment variable"},
	} {
		got, err := tc.s.Resolve(lookup)
		if got != tc.want || (err == nil) != (tc.wantErr == "") || err != nil && err.Error() != tc.wantErr {
			t.Errorf("%+v: %q, %v; want %q, %q", tc.s, got, err, tc.want, tc.wantErr)
		}
	}
}
