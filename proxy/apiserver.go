package proxy

import (
	"container/list"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/proxy/h1"
)

// Defaults of the API port's connection limits (Options).
const (
	// DefaultAPIIdleTimeout closes a keep-alive connection that carried no
	// request for this long. It is longer than the idle pool timeouts of
	// Go's (90 s) and .NET's (1 min) HTTP clients, so those close first and
	// never reuse a connection the sidecar is closing; clients that keep
	// connections longer (OkHttp, 5 min) retry on a closed one.
	DefaultAPIIdleTimeout = 2 * time.Minute
	// DefaultAPIReadHeaderTimeout bounds the reading of each request's
	// line and headers, on a new connection and on a reused one alike.
	DefaultAPIReadHeaderTimeout = 10 * time.Second
	// DefaultAPIMaxIdleConns is how many idle keep-alive connections the
	// API port keeps open. Each costs a goroutine and about 15 KB (net/http
	// keeps its buffers while a connection idles), so without a cap 10,000
	// idle connections held 200 MB until their idle timeout
	// (TestBoundedMemory). An app's pool to its own sidecar is far smaller
	// (Go's client keeps 2 a host, Java's 5 to 20).
	DefaultAPIMaxIdleConns = 256
)

// peerIdleTimeout closes an idle connection from another sidecar. It is
// longer than the idle timeouts of the callers' own pools (peers.go), so
// they close first and never reuse a connection the callee is closing.
const peerIdleTimeout = 5 * time.Minute

// HTTP/2 limits of every HTTP/2 server of a sidecar: the API port's h2c
// and the peer port's h2 (mTLS) or h2c (--enable-mtls=false).
// docs/http2.md, "Limits", says why each value and what a client that
// goes past it gets; test/h2limits_test.go pins them on the real binary.
const (
	// h2MaxStreams is SETTINGS_MAX_CONCURRENT_STREAMS, the streams one
	// connection may have open at once (Go's default, made explicit). It
	// also caps the handlers a connection runs at once, and net/http closes
	// a connection with ENHANCE_YOUR_CALM when more than 4×h2MaxStreams
	// requests wait for a handler (its rapid-reset defence, CVE-2023-44487).
	// A Go client opens another connection when it reaches the limit.
	h2MaxStreams = 250
	// h2HeaderTableSize bounds the HPACK dynamic table each way (RFC 7541
	// §4.2): its default, SETTINGS_HEADER_TABLE_SIZE, memory per connection.
	h2HeaderTableSize = 4096
	// h2MaxFrameSize is SETTINGS_MAX_FRAME_SIZE, the largest frame read;
	// h2ReceiveBuffer is the flow-control window of a connection and of
	// each stream: what a client may send before the handler reads it.
	// Both are Go's defaults, made explicit.
	h2MaxFrameSize  = 1 << 20
	h2ReceiveBuffer = 1 << 20
	// peerMaxHeaderBytes is the least header limit of the peer port, in
	// net/http's MaxHeaderBytes units (HTTP/2: SETTINGS_MAX_HEADER_LIST_SIZE
	// is it plus 320). A call arrives with the header block the caller's API
	// port admitted (--read-buffer-size, 4 KiB by default) plus what the
	// caller's sidecar adds (trace context, caller identity, deadline).
	// Envoy's default is 60 KiB.
	peerMaxHeaderBytes = 64 << 10
)

// h2Limits is the HTTP/2 configuration of a sidecar's HTTP/2 servers.
func h2Limits() *http.HTTP2Config {
	return &http.HTTP2Config{
		MaxConcurrentStreams:          h2MaxStreams,
		MaxDecoderHeaderTableSize:     h2HeaderTableSize,
		MaxEncoderHeaderTableSize:     h2HeaderTableSize,
		MaxReadFrameSize:              h2MaxFrameSize,
		MaxReceiveBufferPerConnection: h2ReceiveBuffer,
		MaxReceiveBufferPerStream:     h2ReceiveBuffer,
	}
}

// peerHeaderBytes is the peer port's MaxHeaderBytes for a sidecar whose
// API port admits apiMax bytes: peerMaxHeaderBytes, or apiMax with 16 KiB
// of room for what a sidecar adds when that is more, since the sidecars of
// a mesh usually share their --read-buffer-size.
func peerHeaderBytes(apiMax int) int {
	return max(peerMaxHeaderBytes, apiMax+16<<10)
}

// bufioSlop is what net/http adds to MaxHeaderBytes when it limits the
// bytes read for a request's header block (Server.initialReadLimitSize).
const bufioSlop = 4096

// newAPIServers builds the servers of the API port: web serves HTTP/1.x
// (proxy/h1's lean server: the handler on the connection's goroutine) and
// h2 serves HTTP/2 with prior knowledge (h2c, as daprd's API port does),
// both with handler. They share one listener through splitH2C, which
// decides a connection's protocol on its first bytes, so that a short
// malformed HTTP/1 request is answered at once: net/http's own h2c sniff
// (Protocols with HTTP/1 and UnencryptedHTTP2 on one server) waits for 14
// bytes before deciding, and a request such as "GARBAGE\r\n\r\n" got no
// answer until the client sent more or the header timeout passed.
//
// maxHeader is the largest request header block (--read-buffer-size; 0:
// net/http's default plus the 4096 bytes net/http's server admits beyond
// it), counted as sent: the request line, the header lines and the empty
// line. For HTTP/2 the limit is SETTINGS_MAX_HEADER_LIST_SIZE, in RFC
// 7541's units.
//
// maxIdle caps the idle keep-alive connections of both servers together
// (idleConns; 0: DefaultAPIMaxIdleConns).
func newAPIServers(handler http.Handler, maxHeader int, idle, readHeader time.Duration, maxIdle int, log *slog.Logger) (web *h1.Server, h2 *http.Server) {
	if idle <= 0 {
		idle = DefaultAPIIdleTimeout
	}
	if maxIdle <= 0 {
		maxIdle = DefaultAPIMaxIdleConns
	}
	idleSet := newIdleConns(maxIdle, log)
	if readHeader <= 0 {
		readHeader = DefaultAPIReadHeaderTimeout
	}
	var p2 http.Protocols
	p2.SetUnencryptedHTTP2(true)
	web = &h1.Server{
		Handler:           handler,
		ReadHeaderTimeout: readHeader,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeader,
		ConnState:         idleSet.track,
		Log:               log,
	}
	if maxHeader <= 0 {
		web.MaxHeaderBytes = http.DefaultMaxHeaderBytes + bufioSlop
	}
	h2 = &http.Server{
		Handler:           handler,
		Protocols:         &p2,
		ReadHeaderTimeout: readHeader,
		IdleTimeout:       idle,
		MaxHeaderBytes:    maxHeader, // SETTINGS_MAX_HEADER_LIST_SIZE: maxHeader+320
		HTTP2:             h2Limits(),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		ConnState:         idleSet.track,
	}
	return web, h2
}

// idleConns keeps at most max of the API port's connections idle between
// requests: when one more goes idle, the one idle longest is closed, as
// nginx closes idle keep-alive connections when it runs out of
// connections. Clients' pools hand out their most recently used
// connection first (Go's, Java's), so the one closed is the one least
// likely to be reused; a client that reuses it anyway sees the same
// closed connection as after --api-idle-timeout. Connections that have
// not sent their first request yet are not counted: the header timeout
// bounds them. Safe for concurrent use (net/http's ConnState hook).
type idleConns struct {
	max int
	log *slog.Logger

	mu    sync.Mutex
	order *list.List                 // of net.Conn, idle longest at the back
	at    map[net.Conn]*list.Element // the idle ones
}

func newIdleConns(max int, log *slog.Logger) *idleConns {
	return &idleConns{max: max, log: log, order: list.New(), at: map[net.Conn]*list.Element{}}
}

// track is the servers' ConnState hook.
func (ic *idleConns) track(c net.Conn, st http.ConnState) {
	var evict net.Conn
	ic.mu.Lock()
	if el, ok := ic.at[c]; ok {
		ic.order.Remove(el)
		delete(ic.at, c)
	}
	if st == http.StateIdle {
		ic.at[c] = ic.order.PushFront(c)
		if ic.order.Len() > ic.max {
			el := ic.order.Back()
			evict = el.Value.(net.Conn)
			ic.order.Remove(el)
			delete(ic.at, evict)
		}
	}
	ic.mu.Unlock()
	if evict != nil {
		// The server's read of it fails and its goroutine ends.
		_ = evict.Close()
		if ic.log.Enabled(context.Background(), slog.LevelDebug) {
			ic.log.Debug("idle api connection closed", "remote", evict.RemoteAddr().String(), "max_idle", ic.max)
		}
	}
}

// idle is the number of connections tracked as idle.
func (ic *idleConns) idle() int {
	ic.mu.Lock()
	defer ic.mu.Unlock()
	return ic.order.Len()
}

// h2Preface is the client connection preface of HTTP/2 (RFC 9113 §3.4),
// which a client with prior knowledge sends first.
const h2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// splitH2C divides ln between the API port's HTTP/1 server, which accepts
// every connection from h1, and its h2c server, which gets from h2 the
// connections that open with the HTTP/2 preface. A connection's first read
// decides: as soon as its bytes differ from the preface it stays HTTP/1,
// with the bytes read so far replayed; once the whole preface has arrived
// it is handed over, and the HTTP/1 server sees it end. The sniff runs on
// the HTTP/1 server's goroutine of that connection, under its header
// timeout, so a slow client holds up only its own connection.
//
// Closing h1 closes ln; closing h2 stops hand-overs (a connection handed
// over after that is closed). Shut both servers down.
func splitH2C(ln net.Listener) (h1, h2 net.Listener) {
	q := newConnQueue(ln.Addr())
	return &sniffListener{Listener: ln, h2: q}, q
}

// sniffListener is the HTTP/1 side of splitH2C.
type sniffListener struct {
	net.Listener
	h2 *connQueue
}

func (l *sniffListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, h2: l.h2}, nil
}

// connQueue is the h2c side of splitH2C: a listener of the connections
// handed over. Safe for concurrent use.
type connQueue struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.once.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// put hands c to the h2c server; false when it is closed.
func (q *connQueue) put(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

// Protocol of a sniffConn, decided by its first read.
const (
	sniffing = iota
	sniffedHTTP1
	sniffedH2C
)

// sniffConn is a connection the HTTP/1 server accepted whose protocol its
// first read decides (splitH2C). The HTTP/1 server reads it from one
// goroutine at a time, so Read's state needs no lock; Close and the
// deadline setters, which the server may call from others, only look at
// handed.
type sniffConn struct {
	net.Conn
	h2     *connQueue
	state  int
	held   []byte      // read while sniffing: replayed to HTTP/1 or handed to h2c
	handed atomic.Bool // the h2c server owns the connection now
}

func (c *sniffConn) Read(p []byte) (int, error) {
	switch c.state {
	case sniffedHTTP1:
		if len(c.held) > 0 {
			n := copy(p, c.held)
			c.held = c.held[n:]
			return n, nil
		}
		return c.Conn.Read(p)
	case sniffedH2C:
		return 0, io.EOF
	}
	return c.sniff(p)
}

// sniff reads until the bytes differ from the preface or complete it.
func (c *sniffConn) sniff(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		n, err := c.Conn.Read(p)
		if len(c.held) == 0 && !prefacePrefix(p[:n]) {
			c.state = sniffedHTTP1 // the common case: nothing held, nothing to replay
			return n, err
		}
		c.held = append(c.held, p[:n]...)
		switch {
		case prefacePrefix(c.held) && len(c.held) >= len(h2Preface):
			c.handOff()
			return 0, io.EOF
		case prefacePrefix(c.held) && err == nil:
			continue // maybe the preface: wait for more, under the header timeout
		}
		// HTTP/1 after all, or the read failed: replay what was held. A
		// failed read fails again on the next call (the connection is
		// closed, or its deadline has passed).
		c.state = sniffedHTTP1
		if len(c.held) == 0 {
			return 0, err
		}
		return c.Read(p)
	}
}

// prefacePrefix reports whether b starts like the HTTP/2 preface, as far
// as either goes.
func prefacePrefix(b []byte) bool {
	m := min(len(b), len(h2Preface))
	return string(b[:m]) == h2Preface[:m]
}

// handOff gives the connection, with the bytes read, to the h2c server.
func (c *sniffConn) handOff() {
	c.state = sniffedH2C
	c.handed.Store(true)
	rc := &replayConn{Conn: c.Conn, pending: c.held}
	c.held = nil
	if !c.h2.put(rc) {
		_ = c.Conn.Close()
	}
}

func (c *sniffConn) Close() error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.Close()
}

func (c *sniffConn) SetDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetDeadline(t)
}

func (c *sniffConn) SetReadDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetReadDeadline(t)
}

func (c *sniffConn) SetWriteDeadline(t time.Time) error {
	if c.handed.Load() {
		return nil
	}
	return c.Conn.SetWriteDeadline(t)
}

// CloseWrite lets net/http half-close after an error answer (e.g. its
// 431), so the client reads the answer before the connection goes.
func (c *sniffConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok && !c.handed.Load() {
		return cw.CloseWrite()
	}
	return nil
}

// replayConn is a handed-over connection: the bytes already read, then the
// rest.
type replayConn struct {
	net.Conn
	pending []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		c.pending = c.pending[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}
