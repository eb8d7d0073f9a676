package resiliency

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): stdlib and third
// party only, no logging.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/resiliency"
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
		{"google.golang.org/grpc", true, "layers use stdlib shapes"},
		{"log/slog", false, "whoever handles an error logs it"},
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
