package access

import (
	"testing"

	"go.yaml.in/yaml/v3"
)

// mustCompile compiles c or fails the test.
func mustCompile(t testing.TB, c *Config, isHTTP bool) *Matcher {
	t.Helper()
	m, err := Compile(c, isHTTP)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

// mustParse decodes the accessControl of a Configuration document, or of a
// bare accessControl mapping.
func mustParse(t testing.TB, doc string) *Config {
	t.Helper()
	c, err := DecodeConfiguration([]byte(doc))
	if err != nil {
		t.Fatalf("DecodeConfiguration: %v", err)
	}
	if c != nil {
		return c
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	c, err = Decode(&n)
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	return c
}

func caller(td, ns, app string) *Caller {
	return &Caller{TrustDomain: td, Namespace: ns, AppID: app}
}

// outcome is the part of a Decision most tests look at.
type outcome struct {
	Allowed, Denied, Audit bool
	Level, Rule, Policy    string
	Operation              string
}

func outcomeOf(d Decision) outcome {
	return outcome{d.Allowed, d.Denied, d.Audit, d.Level, d.Rule, d.Policy, d.Operation}
}
