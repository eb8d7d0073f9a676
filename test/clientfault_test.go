package test

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestMalformedBodyIsTheClientsFault covers issue 11 point 4, bullet 4: a
// request body the client cannot frame (a chunked body with bare-LF line
// ends) is answered at once 400 INVALID_REQUEST_BODY, never 500
// APP_UNREACHABLE, and however many there are, and however many bodies
// over --max-body-size, the healthy callee instance is not ejected.
func TestMalformedBodyIsTheClientsFault(t *testing.T) {
	for _, transport := range []string{"h1", "h2"} { // --peer-transport: lean HTTP/1.1 and net/http's HTTP/2
		t.Run(transport, func(t *testing.T) {
			m := newMesh(t)
			bPort, _ := m.app("b")
			m.sidecar("app-b", bPort)
			a := m.sidecar("app-a", 0, "--peer-transport", transport, "--max-body-size", "1Ki")
			waitFor(t, 10*time.Second, "app-b reachable from app-a", func() bool {
				resp, err := http.Get(a.invokeURL("app-b", "ping"))
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})

			const head = "POST /v1.0/invoke/app-b/method/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
			bodies := []struct {
				name, raw string
				status    int
				reason    string
			}{
				{"bare-LF chunks", head + "5\nhello\n0\n\n", http.StatusBadRequest, "INVALID_REQUEST_BODY"},
				// Dapr's status for a body over --max-body-size, but the
				// client's fault all the same.
				{"chunked body over --max-body-size", head + "1000\r\n" + strings.Repeat("x", 4096) + "\r\n0\r\n\r\n",
					http.StatusInternalServerError, "BODY_TOO_LARGE"},
			}
			for _, body := range bodies {
				for i := range 2 * 5 { // twice the default outlier run
					start := time.Now()
					resp, b := rawExchange(t, a.http, body.raw)
					if e := decodeError(t, resp, b); resp.StatusCode != body.status || e.reason() != body.reason {
						t.Fatalf("%s, request %d: %d %s, want %d %s", body.name, i+1, resp.StatusCode, b, body.status, body.reason)
					}
					if d := time.Since(start); d > 2*time.Second {
						t.Errorf("%s, request %d: answered after %s", body.name, i+1, d)
					}
				}
			}
			if n := a.metric(t, "skein_discovery_ejections_total", `dst_app_id="app-b"`); n != 0 {
				t.Errorf("skein_discovery_ejections_total = %v after client faults, want 0", n)
			}
			resp, b := do(t, newRequest(t, http.MethodPost, a.invokeURL("app-b", "echo"), strings.NewReader("hello")))
			if resp.StatusCode != http.StatusOK || decodeEcho(t, b).BodyLen != 5 {
				t.Errorf("a good call after client faults: %d: %s", resp.StatusCode, b)
			}
		})
	}
}
