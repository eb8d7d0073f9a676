package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestControlPlaneRejectsBadFlags checks that `skein control-plane` exits
// 2 with a one-line reason before it listens.
func TestControlPlaneRejectsBadFlags(t *testing.T) {
	t.Setenv("SKEIN_HOME", t.TempDir())
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("apiVersion: skein.dev/v1alpha1\nkind: Endpoints\nmetadata: {name: a}\nspec: {loadBalancing: random}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no listen address", []string{}, "--listen-address"},
		{"bad trust domain", []string{"--listen-address", "127.0.0.1:0", "--trust-domain", "Not A Domain"}, "--trust-domain"},
		{"short ttl", []string{"--listen-address", "127.0.0.1:0", "--svid-ttl", "10ms"}, "--svid-ttl"},
		{"missing token file", []string{"--listen-address", "127.0.0.1:0", "--join-token-file", "/nonexistent"}, "--join-token-file"},
		{"invalid config dir", []string{"--listen-address", "127.0.0.1:0", "--config-dir", filepath.Dir(bad)}, "spec.loadBalancing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"control-plane"}, tt.args...), &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tt.want) || strings.Count(strings.TrimSpace(errb.String()), "\n") != 0 {
				t.Errorf("exit %d, stderr %q: want 2 and one line naming %q", code, errb.String(), tt.want)
			}
		})
	}
}

func TestReadTokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(f, []byte("# comment\none\n\n  two  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readTokenFile(f)
	if err != nil || strings.Join(got, ",") != "one,two" {
		t.Errorf("tokens %q, %v", got, err)
	}
}
