package overload

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): stdlib and third
// party only, no logging.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/overload"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != self && strings.HasPrefix(d, "github.com/skeinmesh/skein/") {
			t.Errorf("imports %s (a leaf concern: stdlib and third party only)", d)
		}
		if d == "log/slog" {
			t.Errorf("imports log/slog (whoever handles an error logs it)")
		}
	}
}
