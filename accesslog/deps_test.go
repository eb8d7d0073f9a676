package accesslog

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): stdlib and third
// party only, so proxy uses it and it can be tested without a sidecar.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/accesslog"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []struct {
		pkg  string
		tree bool
		why  string
	}{
		{"github.com/skeinmesh/skein/proxy", true, "layers use stdlib shapes; proxy imports this package, never the reverse"},
		{"github.com/skeinmesh/skein", true, "a leaf concern: stdlib and third party only; call facts arrive as plain strings through Note"},
		{"log/slog", false, "the access log is its own output, not the sidecar's log"},
	}
	for _, d := range strings.Fields(string(out)) {
		if d == self {
			continue
		}
		for _, f := range forbidden {
			if d == f.pkg || f.tree && strings.HasPrefix(d, f.pkg+"/") {
				t.Errorf("imports %s (%s)", d, f.why)
				break
			}
		}
	}
}
