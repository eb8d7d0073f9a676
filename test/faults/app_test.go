package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// margin is how far above its baseline a sidecar's goroutines and open fds
// may stay once a fault has ended: a few pooled connections more or less,
// never one per faulty call (each case makes 40 or more).
var margin = harness.Usage{Goroutines: 12, FDs: 8}

// pair is a caller and a callee sidecar in front of one test app, warmed
// up, with their baselines.
type pair struct {
	a, b       *harness.Sidecar
	appPort    int
	baseA, bas harness.Usage
}

// newPair starts app-b behind a sidecar and a caller app-a with extra
// flags, makes 50 calls 10 at a time so both hops' connection pools are at
// their working size, and takes the baselines.
func newPair(t *testing.T, extra ...string) *pair {
	t.Helper()
	m := harness.NewMesh(t, bin)
	port, _ := m.App("b", 0)
	p := &pair{b: m.Sidecar("app-b", port), appPort: port}
	p.a = m.Sidecar("app-a", 0, extra...)
	if failed := calls(t, 50, 10, func(int) (*http.Request, error) {
		return http.NewRequest(http.MethodGet, p.a.InvokeURL("app-b", "echo"), nil)
	}, func(int, *http.Response, error) string { return "" }); len(failed) != 0 {
		t.Fatalf("warm-up: %v", failed)
	}
	p.baseA, p.bas = p.a.Usage(t), p.b.Usage(t)
	t.Logf("baselines: caller %v, callee %v", p.baseA, p.bas)
	return p
}

// settles checks that both sidecars come back to their baselines and
// still serve calls.
func (p *pair) settles(t *testing.T) {
	t.Helper()
	if failed := calls(t, 20, 5, func(int) (*http.Request, error) {
		return http.NewRequest(http.MethodGet, p.a.InvokeURL("app-b", "echo"), nil)
	}, func(int, *http.Response, error) string { return "" }); len(failed) != 0 {
		t.Errorf("calls after the fault: %v", failed)
	}
	ua := p.a.Settles(t, p.baseA, margin, 15*time.Second)
	ub := p.b.Settles(t, p.bas, margin, 15*time.Second)
	t.Logf("after the fault: caller %v, callee %v", ua, ub)
}

// calls makes n requests, concurrency at a time, and returns what check
// says is wrong with each answer (the empty string: nothing). A status
// other than 200 is a failure unless check reads the response. check
// sees every response with its body unread and must not close it.
func calls(t *testing.T, n, concurrency int, req func(i int) (*http.Request, error), check func(i int, resp *http.Response, err error) string) []string {
	t.Helper()
	cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: concurrency}}
	defer cl.CloseIdleConnections()
	var mu sync.Mutex
	var failed []string
	var wg sync.WaitGroup
	next := make(chan int)
	for range concurrency {
		wg.Go(func() {
			for i := range next {
				r, err := req(i)
				if err != nil {
					t.Error(err)
					continue
				}
				resp, err := cl.Do(r)
				msg := check(i, resp, err)
				if err == nil {
					if msg == "" && resp.StatusCode != http.StatusOK && resp.Request.Method != "" && check == nil {
						msg = resp.Status
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else if msg == "" {
					msg = err.Error()
				}
				if msg != "" {
					mu.Lock()
					failed = append(failed, fmt.Sprintf("call %d: %s", i, msg))
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return failed
}

// firsts is the first few of many failures, for a message.
func firsts(failed []string) []string {
	if len(failed) > 3 {
		return append(failed[:3:3], fmt.Sprintf("and %d more", len(failed)-3))
	}
	return failed
}

// reason is the machine-readable reason of a Skein error body.
func reason(b []byte) string {
	var e struct {
		Details []struct{ Reason string } `json:"details"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Details) == 0 {
		return ""
	}
	return e.Details[0].Reason
}

// TestAppHangs is issue 14 point 4, the app hanging: a route timeout ends
// every call to an app that never answers (500 ERR_DIRECT_INVOKE, as Dapr,
// with reason TIMEOUT), each call
// reaches the app once, and the connections and goroutines those calls
// held on both sidecars are released.
func TestAppHangs(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "resiliency.yaml"), []byte(`apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: hang
spec:
  policies:
    timeouts:
      short: 300ms
  targets:
    apps:
      app-b:
        timeout: short
`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := newPair(t, "--resources-path", dir)
	const n = 40
	failed := calls(t, n, 10, func(i int) (*http.Request, error) {
		r, err := http.NewRequest(http.MethodGet, p.a.InvokeURL("app-b", "hang"), nil)
		if err == nil {
			r.Header.Set("X-Count-Key", fmt.Sprintf("hang-%d", i))
		}
		return r, err
	}, func(i int, resp *http.Response, err error) string {
		if err != nil {
			return err.Error()
		}
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusInternalServerError || reason(b) != "TIMEOUT" {
			return fmt.Sprintf("%d %s, want 500 TIMEOUT", resp.StatusCode, b)
		}
		if got := harness.AppNumber(t, p.appPort, fmt.Sprintf("/count?key=hang-%d", i)); got != 1 {
			return fmt.Sprintf("reached the app %d times, want 1", got)
		}
		return ""
	})
	if len(failed) != 0 {
		t.Errorf("%d of %d calls to a hanging app: %v", len(failed), n, firsts(failed))
	}
	p.settles(t)
}

// TestAppMisbehaves is issue 14 point 4, the app answering garbage or
// dropping the connection halfway through its answer: a call that got
// garbage fails with a Skein error (the app reached once), a call whose
// answer was cut short reaches the client cut short (never as a complete
// answer), and neither leaves anything behind on the sidecars.
func TestAppMisbehaves(t *testing.T) {
	p := newPair(t)
	const n, size = 40, 1 << 20
	t.Run("garbage", func(t *testing.T) {
		failed := calls(t, n, 10, func(i int) (*http.Request, error) {
			r, err := http.NewRequest(http.MethodGet, p.a.InvokeURL("app-b", "garbage"), nil)
			if err == nil {
				r.Header.Set("X-Count-Key", fmt.Sprintf("garbage-%d", i))
			}
			return r, err
		}, func(i int, resp *http.Response, err error) string {
			if err != nil {
				return err.Error()
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode < 500 || reason(b) == "" {
				return fmt.Sprintf("%d %s, want a 5xx with a reason", resp.StatusCode, b)
			}
			if got := harness.AppNumber(t, p.appPort, fmt.Sprintf("/count?key=garbage-%d", i)); got != 1 {
				return fmt.Sprintf("reached the app %d times, want 1", got)
			}
			return ""
		})
		if len(failed) != 0 {
			t.Errorf("%d of %d calls to an app answering garbage: %v", len(failed), n, firsts(failed))
		}
	})
	t.Run("cut mid-response", func(t *testing.T) {
		failed := calls(t, n, 10, func(i int) (*http.Request, error) {
			return http.NewRequest(http.MethodGet, p.a.InvokeURL("app-b", fmt.Sprintf("cut?size=%d", size)), nil)
		}, func(i int, resp *http.Response, err error) string {
			if err != nil {
				return "" // cut before the head reached the client: fine
			}
			got, rerr := io.Copy(io.Discard, resp.Body)
			if rerr == nil && got == size {
				return fmt.Sprintf("%d: a complete %d-byte answer from an app that sent half", resp.StatusCode, got)
			}
			if rerr == nil && resp.StatusCode == http.StatusOK {
				return fmt.Sprintf("200 with %d of %d bytes and no error: the cut was hidden", got, size)
			}
			return ""
		})
		if len(failed) != 0 {
			t.Errorf("%d of %d calls cut mid-response: %v", len(failed), n, firsts(failed))
		}
	})
	p.settles(t)
}
