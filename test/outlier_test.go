package test

import (
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestOutlierEjection: an instance whose app died answers 5xx; after five
// in a row the caller ejects it and the other instance serves everything;
// the ejection ends and a revived instance gets calls again; with every
// instance failing, calls still go to the least bad one instead of failing
// in the caller.
func TestOutlierEjection(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	p1, app1 := m.app("b1")
	p2, app2 := m.app("b2")
	m.sidecar("b", p1)
	m.sidecar("b", p2)
	a := m.sidecar("a", 0, "--outlier-base-ejection", "1s", "--outlier-max-ejection", "4s")

	// call returns the instance that answered, or "" and the error reason.
	call := func() (instance string, status int, reason string) {
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "hi"), nil))
		if resp.StatusCode == http.StatusOK {
			return resp.Header.Get("X-Instance"), resp.StatusCode, ""
		}
		return "", resp.StatusCode, decodeError(t, resp, body).reason()
	}
	burst := func(n int) (seen map[string]int, failed int, reasons map[string]int) {
		seen, reasons = map[string]int{}, map[string]int{}
		for range n {
			inst, _, reason := call()
			if inst == "" {
				failed++
				reasons[reason]++
				continue
			}
			seen[inst]++
		}
		return seen, failed, reasons
	}
	waitFor(t, 5*time.Second, "both instances of b known to a", func() bool {
		seen, _, _ := burst(10)
		return seen["b1"] > 0 && seen["b2"] > 0
	})

	// b1's app dies: its sidecar answers 5xx until the caller ejects it.
	app1.signal(syscall.SIGKILL)
	<-app1.done
	seen, failed, reasons := burst(30)
	if failed != 5 || seen["b2"] != 25 {
		t.Errorf("after b1's app died: %d failed (%v), served %v; want exactly 5 failures then b2 serving the rest", failed, reasons, seen)
	}
	if n := a.metric(t, "skein_discovery_ejections_total", `app_id="a"`, `dst_app_id="b"`); n != 1 {
		t.Errorf("skein_discovery_ejections_total = %v, want 1", n)
	}
	if n := a.metric(t, "skein_discovery_ejected_endpoints", `dst_app_id="b"`); n != 1 {
		t.Errorf("skein_discovery_ejected_endpoints = %v, want 1", n)
	}

	// b1 comes back; once its ejection (1 s) ends it gets calls again.
	app1 = m.start("app b1 again", bin.testapp, nil, "--port", strconv.Itoa(p1), "--name", "b1")
	time.Sleep(1500 * time.Millisecond)
	waitFor(t, 5*time.Second, "b1 serving again", func() bool {
		seen, failed, _ := burst(20)
		return failed == 0 && seen["b1"] > 0 && seen["b2"] > 0
	})
	if n := a.metric(t, "skein_discovery_ejected_endpoints", `dst_app_id="b"`); n != 0 {
		t.Errorf("skein_discovery_ejected_endpoints = %v after recovery, want 0", n)
	}

	// Every instance fails: both get ejected, and calls still reach the
	// least bad one (the callee's sidecar answers), not a caller-side
	// "no instance" error.
	app2.signal(syscall.SIGKILL)
	<-app2.done
	app1.signal(syscall.SIGKILL)
	<-app1.done
	_, failed, reasons = burst(20)
	if failed != 20 {
		t.Errorf("with every app dead %d of 20 calls failed", failed)
	}
	for r := range reasons {
		if r == "APP_NOT_FOUND" || r == "APP_UNREACHABLE" {
			t.Errorf("all ejected: calls failed in the caller (%v); want them sent to the least bad instance", reasons)
		}
	}
	if n := a.metric(t, "skein_discovery_ejected_endpoints", `dst_app_id="b"`); n != 2 {
		t.Errorf("skein_discovery_ejected_endpoints = %v with both failing, want 2", n)
	}
}
