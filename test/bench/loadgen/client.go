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

// requester sends one request and reads the whole answer. Safe for
// concurrent use.
type requester interface {
	do() (status int, n int64, err error)
}

// stdClient is net/http's client.
type stdClient struct {
	url    string
	method string
	body   []byte // sent with every request; never written to
	client *http.Client
}

// newStdClient returns a keep-alive HTTP/1.1 client with at most conns
// connections, all of which stay pooled between requests. A non-empty body
// is POSTed with every request, otherwise it GETs.
func newStdClient(u string, body []byte, conns int, timeout time.Duration) *stdClient {
	method := http.MethodGet
	if len(body) > 0 {
		method = http.MethodPost
	}
	return &stdClient{url: u, method: method, body: body, client: &http.Client{
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

func (c *stdClient) do() (int, int64, error) {
	var body io.Reader
	if len(c.body) > 0 {
		body = bytes.NewReader(c.body) // sets ContentLength
	}
	req, err := http.NewRequest(c.method, c.url, body)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, 0, err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	return resp.StatusCode, n, err
}

// rawClient is a minimal HTTP/1.1 keep-alive client: the calling goroutine
// writes the request and reads the answer on a pooled connection itself.
// net/http's client hands every request to a writer and a reader goroutine
// per connection, and each hand-off can wake a thread: on a small machine
// that costs the generator CPU the proxies under test then lack, and adds
// scheduling noise to every sample. It understands Content-Length and
// chunked bodies and "Connection: close", which is all the benchmark's
// servers send.
type rawClient struct {
	addr    string
	head    []byte // request line and headers
	body    []byte // sent after head with every request; never written to
	timeout time.Duration

	mu   sync.Mutex
	idle []*rawConn // a stack: the most recently used connection goes out first, as in net/http
}

type rawConn struct {
	c  net.Conn
	br *bufio.Reader
}

// newRawClient returns a client of rawURL (http only). A non-empty body is
// POSTed with every request, with a Content-Length; otherwise it GETs.
func newRawClient(rawURL string, body []byte, timeout time.Duration) (*rawClient, error) {
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
	head := "GET " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: skein-loadgen\r\n\r\n"
	if len(body) > 0 {
		head = "POST " + u.RequestURI() + " HTTP/1.1\r\nHost: " + u.Host + "\r\nUser-Agent: skein-loadgen\r\n" +
			"Content-Type: application/octet-stream\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n"
	}
	return &rawClient{addr: addr, head: []byte(head), body: body, timeout: timeout}, nil
}

func (g *rawClient) conn() (*rawConn, error) {
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

func (g *rawClient) put(c *rawConn) {
	g.mu.Lock()
	g.idle = append(g.idle, c)
	g.mu.Unlock()
}

func (g *rawClient) do() (int, int64, error) {
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
func (g *rawClient) exchange(c *rawConn) (status int, n int64, keep bool, err error) {
	if len(g.body) == 0 {
		_, err = c.c.Write(g.head)
	} else {
		bufs := net.Buffers{g.head, g.body} // one writev; WriteTo consumes bufs, not the slices
		_, err = bufs.WriteTo(c.c)
	}
	if err != nil {
		return 0, 0, false, err
	}
	return readResponse(c.br)
}

var errMalformed = errors.New("malformed response")

// readResponse reads a response to a GET or POST from br and discards its body.
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
