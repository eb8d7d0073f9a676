package discovery

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func testInstance(app, addr string) Instance {
	h, _ := os.Hostname()
	return Instance{AppID: app, Namespace: "default", Address: addr, PID: os.Getpid(), Hostname: h}
}

func TestRegistryLifecycle(t *testing.T) {
	dir := t.TempDir()
	r, err := NewRegistry(dir)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }

	in := testInstance("orders", "127.0.0.1:4000")
	lease, err := r.Register(in)
	if err != nil {
		t.Fatal(err)
	}
	got, err := r.Lookup("orders", "default")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Instance{in}, got); diff != "" {
		t.Fatalf("after register (-want +got):\n%s", diff)
	}
	if got, _ := r.Lookup("orders", "other"); len(got) != 0 {
		t.Errorf("namespace other sees %v", got)
	}
	if got, _ := r.Lookup("ghost", "default"); len(got) != 0 {
		t.Errorf("unknown app sees %v", got)
	}

	// The lease expires when not renewed.
	now = now.Add(LeaseTTL + time.Second)
	if got, _ := r.Lookup("orders", "default"); len(got) != 0 {
		t.Errorf("expired record still served: %v", got)
	}
	lease.now = r.now
	if err := lease.Renew(); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Lookup("orders", "default"); len(got) != 1 {
		t.Errorf("renewed record not served: %v", got)
	}

	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Lookup("orders", "default"); len(got) != 0 {
		t.Errorf("released record still served: %v", got)
	}
	if err := lease.Release(); err != nil {
		t.Errorf("second release: %v", err)
	}
}

func TestRegistryDropsDeadProcesses(t *testing.T) {
	r, err := NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	dead := testInstance("orders", "127.0.0.1:4001")
	dead.PID = 1 << 22 // above the kernel's pid_max: never a live process
	if _, err := r.Register(dead); err != nil {
		t.Fatal(err)
	}
	live := testInstance("orders", "127.0.0.1:4002")
	if _, err := r.Register(live); err != nil {
		t.Fatal(err)
	}
	got, _ := r.Lookup("orders", "default")
	if diff := cmp.Diff([]Instance{live}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	// The dead record was removed from disk too.
	files, _ := filepath.Glob(filepath.Join(r.dir, "default", "orders", "*.json"))
	if len(files) != 1 {
		t.Errorf("files left: %v", files)
	}
}

// TestRegistryUnreadableRecords: a live record that cannot be decoded
// fails the lookup with an error naming it, so callers keep what they
// knew (the resolver keeps its last endpoints on error); other files are
// ignored, a damaged record whose lease ran out no longer matters, and its
// owner's next renewal repairs it. test/faults' TestRegistryCorrupted runs
// this with real sidecars.
func TestRegistryUnreadableRecords(t *testing.T) {
	r, err := NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	r.now = func() time.Time { return now }
	in := testInstance("orders", "127.0.0.1:4010")
	lease, err := r.Register(in)
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(r.dir, "default", "orders")
	for name, body := range map[string]string{"bad.json": "{", "empty.json": "{}", "notes.txt": "hi", in.ID() + ".json": "\x00garbage"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Lookup("orders", "default")
	if err == nil || got != nil {
		t.Fatalf("Lookup = %v, %v; want an error", got, err)
	}
	for _, want := range []string{"bad.json", "empty.json: no address", in.ID() + ".json"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	if strings.Contains(err.Error(), "notes.txt") {
		t.Errorf("error %q names a file that is not a record", err)
	}

	// The owner's renewal rewrites its record; the others' leases run out.
	now = now.Add(LeaseTTL + time.Second)
	lease.now = r.now
	if err := lease.Renew(); err != nil {
		t.Fatal(err)
	}
	got, err = r.Lookup("orders", "default")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Instance{in}, got); diff != "" {
		t.Errorf("after the renewal (-want +got):\n%s", diff)
	}
}

// TestLeaseRenewRestoresRecord: a renewal brings back a record whose
// directory was removed.
func TestLeaseRenewRestoresRecord(t *testing.T) {
	r, err := NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	in := testInstance("orders", "127.0.0.1:4011")
	lease, err := r.Register(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(r.dir, "default")); err != nil {
		t.Fatal(err)
	}
	if got, _ := r.Lookup("orders", "default"); len(got) != 0 {
		t.Fatalf("removed record still served: %v", got)
	}
	if err := lease.Renew(); err != nil {
		t.Fatal(err)
	}
	if got, err := r.Lookup("orders", "default"); err != nil || len(got) != 1 {
		t.Errorf("after the renewal: %v, %v; want the instance", got, err)
	}
}

func TestRegistryFileModes(t *testing.T) {
	r, err := NewRegistry(filepath.Join(t.TempDir(), "registry"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(testInstance("orders", "127.0.0.1:4003")); err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join(r.dir, "default", "orders", "*.json"))
	if len(files) != 1 {
		t.Fatalf("files: %v", files)
	}
	for path, want := range map[string]os.FileMode{r.dir: 0o700 | os.ModeDir, files[0]: 0o600} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s mode = %v, want %v", path, st.Mode(), want)
		}
	}
}
