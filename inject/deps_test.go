package inject

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package a leaf (STYLE.md §3): stdlib and third
// party only. cmd/skein wires it into `skein inject` and the control
// plane's webhook; it knows nothing of the sidecar it injects but its
// flags.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/inject"
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

// TestDocsListEveryAnnotation: docs/kubernetes.md's table has a row for
// each annotation Annotations knows, saying whether it is supported.
func TestDocsListEveryAnnotation(t *testing.T) {
	b, err := os.ReadFile("../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	for _, a := range Annotations() {
		word := "ignored"
		if a.Supported {
			word = "supported"
		}
		if !strings.Contains(doc, "| `"+a.Key+"` | "+word+" |") {
			t.Errorf("docs/kubernetes.md has no row \"| `%s` | %s |\"", a.Key, word)
		}
	}
}
