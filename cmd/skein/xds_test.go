package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/proxy"
)

func TestCheckXDSFlags(t *testing.T) {
	for _, tc := range []struct {
		f    sidecarFlags
		want string
	}{
		{sidecarFlags{controlPlaneAddress: "127.0.0.1:18000", xdsMode: "delta"}, ""},
		{sidecarFlags{controlPlaneAddress: "cp"}, "--control-plane-address"},
		{sidecarFlags{controlPlaneAddress: "10.0.0.2:18000, 10.0.0.3:18000"}, ""},
		{sidecarFlags{controlPlaneAddress: "10.0.0.2:18000,cp"}, `"cp": want HOST:PORT, or several comma-separated`},
		{sidecarFlags{xdsMode: "rest"}, "--xds-mode"},
	} {
		err := tc.f.checkXDS()
		if (err == nil) != (tc.want == "") || err != nil && !strings.Contains(err.Error(), tc.want) {
			t.Errorf("checkXDS(%+v) = %v, want %q", tc.f, err, tc.want)
		}
	}
}

func TestControlPlaneFromConfig(t *testing.T) {
	load := func(spec string) proxy.Config {
		f := filepath.Join(t.TempDir(), "c.yaml")
		doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata: {name: c}\nspec:\n" + spec
		if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, err := proxy.LoadConfig(f, nil)
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	cfg := load("  controlPlane: {address: '10.0.0.1:18000', mode: delta}\n")
	var f sidecarFlags
	if err := f.controlPlaneFromConfig(cfg); err != nil || f.controlPlaneAddress != "10.0.0.1:18000" || f.xdsMode != "delta" {
		t.Errorf("from the Configuration: %q %q %v", f.controlPlaneAddress, f.xdsMode, err)
	}
	f = sidecarFlags{controlPlaneAddress: "127.0.0.1:1", xdsMode: "sotw"}
	if err := f.controlPlaneFromConfig(cfg); err != nil || f.controlPlaneAddress != "127.0.0.1:1" || f.xdsMode != "sotw" {
		t.Errorf("flags must win: %q %q %v", f.controlPlaneAddress, f.xdsMode, err)
	}
	f = sidecarFlags{}
	if err := f.controlPlaneFromConfig(load("  controlPlane: {mode: rest}\n")); err == nil || !strings.Contains(err.Error(), "spec.controlPlane.mode") {
		t.Errorf("bad mode: %v", err)
	}
}
