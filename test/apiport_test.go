package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialAPI opens a raw connection to a sidecar's API port with a hang guard.
func dialAPI(t *testing.T, port int, guard time.Duration) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetDeadline(time.Now().Add(guard)); err != nil {
		t.Fatal(err)
	}
	return c
}

// readUntilClosed reads c until the server closes it. Any other end (the
// hang guard's timeout) is returned as an error.
func readUntilClosed(c net.Conn) error {
	_, err := io.Copy(io.Discard, c)
	if err != nil && strings.Contains(err.Error(), "connection reset") {
		return nil
	}
	return err
}

// TestAPIShortMalformedRequestAnsweredAtOnce covers issue 11 point 4,
// bullet 7: a malformed request shorter than the HTTP/2 preface gets its
// 400 at once, not when the client sends more bytes; HTTP/1.1 and h2c with
// prior knowledge still share the port.
func TestAPIShortMalformedRequestAnsweredAtOnce(t *testing.T) {
	m := newMesh(t)
	aPort, _ := m.app("a")
	a := m.sidecar("app-a", aPort)
	for _, raw := range []string{"GARBAGE\r\n\r\n", "PRI\r\n\r\n", "G\r\n\r\n"} {
		t.Run(strings.TrimSpace(raw), func(t *testing.T) {
			c := dialAPI(t, a.http, 5*time.Second) // a hang guard: the answer is due at once
			start := time.Now()
			if _, err := io.WriteString(c, raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer after %s: %v", time.Since(start).Round(time.Millisecond), err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusBadRequest {
				t.Errorf("status = %d, want 400", resp.StatusCode)
			}
		})
	}
	t.Run("h2c with prior knowledge", func(t *testing.T) {
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &p}
		defer tr.CloseIdleConnections()
		cl := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for range 3 { // several calls on one connection
			resp, err := cl.Get(a.invokeURL("app-a", "ping"))
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || decodeEcho(t, b).Path != "/ping" {
				t.Fatalf("h2c call: %s %d: %s", resp.Proto, resp.StatusCode, b)
			}
		}
	})
	t.Run("HTTP/1.1 keep-alive", func(t *testing.T) {
		c := dialAPI(t, a.http, 10*time.Second)
		br := bufio.NewReader(c)
		for range 3 {
			if _, err := io.WriteString(c, "GET /v1.0/invoke/app-a/method/ping HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
		}
	})
}

// TestAPIIdleConnectionsClosed covers issue 11 point 4, bullet 5: keep-alive
// connections on the API port that carry nothing are closed after
// --api-idle-timeout, HTTP/1.1 and h2c alike.
func TestAPIIdleConnectionsClosed(t *testing.T) {
	m := newMesh(t)
	a := m.sidecar("app-a", 0, "--api-idle-timeout", "500ms")
	t.Run("HTTP/1.1", func(t *testing.T) {
		c := dialAPI(t, a.http, 10*time.Second)
		if _, err := io.WriteString(c, "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent || resp.Close {
			t.Fatalf("healthz = %d (close %v), want 204 on a kept-alive connection", resp.StatusCode, resp.Close)
		}
		idle := time.Now()
		if _, err := io.Copy(io.Discard, br); err != nil {
			t.Fatalf("idle connection not closed after %s: %v", time.Since(idle).Round(time.Millisecond), err)
		}
		if d := time.Since(idle); d < 400*time.Millisecond {
			t.Errorf("closed after %s, before the idle timeout", d)
		}
	})
	t.Run("h2c", func(t *testing.T) {
		c := dialAPI(t, a.http, 10*time.Second)
		// The preface and an empty SETTINGS frame (RFC 9113 §3.4), then nothing.
		if _, err := io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00"); err != nil {
			t.Fatal(err)
		}
		idle := time.Now()
		if err := readUntilClosed(c); err != nil {
			t.Fatalf("idle connection not closed after %s: %v", time.Since(idle).Round(time.Millisecond), err)
		}
		if d := time.Since(idle); d < 400*time.Millisecond {
			t.Errorf("closed after %s, before the idle timeout", d)
		}
	})
}

// headerBlock returns a GET of the healthz endpoint whose request line and
// headers, final empty line included, are exactly n bytes.
func headerBlock(t *testing.T, n int) string {
	t.Helper()
	const head, padName, end = "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n", "X-Pad: ", "\r\n\r\n"
	pad := n - len(head) - len(padName) - len(end)
	if pad < 1 {
		t.Fatalf("%d bytes is too small a header block", n)
	}
	return head + padName + strings.Repeat("p", pad) + end
}

// TestAPIHeaderLimitIsExact covers issue 11 point 4, bullet 6:
// --read-buffer-size is the largest header block the API port admits, to
// the byte, above and below net/http's 4 KiB slop.
func TestAPIHeaderLimitIsExact(t *testing.T) {
	m := newMesh(t)
	for _, size := range []string{"1Ki", "4Ki", "8Ki"} {
		t.Run(size, func(t *testing.T) {
			s := m.sidecar("app-"+strings.ToLower(size), 0, "--read-buffer-size", size)
			n, _ := strconv.Atoi(strings.TrimSuffix(size, "Ki"))
			n <<= 10
			for _, tc := range []struct {
				bytes int
				want  int
			}{{n - 1, http.StatusNoContent}, {n, http.StatusNoContent}, {n + 1, http.StatusRequestHeaderFieldsTooLarge}, {n + 4096, http.StatusRequestHeaderFieldsTooLarge}} {
				resp, b := rawExchange(t, s.http, headerBlock(t, tc.bytes))
				if resp.StatusCode != tc.want {
					t.Errorf("%d-byte header block: status %d, want %d: %s", tc.bytes, resp.StatusCode, tc.want, b)
				}
			}
		})
	}
}

// TestAPISlowHeaders covers issue 11 point 4, bullet 7: clients that send
// their headers a byte at a time hold only their own connections, never
// other calls, and --api-read-header-timeout ends them, on a connection's
// first request, on a later one, and while the HTTP/2 preface trickles in.
func TestAPISlowHeaders(t *testing.T) {
	m := newMesh(t)
	aPort, _ := m.app("a")
	a := m.sidecar("app-a", aPort)
	t.Run("200 slow clients do not stop other calls", func(t *testing.T) {
		const slow = 200
		conns := make([]net.Conn, 0, slow)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range slow {
			c, err := net.Dial("tcp", "127.0.0.1:"+strconv.Itoa(a.http))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, c)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Go(func() { // one byte of a request line per connection every 100 ms
			const req = "GET /v1.0/invoke/app-a/method/ping HTTP/1.1\r\nHost: x\r\nX-Slow: "
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for i := 0; ; i++ {
				for _, c := range conns {
					_ = c.SetWriteDeadline(time.Now().Add(time.Second))
					_, _ = io.WriteString(c, string(req[min(i, len(req)-1)]))
				}
				select {
				case <-stop:
					return
				case <-tick.C:
				}
			}
		})
		defer func() {
			close(stop)
			wg.Wait()
		}()
		cl := &http.Client{Timeout: 5 * time.Second}
		deadline := time.Now().Add(3 * time.Second)
		calls := 0
		for time.Now().Before(deadline) {
			start := time.Now()
			resp, err := cl.Get(a.invokeURL("app-a", "ping"))
			if err != nil {
				t.Fatalf("call %d among slow clients: %v", calls+1, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("call %d among slow clients: %d", calls+1, resp.StatusCode)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("call %d took %s among slow clients", calls+1, d)
			}
			calls++
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%d calls among %d slow clients", calls, slow)
	})

	b := m.sidecar("app-b", 0, "--api-read-header-timeout", "1s")
	// trickle sends s a byte every 100 ms, round and round, until the
	// server closes c, and returns how long that took.
	trickle := func(t *testing.T, c net.Conn, s string) time.Duration {
		t.Helper()
		closed := make(chan error, 1)
		go func() { closed <- readUntilClosed(c) }()
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(s) {
			select {
			case err := <-closed:
				if err != nil {
					t.Fatalf("not closed by the server after %s: %v", time.Since(start).Round(time.Millisecond), err)
				}
				return time.Since(start)
			case <-tick.C:
			}
			_, _ = io.WriteString(c, s[i:i+1]) // a failed write: the read sees the close
		}
	}
	for _, tc := range []struct {
		name, first, trickled string
	}{
		{"first request", "", "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "},
		{"later request", "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\n\r\n", "GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nX-Slow: "},
		{"HTTP/2 preface", "", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
	} {
		t.Run("header timeout, "+tc.name, func(t *testing.T) {
			c := dialAPI(t, b.http, 10*time.Second) // hang guard
			if tc.first != "" {
				if _, err := io.WriteString(c, tc.first); err != nil {
					t.Fatal(err)
				}
				// Read exactly the answer, so that what follows is the close.
				var buf [1]byte
				var got strings.Builder
				for !strings.HasSuffix(got.String(), "\r\n\r\n") {
					if _, err := c.Read(buf[:]); err != nil {
						t.Fatalf("first answer: %v after %q", err, got.String())
					}
					got.WriteByte(buf[0])
				}
				if !strings.HasPrefix(got.String(), "HTTP/1.1 204") {
					t.Fatalf("first answer %q", got.String())
				}
			}
			d := trickle(t, c, tc.trickled)
			// 1 s from the first byte (a later request: from its fourth, when
			// net/http starts the clock), with room for a loaded machine.
			if d < 900*time.Millisecond || d > 4*time.Second {
				t.Errorf("closed after %s, want about 1 s", d.Round(time.Millisecond))
			}
		})
	}
	if a.exited() || b.exited() {
		t.Fatal("a sidecar exited")
	}
}

// TestPublicPort: --dapr-public-port serves the health endpoints for probes
// from outside the host and nothing else: no invocation, no metadata.
func TestPublicPort(t *testing.T) {
	m := newMesh(t)
	port, _ := m.app("b")
	m.sidecar("app-b", port)
	pub := freePort(t)
	a := m.sidecar("app-a", 0, "--dapr-public-port", strconv.Itoa(pub), "--dapr-public-listen-address", "127.0.0.1")
	url := func(path string) string { return "http://127.0.0.1:" + strconv.Itoa(pub) + path }
	for _, tc := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/v1.0/healthz", http.StatusNoContent},
		{http.MethodGet, "/v1.0/healthz/outbound", http.StatusNoContent},
		{http.MethodGet, "/v1.0/invoke/app-b/method/x", http.StatusNotFound},
		{http.MethodGet, "/v1.0/metadata", http.StatusNotFound},
		{http.MethodPost, "/v1.0/healthz", http.StatusMethodNotAllowed},
	} {
		resp, body := do(t, newRequest(t, tc.method, url(tc.path), nil))
		if resp.StatusCode != tc.want {
			t.Errorf("%s %s on the public port: %d %s, want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
		}
	}
	// The API port still invokes.
	if resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "x"), nil)); resp.StatusCode != http.StatusOK {
		t.Errorf("invoke on the API port: %d %s", resp.StatusCode, body)
	}
}
