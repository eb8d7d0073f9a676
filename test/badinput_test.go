package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// rawExchange writes raw bytes on a new connection to 127.0.0.1:port and
// reads one response, so a test controls every byte of the request.
func rawExchange(t *testing.T, port int, raw string) (*http.Response, []byte) {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatalf("write request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

// TestBadInput sends oversized and malformed requests to the API port:
// each gets Go's 431 or 400, and the sidecar keeps serving.
func TestBadInput(t *testing.T) {
	m := newMesh(t)
	aPort, _ := m.app("a")
	a := m.sidecar("app-a", aPort, "--read-buffer-size", "4Ki")

	big := strings.Repeat("x", 16<<10)
	var manyHeaders strings.Builder
	for i := range 256 {
		manyHeaders.WriteString("X-Filler-" + strconv.Itoa(i) + ": " + strings.Repeat("y", 64) + "\r\n")
	}
	invoke := "/v1.0/invoke/app-a/method/ping"
	tests := []struct {
		name   string
		raw    string
		status int
	}{
		{name: "16 KiB header", status: http.StatusRequestHeaderFieldsTooLarge,
			raw: "GET " + invoke + " HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n"},
		{name: "many headers totalling 20 KiB", status: http.StatusRequestHeaderFieldsTooLarge,
			raw: "GET " + invoke + " HTTP/1.1\r\nHost: x\r\n" + manyHeaders.String() + "\r\n"},
		{name: "16 KiB request line", status: http.StatusRequestHeaderFieldsTooLarge,
			raw: "GET " + invoke + "/" + big + " HTTP/1.1\r\nHost: x\r\n\r\n"},
		{name: "header line without colon", status: http.StatusBadRequest,
			raw: "GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n"},
		{name: "space in header name", status: http.StatusBadRequest,
			raw: "GET " + invoke + " HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"},
		{name: "garbage request line", status: http.StatusBadRequest,
			raw: "THIS IS NOT HTTP AT ALL\r\n\r\n"},
		// Shorter than the h2c preface: answered at once all the same
		// (TestAPIShortMalformedRequestAnsweredAtOnce).
		{name: "short garbage", status: http.StatusBadRequest,
			raw: "GARBAGE\r\n\r\n"},
		{name: "missing Host", status: http.StatusBadRequest,
			raw: "GET " + invoke + " HTTP/1.1\r\n\r\n"},
		{name: "two Host headers", status: http.StatusBadRequest,
			raw: "GET " + invoke + " HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n"},
		{name: "conflicting Content-Length", status: http.StatusBadRequest,
			raw: "POST " + invoke + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab"},
		{name: "invalid Content-Length", status: http.StatusBadRequest,
			raw: "POST " + invoke + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"},
		{name: "control character in header value", status: http.StatusBadRequest,
			raw: "GET " + invoke + " HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n"},
		{name: "malformed request target", status: http.StatusBadRequest,
			raw: "GET http://[::1 HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, b := rawExchange(t, a.http, tt.raw)
			if resp.StatusCode != tt.status {
				t.Errorf("status = %d, want %d: %s", resp.StatusCode, tt.status, b)
			}
			// The sidecar is still serving: a normal call succeeds.
			resp, b = do(t, newRequest(t, http.MethodGet, a.invokeURL("app-a", "ping"), nil))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("call after bad input: status = %d: %s", resp.StatusCode, b)
			}
			if e := decodeEcho(t, b); e.Path != "/ping" || e.Instance != "a" {
				t.Errorf("call after bad input reached %s on %q", e.Path, e.Instance)
			}
		})
	}
	if a.exited() {
		t.Fatalf("sidecar exited: %v", a.err)
	}
}
