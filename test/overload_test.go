package test

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// overloadRes retries every 5xx and trips a breaker after two failures in
// a row: were refusals for overload retried or counted as failures, the
// counts below would show it.
const overloadRes = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: overload
spec:
  policies:
    retries:
      eager:
        policy: constant
        duration: 10ms
        maxRetries: 3
        matching:
          httpStatusCodes: "500-599"
    circuitBreakers:
      touchy:
        maxRequests: 1
        timeout: 1m
        trip: consecutiveFailures >= 2
  targets:
    apps:
      app-b:
        retry: eager
        circuitBreaker: touchy
`

// overloadBurst sends n concurrent calls to app-b's /hold?gate=gate through
// a, waits until held of them have reached the app and every other one has
// been answered, checks that each of those is a refusal for overload by
// the limit named side, then releases the gate and checks that the held
// calls succeed.
func overloadBurst(t *testing.T, a *sidecar, appPort, n, held int, gate, side string) {
	t.Helper()
	type answer struct {
		status int
		header http.Header
		body   []byte
		err    error
	}
	answers := make(chan answer, n)
	key := "overload-" + gate
	for range n {
		go func() {
			req, err := http.NewRequest(http.MethodGet, a.invokeURL("app-b", "hold?gate="+gate), nil)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			req.Header.Set("X-Count-Key", key)
			resp, err := (&http.Client{Timeout: 40 * time.Second}).Do(req)
			if err != nil {
				answers <- answer{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers <- answer{resp.StatusCode, resp.Header, b, err}
		}()
	}
	count := func() int {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(appPort) + "/count?key=" + key)
		if err != nil {
			return -1
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		c, _ := strconv.Atoi(string(b))
		return c
	}
	// The held calls cannot end before the gate opens, so exactly n-held
	// answers come first, and each must be a refusal.
	for i := range n - held {
		var got answer
		select {
		case got = <-answers:
		case <-time.After(30 * time.Second):
			t.Fatalf("%d of %d refusals came back", i, n-held)
		}
		if got.err != nil {
			t.Fatalf("call: %v", got.err)
		}
		resp := &http.Response{StatusCode: got.status, Header: got.header}
		e := decodeError(t, resp, got.body)
		if got.status != http.StatusServiceUnavailable || e.reason() != "OVERLOADED" || e.ErrorCode != "ERR_DIRECT_INVOKE" {
			t.Fatalf("answer %d: %d %s %s, want 503 ERR_DIRECT_INVOKE OVERLOADED: %s", i+1, got.status, e.ErrorCode, e.reason(), got.body)
		}
		if ra := got.header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		if md := e.Details[0].Metadata; md["limit"] != side || md["appID"] != "app-b" {
			t.Errorf("refusal metadata %v, want limit %s and appID app-b", md, side)
		}
	}
	// The admitted calls may still be on their way to the app.
	waitFor(t, 10*time.Second, "the admitted calls at the app", func() bool { return count() >= held })
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(appPort) + "/release?gate=" + gate)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	for range held {
		got := <-answers
		if got.err != nil || got.status != http.StatusOK || string(got.body) != "released" {
			t.Errorf("held call: %d %q %v, want 200 released", got.status, got.body, got.err)
		}
	}
	if c := count(); c != held {
		t.Errorf("the app got %d calls, want the %d admitted (no refused call reached it, none was retried)", c, held)
	}
}

// TestOverloadAppChannelLimit: the callee's limit on its app channel
// (pinned to 3 here by its bounds) refuses what is beyond it at once; the
// caller passes the refusal on as 503 OVERLOADED with Retry-After, does
// not retry it although its policy retries 5xx, and neither trips its
// breaker nor ejects the instance; both counts are in the callee's
// skein_overload_refused_total.
func TestOverloadAppChannelLimit(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(overloadRes), 0o600); err != nil {
		t.Fatal(err)
	}
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--overload-min-limit", "3", "--overload-max-limit", "3")
	a := m.sidecar("app-a", 0, "--resources-path", dir)

	const n, limit = 10, 3
	overloadBurst(t, a, bPort, n, limit, "g1", "app")

	if got := b.metric(t, "skein_overload_refused_total", `app_id="app-b"`, `side="app"`, `dst_app_id="app-b"`); got != n-limit {
		t.Errorf("callee skein_overload_refused_total{side=app} = %v, want %d (a retry would have been refused too)", got, n-limit)
	}
	if got := b.metric(t, "skein_overload_limit", `app_id="app-b"`, `side="app"`, `dst_app_id="app-b"`); got != limit {
		t.Errorf("callee skein_overload_limit = %v, want %d", got, limit)
	}
	if got := a.metric(t, "skein_overload_refused_total"); got != 0 {
		t.Errorf("caller skein_overload_refused_total = %v, want 0: its own limit refused nothing", got)
	}
	if got := a.metric(t, "skein_discovery_ejections_total", `dst_app_id="app-b"`); got != 0 {
		t.Errorf("skein_discovery_ejections_total = %v after refusals, want 0", got)
	}
	if got := a.metric(t, "dapr_resiliency_cb_state", `target="app_app-b"`, `status="open"`); got != 0 {
		t.Errorf("breaker open after %d refusals (trips at 2 failures)", n-limit)
	}
	// The next call goes through: no breaker open, no instance ejected.
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Errorf("call after the burst: %d %s, want 200", resp.StatusCode, body)
	}
}

// TestOverloadTargetLimit: the caller's limit for a target (pinned to 3)
// refuses at once, before anything leaves the caller, with 503 OVERLOADED
// and Retry-After, counted in skein_overload_refused_total{side=outbound};
// an app id nobody answers to gets no limiter and no series.
func TestOverloadTargetLimit(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(overloadRes), 0o600); err != nil {
		t.Fatal(err)
	}
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0, "--resources-path", dir, "--overload-min-limit", "3", "--overload-max-limit", "3")

	// A target gets its limiter once a call to it is answered.
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("first call: %d %s", resp.StatusCode, body)
	}
	for i := range 20 {
		resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("ghost-"+strconv.Itoa(i), "echo"), nil))
		if resp.StatusCode == http.StatusOK {
			t.Fatalf("call to an unknown app id answered 200")
		}
	}

	const n, limit = 10, 3
	overloadBurst(t, a, bPort, n, limit, "g2", "outbound")

	if got := a.metric(t, "skein_overload_refused_total", `app_id="app-a"`, `side="outbound"`, `dst_app_id="app-b"`); got != n-limit {
		t.Errorf("caller skein_overload_refused_total{side=outbound,dst_app_id=app-b} = %v, want %d", got, n-limit)
	}
	if got := a.metric(t, "skein_overload_limit", `side="outbound"`); got != limit {
		t.Errorf("caller skein_overload_limit summed over targets = %v, want %d: app-b's only, none for unknown app ids", got, limit)
	}
	if got := b.metric(t, "skein_overload_refused_total"); got != 0 {
		t.Errorf("callee skein_overload_refused_total = %v, want 0: refused calls never left the caller", got)
	}
}
