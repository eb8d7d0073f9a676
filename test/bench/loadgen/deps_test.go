package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the load generator on the standard library (and the
// results package it writes): the benchmark needs no load tool beyond Go.
func TestImports(t *testing.T) {
	const self = "github.com/skeinmesh/skein/test/bench/loadgen"
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", self).Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, d := range strings.Fields(string(out)) {
		if d != self && d != "github.com/skeinmesh/skein/test/bench/result" {
			t.Errorf("imports %s: standard library and test/bench/result only", d)
		}
	}
}
