package ratelimit

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a pure leaf (STYLE.md §3): stdlib and
// third party only, no HTTP, metrics or logging.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/ratelimit"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []struct {
		pkg  string
		tree bool
		why  string
	}{
		{"github.com/skeinmesh/skein", true, "a leaf concern: stdlib and third party only"},
		{"net/http", true, "decisions only: the sidecar's layers speak HTTP"},
		{"github.com/prometheus/client_golang", true, "whoever refuses counts"},
		{"log/slog", false, "whoever handles a refusal logs it"},
	}
	for _, d := range strings.Fields(string(out)) {
		if d == self || d == "github.com/skeinmesh/skein/internal/yamlfield" {
			continue // the shared strict YAML decoder is a leaf too
		}
		for _, f := range forbidden {
			if d == f.pkg || f.tree && strings.HasPrefix(d, f.pkg+"/") {
				t.Errorf("imports %s (%s)", d, f.why)
			}
		}
	}
}
