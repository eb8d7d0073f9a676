package apphealth

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): stdlib and third
// party only; proxy uses it through Checker and the Require layer, never
// the reverse.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/apphealth"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != self && strings.HasPrefix(d, "github.com/skeinmesh/skein/") {
			t.Errorf("imports %s (a leaf concern: stdlib and third party only)", d)
		}
	}
}
