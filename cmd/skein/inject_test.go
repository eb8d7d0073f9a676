package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/skeinmesh/skein/inject"
)

// TestInjectedArgsAreSidecarFlags: whatever the annotations, the injected
// container's arguments are `skein sidecar` flags that parse and validate,
// so an injected pod never crash-loops on its own command line.
func TestInjectedArgsAreSidecarFlags(t *testing.T) {
	in, err := inject.New(inject.Options{Image: "skein:test", ControlPlaneAddress: inject.DefaultControlPlaneAddress, JoinTokenSecret: inject.DefaultJoinTokenSecret})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		an   map[string]string
	}{
		{"defaults", nil},
		{"everything", map[string]string{
			"dapr.io/app-port": "8080", "dapr.io/app-protocol": "grpc", "dapr.io/app-ssl": "true",
			"dapr.io/app-channel-address": "10.1.2.3", "dapr.io/log-level": "fatal", "dapr.io/log-as-json": "true",
			"dapr.io/metrics-port": "9191", "dapr.io/app-max-concurrency": "-1", "dapr.io/max-body-size": "1.5Mi",
			"dapr.io/read-buffer-size": "1Pi", "dapr.io/graceful-shutdown-seconds": "0", "dapr.io/enable-api-logging": "1",
			"dapr.io/enable-app-health-check": "true", "dapr.io/app-health-check-path": "/ready?deep=1",
			"dapr.io/app-health-probe-interval": "1", "dapr.io/app-health-probe-timeout": "1000", "dapr.io/app-health-threshold": "1",
			"dapr.io/sidecar-listen-addresses": "[::1],127.0.0.1,localhost", "dapr.io/config": "appconfig",
		}},
		{"legacy sizes, metrics off", map[string]string{"dapr.io/http-max-request-size": "4", "dapr.io/http-read-buffer-size": "8", "dapr.io/enable-metrics": "false"}},
		{"config file", map[string]string{"dapr.io/volume-mounts": "cfg:/etc/skein", "dapr.io/config": "/etc/skein/config.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an := map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": "orders"}
			for k, v := range tt.an {
				an[k] = v
			}
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Annotations: an}, Spec: corev1.PodSpec{
				Containers: []corev1.Container{{Name: "app"}},
				Volumes:    []corev1.Volume{{Name: "cfg"}},
			}}
			p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
			if err != nil {
				t.Fatal(err)
			}
			p.Apply(&pod.ObjectMeta, &pod.Spec)
			args := pod.Spec.Containers[1].Args
			if args[0] != "sidecar" {
				t.Fatalf("args %q: want the sidecar subcommand first", args)
			}
			var f sidecarFlags
			fs := newSidecarFlagSet("sidecar", &f, false)
			if err := fs.Parse(args[1:]); err != nil {
				t.Fatalf("args %q: %v", args, err)
			}
			if fs.NArg() != 0 {
				t.Fatalf("args %q: %d left over", args, fs.NArg())
			}
			if _, err := f.options(); err != nil {
				t.Errorf("args %q: %v", args, err)
			}
			if f.config != "" {
				if _, err := os.Stat(f.config); err == nil {
					t.Errorf("--config %s exists here: the test proves nothing", f.config)
				}
			}
		})
	}
}

// TestInjectCommand runs `skein inject` in process: stdout is the
// manifest, stderr what was done; bad input changes nothing on stdout.
func TestInjectCommand(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	bad := filepath.Join(dir, "bad.yaml")
	write := func(name, s string) {
		if err := os.WriteFile(name, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(good, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {dapr.io/enabled: \"true\", dapr.io/enable-profiling: \"true\"}\nspec:\n  containers: [{name: a, image: a}]\n")
	write(bad, "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  annotations: {dapr.io/enabled: \"true\", dapr.io/app-port: \"x\"}\nspec:\n  containers: [{name: a, image: a}]\n")
	tests := []struct {
		name         string
		args         []string
		code         int
		stdout, errs []string
	}{
		{"injects", []string{"-f", good, "--sidecar-image", "skein:dev"}, 0,
			[]string{"name: daprd", "image: skein:dev", "--control-plane-address"},
			[]string{`pod "p" injected (app id p)`, "good.yaml: document 1 (line 1, Pod p): warning: dapr.io/enable-profiling: ignored"}},
		{"two files", []string{"-f", good, "--filename", good, "--control-plane-address", ""}, 0,
			[]string{"\n---\n"}, []string{"warning: no control plane address"}},
		{"bad annotation", []string{"-f", good, "-f", bad}, 1, nil,
			[]string{`bad.yaml: document 1 (line 1, Pod p): metadata.annotations[dapr.io/app-port]: "x": not a port`}},
		{"no -f", nil, 2, nil, []string{"-f: required"}},
		{"missing file", []string{"-f", filepath.Join(dir, "none.yaml")}, 1, nil, []string{"none.yaml"}},
		{"a directory", []string{"-f", dir}, 1, nil, []string{"is a directory"}},
		{"bad option", []string{"-f", good, "--image-pull-policy", "Sometimes"}, 2, nil, []string{"image pull policy"}},
		{"stray argument", []string{"-f", good, "extra"}, 2, nil, []string{`unexpected argument "extra"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := cmdInject(tt.args, strings.NewReader(""), &out, &errb)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, errb.String())
			}
			if code != 0 && out.Len() != 0 {
				t.Errorf("wrote %q on failure", out.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.errs {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
	t.Run("stdin", func(t *testing.T) {
		src, _ := os.ReadFile(good)
		var out, errb bytes.Buffer
		if code := cmdInject([]string{"-f", "-"}, bytes.NewReader(src), &out, &errb); code != 0 || !strings.Contains(out.String(), "name: daprd") {
			t.Errorf("exit %d, stdout %q, stderr %q", code, out.String(), errb.String())
		}
	})
}
