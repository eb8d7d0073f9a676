package access

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func decodeString(t *testing.T, doc string) (*Config, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	return Decode(&n)
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    *Config
		wantErr []string
	}{
		{"full", `
defaultAction: deny
trustDomain: public
mode: audit
policies:
- appId: app1
  defaultAction: allow
  trustDomain: public
  namespace: default
  mode: enforce
  operations:
  - name: /op1
    httpVerb: ['GET', "POST"]
    action: allow
  - {name: op2, action: deny}
`, &Config{DefaultAction: "deny", TrustDomain: "public", Mode: "audit", Policies: []Policy{{
			AppID: "app1", DefaultAction: "allow", TrustDomain: "public", Namespace: "default", Mode: "enforce",
			Operations: []Operation{{Name: "/op1", HTTPVerb: []string{"GET", "POST"}, Action: "allow"}, {Name: "op2", Action: "deny"}},
		}}}, nil},
		{"nulls and empty lists", `
defaultAction:
trustDomain: ~
policies: []
`, &Config{}, nil},
		{"aliases", `
policies:
- &p
  appId: app1
  trustDomain: public
  namespace: default
- *p
`, &Config{Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default"},
			{AppID: "app1", TrustDomain: "public", Namespace: "default"},
		}}, nil},
		{"numbers are strings", `
policies:
- appId: 123
  trustDomain: public
  namespace: default
`, &Config{Policies: []Policy{{AppID: "123", TrustDomain: "public", Namespace: "default"}}}, nil},
		{"empty document", ``, &Config{}, nil},
		{"unknown fields", `
defaultaction: deny
policies:
- appId: app1
  trustDomain: public
  namespace: default
  operations:
  - name: /x
    verbs: [GET]
`, nil, []string{
			"accessControl.defaultaction: unknown field (line 2)",
			"accessControl.policies[0].operations[0].verbs: unknown field (line 9)",
		}},
		{"wrong kinds", `
defaultAction: [deny]
policies:
  appId: app1
`, nil, []string{
			"accessControl.defaultAction: must be a string (line 2)",
			"accessControl.policies: must be a list (line 4)",
		}},
		{"wrong kinds inside", `
policies:
- appId: {a: b}
  operations:
  - name: /x
    httpVerb: GET
  - just-a-string
`, nil, []string{
			"accessControl.policies[0].appId: must be a string (line 3)",
			"accessControl.policies[0].operations[0].httpVerb: must be a list (line 6)",
			"accessControl.policies[0].operations[1]: must be a mapping (line 7)",
		}},
		{"duplicate field", `
defaultAction: deny
defaultAction: allow
`, nil, []string{"accessControl.defaultAction: duplicate field (line 3)"}},
		{"not a mapping", `deny`, nil, []string{"accessControl: must be a mapping (line 1)"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeString(t, tt.doc)
			if diff := cmp.Diff(tt.wantErr, errLines(err)); diff != "" {
				t.Errorf("Decode errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeNil(t *testing.T) {
	c, err := Decode(nil)
	if err != nil || c == nil || c.DefaultAction != "" || c.Policies != nil {
		t.Errorf("Decode(nil) = %+v, %v; want an empty Config", c, err)
	}
}

func TestDecodeConfiguration(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    *Config
		wantErr string
	}{
		{"with accessControl", `
apiVersion: dapr.io/v1alpha1
kind: Configuration
spec:
  tracing: {samplingRate: "1"}
  accessControl:
    defaultAction: allow
`, &Config{DefaultAction: "allow"}, ""},
		{"without accessControl", "kind: Configuration\nspec:\n  tracing: {}\n", nil, ""},
		{"without spec", "kind: Configuration\n", nil, ""},
		{"bad accessControl", "spec:\n  accessControl:\n    nope: 1\n", nil, "accessControl.nope: unknown field (line 3)"},
		{"bad YAML", "spec: [", nil, "configuration: yaml:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeConfiguration([]byte(tt.doc))
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantErr)) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("DecodeConfiguration (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := Policy{AppID: "app1", TrustDomain: "public", Namespace: "default"}
	tests := []struct {
		name   string
		config *Config
		want   []string
	}{
		{"nil", nil, nil},
		{"empty", &Config{}, nil},
		{"valid, actions in any case", &Config{DefaultAction: "DENY", Mode: "audit", Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "Allow", Mode: "enforce",
				Operations: []Operation{{Name: "/x", Action: "aLLoW"}, {Name: "/y", Action: "deny"}, {Name: "/z"}}},
		}}, nil},
		{"missing policy fields", &Config{Policies: []Policy{ok, {}, {AppID: "app2", Namespace: "ns"}}}, []string{
			"accessControl.policies[1].appId: required",
			"accessControl.policies[1].trustDomain: required",
			"accessControl.policies[1].namespace: required",
			"accessControl.policies[2].trustDomain: required",
		}},
		{"bad actions", &Config{DefaultAction: "block", Policies: []Policy{
			{AppID: "app1", TrustDomain: "public", Namespace: "default", DefaultAction: "permit",
				Operations: []Operation{{Name: "/x", Action: "allowed"}, {Name: "/y", Action: "allow"}, {Name: "/z", Action: " deny"}}},
		}}, []string{
			`accessControl.defaultAction: "block": must be allow or deny`,
			`accessControl.policies[0].defaultAction: "permit": must be allow or deny`,
			`accessControl.policies[0].operations[0].action: "allowed": must be allow or deny`,
			`accessControl.policies[0].operations[2].action: " deny": must be allow or deny`,
		}},
		{"bad modes", &Config{Mode: "Audit", Policies: []Policy{ok, {AppID: "app2", TrustDomain: "public", Namespace: "default", Mode: "dry-run"}}}, []string{
			`accessControl.mode: "Audit": must be enforce or audit`,
			`accessControl.policies[1].mode: "dry-run": must be enforce or audit`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.config.Validate()
			if diff := cmp.Diff(tt.want, errLines(err)); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
			if _, cerr := Compile(tt.config, true); (cerr != nil) != (err != nil) {
				t.Errorf("Compile error %v, Validate error %v", cerr, err)
			}
		})
	}
}

// FuzzDecode feeds arbitrary YAML through every step a config takes.
func FuzzDecode(f *testing.F) {
	f.Add(exampleB)
	f.Add(exampleD)
	f.Add("policies: [{appId: a, operations: [{name: '/a/*/b', httpVerb: [get]}]}]")
	f.Add("a: &a [*a]")
	f.Fuzz(func(t *testing.T, doc string) {
		var n yaml.Node
		if yaml.Unmarshal([]byte(doc), &n) != nil {
			return
		}
		c, err := Decode(&n)
		if err != nil {
			return
		}
		Lint(c)
		if m, err := Compile(c, true); err == nil {
			m.Decide(Request{Caller: caller("public", "default", "a"), Operation: "a/b", Verb: "GET"})
		}
	})
}
