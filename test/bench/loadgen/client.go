package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// getter sends one GET and reads the whole answer.
type getter interface {
	get() (status int, n int64, err error)
}

// stdGetter is net/http's client.
type stdGetter struct {
	url    string
	client *http.Client
}

// newStdGetter returns a keep-alive HTTP/1.1 client with at most conns
// connections, all of which stay pooled between requests.
func newStdGetter(u string, conns int, timeout time.Duration) *stdGetter {
	return &stdGetter{url: u, client: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}}
}

func (g *stdGetter) get() (int, int64, error) {
	req, err := http.NewRequest(http.MethodGet, g.url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, n, err
}

// rawGetter is a minimal HTTP/1.1 keep-alive client: the calling goroutine
// writes the request and reads the answer on a pooled connection itself.
// net/http's client hands every request to a writer and a reader goroutine
// per connection, and each hand-off can wake a thread: on a small machine
// that costs the generator CPU the proxies under test then lack, and adds
// scheduling noise to every sample. It understands Content-Length and
// chunked bodies and "Connection: close", which is all the benchmark's
// servers send.
type rawGetter struct {
	addr    string
	req     []byte
	timeout time.Duration

	mu   sync.Mutex
	idle []*rawConn // a stack: the most recently used connection goes out first, as in net/http
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

func newRawGetter(rawURL string, timeout time.Duration) (*rawGetter, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// URLs", rawURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	req := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: skein-loadgen\r\n\r\n"
	return &rawGetter{addr: addr, req: []byte(req), timeout: timeout}, nil
}

func (g *rawGetter) conn() (*rawConn, error) {
	g.mu.Lock()
	if n := len(g.idle); n > 0 {
		c := g.idle[n-1]
		g.idle = g.idle[:n-1]
		g.mu.Unlock()
		return c, nil
	}
	g.mu.Unlock()
	c, err := net.DialTimeout("tcp", g.addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	return &rawConn{c: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

func (g *rawGetter) put(c *rawConn) {
	g.mu.Lock()
	g.idle = append(g.idle, c)
	g.mu.Unlock()
}

func (g *rawGetter) get() (int, int64, error) {
	c, err := g.conn()
	if err != nil {
		return 0, 0, err
	}
	_ = c.c.SetDeadline(time.Now().Add(g.timeout))
	status, n, keep, err := g.exchange(c)
	if err != nil || !keep {
		_ = c.c.Close()
		return status, n, err
	}
	g.put(c)
	return status, n, nil
}

// exchange writes the request and reads one response on c.
func (g *rawGetter) exchange(c *rawConn) (status int, n int64, keep bool, err error) {
	if _, err := c.c.Write(g.req); err != nil {
		return 0, 0, false, err
	}
	return readResponse(c.br)
}

var errMalformed = errors.New("malformed response")

// readResponse reads a response to a GET from br and discards its body.
func readResponse(br *bufio.Reader) (status int, n int64, keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return 0, 0, false, err
	}
	// "HTTP/1.1 200 OK\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, 0, false, fmt.Errorf("%w: status line %q", errMalformed, line)
	}
	keep = line[7] == '1' // HTTP/1.0 closes unless told otherwise; the servers here speak 1.1
	length, chunked := int64(-1), false
	for {
		line, err = br.ReadSlice('\n')
		if err != nil {
			return status, 0, false, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 {
			break
		}
		k, v, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return status, 0, false, fmt.Errorf("%w: header %q", errMalformed, line)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, err = strconv.ParseInt(string(v), 10, 64)
			if err != nil || length < 0 {
				return status, 0, false, fmt.Errorf("%w: Content-Length %q", errMalformed, v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			}
		}
	}
	switch {
	case status == http.StatusNoContent || status == http.StatusNotModified || status < 200:
		return status, 0, keep, nil
	case chunked:
		n, err = discardChunked(br)
		return status, n, keep && err == nil, err
	case length >= 0:
		d, err := br.Discard(int(length))
		return status, int64(d), keep && err == nil, err
	}
	// No length: the body runs to the end of the connection.
	n, err = io.Copy(io.Discard, br)
	return status, n, false, err
}

// discardChunked reads a chunked body (RFC 9112 §7.1) and its trailers.
func discardChunked(br *bufio.Reader) (int64, error) {
	var total int64
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		line = bytes.TrimRight(line, "\r\n")
		if i := bytes.IndexByte(line, ';'); i >= 0 {
			line = line[:i]
		}
		size, err := strconv.ParseInt(string(bytes.TrimSpace(line)), 16, 64)
		if err != nil || size < 0 {
			return total, fmt.Errorf("%w: chunk size %q", errMalformed, line)
		}
		if size == 0 {
			break
		}
		d, err := br.Discard(int(size))
		total += int64(d)
		if err != nil {
			return total, err
		}
		if crlf, err := br.ReadSlice('\n'); err != nil || len(bytes.TrimRight(crlf, "\r\n")) != 0 {
			return total, fmt.Errorf("%w: no CRLF after chunk", errMalformed)
		}
	}
	for { // trailers, up to the blank line
		line, err := br.ReadSlice('\n')
		if err != nil {
			return total, err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return total, nil
		}
	}
}
