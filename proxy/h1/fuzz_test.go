package h1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// closeTracker is a connection that records that it was closed.
type closeTracker struct {
	net.Conn
	closed atomic.Bool
}

func (c *closeTracker) Close() error {
	c.closed.Store(true)
	return c.Conn.Close()
}

// netHTTPReads reports whether net/http's own parsing accepts data as the
// whole answer to a GET: 1xx responses (not 101) skipped, as Transport
// does, then a final response whose body reads to its end.
func netHTTPReads(data []byte, req *http.Request) (status int, ok bool) {
	br := bufio.NewReader(bytes.NewReader(data))
	for {
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return 0, false
		}
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			continue
		}
		_, err = io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, err == nil
	}
}

// FuzzResponse feeds arbitrary bytes to Transport as a server's answer to
// a GET, over an in-memory connection the server closes once it has
// written them: a call never panics or hangs (it has a deadline, and the
// connection ends), it succeeds exactly when net/http's own parsing
// accepts the bytes, and a connection whose answer was malformed (or cut
// short) is closed, never pooled for the next call. A pooled one is closed
// by CloseIdleConnections: nothing leaks.
func FuzzResponse(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-Trailer: t\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nframes",
		"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.0 200 OK\r\n\r\nuntil the end",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
		"HTTP/1.1 99 Weird\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"HTTP/9.9 200 OK\r\n\r\n",
		"garbage\r\n\r\n",
		"HTTP/1.1 200 OK\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var conn *closeTracker
		var wg sync.WaitGroup
		defer wg.Wait()
		tr := &Transport{Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			if conn != nil {
				return nil, errors.New("a second dial") // one call, no retry on a new connection
			}
			client, server := net.Pipe()
			conn = &closeTracker{Conn: client}
			wg.Go(func() { // the server: reads the request head, answers data, hangs up
				defer server.Close()
				if _, err := http.ReadRequest(bufio.NewReader(server)); err != nil {
					return
				}
				_, _ = server.Write(data)
			})
			return conn, nil
		}}
		// A hang guard: a call still running at the deadline is a hang.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://upstream.test/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		wantStatus, wantOK := netHTTPReads(data, req)

		resp, err := tr.RoundTrip(req)
		var berr error
		status := 0
		if err == nil {
			status = resp.StatusCode
			_, berr = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		}
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(berr, context.DeadlineExceeded) {
			t.Fatalf("%q: hung until the guard's deadline", data)
		}
		gotOK := err == nil && berr == nil
		pooled := conn != nil && !conn.closed.Load()
		tr.CloseIdleConnections()
		wg.Wait() // the server has written all it could, or found the connection closed

		switch {
		case gotOK != wantOK || (gotOK && status != wantStatus):
			t.Fatalf("%q: the call got status %d (round trip: %v, body: %v); net/http reads status %d, ok %v",
				data, status, err, berr, wantStatus, wantOK)
		case !gotOK && pooled:
			t.Fatalf("%q: a failed call (round trip: %v, body: %v) left its connection pooled", data, err, berr)
		case conn != nil && !conn.closed.Load():
			t.Fatalf("%q: the connection is open after CloseIdleConnections", data)
		}
	})
}
