package test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/discovery"
)

// errShape is what a client branches on in an invoke error (contract
// §1.10 plus PRODUCT.md difference 4).
type errShape struct {
	Status                     int
	ErrorCode                  string
	DetailType, Domain, Reason string
}

// checkInvokeError checks a sidecar-generated invoke error: status, JSON
// envelope with errorCode ERR_DIRECT_INVOKE, one google.rpc.ErrorInfo
// detail in domain skein with the given reason, and a message starting
// with msgPrefix.
func checkInvokeError(t *testing.T, resp *http.Response, b []byte, status int, reason, msgPrefix string) daprError {
	t.Helper()
	e := decodeError(t, resp, b)
	got := errShape{Status: resp.StatusCode, ErrorCode: e.ErrorCode}
	if len(e.Details) != 1 {
		t.Errorf("details: got %d, want exactly one ErrorInfo: %s", len(e.Details), b)
	} else {
		got.DetailType, got.Domain, got.Reason = e.Details[0].Type, e.Details[0].Domain, e.Details[0].Reason
	}
	want := errShape{Status: status, ErrorCode: "ERR_DIRECT_INVOKE",
		DetailType: "type.googleapis.com/google.rpc.ErrorInfo", Domain: "skein", Reason: reason}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("error (-want +got):\n%s\nbody: %s", diff, b)
	}
	if !strings.HasPrefix(e.Message, msgPrefix) {
		t.Errorf("message %q, want prefix %q", e.Message, msgPrefix)
	}
	return e
}

// TestInvokeErrors covers the errors the invoke API generates itself
// (contract §1.10): Dapr's status and errorCode, Skein's reason.
func TestInvokeErrors(t *testing.T) {
	p := startInvokePair(t)
	const noAppID = "failed getting app id either from the URL path or the header dapr-app-id"

	tests := []struct {
		name    string
		method  string
		path    string
		header  http.Header
		status  int
		reason  string
		wantMsg string
		exact   bool // wantMsg is the whole message, not a prefix
	}{
		{name: "no app id", method: "GET", path: "/nope",
			status: 404, reason: "NO_APP_ID", wantMsg: noAppID, exact: true},
		{name: "invoke path without method segment", method: "POST", path: "/v1.0/invoke/app-b",
			status: 404, reason: "NO_APP_ID", wantMsg: noAppID, exact: true},
		{name: "wrong verb on a control endpoint", method: "POST", path: "/v1.0/healthz",
			status: 404, reason: "NO_APP_ID", wantMsg: noAppID, exact: true},
		{name: "empty dapr-app-id header", method: "GET", path: "/x", header: http.Header{"Dapr-App-Id": {""}},
			status: 404, reason: "NO_APP_ID", wantMsg: noAppID, exact: true},
		{name: "app id with two dots", method: "GET", path: "/v1.0/invoke/a.b.c/method/x",
			status: 500, reason: "INVALID_APP_ID", wantMsg: "failed to invoke, id: a.b.c, err: invalid app id a.b.c", exact: true},
		{name: "app id with two dots in header", method: "GET", path: "/x", header: http.Header{"Dapr-App-Id": {"a.b.c"}},
			status: 500, reason: "INVALID_APP_ID", wantMsg: "failed to invoke, id: a.b.c, err: invalid app id a.b.c", exact: true},
		{name: "app id with two dots in basic auth", method: "GET", path: "/x", header: http.Header{"Authorization": {basicAppID("dapr-app-id", "a.b.c")}},
			status: 500, reason: "INVALID_APP_ID", wantMsg: "failed to invoke, id: a.b.c, err: invalid app id a.b.c", exact: true},
		{name: "forbidden method character", method: "GET", path: "/v1.0/invoke/app-b/method/test%23stream",
			status: 500, reason: "INVALID_METHOD", wantMsg: "failed to invoke, id: app-b, err: invalid method: method contains forbidden character"},
		{name: "forbidden method character, header form", method: "POST", path: "/test%0Astream", header: http.Header{"Dapr-App-Id": {"app-b"}},
			status: 500, reason: "INVALID_METHOD", wantMsg: "failed to invoke, id: app-b, err: invalid method: method contains forbidden character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, tt.method, p.a.url(tt.path), nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			resp, b := do(t, req)
			e := checkInvokeError(t, resp, b, tt.status, tt.reason, tt.wantMsg)
			if tt.exact && e.Message != tt.wantMsg {
				t.Errorf("message %q, want %q", e.Message, tt.wantMsg)
			}
		})
	}

	t.Run("unknown app id", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, p.a.invokeURL("ghost", "x"), nil)
		start := time.Now()
		resp, b := do(t, req)
		took := time.Since(start)
		checkInvokeError(t, resp, b, 500, "APP_NOT_FOUND", "failed to invoke, id: ghost, err: ")
		// The one timed assertion the issue asks for: an unknown id fails
		// at once rather than waiting for discovery.
		if took >= 100*time.Millisecond {
			t.Errorf("unknown app id took %s, want under 100ms", took)
		}
	})

	t.Run("target sidecar unreachable", func(t *testing.T) {
		// A live registry record (this test's own PID, a fresh lease) for an
		// address where nothing listens: found, but not reachable.
		registerInstance(t, p.m, discovery.Instance{AppID: "app-down", Namespace: "default",
			Address: "127.0.0.1:" + strconv.Itoa(freePort(t))})
		resp, b := do(t, newRequest(t, http.MethodPost, p.a.invokeURL("app-down", "x"), strings.NewReader("body")))
		checkInvokeError(t, resp, b, 500, "APP_UNREACHABLE", "failed to invoke, id: app-down, err: ")
	})

	t.Run("target app down", func(t *testing.T) {
		// A first call leaves a kept-alive connection from app-b's sidecar to
		// the app; then the app dies.
		if resp, b := do(t, newRequest(t, http.MethodGet, p.a.invokeURL("app-b", "x"), nil)); resp.StatusCode != http.StatusOK {
			t.Fatalf("call before the app dies: %d %s", resp.StatusCode, b)
		}
		p.appB.signal(syscall.SIGKILL)
		p.appB.exitCode(t, 10*time.Second)
		for _, verb := range []string{http.MethodGet, http.MethodPost} {
			resp, b := do(t, newRequest(t, verb, p.a.invokeURL("app-b", "x"), strings.NewReader("body")))
			checkInvokeError(t, resp, b, 500, "APP_CHANNEL_ERROR", "failed to invoke, id: app-b, err: error invoking app channel: ")
		}
	})
}

// registerInstance writes a registry record for in as a sidecar would
// (discovery.Registry's layout), owned by this test process so it counts as
// alive, with a fresh lease.
func registerInstance(t *testing.T, m *mesh, in discovery.Instance) {
	t.Helper()
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	in.PID, in.Hostname, in.Started = os.Getpid(), host, time.Now()
	dir := filepath.Join(m.home, "registry", in.Namespace, in.AppID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, in.ID()+".json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestHealthz covers /v1.0/healthz and /v1.0/healthz/outbound (contract
// §3.4): not ready while the app's port is closed, ready once it opens.
func TestHealthz(t *testing.T) {
	m := newMesh(t)
	appPort := freePort(t)
	s := m.sidecarNoWait("app-late", appPort)
	waitFor(t, 15*time.Second, "sidecar HTTP port", func() bool {
		if s.exited() {
			t.Fatalf("sidecar exited: %v\n%s", s.err, s.out)
		}
		resp, err := http.Get(s.url("/v1.0/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})

	type result struct {
		Status    int
		ErrorCode string
		Message   string
	}
	get := func(t *testing.T, path string) result {
		t.Helper()
		resp, b := do(t, newRequest(t, http.MethodGet, s.url(path), nil))
		r := result{Status: resp.StatusCode}
		if resp.StatusCode == http.StatusNoContent {
			if len(b) != 0 {
				t.Errorf("204 with a body: %q", b)
			}
			return r
		}
		e := decodeError(t, resp, b)
		r.ErrorCode, r.Message = e.ErrorCode, e.Message
		return r
	}
	notReady := []struct {
		name, path string
		want       result
	}{
		{name: "healthz", path: "/v1.0/healthz",
			want: result{Status: 500, ErrorCode: "ERR_HEALTH_NOT_READY", Message: "dapr is not ready"}},
		{name: "outbound", path: "/v1.0/healthz/outbound",
			want: result{Status: 500, ErrorCode: "ERR_OUTBOUND_HEALTH_NOT_READY", Message: "dapr outbound is not ready"}},
	}
	for _, tt := range notReady {
		t.Run("before the app is up/"+tt.name, func(t *testing.T) {
			got := get(t, tt.path)
			if strings.HasPrefix(got.Message, tt.want.Message) {
				got.Message = tt.want.Message // Dapr appends the targets not ready
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	m.start("app late", bin.testapp, nil, "--port", strconv.Itoa(appPort), "--name", "late")
	s.waitReady(t)

	ready := []struct {
		name, path string
		want       result
	}{
		{name: "healthz", path: "/v1.0/healthz", want: result{Status: 204}},
		{name: "outbound", path: "/v1.0/healthz/outbound", want: result{Status: 204}},
		{name: "healthz with own app id", path: "/v1.0/healthz?appid=app-late", want: result{Status: 204}},
		{name: "healthz with another app id", path: "/v1.0/healthz?appid=app-other",
			want: result{Status: 500, ErrorCode: "ERR_HEALTH_APPID_NOT_MATCH", Message: "dapr app-id does not match"}},
	}
	for _, tt := range ready {
		t.Run("after the app is up/"+tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, get(t, tt.path)); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}

	t.Run("after the app is up/self-invocation", func(t *testing.T) {
		resp, b := do(t, newRequest(t, http.MethodGet, s.invokeURL("app-late", "hello"), nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status = %d: %s", resp.StatusCode, b)
		}
		if e := decodeEcho(t, b); e.Instance != "late" || e.Path != "/hello" {
			t.Errorf("got %s %s from %q, want /hello from late", e.Method, e.Path, e.Instance)
		}
	})
}
