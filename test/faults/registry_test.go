package faults

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// registryMesh is two instances of app-b and a caller on one machine,
// with steady GETs and POSTs from the caller.
type registryMesh struct {
	a     *harness.Sidecar
	b     [2]*harness.Sidecar
	ports [2]int
	load  *harness.Load
	dir   string // app-b's registry records
}

func newRegistryMesh(t *testing.T) *registryMesh {
	t.Helper()
	m := harness.NewMesh(t, bin)
	r := &registryMesh{dir: filepath.Join(m.Home, "registry", "default", "app-b")}
	for i, name := range []string{"b1", "b2"} {
		r.ports[i], _ = m.App(name, 0)
		r.b[i] = m.Sidecar("app-b", r.ports[i])
	}
	r.a = m.Sidecar("app-a", 0)
	r.load = harness.StartLoad(harness.LoadSpec{Caller: r.a, Target: "app-b", Workers: 2, Posts: true})
	r.load.Progress(t, 100, 20*time.Second)
	return r
}

// records returns the registry records in dir that decode.
func records(dir string) int {
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		var in struct{ Address string }
		if err == nil && json.Unmarshal(b, &in) == nil && in.Address != "" {
			n++
		}
	}
	return n
}

// endLoad stops the load and checks that no call failed, that both
// instances served, and that no POST reached an app twice.
func endLoad(t *testing.T, load *harness.Load, ports [2]int) {
	t.Helper()
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.Failed() != 0 {
		t.Errorf("%d calls failed, first: %v", res.Failed(), res.Failures)
	}
	for _, name := range []string{"b1", "b2"} {
		if res.ByInstance[name] == 0 {
			t.Errorf("instance %s served no call", name)
		}
	}
	harness.Duplicates(t, res, harness.AppCounts(t, ports[0]), harness.AppCounts(t, ports[1]))
}

// TestRegistryCorrupted is issue 14 point 4, $SKEIN_HOME's registry files
// corrupted: with both records of app-b overwritten by garbage, the caller
// says which file it cannot read, keeps calling the instances it knew, and
// the instances write their records again at their next heartbeat.
func TestRegistryCorrupted(t *testing.T) {
	r := newRegistryMesh(t)
	a, load, dir := r.a, r.load, r.dir
	files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	if len(files) != 2 {
		t.Fatalf("%d records in %s, want 2", len(files), dir)
	}
	for _, f := range files {
		if err := os.WriteFile(f, []byte("\x00{not json"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	harness.WaitFor(t, 5*time.Second, "the caller to report the unreadable record", func() bool {
		out := a.Output()
		return strings.Contains(out, "refresh failed") && strings.Contains(out, files[0])
	})
	if n := len(a.Instances(t, "app-b")); n != 2 {
		t.Errorf("the caller knows %d instances of app-b while their records are garbage, want the 2 it knew", n)
	}
	harness.WaitFor(t, 5*time.Second, "the instances to rewrite their records", func() bool { return records(dir) == 2 })
	load.Progress(t, 100, 20*time.Second)
	endLoad(t, load, r.ports)
}

// TestRegistryUnwritable is issue 14 point 4, $SKEIN_HOME's registry
// unwritable: a sidecar that cannot register refuses to start and says
// why; sidecars already running, whose records can no longer be written or
// read, log it and keep serving and calling what they know, and register
// again once the registry is back. (Tests run as root, which ignores
// permission bits, so a file stands where a directory should be.)
func TestRegistryUnwritable(t *testing.T) {
	t.Run("at start-up", func(t *testing.T) {
		m := harness.NewMesh(t, bin)
		if err := os.WriteFile(filepath.Join(m.Home, "registry"), []byte("in the way"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := m.SidecarEnv("app-a", 0, nil)
		if code := s.ExitCode(t, 15*time.Second); code == 0 {
			t.Errorf("sidecar started with an unwritable registry")
		}
		if out := s.Output(); !strings.Contains(out, "registry") || !strings.Contains(out, "not a directory") {
			t.Errorf("the start-up error does not say what is wrong with the registry:\n%s", out)
		}
	})
	t.Run("while serving", func(t *testing.T) {
		r := newRegistryMesh(t)
		a, load, dir := r.a, r.load, r.dir
		if err := os.Rename(dir, dir+".moved"); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dir, []byte("in the way"), 0o600); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 5*time.Second, "the caller to report the unreadable registry", func() bool {
			return strings.Contains(a.Output(), "refresh failed")
		})
		harness.WaitFor(t, 5*time.Second, "both instances to report two failed renewals", func() bool {
			return strings.Count(r.b[0].Output(), "registry renew failed") >= 2 &&
				strings.Count(r.b[1].Output(), "registry renew failed") >= 2
		})
		if out := r.b[0].Output(); !strings.Contains(out, "not a directory") {
			t.Errorf("b1's failed renewals do not say why:\n%s", out)
		}
		if n := len(a.Instances(t, "app-b")); n != 2 {
			t.Errorf("the caller knows %d instances of app-b while the registry is unreadable, want the 2 it knew", n)
		}
		load.Progress(t, 100, 20*time.Second)
		if err := os.Remove(dir); err != nil {
			t.Fatal(err)
		}
		harness.WaitFor(t, 5*time.Second, "the instances to register again", func() bool { return records(dir) == 2 })
		load.Progress(t, 100, 20*time.Second)
		endLoad(t, load, r.ports)
	})
}
