package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// The WebSocket tests (issue 12, point 5): an HTTP/1.1 upgrade through the
// invoke API reaches test/testapp's /ws through both sidecars over mTLS,
// and messages flow both ways until either side closes. A tunnel's end is
// seen in --access-log, whose line each sidecar writes when its handler
// returns: the line's presence proves that sidecar let the connection go.

// wsURL is the ws:// form of a sidecar URL.
func wsURL(httpURL string) string { return "ws" + strings.TrimPrefix(httpURL, "http") }

// wsDial opens a WebSocket with the real client library; h adds headers.
func wsDial(t *testing.T, url string, h http.Header) *websocket.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: h, Subprotocols: []string{"echo.v1"}})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	if got := c.Subprotocol(); got != "echo.v1" {
		t.Errorf("subprotocol %q, want echo.v1 negotiated with the app", got)
	}
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// wsEcho sends each message and checks that it comes back whole, with its
// type: text and binary, small and larger than any copy buffer.
func wsEcho(t *testing.T, c *websocket.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	big := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte("hello")},
		{websocket.MessageBinary, []byte{0, 1, 2, 0xff, 0xfe}},
		{websocket.MessageText, []byte("héllo, wörld")},
		{websocket.MessageBinary, big},
		{websocket.MessageText, []byte("last")},
	}
	for i, m := range msgs {
		if err := c.Write(ctx, m.typ, m.data); err != nil {
			t.Fatalf("write message %d: %v", i, err)
		}
		typ, got, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("read message %d: %v", i, err)
		}
		if typ != m.typ || !bytes.Equal(got, m.data) {
			t.Fatalf("message %d came back as %v of %d bytes, want %v of %d", i, typ, len(got), m.typ, len(m.data))
		}
	}
}

// tunnelLines counts the access-log lines of ended tunnels (status 101)
// in one direction.
func tunnelLines(t *testing.T, path, direction string) int {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		return 0
	}
	n := 0
	for _, l := range readAccessLog(t, path) {
		if l.Direction == direction && l.Status == http.StatusSwitchingProtocols {
			n++
		}
	}
	return n
}

// logs are the access logs of a caller and a callee sidecar.
type logs struct{ caller, callee string }

// count is how many tunnels both sidecars have ended.
func (l logs) count(t *testing.T) [2]int {
	return [2]int{tunnelLines(t, l.caller, "outbound"), tunnelLines(t, l.callee, "inbound")}
}

// waitEnded waits until both sidecars have ended one more tunnel than
// before.
func (l logs) waitEnded(t *testing.T, before [2]int, d time.Duration) {
	t.Helper()
	waitFor(t, d, "both sidecars to end the tunnel", func() bool {
		n := l.count(t)
		return n[0] > before[0] && n[1] > before[1]
	})
}

// rawUpgrade asks for a WebSocket by hand, so that the test controls the
// client's connection (half-close, silence), and checks the 101.
func rawUpgrade(t *testing.T, port int, path string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	addr := "127.0.0.1:" + strconv.Itoa(port)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"+
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", path, addr)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// RFC 6455 §1.3's example key and its accept value: computed by the app.
	if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("upgrade: %d %v", resp.StatusCode, resp.Header)
	}
	return c, br
}

// readToEOF reads what the sidecar sends until it closes its side; an
// error (the deadline) fails the test.
func readToEOF(t *testing.T, br *bufio.Reader) {
	t.Helper()
	if _, err := io.Copy(io.Discard, br); err != nil {
		t.Fatalf("the client's connection was not closed: %v", err)
	}
}

// TestWebSocketThroughInvoke: over mTLS with the default peer transport,
// in the path and the header form; text and binary messages both ways;
// either side closing ends the tunnel on both sidecars, as does a client
// that half-closes or goes silent; a plain GET of the endpoint still
// works, and an upgrade the app refuses is its HTTP answer.
func TestWebSocketThroughInvoke(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	dir := t.TempDir()
	l := logs{caller: filepath.Join(dir, "a.log"), callee: filepath.Join(dir, "b.log")}
	pb, _ := m.app("b")
	m.sidecar("b", pb, "--access-log", l.callee)
	a := m.sidecar("a", 0, "--access-log", l.caller)

	t.Run("path form, the client closes", func(t *testing.T) {
		before := l.count(t)
		c := wsDial(t, wsURL(a.invokeURL("b", "ws?hello=1")), nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, hello, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var e echoed
		if err := json.Unmarshal(hello, &e); err != nil {
			t.Fatalf("hello %q: %v", hello, err)
		}
		if e.Method != http.MethodGet || e.Path != "/ws" || e.Query != "hello=1" ||
			e.Header.Get("Dapr-Caller-App-Id") != "a" || e.Header.Get("Upgrade") != "websocket" {
			t.Errorf("the app saw %s %s?%s with %v", e.Method, e.Path, e.Query, e.Header)
		}
		wsEcho(t, c)
		if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
			t.Errorf("closing handshake: %v", err)
		}
		l.waitEnded(t, before, 10*time.Second)
	})

	t.Run("header form, the app closes", func(t *testing.T) {
		before := l.count(t)
		c := wsDial(t, wsURL(a.url("/ws")), http.Header{"Dapr-App-Id": {"b"}})
		wsEcho(t, c)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := c.Write(ctx, websocket.MessageText, []byte("close")); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusNormalClosure || ce.Reason != "bye" {
			t.Fatalf("read after the app closed: %v, want its close frame 1000 \"bye\"", err)
		}
		l.waitEnded(t, before, 10*time.Second)
	})

	t.Run("plain GET of the endpoint", func(t *testing.T) {
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "ws"), nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		if e := decodeEcho(t, body); e.Path != "/ws" || e.Header.Get("Upgrade") != "" || e.Header.Get("Connection") != "" {
			t.Errorf("the app saw %s with %v", e.Path, e.Header)
		}
	})

	t.Run("the app refuses the upgrade", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, wsURL(a.invokeURL("b", "ws?refuse=1")), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadRequest {
			t.Fatalf("dial: %v, response %v; want the app's 400", err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.Contains(string(body), "upgrade refused") {
			t.Errorf("body %q, want the app's", body)
		}
	})

	t.Run("a client that half-closes", func(t *testing.T) {
		before := l.count(t)
		c, br := rawUpgrade(t, a.http, "/v1.0/invoke/b/method/ws")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		// The end reaches the app, which closes; so does every hop.
		readToEOF(t, br)
		l.waitEnded(t, before, 10*time.Second)
	})

	t.Run("a silent client, the app drops the connection", func(t *testing.T) {
		before := l.count(t)
		_, br := rawUpgrade(t, a.http, "/v1.0/invoke/b/method/ws?drop=100ms")
		readToEOF(t, br)
		// The client never closes its side: the sidecars close it after
		// their linger (5 s) rather than wait for ever.
		l.waitEnded(t, before, 15*time.Second)
	})
}

// TestWebSocketOverH2PeerTransport: with --peer-transport h2 on the
// caller, calls go over HTTP/2 but an upgrade goes over HTTP/1.1, the
// only version with Upgrade; the callee counts one connection of each.
func TestWebSocketOverH2PeerTransport(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	pb, _ := m.app("b")
	b := m.sidecar("b", pb)
	a := m.sidecar("a", 0, "--peer-transport", "h2")

	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "ws"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("plain call: %d %s", resp.StatusCode, body)
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h1"`); n != 0 {
		t.Fatalf("%v HTTP/1.1 peer connections before the upgrade, want 0", n)
	}
	c := wsDial(t, wsURL(a.invokeURL("b", "ws")), nil)
	wsEcho(t, c)
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Errorf("closing handshake: %v", err)
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h2"`); n < 1 {
		t.Errorf("%v HTTP/2 peer connections, want the plain call's", n)
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h1"`); n != 1 {
		t.Errorf("%v HTTP/1.1 peer connections, want the upgrade's one", n)
	}
}

// wsPolicies: b lets a GET /ws only; a's calls to b have a 300 ms per-try
// timeout and a retry policy matching every status outside 2xx and 3xx.
const (
	wsAccess = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /ws
        httpVerb: ['GET']
        action: allow
`
	wsResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    timeouts:
      fast: 300ms
    retries:
      again:
        policy: constant
        duration: 10ms
        maxRetries: 3
  targets:
    apps:
      b:
        timeout: fast
        retry: again
`
)

// TestWebSocketPolicies: access control decides an upgrade like any call
// (a denied one is a clean 403 that never reaches the app); an open
// tunnel outlives the caller's per-try timeout and is never retried.
func TestWebSocketPolicies(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "callee.yaml")
	res := filepath.Join(dir, "res")
	if err := os.WriteFile(cfg, []byte(wsAccess), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(res, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(res, "res.yaml"), []byte(wsResiliency), 0o600); err != nil {
		t.Fatal(err)
	}
	pb, _ := m.app("b")
	m.sidecar("b", pb, "--config", cfg)
	a := m.sidecar("a", 0, "--resources-path", res)

	t.Run("denied upgrade", func(t *testing.T) {
		before := appRequests(t, pb)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, resp, err := websocket.Dial(ctx, wsURL(a.invokeURL("b", "admin")), nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
			t.Fatalf("dial: %v, response %v; want 403", err, resp)
		}
		body, _ := io.ReadAll(resp.Body)
		if e := decodeError(t, resp, body); e.ErrorCode != "ERR_DIRECT_INVOKE" || e.reason() != "ACCESS_DENIED" {
			t.Errorf("denial %s", body)
		}
		if n := appRequests(t, pb) - before; n != 0 {
			t.Errorf("the app got %d requests for a denied upgrade", n)
		}
	})

	t.Run("past the per-try timeout, one attempt", func(t *testing.T) {
		key := "ws-" + strconv.FormatInt(time.Now().UnixNano(), 36)
		c := wsDial(t, wsURL(a.invokeURL("b", "ws")), http.Header{"X-Count-Key": {key}})
		wsEcho(t, c)
		time.Sleep(time.Second) // over three times the 300 ms per-try timeout
		wsEcho(t, c)
		if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
			t.Errorf("closing handshake: %v", err)
		}
		resp, body := do(t, newRequest(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(pb)+"/count?key="+key, nil))
		if resp.StatusCode != http.StatusOK || string(body) != "1" {
			t.Errorf("the app got %s upgrade requests, want 1", body)
		}
	})
}
