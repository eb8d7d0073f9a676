package test

import (
	"io"
	"net/http"
	"strconv"
	"testing"
	"time"
)

// TestInvalidUTF8 covers issue 11 point 4: bytes that are not UTF-8 in a
// method, a target or a caller's id never panic a layer. Each call gets a
// clear answer, /metrics stays scrapeable, and behind
// --app-max-concurrency 2 the callee keeps serving; before, a label value
// that was not UTF-8 panicked in the metrics layer and every such call
// leaked a slot, so two of them hung the callee for good.
func TestInvalidUTF8(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	// Cleartext between sidecars, so the test can call b's peer port with
	// a caller id of its choosing, as any client could then.
	b := m.sidecar("app-b", bPort, "--app-max-concurrency", "2", "--enable-mtls=false")
	a := m.sidecar("app-a", 0, "--enable-mtls=false")
	cl := &http.Client{Timeout: 10 * time.Second} // a hung callee fails the test, not the run

	call := func(t *testing.T, req *http.Request) (*http.Response, []byte) {
		t.Helper()
		resp, err := cl.Do(req)
		if err != nil {
			t.Fatalf("%s: %v (the client got no answer)", req.URL, err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("%s: body: %v", req.URL, err)
		}
		return resp, body
	}
	tests := []struct {
		name       string
		req        func(t *testing.T) *http.Request
		wantStatus int
		wantReason string // of the error envelope; "" for the app's answer
	}{{
		name: "method with %ff, to another app",
		req: func(t *testing.T) *http.Request {
			return newRequest(t, http.MethodGet, a.invokeURL("app-b", "public/%ff1"), nil)
		},
		wantStatus: http.StatusInternalServerError, wantReason: "INVALID_METHOD",
	}, {
		name: "method with truncated UTF-8, self-invocation",
		req: func(t *testing.T) *http.Request {
			return newRequest(t, http.MethodPost, b.invokeURL("app-b", "caf%c3"), nil)
		},
		wantStatus: http.StatusInternalServerError, wantReason: "INVALID_METHOD",
	}, {
		name: "app id with %ff",
		req: func(t *testing.T) *http.Request {
			return newRequest(t, http.MethodGet, a.invokeURL("app-%ff", "x"), nil)
		},
		wantStatus: http.StatusInternalServerError, wantReason: "INVALID_APP_ID",
	}, {
		name: "caller id with 0xff, straight to the peer port",
		req: func(t *testing.T) *http.Request {
			r := newRequest(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(b.internalPort(t))+"/public/ok", nil)
			r.Host = "app-b.default"
			r.Header.Set("dapr-caller-app-id", "\xff")
			return r
		},
		wantStatus: http.StatusOK,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for range 4 { // twice the callee's slots
				resp, body := call(t, tc.req(t))
				if resp.StatusCode != tc.wantStatus {
					t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantStatus, body)
				}
				if tc.wantReason != "" {
					if e := decodeError(t, resp, body); e.reason() != tc.wantReason {
						t.Errorf("reason %q, want %q: %s", e.reason(), tc.wantReason, body)
					}
				}
			}
			// The callee did not hang: a normal call gets through.
			resp, body := call(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "after"), nil))
			if resp.StatusCode != http.StatusOK || decodeEcho(t, body).Path != "/after" {
				t.Fatalf("normal call afterwards: %d %s", resp.StatusCode, body)
			}
		})
	}
	for _, s := range []*sidecar{a, b} {
		if n := s.metric(t, "skein_panics_total"); n != 0 {
			t.Errorf("%s: skein_panics_total = %v, want 0 (nothing should have panicked)", s.appID, n)
		}
	}
	// The caller id that was not an app id is Dapr's "unknown".
	if n := b.metric(t, "dapr_runtime_service_invocation_req_recv_total", `src_app_id="unknown"`); n != 4 {
		t.Errorf(`req_recv_total{src_app_id="unknown"} = %v, want 4`, n)
	}
	if a.exited() || b.exited() {
		t.Fatal("a sidecar exited")
	}
}
