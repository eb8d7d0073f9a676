package test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

const resiliencyRes = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    timeouts:
      fast: 300ms
    retries:
      DefaultAppRetryPolicy:
        policy: constant
        duration: 50ms
        maxRetries: 3
      three:
        policy: constant
        duration: 10ms
        maxRetries: 2
        matching:
          httpStatusCodes: "500-599"
    circuitBreakers:
      cb:
        maxRequests: 1
        interval: 0
        timeout: 2s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      app-c:
        circuitBreaker: cb
      app-d:
        timeout: fast
        retry: three
`

// TestResiliencyPolicies covers resiliency rows of contract §5.8 end to end
// against real apps that count their calls: the default retry policy, a
// named target's timeout and matching retries, and a circuit breaker that
// opens and fails fast without calling the app.
func TestResiliencyPolicies(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(resiliencyRes), 0o600); err != nil {
		t.Fatal(err)
	}
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	cPort, _ := m.app("c")
	m.sidecar("app-c", cPort)
	dPort, _ := m.app("d")
	m.sidecar("app-d", dPort)
	a := m.sidecar("app-a", 0, "--resources-path", dir)

	call := func(target, method, status string) (*http.Response, []byte) {
		req := newRequest(t, http.MethodGet, a.invokeURL(target, method), nil)
		if status != "" {
			req.Header.Set("X-Echo-Status", status)
		}
		return do(t, req)
	}

	t.Run("default retry: 200 once, 400 four times with the app's answer", func(t *testing.T) {
		before := appRequests(t, bPort)
		if resp, _ := call("app-b", "ok", ""); resp.StatusCode != 200 {
			t.Fatalf("status %d", resp.StatusCode)
		}
		if n := appRequests(t, bPort) - before; n != 1 {
			t.Errorf("200: %d app calls, want 1", n)
		}
		before = appRequests(t, bPort)
		resp, body := call("app-b", "bad", "400")
		if resp.StatusCode != 400 || !strings.Contains(string(body), `"path":"/bad"`) {
			t.Errorf("400 case: %d %s", resp.StatusCode, body)
		}
		if n := appRequests(t, bPort) - before; n != 4 {
			t.Errorf("400: %d app calls, want 4 (1 + 3 retries)", n)
		}
	})

	t.Run("named target: matching retries and timeout", func(t *testing.T) {
		before := appRequests(t, dPort)
		if resp, _ := call("app-d", "nf", "404"); resp.StatusCode != 404 {
			t.Errorf("404: status %d", resp.StatusCode)
		}
		if n := appRequests(t, dPort) - before; n != 1 {
			t.Errorf("404 outside the matching list: %d app calls, want 1", n)
		}
		before = appRequests(t, dPort)
		if resp, _ := call("app-d", "err", "503"); resp.StatusCode != 503 {
			t.Errorf("503: status %d", resp.StatusCode)
		}
		if n := appRequests(t, dPort) - before; n != 3 {
			t.Errorf("503 in the matching list: %d app calls, want 3", n)
		}
		resp, body := call("app-d", "slow?ms=2000", "")
		e := decodeError(t, resp, body)
		if resp.StatusCode != 500 || e.reason() != "TIMEOUT" || !strings.Contains(e.Message, "context deadline exceeded") {
			t.Errorf("slow call: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("circuit breaker opens and fails fast", func(t *testing.T) {
		for i := range 3 {
			if resp, _ := call("app-c", "boom", "500"); resp.StatusCode != 500 {
				t.Fatalf("failure %d: status %d", i, resp.StatusCode)
			}
		}
		before := appRequests(t, cPort)
		resp, body := call("app-c", "boom", "500")
		e := decodeError(t, resp, body)
		if resp.StatusCode != 500 || e.reason() != "CIRCUIT_OPEN" || !strings.Contains(e.Message, "circuit breaker is open") {
			t.Errorf("4th call: %d %s", resp.StatusCode, body)
		}
		if n := appRequests(t, cPort) - before; n != 0 {
			t.Errorf("open breaker let %d calls reach the app", n)
		}
		if n := a.metric(t, "dapr_resiliency_cb_state", `status="open"`); n != 1 {
			t.Errorf("cb_state open = %v, want 1", n)
		}
		// Breakers are per method (contract §5.5): another method still works.
		if resp, _ := call("app-c", "other", ""); resp.StatusCode != 200 {
			t.Errorf("another method while boom's breaker is open: %d", resp.StatusCode)
		}
		// After the breaker's 2 s timeout a successful probe closes it.
		opened := time.Now()
		waitFor(t, 6*time.Second, "the breaker to let a probe through", func() bool {
			resp, _ := call("app-c", "boom", "")
			return resp.StatusCode == 200
		})
		if waited := time.Since(opened); waited < time.Second {
			t.Errorf("probe let through after %s, before the breaker's timeout", waited)
		}
		if n := a.metric(t, "dapr_resiliency_cb_state", `status="closed"`); n < 1 {
			t.Errorf("cb_state closed = %v after the probe, want 1", n)
		}
	})
}

// TestResiliencyReload covers resiliency point 7: a Resiliency file
// reloads; an invalid one is rejected and the last good one keeps
// applying; an open breaker stays open across a reload.
func TestResiliencyReload(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "res.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(file+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	write(resiliencyRes)
	cPort, _ := m.app("c")
	m.sidecar("app-c", cPort)
	a := m.sidecar("app-a", 0, "--resources-path", dir)
	call := func(status string) (*http.Response, []byte) {
		req := newRequest(t, http.MethodGet, a.invokeURL("app-c", "boom"), nil)
		if status != "" {
			req.Header.Set("X-Echo-Status", status)
		}
		return do(t, req)
	}
	for range 3 {
		call("500")
	}
	if resp, body := call("500"); decodeError(t, resp, body).reason() != "CIRCUIT_OPEN" {
		t.Fatalf("breaker did not open: %s", body)
	}
	applied := a.metric(t, "skein_config_reloads_total", `result="applied"`)
	// A reload that changes another policy keeps the open breaker's state.
	write(strings.Replace(resiliencyRes, "fast: 300ms", "fast: 400ms", 1))
	waitFor(t, 3*time.Second, "the reload", func() bool {
		return a.metric(t, "skein_config_reloads_total", `result="applied"`) > applied
	})
	if resp, body := call(""); decodeError(t, resp, body).reason() != "CIRCUIT_OPEN" {
		t.Errorf("breaker state lost in the reload: %d %s", resp.StatusCode, body)
	}
	// An invalid file is rejected; the last good config keeps applying.
	rejected := a.metric(t, "skein_config_reloads_total", `result="rejected"`)
	write(strings.Replace(resiliencyRes, "maxRetries: 3", "maxRetries: lots", 1))
	waitFor(t, 3*time.Second, "the rejection", func() bool {
		return a.metric(t, "skein_config_reloads_total", `result="rejected"`) > rejected
	})
	if !strings.Contains(a.out.String(), "maxRetries") {
		t.Error("the rejection log does not name the field")
	}
	if resp, body := call(""); decodeError(t, resp, body).reason() != "CIRCUIT_OPEN" {
		t.Errorf("after a rejected reload: %d %s", resp.StatusCode, body)
	}
}

// TestRetryBudget covers resiliency point 3: with a target failing every
// call under load and a retry policy of 3 retries, total attempts stay
// within the budget (requests + 20% + 10/s) and refusals are counted.
func TestRetryBudget(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(resiliencyRes), 0o600); err != nil {
		t.Fatal(err)
	}
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0, "--resources-path", dir)
	before := appRequests(t, bPort)
	start := time.Now()
	const requests = 200
	for range requests {
		req := newRequest(t, http.MethodGet, a.invokeURL("app-b", "fail"), nil)
		req.Header.Set("X-Echo-Status", "503")
		if resp, _ := do(t, req); resp.StatusCode != 503 {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	secs := time.Since(start).Seconds()
	attempts := appRequests(t, bPort) - before
	limit := requests + int(0.2*requests+10*(secs+1)) + 1
	if attempts > limit {
		t.Errorf("%d attempts for %d failing requests in %.1fs, want at most %d (budget)", attempts, requests, secs, limit)
	}
	if attempts >= 4*requests {
		t.Errorf("no retry was refused: %d attempts", attempts)
	}
	if n := a.metric(t, "skein_resiliency_retry_budget_refused_total"); n < 1 {
		t.Errorf("budget refusals counted %v", n)
	}
	t.Logf("%d requests, %d attempts in %.1fs", requests, attempts, secs)
}

// TestDeadlinePropagates covers resiliency point 5: an incoming
// grpc-timeout travels to the callee's sidecar, which stops waiting on its
// app when it passes (TIMEOUT), and the app's request is cancelled.
func TestDeadlinePropagates(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0)
	req := newRequest(t, http.MethodGet, a.invokeURL("app-b", "slow?ms=5000"), nil)
	req.Header.Set("Grpc-Timeout", "300m")
	start := time.Now()
	resp, body := do(t, req)
	took := time.Since(start)
	e := decodeError(t, resp, body)
	if resp.StatusCode != 500 || e.reason() != "TIMEOUT" {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if took > 3*time.Second {
		t.Errorf("the call took %s: the callee waited on its app past the 300 ms deadline", took)
	}
	waitFor(t, 2*time.Second, "the app's request to be cancelled", func() bool {
		r, err := http.Get("http://127.0.0.1:" + strconv.Itoa(bPort) + "/inflight")
		if err != nil {
			return false
		}
		defer r.Body.Close()
		v, _ := io.ReadAll(r.Body)
		return string(v) == "0"
	})
}
