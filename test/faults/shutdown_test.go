package faults

import (
	"fmt"
	"io"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// TestGracefulShutdown is issue 14 point 6: on SIGTERM a sidecar stops
// advertising itself, keeps serving what callers still send it while they
// learn it is gone, finishes the calls in flight, and exits 0; under steady
// GETs and POSTs no call fails and no POST reaches an app twice.
func TestGracefulShutdown(t *testing.T) {
	m := harness.NewMesh(t, bin)
	p1, _ := m.App("b1", 0)
	m.Sidecar("app-b", p1)
	p2, _ := m.App("b2", 0)
	b2 := m.Sidecar("app-b", p2)
	a := m.Sidecar("app-a", 0)

	load := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: 4, Posts: true})
	load.Progress(t, 200, 20*time.Second)

	// Slow calls in flight at b2 when it is told to stop: sent through the
	// caller until two of them are held by b2's app.
	type result struct {
		status int
		body   string
		err    error
	}
	slow := make(chan result, 20)
	sent := 0
	for ; sent < 20 && harness.AppNumber(t, p2, "/inflight") < 2; sent++ {
		go func() {
			resp, err := http.Get(a.InvokeURL("app-b", "slow?ms=2000"))
			if err != nil {
				slow <- result{err: err}
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			slow <- result{resp.StatusCode, string(b), err}
		}()
		time.Sleep(50 * time.Millisecond)
	}
	if harness.AppNumber(t, p2, "/inflight") < 1 {
		t.Fatalf("no slow call reached b2 in %d tries", sent)
	}
	b2.Signal(syscall.SIGTERM)
	if code := b2.ExitCode(t, 15*time.Second); code != 0 {
		t.Errorf("b2's sidecar exited %d after SIGTERM, want 0", code)
	}
	load.Progress(t, 200, 20*time.Second)
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.Failed() != 0 {
		t.Errorf("%d calls failed around b2's shutdown, first: %v", res.Failed(), res.Failures)
	}
	if res.ByInstance["b2"] == 0 {
		t.Errorf("b2 served no call of the load: the shutdown was not under load")
	}
	harness.Duplicates(t, res, harness.AppCounts(t, p1), harness.AppCounts(t, p2))
	for range sent {
		if r := <-slow; r.err != nil || r.status != http.StatusOK || r.body != "slept 2000ms" {
			t.Errorf("slow call in flight during the shutdown: %d %q %v, want 200 \"slept 2000ms\"", r.status, r.body, r.err)
		}
	}
}

// TestRollingRestart is issue 14 point 6: every instance of an app is
// restarted in turn (SIGTERM to its sidecar, then its app; a new app and
// sidecar; the next once callers see it) under steady GETs and POSTs; no
// call fails and no POST reaches an app twice.
func TestRollingRestart(t *testing.T) {
	const instances = 3
	m := harness.NewMesh(t, bin)
	type instance struct {
		port int
		app  *harness.Proc
		sc   *harness.Sidecar
	}
	var ins [instances]instance
	for i := range ins {
		port, app := m.App(fmt.Sprintf("b%d", i), 0)
		ins[i] = instance{port, app, m.Sidecar("app-b", port)}
	}
	a := m.Sidecar("app-a", 0)
	load := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: 4, Posts: true})
	load.Progress(t, 100, 20*time.Second)

	var counts []map[string]int // of the apps stopped
	for i := range ins {
		old := ins[i]
		old.sc.Signal(syscall.SIGTERM)
		if code := old.sc.ExitCode(t, 15*time.Second); code != 0 {
			t.Errorf("instance %d's sidecar exited %d after SIGTERM, want 0", i, code)
		}
		// Nothing reaches the app once its sidecar has gone: its counts
		// are final.
		counts = append(counts, harness.AppCounts(t, old.port))
		old.app.Signal(syscall.SIGTERM)
		old.app.ExitCode(t, 10*time.Second)
		port, app := m.App(fmt.Sprintf("b%d-new", i), 0)
		ins[i] = instance{port, app, m.Sidecar("app-b", port)}
		harness.WaitFor(t, 10*time.Second, "the caller to see the new instance", func() bool {
			return len(a.Instances(t, "app-b")) == instances
		})
		// The next restart only once the load reaches the new instance.
		harness.WaitFor(t, 10*time.Second, "the load reaching the new instance", func() bool {
			return harness.AppNumber(t, port, "/requests") >= 20
		})
	}
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.Failed() != 0 {
		t.Errorf("%d calls failed in the rolling restart, first: %v", res.Failed(), res.Failures)
	}
	for i := range ins {
		counts = append(counts, harness.AppCounts(t, ins[i].port))
		if name := fmt.Sprintf("b%d-new", i); res.ByInstance[name] == 0 {
			t.Errorf("the new instance %s served no call", name)
		}
	}
	harness.Duplicates(t, res, counts...)
}
