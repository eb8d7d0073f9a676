package httpendpoint

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): the sidecar and the
// control plane both read it, so it imports neither.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/httpendpoint"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d == self || d == "github.com/skeinmesh/skein/internal/yamlfield" {
			continue // the shared strict YAML decoder is a leaf too
		}
		if strings.HasPrefix(d, "github.com/skeinmesh/skein/") || d == "log/slog" {
			t.Errorf("imports %s (a leaf: stdlib and third party only, no logging)", d)
		}
	}
}
