package test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportDirection enforces STYLE.md §3: imports point inward. Concern
// packages never import proxy, cmd or each other; nothing imports cmd or
// test code.
func TestImportDirection(t *testing.T) {
	const mod = "github.com/skeinmesh/skein/"
	tests := []struct {
		pkg       string
		forbidden []string
		why       string
	}{
		{"discovery", []string{"proxy", "telemetry", "identity", "cmd/skein", "examples"}, "a concern package: stdlib and third party only"},
		{"telemetry", []string{"proxy", "discovery", "identity", "cmd/skein", "examples"}, "a concern package: stdlib and third party only"},
		{"identity", []string{"proxy", "discovery", "telemetry", "cmd/skein", "examples", "xds"}, "a concern package: stdlib and third party only"},
		{"xds/controlplane", []string{"proxy", "cmd/skein", "examples", "telemetry"}, "the control plane reads concern packages' config, never the data path"},
		{"xds/controlplane/kube", []string{"proxy", "cmd/skein", "examples", "telemetry"}, "the control plane's Kubernetes source, never the data path"},
		{"resiliency", []string{"proxy", "discovery", "telemetry", "identity", "cmd/skein", "examples"}, "a concern package: stdlib and third party only"},
		{"identity/access", []string{"proxy", "discovery", "telemetry", "cmd/skein", "examples"}, "pure policy decisions: no data path"},
		{"ratelimit", []string{"proxy", "discovery", "telemetry", "identity", "resiliency", "cmd/skein", "examples"}, "pure rate decisions: no data path"},
		{"proxy", []string{"cmd/skein", "examples", "test"}, "the data path uses concern packages, never the wiring"},
		{"examples/orders", []string{"proxy", "discovery", "telemetry"}, "sample apps know nothing of Skein"},
		{"examples/checkout", []string{"proxy", "discovery", "telemetry"}, "sample apps know nothing of Skein"},
	}
	for _, tt := range tests {
		t.Run(tt.pkg, func(t *testing.T) {
			out, err := exec.Command("go", "list", "-deps", mod+tt.pkg).Output()
			if err != nil {
				t.Fatalf("go list: %v", err)
			}
			deps := strings.Fields(string(out))
			for _, f := range tt.forbidden {
				for _, d := range deps {
					if d == mod+f || strings.HasPrefix(d, mod+f+"/") {
						t.Errorf("%s imports %s (%s)", tt.pkg, d, tt.why)
					}
				}
			}
		})
	}
}
