package access

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package pure (STYLE.md §3): no other Skein package,
// nothing that opens connections, no logging.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/identity/access"
	out, err := exec.Command("go", "list", "-deps", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []struct {
		pkg  string
		tree bool // the package and everything below it
		why  string
	}{
		{"github.com/skeinmesh/skein", true, "a leaf concern: stdlib and third party only"},
		{"net", false, "decisions are pure: no network"},
		{"net/http", true, "decisions are pure: no network"},
		{"crypto/tls", false, "decisions are pure: no network"},
		{"google.golang.org/grpc", true, "decisions are pure: no network"},
		{"log/slog", false, "whoever handles a decision logs it"},
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
