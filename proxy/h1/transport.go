package h1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// Defaults of a Transport's zero fields.
const (
	DefaultMaxIdlePerHost         = 256
	DefaultIdleTimeout            = 90 * time.Second
	DefaultMaxResponseHeaderBytes = 1 << 20
	// InlineBodyMax is the largest fixed-length request body written on
	// the caller's goroutine before the response is read. Loopback and LAN
	// socket buffers take it whole, so a server that answers before
	// reading cannot block the write.
	InlineBodyMax = 64 << 10
	// bufSize is each connection's read and write buffer, net/http's size.
	bufSize = 4 << 10
	// writerGrace is how long a connection whose response finished first
	// waits for the goroutine still writing its request body before it is
	// closed instead of pooled (poolAfterWrite, off the caller's path).
	writerGrace = 250 * time.Millisecond
)

// Errors a caller may branch on.
var (
	// ErrHeaderTooLarge is returned when a response's header exceeds
	// MaxResponseHeaderBytes.
	ErrHeaderTooLarge = errors.New("h1: response header too large")
)

// Transport is an HTTP/1.1 client for one kind of upstream (the local app,
// or other sidecars over TLS). It pools connections per address. The zero
// value is not usable: Dial must be set. Safe for concurrent use; fields
// must not change after the first call.
type Transport struct {
	// Dial opens a connection to addr ("host:port"), TLS included when the
	// upstream speaks TLS, and reports connect and handshake steps to the
	// context's httptrace.ClientTrace. An error from which nothing was sent
	// should be a *net.OpError with Op "dial", so callers know the request
	// may go elsewhere.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// MaxIdlePerHost bounds the idle connections kept per address;
	// 0 means DefaultMaxIdlePerHost.
	MaxIdlePerHost int
	// IdleTimeout closes a connection idle for this long; 0 means
	// DefaultIdleTimeout. Keep it below the server's own idle timeout.
	IdleTimeout time.Duration
	// MaxResponseHeaderBytes bounds a response's status line and header;
	// 0 means DefaultMaxResponseHeaderBytes.
	MaxResponseHeaderBytes int

	mu   sync.Mutex
	idle map[string][]*conn // address → idle connections, most recent last
	bufs sync.Pool          // *copyBuf for long request bodies
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Host == "" {
		closeBody(req)
		return nil, errors.New("h1: request has no host")
	}
	addr := hostPort(req.URL.Host, req.URL.Scheme)
	ctx := req.Context()
	trace := httptrace.ContextClientTrace(ctx)
	for try := 0; ; try++ {
		c, reused, err := t.conn(ctx, addr, trace, try == 0 && rewindable(req))
		if err != nil {
			closeBody(req)
			return nil, err
		}
		resp, err := c.roundTrip(req, trace)
		if err == nil {
			return resp, nil
		}
		var stale *staleConnError
		if try == 0 && reused && errors.As(err, &stale) && rewindable(req) {
			// The server closed an idle connection as we reused it: it
			// cannot have processed the request (RFC 9112 §9.3.1).
			if req, err = rewind(req); err != nil {
				return nil, err
			}
			continue
		}
		return nil, err
	}
}

// rewindable reports whether req can be sent again from the start.
func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

func rewind(req *http.Request) (*http.Request, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return req, nil
	}
	b, err := req.GetBody()
	if err != nil {
		return nil, fmt.Errorf("h1: rewind request body: %w", err)
	}
	r := *req
	r.Body = b
	return &r, nil
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// hostPort adds the scheme's default port to a URL host without one.
func hostPort(host, scheme string) string {
	if _, _, err := net.SplitHostPort(host); err == nil {
		return host
	}
	if scheme == "https" {
		return net.JoinHostPort(host, "443")
	}
	return net.JoinHostPort(host, "80")
}

// conn returns an idle connection to addr that looks alive, or a new one.
// retryable says that a stale connection's failure would be retried on a
// new one (RoundTrip): then one idle for less than trustIdle is taken
// without looking at its socket.
func (t *Transport) conn(ctx context.Context, addr string, trace *httptrace.ClientTrace, retryable bool) (*conn, bool, error) {
	if trace != nil && trace.GetConn != nil {
		trace.GetConn(addr)
	}
	for {
		c := t.takeIdle(addr)
		if c == nil {
			break
		}
		if c.alive(retryable) {
			if trace != nil && trace.GotConn != nil {
				trace.GotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: true, WasIdle: true})
			}
			return c, true, nil
		}
		c.close()
	}
	nc, err := t.Dial(ctx, addr)
	if err != nil {
		return nil, false, err
	}
	c := newConn(t, addr, nc)
	if trace != nil && trace.GotConn != nil {
		trace.GotConn(httptrace.GotConnInfo{Conn: nc})
	}
	return c, false, nil
}

func (t *Transport) takeIdle(addr string) *conn {
	t.mu.Lock()
	list := t.idle[addr]
	if len(list) == 0 {
		t.mu.Unlock()
		return nil
	}
	c := list[len(list)-1]
	list[len(list)-1] = nil
	t.idle[addr] = list[:len(list)-1]
	c.idle = false
	t.mu.Unlock()
	c.timer.Stop() // a timer that fires anyway finds c not idle
	return c
}

// putIdle pools c, or closes it when the pool is full.
func (t *Transport) putIdle(c *conn) {
	max := t.MaxIdlePerHost
	if max <= 0 {
		max = DefaultMaxIdlePerHost
	}
	t.mu.Lock()
	if len(t.idle[c.addr]) >= max {
		t.mu.Unlock()
		c.close()
		return
	}
	if t.idle == nil {
		t.idle = map[string][]*conn{}
	}
	t.idle[c.addr] = append(t.idle[c.addr], c)
	c.idle = true
	c.idleAt = time.Now()
	t.mu.Unlock()
	d := t.IdleTimeout
	if d <= 0 {
		d = DefaultIdleTimeout
	}
	if c.timer == nil {
		c.timer = time.AfterFunc(d, c.expire)
	} else {
		c.timer.Reset(d)
	}
}

// expire closes c if it is still idle.
func (c *conn) expire() {
	t := c.t
	t.mu.Lock()
	if !c.idle {
		t.mu.Unlock()
		return
	}
	list := t.idle[c.addr]
	for i, x := range list {
		if x == c {
			t.idle[c.addr] = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(t.idle[c.addr]) == 0 {
		delete(t.idle, c.addr) // no entry per address ever seen
	}
	c.idle = false
	t.mu.Unlock()
	c.close()
}

// CloseIdleConnections closes every idle connection. Connections in use
// are closed when their call ends.
func (t *Transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	for _, list := range idle {
		for _, c := range list {
			c.idle = false
		}
	}
	t.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.timer.Stop()
			c.close()
		}
	}
}

// conn is one connection. It is used by one call at a time.
type conn struct {
	t      *Transport
	addr   string
	nc     net.Conn
	raw    syscall.RawConn // the TCP socket under nc, for the liveness check; nil if none
	cork   corker          // the socket under nc's TLS, if it can gather writes
	in     countingReader
	br     *bufio.Reader
	bw     *bufio.Writer
	timer  *time.Timer // idle expiry; guarded by t.mu with idle
	idle   bool        // in t.idle; guarded by t.mu
	idleAt time.Time   // when it was last pooled; guarded by t.mu until taken

	peekFn   func(fd uintptr) bool // c.peek, bound once: a per-call closure would allocate
	peekLive bool                  // peek's verdict
	peekBuf  [1]byte
	// fixed frames the running response's body when it has a plain
	// Content-Length; the next call reuses it (a call ends, by body.finish,
	// before its connection serves another).
	fixed fixedBody
}

func newConn(t *Transport, addr string, nc net.Conn) *conn {
	c := &conn{t: t, addr: addr, nc: nc}
	c.in.r = nc
	c.in.limit = -1
	c.br = bufio.NewReaderSize(&c.in, bufSize)
	c.bw = bufio.NewWriterSize(nc, bufSize)
	under := nc
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok { // *tls.Conn
		under = u.NetConn()
	}
	c.in.noWait, c.cork = tlsSocket(nc)
	if sc, ok := under.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
		c.peekFn = c.peek
	}
	return c
}

func (c *conn) close() { _ = c.nc.Close() }

// interrupt ends a blocked read or write when the call's context ends.
func (c *conn) interrupt() { _ = c.nc.SetDeadline(time.Unix(1, 0)) }

// trustIdle is how long a pooled connection is taken for a retryable
// request without the liveness check's syscall. Servers close idle
// connections after seconds (gunicorn 2 s, Node.js 5 s); one that closed
// sooner costs a retry on a new connection, not the call. Past it, or
// for a request whose body cannot be sent again, the socket is looked at.
const trustIdle = 500 * time.Millisecond

// alive reports whether an idle connection can carry a request: the peer
// has not closed it and sent nothing unasked. A TLS 1.3 server's session
// tickets arrive before the first response, so on a connection that has
// carried one they are read already. For a retryable request (see conn),
// one pooled less than trustIdle ago is taken without the syscall.
func (c *conn) alive(retryable bool) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil || retryable && time.Since(c.idleAt) < trustIdle {
		return true // nothing to look at, or trusted (trustIdle)
	}
	err := c.raw.Read(c.peekFn)
	return c.peekLive && err == nil
}

// peek looks at the socket without reading from it or waiting.
func (c *conn) peek(fd uintptr) bool {
	// A raw syscall: MSG_DONTWAIT never sleeps, and syscall.Recvfrom's
	// entersyscall would wake the runtime's sysmon thread from its deep
	// sleep on every call (see internal/inlineio).
	_, _, errno := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.peekBuf[0])), uintptr(len(c.peekBuf)),
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	// Nothing to read yet is the only healthy answer: 0 bytes is the
	// peer's FIN, and bytes nobody asked for mean a broken exchange.
	c.peekLive = errno == syscall.EAGAIN || errno == syscall.EWOULDBLOCK
	return true // never wait for readiness
}

// ctxWatch interrupts a call's connection when the call's context ends.
// When that context is an h1 Server's request context (or only adds values
// to it), the serving connection watches the call (serverConn.watchCall),
// with no allocation; otherwise context.AfterFunc does (five allocations
// a call against a fresh request context).
type ctxWatch struct {
	sc   *serverConn
	gen  uint64
	stop func() bool
}

// watch starts the watch of ctx for c's call.
func (c *conn) watch(ctx context.Context) ctxWatch {
	done := ctx.Done()
	if done == nil {
		return ctxWatch{} // never ends
	}
	if sc, ok := ctx.Value(serverConnKey{}).(*serverConn); ok {
		if gen, ok := sc.watchCall(done, c); ok {
			return ctxWatch{sc: sc, gen: gen}
		}
	}
	return ctxWatch{stop: context.AfterFunc(ctx, c.interrupt)}
}

// end stops the watch; false if it had fired (the context ended, and the
// connection's deadline may be in the past). Once only.
func (w ctxWatch) end() bool {
	switch {
	case w.sc != nil:
		return w.sc.unwatchCall(w.gen)
	case w.stop != nil:
		return w.stop()
	}
	return true
}

// staleConnError is a reused connection that failed before any byte of a
// response: the server closed it while idle.
type staleConnError struct{ err error }

func (e *staleConnError) Error() string {
	return "h1: connection closed by server before response: " + e.err.Error()
}
func (e *staleConnError) Unwrap() error { return e.err }

// roundTrip sends req on c and reads the response head. On error c is
// closed and req's body is (or will be) closed.
func (c *conn) roundTrip(req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	ctx := req.Context()
	watch := c.watch(ctx)
	fail := func(err error) (*http.Response, error) {
		c.close()
		if !watch.end() {
			// The context ended: that is the reason, not the deadline.
			err = ctx.Err()
		}
		return nil, err
	}
	c.in.n = 0
	var wdone chan error
	if req.Body == nil || req.Body == http.NoBody || (req.ContentLength > 0 && req.ContentLength <= InlineBodyMax) {
		err := c.write(req)
		if trace != nil && trace.WroteRequest != nil {
			trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
		}
		if err != nil {
			if c.in.n == 0 {
				err = &staleConnError{err: err}
			}
			return fail(fmt.Errorf("h1: write request: %w", err))
		}
	} else {
		wdone = make(chan error, 1)
		go func() { // owned by the call: its body wrapper waits for it, or closes c under it
			err := c.write(req)
			if trace != nil && trace.WroteRequest != nil {
				trace.WroteRequest(httptrace.WroteRequestInfo{Err: err})
			}
			// Report first (wdone holds one), then interrupt: a reader
			// woken by the interrupt finds the reason waiting.
			wdone <- err
			if err != nil {
				// The server waits for the rest of a request that will not
				// come: end the wait for its answer too.
				c.interrupt()
			}
		}()
	}
	resp, err := c.readHead(req, trace)
	if err != nil {
		if wdone != nil {
			select {
			case werr := <-wdone:
				if werr != nil {
					// The request could not be sent whole: that is the
					// failure (a client body that broke, or the server gone).
					return fail(fmt.Errorf("h1: write request: %w", werr))
				}
			default:
			}
		}
		if c.in.n == 0 && !errors.Is(err, ErrHeaderTooLarge) {
			err = &staleConnError{err: err}
		}
		return fail(fmt.Errorf("h1: read response: %w", err))
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the caller (ReverseProxy's
		// upgrade handling wants an io.ReadWriteCloser), and the call's
		// context no longer bounds it.
		if !watch.end() {
			return fail(ctx.Err()) // ended as the answer came: the deadline is in the past
		}
		resp.Body = &upgraded{br: c.br, conn: c.nc}
		return resp, nil
	}
	b := &body{c: c, rc: resp.Body, watch: watch, ctx: ctx, wdone: wdone, keep: !resp.Close && !req.Close}
	if resp.Body == http.NoBody {
		b.finish(true)
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// write writes req whole and flushes it, and closes its body. A request
// of known length is written here, head and body in one buffer; a chunked
// one by http.Request.Write, which flushes after each chunk, so streamed
// bodies go out piece by piece, and writes trailers.
func (c *conn) write(req *http.Request) error {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if !hasBody || req.ContentLength > 0 {
		err := c.writeFixed(req, hasBody)
		if hasBody {
			_ = req.Body.Close()
		}
		return err
	}
	// net/http hides a body's read error behind an unexported type without
	// Unwrap; keep it so callers can tell a broken body.
	rb := &readErrBody{rc: req.Body}
	r := *req
	r.Body = rb
	if err := r.Write(c.bw); err != nil {
		if rb.err != nil {
			return rb.err
		}
		return err
	}
	return c.bw.Flush()
}

// writeFixed writes a request without a body or with one of
// req.ContentLength bytes: the head as net/http would (less the default
// User-Agent, which a proxy must not add), then the body.
func (c *conn) writeFixed(req *http.Request, hasBody bool) error {
	bw := c.bw
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	bw.WriteString(method)
	bw.WriteByte(' ')
	if req.URL.Opaque != "" {
		bw.WriteString(req.URL.Opaque)
	} else if p := req.URL.EscapedPath(); p != "" {
		bw.WriteString(p)
	} else {
		bw.WriteByte('/')
	}
	if req.URL.RawQuery != "" || req.URL.ForceQuery {
		bw.WriteByte('?')
		bw.WriteString(req.URL.RawQuery)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	bw.WriteString(host)
	bw.WriteString("\r\n")
	for k, vv := range req.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue // written from the request's fields
		case "Connection":
			if req.Close {
				continue // "Connection: close" below
			}
			// Kept otherwise, as net/http does: "Connection: Upgrade" asks
			// to switch protocols (RFC 9110 §7.8).
		}
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("h1: invalid header field name %q", k)
		}
		for _, v := range vv {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeFieldValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	switch {
	case hasBody:
		bw.WriteString("Content-Length: ")
		var num [20]byte
		bw.Write(strconv.AppendInt(num[:0], req.ContentLength, 10))
		bw.WriteString("\r\n")
	case method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch:
		bw.WriteString("Content-Length: 0\r\n") // as net/http: some servers want it
	}
	if req.Close {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
	if !hasBody {
		return bw.Flush()
	}
	var n int64
	var err error
	if req.ContentLength <= int64(bw.Available()) {
		n, err = io.CopyN(bw, req.Body, req.ContentLength) // head and body in one write
		if err == nil {
			err = bw.Flush()
		}
	} else {
		// A long body goes straight to the connection in copyBufSize
		// writes: through the 4 KiB buffer it would cost a write (and a
		// wake-up of the reader) every 4 KiB.
		if err = bw.Flush(); err == nil {
			n, err = c.copyBody(io.LimitReader(req.Body, req.ContentLength))
			if err == nil && n < req.ContentLength {
				err = io.EOF
			}
		}
	}
	if err == io.EOF {
		return fmt.Errorf("h1: request body is %d bytes, want Content-Length %d", n, req.ContentLength)
	}
	return err
}

// copyBufSize is the size of the writes of a long request body: four TLS
// records.
const copyBufSize = 64 << 10

// copyBuf is a long body's buffer: what is read, and what a corked TLS
// connection gathers of it.
type copyBuf struct {
	plain [copyBufSize]byte
	out   corkBuf
}

// copyBody writes src to the connection as it reads it, in pieces of up
// to copyBufSize, each in one write(2) when the connection can cork.
func (c *conn) copyBody(src io.Reader) (int64, error) {
	buf, ok := c.t.bufs.Get().(*copyBuf)
	if !ok {
		buf = new(copyBuf)
	}
	defer c.t.bufs.Put(buf)
	var n int64
	for {
		m, rerr := src.Read(buf.plain[:])
		if m > 0 {
			piece := buf.plain[:m]
			var werr error
			if c.cork != nil && m > maxRecord {
				_, werr = corked(c.cork, buf.out[:0], func() (int, error) { return c.nc.Write(piece) })
			} else {
				_, werr = c.nc.Write(piece)
			}
			if werr != nil {
				return n, werr
			}
			n += int64(m)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// writeFieldValue writes v with CR and LF as spaces, as net/http does, so
// no value can end the header early (request splitting).
func writeFieldValue(bw *bufio.Writer, v string) {
	if strings.IndexByte(v, '\r') < 0 && strings.IndexByte(v, '\n') < 0 { // vectorised, unlike IndexAny
		bw.WriteString(v)
		return
	}
	for i := 0; i < len(v); i++ {
		b := v[i]
		if b == '\r' || b == '\n' {
			b = ' '
		}
		bw.WriteByte(b)
	}
}

// readErrBody remembers the error its body's Read failed with.
type readErrBody struct {
	rc  io.ReadCloser
	err error
}

func (b *readErrBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.err = err
	}
	return n, err
}

func (b *readErrBody) Close() error { return b.rc.Close() }

// readHead reads the final response head, passing 1xx responses to the
// trace (ReverseProxy relays them).
func (c *conn) readHead(req *http.Request, trace *httptrace.ClientTrace) (*http.Response, error) {
	max := c.t.MaxResponseHeaderBytes
	if max <= 0 {
		max = DefaultMaxResponseHeaderBytes
	}
	defer func() { c.in.limit = -1 }()
	first := true
	for {
		// Bytes buffered already count; so may the start of the body the
		// buffer reads ahead, hence the slack of one buffer.
		c.in.limit = int64(max + bufSize)
		var resp *http.Response
		var err error
		if _, perr := c.br.Peek(1); perr == nil {
			// Most answers' heads are whole in the buffer by now.
			resp = readFastResponse(c.br, req, max, &c.fixed)
		}
		if resp == nil {
			resp, err = http.ReadResponse(c.br, req)
		}
		if err != nil {
			if c.in.limit == 0 {
				return nil, ErrHeaderTooLarge
			}
			return nil, err
		}
		if first && trace != nil && trace.GotFirstResponseByte != nil {
			trace.GotFirstResponseByte()
		}
		first = false
		if resp.StatusCode >= 100 && resp.StatusCode < 200 && resp.StatusCode != http.StatusSwitchingProtocols {
			if trace != nil && trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(resp.StatusCode, textproto.MIMEHeader(resp.Header)); err != nil {
					return nil, err
				}
			}
			continue
		}
		return resp, nil
	}
}

// countingReader counts what it reads and, while limit >= 0, reads at
// most limit more bytes.
type countingReader struct {
	r      io.Reader
	n      int64        // bytes read since the call started
	limit  int64        // -1: none
	noWait noWaitReader // the socket under r's TLS, if it can read without waiting
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.limit == 0 {
		return 0, ErrHeaderTooLarge
	}
	if r.limit > 0 && int64(len(p)) > r.limit {
		p = p[:r.limit]
	}
	n, err := r.r.Read(p)
	if err == nil && r.noWait != nil && r.limit < 0 {
		n, err = gather(r.r, r.noWait, p, n) // a long body read over TLS
	}
	r.n += int64(n)
	if r.limit > 0 {
		r.limit -= int64(n)
	}
	return n, err
}

// body is a response body that gives its connection back to the pool at
// its end. Read and Close are called by one goroutine at a time, as
// http.Response.Body requires of its users.
type body struct {
	c     *conn
	rc    io.ReadCloser // net/http's framing reader over c.br
	watch ctxWatch      // the call's context watch
	ctx   context.Context
	wdone chan error // the request body writer's result; nil: written inline
	keep  bool       // neither side asked to close the connection
	done  bool
}

func (b *body) Read(p []byte) (int, error) {
	if b.done {
		return 0, http.ErrBodyReadAfterClose
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
		if cerr := b.ctx.Err(); cerr != nil {
			err = cerr
		}
	}
	return n, err
}

func (b *body) Close() error {
	if !b.done {
		b.finish(false)
	}
	return nil
}

// finish ends the call: the connection is pooled when the response was
// read to its end and the request written whole, closed otherwise.
func (b *body) finish(atEOF bool) {
	b.done = true
	keep := atEOF && b.keep
	if !b.watch.end() {
		keep = false // the context ended: the deadline may be set
	}
	if keep && b.wdone != nil {
		select {
		case err := <-b.wdone:
			keep = err == nil
		default:
			// The answer is complete before its request: the server
			// answered early, or the writer has yet to report. Decide
			// off the caller's path.
			_ = b.rc.Close()
			go b.c.poolAfterWrite(b.wdone)
			return
		}
	}
	if keep {
		b.c.t.putIdle(b.c)
	} else {
		b.c.close() // first: an unread body's Close then fails fast instead of draining
	}
	_ = b.rc.Close()
}

// poolAfterWrite pools c once its request body writer reports that it
// wrote the whole request, or closes c when it fails or does not report
// within writerGrace (the server stopped reading). It ends by itself.
func (c *conn) poolAfterWrite(wdone <-chan error) {
	t := time.NewTimer(writerGrace)
	defer t.Stop()
	select {
	case err := <-wdone:
		if err == nil {
			c.t.putIdle(c)
			return
		}
	case <-t.C:
	}
	c.close()
}

// upgraded is the connection after a 101 response: what the server sends
// (some of it perhaps buffered already) and a way to write to it.
// CloseWrite half-closes it (TCP FIN, or TLS close_notify) so the server
// reads the end of what the client sends while it may still answer.
type upgraded struct {
	br   *bufio.Reader
	conn net.Conn
}

func (u *upgraded) Read(p []byte) (int, error)  { return u.br.Read(p) }
func (u *upgraded) Write(p []byte) (int, error) { return u.conn.Write(p) }
func (u *upgraded) Close() error                { return u.conn.Close() }

// errNoHalfClose is CloseWrite's answer on a connection that cannot
// half-close.
var errNoHalfClose = errors.New("h1: connection cannot half-close")

func (u *upgraded) CloseWrite() error {
	if cw, ok := u.conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errNoHalfClose
}
