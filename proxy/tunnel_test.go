package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/proxy/h1"
)

func TestUpgradeOf(t *testing.T) {
	tests := []struct {
		name       string
		major      int
		minor      int
		connection []string
		upgrade    []string
		want       string
	}{
		{"websocket", 1, 1, []string{"Upgrade"}, []string{"websocket"}, "websocket"},
		{"spelled as sent", 1, 1, []string{"upgrade"}, []string{"WebSocket"}, "WebSocket"},
		{"among other tokens", 1, 1, []string{"keep-alive, Upgrade"}, []string{"foo/1, websocket"}, "websocket"},
		{"connection on two lines", 1, 1, []string{"keep-alive", "Upgrade"}, []string{"websocket"}, "websocket"},
		{"Connection does not name Upgrade", 1, 1, []string{"keep-alive"}, []string{"websocket"}, ""},
		{"no Connection", 1, 1, nil, []string{"websocket"}, ""},
		{"no Upgrade", 1, 1, []string{"Upgrade"}, nil, ""},
		{"h2c is this hop's", 1, 1, []string{"Upgrade, HTTP2-Settings"}, []string{"h2c"}, ""},
		{"other protocols are not carried", 1, 1, []string{"Upgrade"}, []string{"tcp"}, ""},
		{"HTTP/1.0 ignored", 1, 0, []string{"Upgrade"}, []string{"websocket"}, ""},
		{"HTTP/2 has none", 2, 0, []string{"Upgrade"}, []string{"websocket"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &http.Request{ProtoMajor: tt.major, ProtoMinor: tt.minor, Header: http.Header{}}
			if tt.connection != nil {
				r.Header["Connection"] = tt.connection
			}
			if tt.upgrade != nil {
				r.Header["Upgrade"] = tt.upgrade
			}
			if got := upgradeOf(r); got != tt.want {
				t.Errorf("upgradeOf = %q, want %q", got, tt.want)
			}
		})
	}
}

// tcpPair returns the two ends of a loopback TCP connection.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s := <-accepted
	if s == nil {
		t.Fatal("accept failed")
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// startTunnel joins a client and an upstream through a tunnel and returns
// the far ends and a channel closed when run returns.
func startTunnel(t *testing.T, ts *tunnels) (client, upstream *net.TCPConn, done chan struct{}) {
	t.Helper()
	client, proxyClient := tcpPair(t)
	proxyUp, upstream := tcpPair(t)
	done = make(chan struct{})
	go func() {
		defer close(done)
		ts.run(proxyClient, proxyClient, proxyUp, &bufferPool{})
	}()
	return client, upstream, done
}

func waitDone(t *testing.T, done chan struct{}) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the tunnel did not end")
	}
}

// TestTunnelHalfClose: a side that ends its stream is half-closed on the
// other, which may still answer; the tunnel ends when both have ended.
func TestTunnelHalfClose(t *testing.T) {
	ts := &tunnels{}
	client, upstream, done := startTunnel(t, ts)
	if _, err := client.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	if err := client.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(upstream)
	if string(got) != "ping" || err != nil {
		t.Fatalf("upstream read %q, %v; want ping then the end", got, err)
	}
	if _, err := upstream.Write([]byte("pong")); err != nil {
		t.Fatalf("the answer after the client's half-close: %v", err)
	}
	upstream.Close()
	got, err = io.ReadAll(client)
	if string(got) != "pong" || err != nil {
		t.Fatalf("client read %q, %v; want pong then the end", got, err)
	}
	waitDone(t, done)
	waitOpen(t, ts, 0)
}

// TestTunnelReset: a side that fails ends the tunnel at once.
func TestTunnelReset(t *testing.T) {
	ts := &tunnels{}
	client, upstream, done := startTunnel(t, ts)
	_ = upstream.SetLinger(0)
	upstream.Close() // RST
	if _, err := io.ReadAll(client); err != nil {
		t.Fatalf("client: %v, want its connection closed", err)
	}
	waitDone(t, done)
}

// TestTunnelShutdown: shutdown waits for open tunnels until its context
// ends, then closes them; later tunnels are refused.
func TestTunnelShutdown(t *testing.T) {
	ts := &tunnels{}
	client, _, done := startTunnel(t, ts)
	waitOpen(t, ts, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ts.shutdown(ctx)
	waitDone(t, done)
	if _, err := io.ReadAll(client); err != nil {
		t.Fatalf("client: %v, want its connection closed", err)
	}
	client2, _, done2 := startTunnel(t, ts)
	waitDone(t, done2)
	if _, err := io.ReadAll(client2); err != nil {
		t.Fatalf("a tunnel after shutdown: %v, want its connection closed", err)
	}
}

// waitOpen waits until ts has n open tunnels.
func waitOpen(t *testing.T, ts *tunnels, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ts.mu.Lock()
		open := len(ts.open)
		ts.mu.Unlock()
		if open == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d open tunnels, want %d", open, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestForwarderSwitchesProtocols: through a forwarder whose transport
// wraps response bodies (as the sidecar's layers do), an upgrade reaches
// the upstream with its Connection and Upgrade, the client gets the 101
// with the upstream's headers, bytes flow both ways, and a half-close
// passes through; a 101 nobody asked for, and an upstream switching to
// another protocol, are 502s.
func TestForwarderSwitchesProtocols(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Connection") != "Upgrade" || r.Header.Get("Upgrade") != "websocket" {
			w.Header().Set("Upgrade", "websocket") // a 101 nobody asked for
		} else if r.URL.Query().Get("other") != "" {
			w.Header().Set("Upgrade", "other")
		} else {
			w.Header().Set("Upgrade", "websocket")
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Sec-WebSocket-Accept", "yes")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
		rest, _ := io.ReadAll(brw)
		_, _ = fmt.Fprintf(brw, "bye after %d bytes", len(rest))
		_ = brw.Flush()
	}))
	defer upstream.Close()
	tr := &h1.Transport{Dial: h1.DialTCP(&net.Dialer{})}
	defer tr.CloseIdleConnections()
	ts := &tunnels{}
	hideWrite := func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(r)
			if err == nil {
				resp.Body = struct{ io.ReadCloser }{resp.Body}
			}
			return resp, err
		})
	}
	f := &forwarder{
		Transport: wrap(tr, hideWrite, handOver),
		rewrite: func(in, out *http.Request) {
			out.URL.Scheme, out.URL.Host = "http", strings.TrimPrefix(upstream.URL, "http://")
			removeHopHeaders(out.Header)
		},
		onError: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, err.Error(), http.StatusBadGateway)
		},
		bufs:    &bufferPool{},
		tunnels: ts,
	}
	proxy := httptest.NewServer(f)
	defer proxy.Close()

	upgrade := func(t *testing.T, path, connection string) (*net.TCPConn, *bufio.Reader, *http.Response) {
		t.Helper()
		nc, err := net.Dial("tcp", strings.TrimPrefix(proxy.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c := nc.(*net.TCPConn)
		t.Cleanup(func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: %s\r\nUpgrade: websocket\r\n\r\n", path, connection)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		return c, br, resp
	}

	t.Run("tunnel", func(t *testing.T) {
		c, br, resp := upgrade(t, "/ws", "keep-alive, Upgrade")
		if resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "websocket" ||
			resp.Header.Get("Connection") != "Upgrade" || resp.Header.Get("Sec-WebSocket-Accept") != "yes" {
			t.Fatalf("answer %d %v", resp.StatusCode, resp.Header)
		}
		fmt.Fprint(c, "hi\n")
		if line, err := br.ReadString('\n'); line != "echo: hi\n" {
			t.Fatalf("read %q, %v", line, err)
		}
		fmt.Fprint(c, "tail")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		if rest, err := io.ReadAll(br); string(rest) != "bye after 4 bytes" || err != nil {
			t.Errorf("after half-close read %q, %v", rest, err)
		}
		waitOpen(t, ts, 0)
	})
	for _, tt := range []struct{ name, path, connection string }{
		{"unasked 101", "/ws", "keep-alive"}, // Upgrade alone asks for nothing: dropped as hop-by-hop
		{"another protocol", "/ws?other=1", "Upgrade"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, resp := upgrade(t, tt.path, tt.connection)
			if resp.StatusCode != http.StatusBadGateway {
				t.Errorf("status %d, want 502", resp.StatusCode)
			}
		})
	}
}
