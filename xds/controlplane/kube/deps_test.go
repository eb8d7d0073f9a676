package kube

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoTypedClientset: the skein binary, which is also every sidecar,
// links neither client-go's typed clientset nor its informer factory.
// Their packages register every API group's types in a scheme at init,
// which each idle sidecar would pay for in memory (doc.go).
func TestNoTypedClientset(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/skeinmesh/skein/cmd/skein").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		for _, bad := range []string{"k8s.io/client-go/kubernetes", "k8s.io/client-go/informers", "k8s.io/client-go/dynamic/dynamicinformer"} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("cmd/skein links %s", d)
			}
		}
	}
}
