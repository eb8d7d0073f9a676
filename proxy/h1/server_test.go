package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// h1Server is a Server serving a loopback listener for one test.
type h1Server struct {
	*Server
	addr     string
	serveErr chan error // what Serve returned
	logs     *lockedBuffer
}

// lockedBuffer is a log sink the server's goroutines write while the test reads.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// serveH1 serves s (its Handler set) on 127.0.0.1 until the test ends.
func serveH1(t *testing.T, s *Server) *h1Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &h1Server{Server: s, addr: ln.Addr().String(), serveErr: make(chan error, 1), logs: &lockedBuffer{}}
	if s.Log == nil {
		s.Log = slog.New(slog.NewTextHandler(hs.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	finished := make(chan struct{})
	go func() {
		hs.serveErr <- s.Serve(ln)
		close(finished)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-finished
	})
	return hs
}

// rawClient is a client connection writing raw bytes and reading answers.
type rawClient struct {
	net.Conn
	br *bufio.Reader
}

func dialH1(t *testing.T, addr string) *rawClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second)) // a hang guard, not a timed assertion
	t.Cleanup(func() { _ = c.Close() })
	return &rawClient{Conn: c, br: bufio.NewReader(c)}
}

func (c *rawClient) send(t *testing.T, s string) {
	t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		t.Fatal(err)
	}
}

// answer reads one response to a request of method and its whole body.
func (c *rawClient) answer(t *testing.T, method string) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection with nothing
// more to read.
func (c *rawClient) closed(t *testing.T) bool {
	t.Helper()
	n, err := c.br.Read(make([]byte, 1))
	if n > 0 {
		t.Errorf("a byte after the answer: the connection is not at its end")
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil // io.EOF, or a reset
}

func getReq(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\n\r\n" }

// echoPath answers the request's path.
var echoPath = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) })

func TestServerKeepAlive(t *testing.T) {
	var mu sync.Mutex
	conns := 0
	s := serveH1(t, &Server{Handler: echoPath, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}})
	c := dialH1(t, s.addr)
	for i := range 3 {
		c.send(t, getReq(fmt.Sprintf("/seq%d", i)))
		resp, body := c.answer(t, "GET")
		if body != fmt.Sprintf("/seq%d", i) || resp.Close {
			t.Fatalf("request %d: body %q, close %v", i, body, resp.Close)
		}
	}
	c.send(t, getReq("/one")+getReq("/two")) // pipelined: one write
	for _, want := range []string{"/one", "/two"} {
		if _, body := c.answer(t, "GET"); body != want {
			t.Fatalf("pipelined: got %q, want %q", body, want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if conns != 1 {
		t.Fatalf("%d connections accepted, want 1", conns)
	}
}

func TestServerFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB
	var errMu sync.Mutex
	writeErrs := map[string]error{}
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var err error
		switch r.URL.Path {
		case "/short":
			_, _ = io.WriteString(w, "short")
		case "/big":
			_, _ = io.WriteString(w, big)
		case "/flushed":
			_, _ = io.WriteString(w, "a")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "b")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
			_, err = io.WriteString(w, "no")
		case "/304":
			w.WriteHeader(http.StatusNotModified)
			_, err = io.WriteString(w, "no")
		case "/cl-more":
			w.Header().Set("Content-Length", "5")
			if _, err = io.WriteString(w, "hello world"); err == nil {
				break
			}
			_, _ = io.WriteString(w, "hello")
		case "/cl-less":
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "abc")
		case "/crlf":
			w.Header().Set("X-A", "a\r\nX-Injected: yes")
			w.Header()["X-B"] = []string{"b\nX-Injected2: yes"}
		default:
			_, _ = io.WriteString(w, "head body")
		}
		errMu.Lock()
		writeErrs[r.URL.Path] = err
		errMu.Unlock()
	})})

	c := dialH1(t, s.addr)
	c.send(t, getReq("/short"))
	resp, body := c.answer(t, "GET")
	if resp.ContentLength != 5 || len(resp.TransferEncoding) != 0 || body != "short" {
		t.Fatalf("short: length %d, encoding %v, body %q", resp.ContentLength, resp.TransferEncoding, body)
	}
	for _, path := range []string{"/big", "/flushed"} {
		c.send(t, getReq(path))
		resp, body = c.answer(t, "GET")
		want := map[string]string{"/big": big, "/flushed": "ab"}[path]
		if resp.ContentLength != -1 || len(resp.TransferEncoding) != 1 || resp.TransferEncoding[0] != "chunked" || body != want {
			t.Fatalf("%s: length %d, encoding %v, body of %d bytes (want %d)", path, resp.ContentLength, resp.TransferEncoding, len(body), len(want))
		}
	}
	c.send(t, "HEAD /head HTTP/1.1\r\nHost: a\r\n\r\n")
	if resp, body = c.answer(t, "HEAD"); resp.StatusCode != 200 || body != "" {
		t.Fatalf("HEAD: %d %q", resp.StatusCode, body)
	}
	for _, path := range []string{"/204", "/304"} {
		c.send(t, getReq(path))
		if resp, body = c.answer(t, "GET"); body != "" || resp.ContentLength > 0 {
			t.Fatalf("%s: body %q, length %d", path, body, resp.ContentLength)
		}
	}
	c.send(t, getReq("/crlf"))
	resp, _ = c.answer(t, "GET")
	if resp.Header.Get("X-Injected") != "" || resp.Header.Get("X-Injected2") != "" || !strings.Contains(resp.Header.Get("X-A"), "X-Injected") {
		t.Fatalf("CR/LF in a value split the header: %v", resp.Header)
	}
	c.send(t, getReq("/cl-more"))
	if resp, body = c.answer(t, "GET"); resp.ContentLength != 5 || body != "hello" {
		t.Fatalf("handler's Content-Length: %d %q", resp.ContentLength, body)
	}
	// Everything above ran on one connection: no answer left stray bytes.
	c.send(t, getReq("/short"))
	if _, body = c.answer(t, "GET"); body != "short" {
		t.Fatalf("after the others: %q", body)
	}
	c.send(t, getReq("/cl-less"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("a body shorter than its Content-Length: read %q, %v; want an unexpected EOF", b, err)
	}
	errMu.Lock()
	if !errors.Is(writeErrs["/cl-more"], http.ErrContentLength) {
		t.Errorf("writing past Content-Length: %v, want http.ErrContentLength", writeErrs["/cl-more"])
	}
	for _, path := range []string{"/204", "/304"} {
		if !errors.Is(writeErrs[path], http.ErrBodyNotAllowed) {
			t.Errorf("%s: writing a body: %v, want http.ErrBodyNotAllowed", path, writeErrs[path])
		}
	}
	errMu.Unlock()

	// HTTP/1.0: a long body ends with the connection.
	c10 := dialH1(t, s.addr)
	c10.send(t, "GET /big HTTP/1.0\r\n\r\n")
	resp, body = c10.answer(t, "GET")
	if resp.ContentLength != -1 || len(resp.TransferEncoding) != 0 || !resp.Close || body != big {
		t.Fatalf("HTTP/1.0: length %d, encoding %v, close %v, body of %d bytes", resp.ContentLength, resp.TransferEncoding, resp.Close, len(body))
	}
	if !c10.closed(t) {
		t.Fatal("HTTP/1.0: the connection stayed open after a close-delimited body")
	}
	// HTTP/1.0 with keep-alive and a short answer stays open.
	ka := dialH1(t, s.addr)
	for range 2 {
		ka.send(t, "GET /short HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		resp, body = ka.answer(t, "GET")
		if resp.ContentLength != 5 || body != "short" || resp.Header.Get("Connection") != "keep-alive" {
			t.Fatalf("HTTP/1.0 keep-alive: length %d, body %q, Connection %q", resp.ContentLength, body, resp.Header.Get("Connection"))
		}
	}
}

func TestServerTrailers(t *testing.T) {
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/declared" {
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
			return
		}
		if r.URL.Path == "/badname" {
			w.Header().Set("Trailer", "X-Evil\r\nInjected")
			_, _ = io.WriteString(w, "body")
			w.Header()["X-Evil\r\nInjected"] = []string{"v"}
			return
		}
		_, _ = io.WriteString(w, "body") // short: held, not yet sent
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	})})
	c := dialH1(t, s.addr)
	for _, tc := range []struct{ path, name, value string }{{"/declared", "X-Sum", "42"}, {"/prefix", "X-Late", "late"}} {
		c.send(t, getReq(tc.path))
		resp, body := c.answer(t, "GET")
		if body != "body" {
			t.Fatalf("%s: body %q", tc.path, body)
		}
		if got := resp.Trailer.Get(tc.name); got != tc.value {
			t.Errorf("%s: trailer %s = %q, want %q (trailers %v, headers %v)", tc.path, tc.name, got, tc.value, resp.Trailer, resp.Header)
		}
		if resp.Header.Get(tc.name) != "" || resp.Header.Get(http.TrailerPrefix+tc.name) != "" {
			t.Errorf("%s: the trailer came as a header: %v", tc.path, resp.Header)
		}
	}
	// A declared trailer name with CR/LF is not written (it would split
	// the trailer block); the body still reads to its end.
	c.send(t, getReq("/badname"))
	resp, body := c.answer(t, "GET")
	for k, v := range resp.Trailer { // declared names are listed, with no value
		if len(v) != 0 {
			t.Errorf("/badname: trailer %q: %q", k, v)
		}
	}
	if body != "body" {
		t.Fatalf("/badname: body %q, trailers %v", body, resp.Trailer)
	}
	c.send(t, getReq("/declared"))
	if _, body := c.answer(t, "GET"); body != "body" {
		t.Fatalf("after /badname: %q", body)
	}
}

func TestServerRefusesBadHeads(t *testing.T) {
	const limit = 200
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}), MaxHeaderBytes: limit})
	// head returns a GET head of exactly n bytes, final empty line included.
	head := func(n int) string {
		h := "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: "
		return h + strings.Repeat("p", n-len(h)-4) + "\r\n\r\n"
	}
	if len(head(limit)) != limit {
		t.Fatal("head is miscounted")
	}
	c := dialH1(t, s.addr)
	c.send(t, head(limit))
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("a head of exactly MaxHeaderBytes: %d", resp.StatusCode)
	}
	c = dialH1(t, s.addr)
	c.send(t, head(limit+1))
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a head one byte over MaxHeaderBytes: %d", resp.StatusCode)
	}
	// A head that arrived with the previous request's body, already
	// buffered when its reading starts, is held to the same limit.
	c = dialH1(t, s.addr)
	c.send(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("b", 1000)+head(limit+1))
	if resp, _ := c.answer(t, "POST"); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("a buffered head one byte over MaxHeaderBytes: %d", resp.StatusCode)
	}

	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"missing Host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"invalid value", "GET / HTTP/1.1\r\nHost: a\r\nX-Bad: a\x01b\r\n\r\n", 400},
		{"invalid name", "GET / HTTP/1.1\r\nHost: a\r\nX Bad: a\r\n\r\n", 400},
		{"garbage", "GARBAGE\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
		{"Expect: foo", "GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n", 417},
	} {
		c := dialH1(t, s.addr)
		c.send(t, tc.req) // the connection stays open: the answer must come at once
		resp, _ := c.answer(t, "GET")
		if resp.StatusCode != tc.status || !resp.Close {
			t.Errorf("%s: %d (close %v), want %d and the connection closing", tc.name, resp.StatusCode, resp.Close, tc.status)
		}
	}
}

func TestServerLargeHead(t *testing.T) {
	s := serveH1(t, &Server{Handler: echoPath})
	c := dialH1(t, s.addr)
	// 40 KiB of headers, well under the default limit.
	c.send(t, "GET /large HTTP/1.1\r\nHost: a\r\nCookie: "+strings.Repeat("c", 40<<10)+"\r\n\r\n")
	if resp, body := c.answer(t, "GET"); resp.StatusCode != 200 || body != "/large" {
		t.Fatalf("a 40 KiB head: %d %q", resp.StatusCode, body)
	}
}

func TestServerExpectContinue(t *testing.T) {
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
			return
		}
		_, _ = io.WriteString(w, "not read")
	})})
	c := dialH1(t, s.addr)
	c.send(t, "POST /read HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		t.Fatalf("want 100 Continue before the body: %v %v", resp, err)
	}
	c.send(t, "hello")
	if resp, body := c.answer(t, "POST"); resp.StatusCode != 200 || body != "hello" {
		t.Fatalf("after 100 Continue: %d %q", resp.StatusCode, body)
	}

	c = dialH1(t, s.addr)
	c.send(t, "POST /ignore HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	resp, body := c.answer(t, "POST")
	if resp.StatusCode != 200 || body != "not read" {
		t.Fatalf("a handler not reading: %d %q (a 100 Continue was sent?)", resp.StatusCode, body)
	}
	if !resp.Close || !c.closed(t) {
		t.Fatalf("a handler not reading the body the client holds back: close %v, want the connection closed", resp.Close)
	}
}

func TestServerRequestBodies(t *testing.T) {
	var mu sync.Mutex
	var readErr error
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/read":
			b, err := io.ReadAll(r.Body)
			mu.Lock()
			readErr = err
			mu.Unlock()
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
		default:
			_, _ = io.WriteString(w, "unread")
		}
	})})
	c := dialH1(t, s.addr)
	c.send(t, "POST /read HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	if _, body := c.answer(t, "POST"); body != "hello world" {
		t.Fatalf("chunked request body: %q", body)
	}
	c.send(t, "POST /unread HTTP/1.1\r\nHost: a\r\nContent-Length: 1000\r\n\r\n"+strings.Repeat("x", 1000))
	if _, body := c.answer(t, "POST"); body != "unread" {
		t.Fatalf("unread: %q", body)
	}
	c.send(t, getReq("/unread"))
	if resp, _ := c.answer(t, "GET"); resp.StatusCode != 200 {
		t.Fatalf("after a small unread body the connection serves: %d", resp.StatusCode)
	}

	c = dialH1(t, s.addr)
	const size = maxDiscard + 64<<10
	c.send(t, fmt.Sprintf("POST /unread HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n", size))
	go func() { _, _ = c.Write(make([]byte, size)) }() // fails once the server hangs up
	if _, body := c.answer(t, "POST"); body != "unread" {
		t.Fatalf("large unread: %q", body)
	}
	if !c.closed(t) {
		t.Fatal("more than maxDiscard left unread: the connection stayed open")
	}

	c = dialH1(t, s.addr)
	c.send(t, "POST /read HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n")
	if resp, _ := c.answer(t, "POST"); resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("bare-LF chunked body: %d", resp.StatusCode)
	}
	mu.Lock()
	defer mu.Unlock()
	if readErr == nil {
		t.Fatal("a bare-LF chunked body read without error")
	}
}

func TestServerHijack(t *testing.T) {
	var mu sync.Mutex
	var states []http.ConnState
	returned := make(chan struct{})
	handlerDone := make(chan struct{})
	s := serveH1(t, &Server{
		ConnState: func(_ net.Conn, st http.ConnState) {
			mu.Lock()
			states = append(states, st)
			mu.Unlock()
		},
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer close(handlerDone)
			w.Header().Set("Upgrade", "echo")
			w.Header().Set("Connection", "Upgrade")
			w.WriteHeader(http.StatusSwitchingProtocols)
			conn, brw, err := w.(http.Hijacker).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			go func() { // the connection outlives the handler
				defer conn.Close()
				<-returned
				_, _ = conn.Write([]byte("server->"))
				b := make([]byte, 4)
				if _, err := io.ReadFull(brw, b); err != nil {
					return
				}
				_, _ = conn.Write(b)
			}()
		}),
	})
	c := dialH1(t, s.addr)
	c.send(t, "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols || resp.Header.Get("Upgrade") != "echo" {
		t.Fatalf("101 head: %v %v", resp, err)
	}
	<-handlerDone
	close(returned)
	c.send(t, "ping")
	got := make([]byte, len("server->ping"))
	if _, err := io.ReadFull(c.br, got); err != nil || string(got) != "server->ping" {
		t.Fatalf("raw bytes after the hijack: %q %v", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []http.ConnState{http.StateNew, http.StateActive, http.StateHijacked}; fmt.Sprint(states) != fmt.Sprint(want) {
		t.Fatalf("states %v, want %v (no StateClosed)", states, want)
	}
}

// activeConn returns the server's one connection.
func activeConn(t *testing.T, s *Server) *serverConn {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.conns) != 1 {
		t.Fatalf("%d connections, want 1", len(s.conns))
	}
	for c := range s.conns {
		return c
	}
	return nil
}

// waitFor polls cond (a bounded wait for an internal state, not a timing).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("waited 10 s for %s", what)
}

func TestServerClientGone(t *testing.T) {
	entered := make(chan struct{}, 1)
	cancelled := make(chan bool, 1)
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-r.Context().Done():
			cancelled <- true
		case <-time.After(5 * time.Second):
			cancelled <- false
		}
	})})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/slow"))
	<-entered
	_ = c.Close()
	if !<-cancelled {
		t.Fatal("the request's context was not cancelled after the client left")
	}
}

func TestServerWatchReplaysHeldByte(t *testing.T) {
	release := make(chan struct{})
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/slow"))
	var sc *serverConn
	waitFor(t, "the connection", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	})
	sc = activeConn(t, s.Server)
	waitFor(t, "the watch to read", func() bool {
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		return sc.wstate == watchReading
	})
	c.send(t, getReq("/next"))
	waitFor(t, "the watch to hold a byte", func() bool {
		sc.wmu.Lock()
		defer sc.wmu.Unlock()
		return sc.cr.held
	})
	close(release)
	for _, want := range []string{"/slow", "/next"} {
		if _, body := c.answer(t, "GET"); body != want {
			t.Fatalf("got %q, want %q", body, want)
		}
	}
}

func TestServerTimeouts(t *testing.T) {
	s := serveH1(t, &Server{Handler: echoPath, ReadHeaderTimeout: 150 * time.Millisecond})
	c := dialH1(t, s.addr)
	c.send(t, "GET / HTTP/1.1\r\nHost:")
	if !c.closed(t) {
		t.Fatal("ReadHeaderTimeout: a half head kept the connection open")
	}

	s = serveH1(t, &Server{Handler: echoPath, IdleTimeout: 150 * time.Millisecond})
	c = dialH1(t, s.addr)
	c.send(t, getReq("/a"))
	if _, body := c.answer(t, "GET"); body != "/a" {
		t.Fatalf("%q", body)
	}
	if !c.closed(t) {
		t.Fatal("IdleTimeout: an idle connection stayed open")
	}
}

func TestServerShutdown(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
		_, _ = io.WriteString(w, r.URL.Path)
	})})
	idle := dialH1(t, s.addr)
	idle.send(t, getReq("/quick"))
	idle.answer(t, "GET")
	busy := dialH1(t, s.addr)
	busy.send(t, getReq("/slow"))
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if !idle.closed(t) {
		t.Fatal("Shutdown left an idle connection open")
	}
	if err := <-s.serveErr; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
	close(release)
	resp, body := busy.answer(t, "GET")
	if body != "/slow" || !resp.Close {
		t.Fatalf("in-flight request: %q, close %v", body, resp.Close)
	}
	if !busy.closed(t) {
		t.Fatal("the in-flight request's connection stayed open")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", s.addr); err == nil {
		t.Fatal("the listener accepts after Shutdown")
	}
}

func TestServerClose(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
	})})
	idle := dialH1(t, s.addr)
	idle.send(t, getReq("/quick"))
	idle.answer(t, "GET")
	busy := dialH1(t, s.addr)
	busy.send(t, getReq("/slow"))
	<-entered
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if !idle.closed(t) || !busy.closed(t) {
		t.Fatal("Close left a connection open")
	}
	if err := <-s.serveErr; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v, want http.ErrServerClosed", err)
	}
}

func TestServerPanics(t *testing.T) {
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			_, _ = io.WriteString(w, strings.Repeat("x", 8<<10))
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "fine")
	})})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/panic"))
	if !c.closed(t) {
		t.Fatal("a panicking handler's connection stayed open")
	}
	if !strings.Contains(s.logs.String(), "panic serving") || !strings.Contains(s.logs.String(), "boom") {
		t.Errorf("the panic was not logged: %s", s.logs.String())
	}

	c = dialH1(t, s.addr)
	c.send(t, getReq("/abort"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("an aborted chunked body: read %d bytes, %v; want an unexpected EOF", len(b), err)
	}

	c = dialH1(t, s.addr)
	c.send(t, getReq("/fine"))
	if _, body := c.answer(t, "GET"); body != "fine" {
		t.Fatalf("after the panics: %q", body)
	}
}

// FuzzServer writes arbitrary bytes as a client to a Server over loopback
// TCP, then closes its writing side: the server must not panic, must end
// its connection, and what it wrote must read as a sequence of responses.
func FuzzServer(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: t\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloHEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello",
		"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("b", 2000) + "\r\n\r\n",
		"GET / HTTP/1.0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		"GARBAGE\r\n\r\n",
		"GET / HTTP/2.0\r\nHost: a\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\n0\n\n",
		"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"GET / HTTP/1.1\r\nHost: a\r\nExpect: foo\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	srv := &Server{
		MaxHeaderBytes: 1024,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if _, err := io.Copy(io.Discard, r.Body); err != nil {
				w.WriteHeader(http.StatusBadRequest)
			}
			_, _ = io.WriteString(w, "ok")
		}),
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		sc, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		ended := make(chan struct{})
		go func() {
			defer close(ended)
			// struct{ net.Conn } hides CloseWrite, so that a refusal does not
			// wait rstAvoidanceDelay: the client reads all it is sent anyway.
			srv.ServeConn(struct{ net.Conn }{sc})
		}()
		_ = client.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			_, _ = client.Write(data)
			_ = client.(*net.TCPConn).CloseWrite()
		}()
		out, err := io.ReadAll(client)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("%q: the server neither answered all nor closed in 10 s", data)
		}
		select {
		case <-ended:
		case <-time.After(10 * time.Second):
			t.Fatalf("%q: the server's goroutine did not end after the client closed", data)
		}
		br := bufio.NewReader(bytes.NewReader(out))
		for {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("%q: the server wrote %q, not a sequence of responses: %v", data, out, err)
			}
			if _, err := io.Copy(io.Discard, resp.Body); err != nil {
				t.Fatalf("%q: the server wrote %q, a body that does not read: %v", data, out, err)
			}
		}
	})
}

// TestIdleConnectionKeepsNoLargeHeader: an answer with more fields than
// maxReusedHeader does not leave its header map on the idle connection.
func TestIdleConnectionKeepsNoLargeHeader(t *testing.T) {
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 1
		if r.URL.Path == "/many" {
			n = maxReusedHeader + 8
		}
		for i := range n {
			w.Header().Set("X-Field-"+strconv.Itoa(i), "v")
		}
	})})
	c := dialH1(t, s.addr)
	sc := (*serverConn)(nil)
	for _, tc := range []struct {
		path string
		kept bool
	}{{"/one", true}, {"/many", false}, {"/one", true}} {
		c.send(t, getReq(tc.path))
		_, _ = c.answer(t, http.MethodGet)
		if sc == nil {
			sc = activeConn(t, s.Server)
		}
		waitFor(t, "the connection to idle", func() bool { return http.ConnState(sc.state.Load()) == http.StateIdle })
		if kept := sc.header != nil; kept != tc.kept {
			t.Errorf("after %s: header map kept %v, want %v", tc.path, kept, tc.kept)
		}
	}
}
