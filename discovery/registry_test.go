package discovery

import (
	"os"
	"path/filepath"
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

func TestRegistryIgnoresGarbage(t *testing.T) {
	r, err := NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(r.dir, "default", "orders")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{"bad.json": "{", "empty.json": "{}", "notes.txt": "hi"} {
		if err := os.WriteFile(filepath.Join(d, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	got, err := r.Lookup("orders", "default")
	if err != nil || len(got) != 0 {
		t.Errorf("Lookup = %v, %v; want nothing", got, err)
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
