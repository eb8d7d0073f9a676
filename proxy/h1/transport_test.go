package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// server is an httptest server that counts the connections it accepted.
type server struct {
	*httptest.Server
	conns atomic.Int64
}

func newServer(t *testing.T, h http.Handler) *server {
	t.Helper()
	s := &server{Server: httptest.NewUnstartedServer(h)}
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

func newTransport() *Transport {
	return &Transport{Dial: DialTCP(&net.Dialer{Timeout: time.Second})}
}

func get(t *testing.T, tr *Transport, url string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: read body: %v", url, err)
	}
	_ = resp.Body.Close()
	return resp, string(b)
}

func TestReusesConnections(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello "+r.URL.Path)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for i := range 20 {
		resp, b := get(t, tr, s.URL+fmt.Sprintf("/%d", i))
		if resp.StatusCode != 200 || b != fmt.Sprintf("hello /%d", i) {
			t.Fatalf("call %d: %d %q", i, resp.StatusCode, b)
		}
	}
	if n := s.conns.Load(); n != 1 {
		t.Errorf("20 sequential calls used %d connections, want 1", n)
	}
}

func TestBodies(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = http.NewResponseController(w).EnableFullDuplex()
		w.Header().Set("Trailer", "X-Sum")
		n, _ := io.Copy(w, r.Body)
		w.Header().Set("X-Sum", fmt.Sprint(n))
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	for _, tc := range []struct {
		name   string
		size   int
		length int64 // -1: chunked
	}{
		{"empty", 0, 0},
		{"inline", 1000, 1000},
		{"inline max", InlineBodyMax, InlineBodyMax},
		{"streamed fixed", 8 << 20, 8 << 20},
		{"chunked", 3 << 20, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := bytes.Repeat([]byte("abcdefgh"), tc.size/8+1)[:tc.size]
			req, _ := http.NewRequest(http.MethodPost, s.URL+"/echo", io.NopCloser(bytes.NewReader(want)))
			req.ContentLength = tc.length
			if tc.size == 0 {
				req.Body = http.NoBody
			}
			resp, err := tr.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			got, err := io.ReadAll(resp.Body)
			_ = resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("echo of %d bytes returned %d bytes", len(want), len(got))
			}
			if v := resp.Trailer.Get("X-Sum"); v != fmt.Sprint(tc.size) {
				t.Errorf("trailer X-Sum = %q, want %d", v, tc.size)
			}
		})
		// Bodies written inline share one connection; a streamed one's
		// connection is pooled once its writer reports, off the caller's
		// path, so later calls may or may not find it.
		if tc.name == "inline max" {
			if n := s.conns.Load(); n != 1 {
				t.Errorf("the inline bodies used %d connections, want 1", n)
			}
		}
	}
}

// TestStreamsBothWays: a chunked request's pieces reach the server one by
// one while it answers each, so neither side buffers the whole stream.
func TestStreamsBothWays(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(200)
		_ = rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = io.WriteString(w, "ack "+line)
			_ = rc.Flush()
		}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	pr, pw := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, s.URL, pr)
	req.ContentLength = -1
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(resp.Body)
	for i := range 5 {
		if _, err := fmt.Fprintf(pw, "piece %d\n", i); err != nil {
			t.Fatal(err)
		}
		line, err := br.ReadString('\n')
		if err != nil || line != fmt.Sprintf("ack piece %d\n", i) {
			t.Fatalf("piece %d: got %q, %v", i, line, err)
		}
	}
	_ = pw.Close()
	if rest, _ := io.ReadAll(br); len(rest) != 0 {
		t.Errorf("unexpected %q after the last piece", rest)
	}
	_ = resp.Body.Close()
}

// TestStaleIdleConnection: a server that closed an idle connection costs
// the next call nothing: a request that can be sent again is (the
// connection was idle for less than trustIdle, so taken unchecked), and
// one whose body cannot be is never sent on it (the liveness check).
func TestStaleIdleConnection(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "ok "+string(b))
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	get(t, tr, s.URL)
	s.CloseClientConnections() // the server side closes the pooled connection
	time.Sleep(10 * time.Millisecond)
	for _, tc := range []struct {
		name   string
		method string
		once   bool // the body can be read once only
	}{
		{"GET", http.MethodGet, false},
		{"POST with GetBody", http.MethodPost, false},
		{"POST of a one-time body", http.MethodPost, true},
	} {
		req, _ := http.NewRequest(tc.method, s.URL, strings.NewReader("body"))
		if tc.once {
			req.Body = io.NopCloser(strings.NewReader("body"))
			req.GetBody = nil
		}
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatalf("%s after the server closed the idle connection: %v", tc.name, err)
		}
		b, _ := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if want := "ok body"; tc.method == http.MethodPost && string(b) != want {
			t.Errorf("%s: answer %q, want %q", tc.name, b, want)
		}
		s.CloseClientConnections()
		time.Sleep(10 * time.Millisecond)
	}
	if n := s.conns.Load(); n != 4 {
		t.Errorf("used %d connections, want 4", n)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	release := make(chan struct{})
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	_, err := tr.RoundTrip(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if n := len(tr.idle); n != 0 {
		t.Errorf("%d addresses have idle connections after a cancelled call", n)
	}
}

// TestEarlyCloseDoesNotDrain: closing a response body mid-way closes the
// connection instead of reading the rest (which here never ends).
func TestEarlyCloseDoesNotDrain(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/again" {
			_, _ = io.WriteString(w, "again")
			return
		}
		buf := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(buf); err != nil {
				return
			}
		}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 100<<10)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = resp.Body.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of an endless body did not return")
	}
	if _, b := get(t, tr, s.URL+"/again"); b != "again" {
		t.Errorf("next call got %q", b)
	}
	if n := s.conns.Load(); n != 2 {
		t.Errorf("used %d connections, want 2 (the cut one is not reused)", n)
	}
}

func TestHeaderTooLarge(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Big", strings.Repeat("b", 64<<10))
	}))
	tr := newTransport()
	tr.MaxResponseHeaderBytes = 16 << 10
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrHeaderTooLarge) {
		t.Fatalf("err = %v, want ErrHeaderTooLarge", err)
	}
}

func TestInformationalResponses(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	var got []int
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, code)
			return nil
		},
	})
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL, nil)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "final" || len(got) != 1 || got[0] != 103 {
		t.Errorf("got %d %q, 1xx %v; want 200 \"final\", [103]", resp.StatusCode, b, got)
	}
}

// TestUpgrade: a request asking to switch protocols reaches the server
// with its Connection: Upgrade; a 101 hands the connection over, and its
// CloseWrite half-closes it, the server still answering after the end of
// what the client sent.
func TestUpgrade(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Connection") != "Upgrade" || r.Header.Get("Upgrade") != "echo" {
			http.Error(w, "no upgrade asked for", http.StatusBadRequest)
			return
		}
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString("echo: " + line)
		_ = brw.Flush()
		rest, _ := io.ReadAll(brw) // until the client half-closes
		_, _ = fmt.Fprintf(brw, "bye after %d bytes\n", len(rest))
		_ = brw.Flush()
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, s.URL, nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if resp.StatusCode != 101 || !ok {
		t.Fatalf("got %d, body %T; want 101 and an io.ReadWriteCloser", resp.StatusCode, resp.Body)
	}
	defer rw.Close()
	_, _ = io.WriteString(rw, "hi\n")
	br := bufio.NewReader(rw)
	line, err := br.ReadString('\n')
	if line != "echo: hi\n" {
		t.Errorf("read %q, %v", line, err)
	}
	_, _ = io.WriteString(rw, "tail")
	cw, ok := rw.(interface{ CloseWrite() error })
	if !ok {
		t.Fatalf("body %T cannot half-close", rw)
	}
	if err := cw.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(br)
	if string(rest) != "bye after 4 bytes\n" || err != nil {
		t.Errorf("after half-close read %q, %v", rest, err)
	}
}

func TestIdleTimeoutClosesConnection(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	tr := newTransport()
	tr.IdleTimeout = 20 * time.Millisecond
	defer tr.CloseIdleConnections()
	get(t, tr, s.URL)
	deadline := time.Now().Add(5 * time.Second)
	for {
		tr.mu.Lock()
		n := len(tr.idle)
		tr.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("idle connection not closed after its idle timeout")
		}
		time.Sleep(5 * time.Millisecond)
	}
	get(t, tr, s.URL)
	if n := s.conns.Load(); n != 2 {
		t.Errorf("used %d connections, want 2", n)
	}
}

func TestDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	_ = ln.Close()
	tr := newTransport()
	req, _ := http.NewRequest(http.MethodGet, "http://"+addr, nil)
	_, err := tr.RoundTrip(req)
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "dial" {
		t.Fatalf("err = %v, want a dial *net.OpError", err)
	}
}

// rawServer answers every request head it reads on a connection with a
// fixed response, allocating nothing per request, so that allocation
// counts are the client's.
func rawServer(t *testing.T, resp string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 4096)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						copy(buf, buf[i+4:have])
						have -= i + 4
						if _, err := io.WriteString(c, resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestGetDoesNotAllocateMuch pins the transport's allocations per call on
// a pooled connection: net/http's parsing of the response head is most of
// them.
func TestGetDoesNotAllocateMuch(t *testing.T) {
	url := rawServer(t, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok")
	tr := newTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	buf := make([]byte, 64)
	n := testing.AllocsPerRun(200, func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := resp.Body.Read(buf); err != nil {
				break
			}
		}
		_ = resp.Body.Close()
	})
	t.Logf("a pooled GET allocates %v times", n)
	if n > allocBudget {
		t.Errorf("a pooled GET allocates %v times, want at most %d", n, allocBudget)
	}
}

// TestBrokenRequestBodyEndsTheCall: a streamed request body that fails to
// read ends the call at once with that error, instead of leaving the
// server waiting for the rest and the caller for the answer.
func TestBrokenRequestBodyEndsTheCall(t *testing.T) {
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	boom := errors.New("client body broke")
	pr, pw := io.Pipe()
	go func() {
		_, _ = pw.Write([]byte("some of the body"))
		_ = pw.CloseWithError(boom)
	}()
	req, _ := http.NewRequest(http.MethodPost, s.URL, pr)
	req.ContentLength = -1
	done := make(chan error, 1)
	go func() {
		_, err := tr.RoundTrip(req)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, boom) {
			t.Errorf("err = %v, want the body's error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the call did not end when its body broke")
	}
}

// TestRequestHead: the head written for a fixed-length request is what a
// server parses back: method, path and query, Host, headers (a value's CR
// and LF become spaces, so none can add a header), Content-Length.
func TestRequestHead(t *testing.T) {
	type seen struct {
		method, uri, host, injected, evil string
		length                            int64
		body                              string
	}
	got := make(chan seen, 1)
	s := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{r.Method, r.RequestURI, r.Host, r.Header.Get("Injected"), r.Header.Get("X-Evil"), r.ContentLength, string(b)}
	}))
	tr := newTransport()
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodPut, s.URL+"/a%20b/c?x=1&y=%2F", strings.NewReader("payload"))
	req.Host = "orders.default"
	req.Header.Set("X-Evil", "v\r\nInjected: yes")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	want := seen{"PUT", "/a%20b/c?x=1&y=%2F", "orders.default", "", "v  Injected: yes", 7, "payload"}
	if g := <-got; g != want {
		t.Errorf("server saw %+v, want %+v", g, want)
	}
	short, _ := http.NewRequest(http.MethodPost, s.URL, strings.NewReader("abc"))
	short.ContentLength = 10
	if _, err := tr.RoundTrip(short); err == nil || !strings.Contains(err.Error(), "want Content-Length 10") {
		t.Errorf("a body shorter than its Content-Length: err = %v", err)
	}
}

// TestLongBodyOverTLS: a long request body of known length sent over TLS
// (on an internal/inlineio socket, whose writes the transport corks so
// that each 64 KiB piece leaves in one write(2) rather than a record at a
// time) arrives whole and in order, and a connection over TLS corks while
// a plain one does not.
func TestLongBodyOverTLS(t *testing.T) {
	got := make(chan []byte, 1)
	s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- b
	}))
	s.StartTLS()
	defer s.Close()
	dial := DialTLS(&net.Dialer{Timeout: time.Second}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}) //nolint:gosec // httptest's certificate
	tr := &Transport{Dial: dial}
	defer tr.CloseIdleConnections()
	body := make([]byte, 1<<20+12345)
	for i := range body {
		body[i] = byte(i % 251)
	}
	for range 2 { // a new connection (small records first), then the pooled one
		req, _ := http.NewRequest(http.MethodPost, s.URL, bytes.NewReader(body))
		req.Body = io.NopCloser(req.Body) // no WriteTo: the body is read as a client's is
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if b := <-got; !bytes.Equal(b, body) {
			t.Fatalf("the server read %d bytes, not the %d sent", len(b), len(body))
		}
	}

	addr := s.Listener.Addr().String()
	tc, err := dial(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	if c := newConn(tr, addr, tc); c.cork == nil {
		t.Error("a connection over TLS on an inlineio socket does not cork")
	}
	pc, err := DialTCP(&net.Dialer{Timeout: time.Second})(context.Background(), addr)
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if c := newConn(tr, addr, pc); c.cork != nil {
		t.Error("a plain connection corks: its writes would wait for nothing")
	}
}
