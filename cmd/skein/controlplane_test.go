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
		{"kubernetes and a config dir", []string{"--listen-address", "127.0.0.1:0", "--kubernetes", "--config-dir", t.TempDir()}, "--kubernetes and --config-dir"},
		{"kubeconfig alone", []string{"--listen-address", "127.0.0.1:0", "--kubeconfig", "/nonexistent"}, "--kubeconfig: only with --kubernetes"},
		{"leader election alone", []string{"--listen-address", "127.0.0.1:0", "--leader-elect-lease-duration", "3s"}, "--leader-elect-lease-duration: only with --kubernetes"},
		{"ca secret alone", []string{"--listen-address", "127.0.0.1:0", "--ca-secret", "x"}, "--ca-secret: only with --kubernetes"},
		{"kubernetes and a ca dir", []string{"--listen-address", "127.0.0.1:0", "--kubernetes", "--ca-dir", "/tmp/x"}, "--ca-dir: not with --kubernetes"},
		{"renew deadline not shorter than the lease", []string{"--listen-address", "127.0.0.1:0", "--kubernetes", "--leader-elect-renew-deadline", "20s"}, "shorter than the lease duration"},
		{"retry period not shorter than the deadline", []string{"--listen-address", "127.0.0.1:0", "--kubernetes", "--leader-elect-retry-period", "10s"}, "shorter than the renew deadline"},
		{"join token svids without kubernetes", []string{"--listen-address", "127.0.0.1:0", "--allow-join-token-svids"}, "--allow-join-token-svids: only with --kubernetes"},
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

// TestControlPlaneKubernetesStartErrors: with --kubernetes, an API server
// that cannot be reached or configured fails the start (exit 1) with the
// reason, before the control plane listens.
func TestControlPlaneKubernetesStartErrors(t *testing.T) {
	t.Setenv("SKEIN_HOME", t.TempDir())
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte("apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\n"+
		"contexts: [{name: c, context: {cluster: c, user: u}}]\nusers: [{name: u, user: {token: t}}]\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"not in a cluster", nil, "in-cluster config (give --kubeconfig outside a cluster)"},
		{"missing kubeconfig", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, "kubeconfig:"},
		{"unreachable API server", []string{"--kubeconfig", kc}, "list /v1, Resource=pods"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"control-plane", "--listen-address", "127.0.0.1:0", "--kubernetes"}, tt.args...), &out, &errb)
			if code != 1 || !strings.Contains(errb.String(), tt.want) {
				t.Errorf("exit %d, stderr %q: want 1 and %q", code, errb.String(), tt.want)
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
