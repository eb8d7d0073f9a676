package faults

import (
	"fmt"
	"os"
	"testing"

	"github.com/skeinmesh/skein/test/harness"
)

// bin holds the binaries TestMain builds.
var bin harness.Bin

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skein-faults-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if bin, err = harness.Build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
