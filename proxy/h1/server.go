package h1

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// DefaultMaxHeaderBytes is the largest request line and header block a
// Server reads when MaxHeaderBytes is 0, net/http's default.
const DefaultMaxHeaderBytes = http.DefaultMaxHeaderBytes

// WatchDelay is about how long a request runs before its Server starts
// watching the connection for the client going away (between WatchDelay
// and twice that). net/http watches from the start of every request with a
// goroutine reading the connection, which costs a goroutine hand-off each
// way per request (about 40 % of a minimal server's CPU, measured), and a
// timer per request costs a wake-up of the network poller each (half as
// much again). Instead one goroutine per Server, running only while
// requests are, looks every WatchDelay for requests older than that. A
// call shorter than WatchDelay has finished before a client's departure
// could change anything; a longer one learns of it within 2×WatchDelay.
const WatchDelay = 50 * time.Millisecond

// maxDiscard is how much of a request body its handler left unread the
// Server reads and drops to keep the connection; with more left, it closes
// the connection (net/http's rule and figure).
const maxDiscard = 256 << 10

// pendingMax is how much of a response body is held before the head is
// written: a handler that returns having written at most this much gets a
// Content-Length instead of chunked encoding (net/http holds 2 KiB).
const pendingMax = 4 << 10

// Server serves HTTP/1.0 and HTTP/1.1 connections with an http.Handler,
// running the handler on the connection's goroutine. See the package
// documentation for what it does differently from net/http's server; the
// request parsing is net/http's own (http.ReadRequest), plus the checks
// net/http's server makes on top of it.
//
// The exported fields are read when a connection is accepted; set them
// before Serve.
type Server struct {
	Handler http.Handler

	// ReadHeaderTimeout bounds reading a request's line and header block,
	// IdleTimeout the wait for the next request on a kept-alive
	// connection (0: ReadHeaderTimeout). 0 and 0: no limits.
	ReadHeaderTimeout time.Duration
	IdleTimeout       time.Duration

	// MaxHeaderBytes is the largest request line plus header block, in
	// bytes as sent, the final empty line included; a larger one is
	// answered 431 and the connection closed. 0: DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	// ConnState, when set, is called as net/http's Server calls its own
	// (StateNew, StateActive, StateIdle, StateHijacked, StateClosed).
	ConnState func(net.Conn, http.ConnState)

	// ConnContext, when set, derives a connection's base context, as
	// net/http's Server.ConnContext.
	ConnContext func(ctx context.Context, c net.Conn) context.Context

	// Log receives panics other than http.ErrAbortHandler (ERROR) and
	// refused requests (DEBUG); nil: slog.Default().
	Log *slog.Logger

	mu         sync.Mutex
	listeners  map[*net.Listener]struct{}
	conns      map[*serverConn]struct{}
	inShutdown atomic.Bool
	scanning   atomic.Bool // scan runs
	date       atomic.Pointer[dateLine]
	corkBufs   sync.Pool // *corkBuf for long writes over TLS
}

// ErrServerClosed is what Serve returns after Shutdown or Close, as
// net/http's.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on ln and serves each on its own goroutine
// until ln fails or the server is shut down.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(&ln, true) {
		return ErrServerClosed
	}
	defer s.track(&ln, false)
	var backoff time.Duration
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		go s.ServeConn(c)
	}
}

func (s *Server) track(ln *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !add {
		delete(s.listeners, ln)
		return true
	}
	if s.inShutdown.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = map[*net.Listener]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	return true
}

// Shutdown stops accepting, closes idle connections, and waits for the
// others to finish their request (each closes after its answer) or for
// ctx to end, whose error it then returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.closeListeners()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.closeListeners()
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.rwc.Close()
	}
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		_ = (*ln).Close()
	}
}

// closeIdle closes the connections waiting for a request; true when none
// is left at all.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if st := http.ConnState(c.state.Load()); st == http.StateIdle || st == http.StateNew {
			_ = c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) setConn(c *serverConn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.conns == nil {
			s.conns = map[*serverConn]struct{}{}
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *Server) log() *slog.Logger {
	if s.Log != nil {
		return s.Log
	}
	return slog.Default()
}

// dateLine is the Date header line of one second.
type dateLine struct {
	sec  int64
	line []byte
}

// dateHeader returns "Date: ...\r\n" for now, formatted once a second.
func (s *Server) dateHeader(now time.Time) []byte {
	sec := now.Unix()
	if d := s.date.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := append([]byte("Date: "), now.UTC().AppendFormat(nil, http.TimeFormat)...)
	line = append(line, "\r\n"...)
	s.date.Store(&dateLine{sec: sec, line: line})
	return line
}

// ServeConn serves c until it closes, fails, or is hijacked; Serve calls
// it for every connection it accepts.
func (s *Server) ServeConn(rwc net.Conn) {
	c := &serverConn{srv: s, rwc: rwc}
	c.cr.noWait, c.cork = tlsSocket(rwc)
	c.state.Store(int32(http.StateNew))
	s.setConn(c, true)
	if s.ConnState != nil {
		s.ConnState(rwc, http.StateNew)
	}
	c.serve()
}

// watch states of a serverConn.
const (
	watchOff      = iota // not watching
	watchArmed           // a request runs; the Server's scan will start the watch
	watchStarting        // the scan has started a goroutine to watch
	watchReading         // that goroutine reads the connection
)

// serverConn is one connection a Server serves.
type serverConn struct {
	srv      *Server
	rwc      net.Conn
	state    atomic.Int32 // http.ConnState
	tls      *tls.ConnectionState
	remote   string          // RemoteAddr, formatted once
	ctx      context.Context // ConnContext's, never cancelled
	br       *bufio.Reader
	bw       *bufio.Writer
	cr       connReader
	hijacked bool
	cork     corker // the socket under rwc's TLS, if it can gather writes

	// The client-gone watch (WatchDelay).
	wmu     sync.Mutex
	wcond   sync.Cond
	wstate  int
	armedAt int64              // when the running request started, Unix ns
	wending bool               // endWatch waits for the watch to end
	cancel  context.CancelFunc // the running request's
	body    *bodyReader        // the running request's
	gone    bool               // the watch saw the client leave
	reqCtx  context.Context    // the running request's, for watchCall
	// The Transport call watching the running request's context
	// (watchCall): interrupted when the context ends. callGen tells a
	// call's end from a later call's.
	call      *conn
	callGen   uint64
	callFired bool
	bwMu      sync.Mutex // orders a 100 Continue with the head (commit)
	scratch   [64]byte
	pendBuf   []byte // held response body (pendingMax), reused
	capture   []byte // the bytes of the request head being read
	headBuf   []byte // serialised response header lines, reused
	// The running request's response, and its header map, reused by the
	// next request on the connection: a handler must not use its
	// ResponseWriter after it returns (net/http's rule).
	resp   response
	header http.Header
	noBody bodyReader // the body reader of a request without a body
	// The request header of the fast path, reused likewise: a handler
	// must not use the request's Header after it returns.
	fields fields
}

// connReader is what a conn's bufio.Reader reads: the connection, with
// the header block's limit and the byte the watch may have read.
type connReader struct {
	c       *serverConn
	limited bool
	remain  int64
	hit     bool
	held    bool
	b       [1]byte
	noWait  noWaitReader // the TLS connection's socket, if it can read without waiting
}

func (r *connReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if r.limited {
		if r.remain <= 0 {
			r.hit = true
			return 0, io.EOF
		}
		if int64(len(p)) > r.remain {
			p = p[:r.remain]
		}
	}
	var n int
	var err error
	if r.held {
		p[0], r.held, n = r.b[0], false, 1
	} else {
		n, err = r.c.rwc.Read(p)
		if err == nil && r.noWait != nil && !r.limited {
			n, err = gather(r.c.rwc, r.noWait, p, n) // a long body read over TLS
		}
	}
	if r.limited {
		r.c.capture = append(r.c.capture, p[:n]...) // the head, for checkRequest
	}
	r.remain -= int64(n)
	return n, err
}

func (c *serverConn) setState(st http.ConnState) {
	c.state.Store(int32(st))
	if c.srv.ConnState != nil {
		c.srv.ConnState(c.rwc, st)
	}
}

func (c *serverConn) serve() {
	s := c.srv
	defer func() {
		if v := recover(); v != nil && v != http.ErrAbortHandler { //nolint:errorlint // ErrAbortHandler is a sentinel value
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.log().Error("panic serving http/1.1", "remote", c.rwc.RemoteAddr().String(), "panic", fmt.Sprint(v), "stack", string(buf))
		}
		if c.hijacked {
			return
		}
		_ = c.rwc.Close()
		s.setConn(c, false)
		if s.ConnState != nil {
			s.ConnState(c.rwc, http.StateClosed)
		}
	}()
	if tc, ok := c.rwc.(*tls.Conn); ok {
		cs := tc.ConnectionState()
		c.tls = &cs
	}
	c.remote = c.rwc.RemoteAddr().String()
	c.ctx = context.WithValue(context.Background(), serverConnKey{}, c) // for Transport's watch (watchCall)
	if s.ConnContext != nil {
		c.ctx = s.ConnContext(c.ctx, c.rwc)
	}
	c.cr.c = c
	c.br = bufio.NewReaderSize(&c.cr, 4<<10)
	c.bw = bufio.NewWriterSize(c.rwc, 4<<10)
	c.wcond.L = &c.wmu
	maxHeader := int64(s.MaxHeaderBytes)
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeaderBytes
	}
	idle := s.IdleTimeout
	if idle == 0 {
		idle = s.ReadHeaderTimeout
	}
	first := true
	for {
		// Wait for the next request (idle), then read its head.
		if c.br.Buffered() == 0 {
			switch {
			case first && s.ReadHeaderTimeout > 0:
				_ = c.rwc.SetReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
			case !first && idle > 0:
				_ = c.rwc.SetReadDeadline(time.Now().Add(idle))
			}
			if _, err := c.br.Peek(1); err != nil {
				c.refuse(err)
				return
			}
		}
		ctx, cancel := context.WithCancel(c.ctx)
		// Most heads are whole in the buffer by now and need no body:
		// parsed at once, with no more deadlines to set (the idle one
		// stays until the next request; the handler does not read the
		// connection).
		req, hosts := readFastRequest(ctx, c.br, maxHeader, &c.fields)
		fieldsChecked := req != nil
		if req == nil {
			var err error
			if req, err = c.readRequest(maxHeader, first, idle); err != nil {
				cancel()
				c.refuse(err)
				return
			}
			req = req.WithContext(ctx)
			hosts = countHost(c.capture)
		}
		first = false
		if s.inShutdown.Load() {
			req.Close = true
		}
		if code, reason := checkRequest(req, hosts, fieldsChecked); code != 0 {
			cancel()
			c.setState(http.StateActive)
			c.writeError(code, reason)
			return
		}
		if cap(c.capture) > 16<<10 {
			c.capture = nil // a large head once: do not keep its buffer
		}
		c.setState(http.StateActive)
		if !c.serveRequest(req, cancel) || c.hijacked {
			return
		}
		if s.inShutdown.Load() {
			return
		}
		c.setState(http.StateIdle)
	}
}

// errHeadTooLarge is the error of a request head over MaxHeaderBytes
// found only once parsed (refuse answers 431 for it, as for c.cr.hit).
var errHeadTooLarge = errors.New("request head larger than MaxHeaderBytes")

// readRequest reads a request head with http.ReadRequest, under the
// header timeout and the MaxHeaderBytes limit, keeping the head's bytes in
// c.capture for checkRequest.
func (c *serverConn) readRequest(maxHeader int64, first bool, idle time.Duration) (*http.Request, error) {
	s := c.srv
	if s.ReadHeaderTimeout > 0 {
		_ = c.rwc.SetReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
	} else if !first && idle > 0 {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	buffered, _ := c.br.Peek(c.br.Buffered())
	c.capture = append(c.capture[:0], buffered...)
	c.cr.limited, c.cr.remain, c.cr.hit = true, maxHeader-int64(len(buffered)), false
	req, err := http.ReadRequest(c.br)
	c.cr.limited = false
	if err == nil && int64(len(c.capture)-c.br.Buffered()) > maxHeader {
		// The head came with the previous request's body, already
		// buffered, so the reader's limit did not count it.
		c.cr.hit, err = true, errHeadTooLarge
	}
	if s.ReadHeaderTimeout > 0 || !first && idle > 0 {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	return req, err
}

// refuse answers a request head that could not be read, as net/http does:
// silence for a connection closed or timed out between requests, 431 for a
// head over the limit, 400 with the reason otherwise.
func (c *serverConn) refuse(err error) {
	switch {
	case c.cr.hit:
		c.setState(http.StateActive)
		c.writeError(http.StatusRequestHeaderFieldsTooLarge, "")
		return
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return // the connection failed: nobody to answer
	}
	c.setState(http.StateActive)
	if strings.Contains(err.Error(), "unsupported protocol version") {
		c.writeError(http.StatusHTTPVersionNotSupported, "unsupported protocol version")
		return
	}
	c.srv.log().Debug("bad http/1.1 request", "remote", c.rwc.RemoteAddr().String(), "err", err)
	c.writeError(http.StatusBadRequest, err.Error())
}

// checkRequest makes net/http's server's checks on a parsed request head
// whose Host lines numbered hosts (http.ReadRequest folds them into
// req.Host): a status and reason to refuse it with, or 0. fieldsChecked:
// the header names and values were validated while parsing
// (readFastRequest), so they are not walked again.
func checkRequest(req *http.Request, hosts int, fieldsChecked bool) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	switch {
	case req.ProtoAtLeast(1, 1) && hosts == 0 && req.Method != http.MethodConnect:
		return http.StatusBadRequest, "missing required Host header"
	case hosts > 1:
		return http.StatusBadRequest, "too many Host headers"
	case hosts == 1 && !httpguts.ValidHostHeader(req.Host):
		return http.StatusBadRequest, "malformed Host header"
	}
	if fieldsChecked {
		return 0, ""
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	return 0, ""
}

// countHost counts the Host lines of a request head, up to its end.
func countHost(head []byte) int {
	n := 0
	first := true
	for len(head) > 0 {
		i := bytes.IndexByte(head, '\n')
		if i < 0 {
			break
		}
		line := head[:i]
		head = head[i+1:]
		if first {
			first = false // the request line
			continue
		}
		if len(line) == 0 || len(line) == 1 && line[0] == '\r' {
			break
		}
		if len(line) >= 5 && line[4] == ':' && (line[0]|0x20) == 'h' && (line[1]|0x20) == 'o' && (line[2]|0x20) == 's' && (line[3]|0x20) == 't' {
			n++
		}
	}
	return n
}

// rstAvoidanceDelay is how long a connection closing after an error
// answer stays open once its writing side is shut, so that the client
// reads the answer before unread bytes turn the close into a reset
// (net/http's figure).
const rstAvoidanceDelay = 500 * time.Millisecond

// writeError answers code with reason in a plain-text body and the
// connection closing, as net/http answers requests it refuses.
func (c *serverConn) writeError(code int, reason string) {
	text := strconv.Itoa(code) + " " + http.StatusText(code)
	body := text
	if reason != "" {
		body += ": " + reason
	}
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.rwc, "HTTP/1.1 "+text+"\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	// Let the client read the answer before the connection goes (net/http's
	// closeWriteAndWait).
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		time.Sleep(rstAvoidanceDelay)
	}
}

// maxReusedHeader bounds the header maps a connection keeps for its next
// request (the response's, and the parsed request head's): one head with
// many fields must not pin a large map to an idle connection.
const maxReusedHeader = 32

// serveRequest runs the handler for req and finishes its response; false
// when the connection must close afterwards.
func (c *serverConn) serveRequest(req *http.Request, cancel context.CancelFunc) (keep bool) {
	req.RemoteAddr = c.remote
	req.TLS = c.tls
	h := c.header
	if h == nil {
		h = make(http.Header)
		c.header = h
	} else {
		clear(h)
	}
	w := &c.resp
	*w = response{c: c, req: req, header: h, cl: -1, keep: !req.Close, head: c.headBuf[:0], pend: c.pendBuf[:0]}
	if req.Body != http.NoBody && req.Body != nil {
		// A body gets a reader of its own: one the handler handed to a
		// goroutine that outlives it (a request body writer the answer
		// overtook) must stay closed, not read the next request's.
		w.body = &bodyReader{rc: req.Body, w: w}
		if ex, ok := req.Header["Expect"]; ok {
			if len(ex) == 1 && strings.EqualFold(ex[0], "100-continue") && req.ProtoAtLeast(1, 1) {
				w.body.expect = true
				delete(req.Header, "Expect")
			} else {
				cancel()
				c.writeError(http.StatusExpectationFailed, "")
				return false
			}
		}
		req.Body = w.body
	} else {
		w.body = &c.noBody // nothing reads it: the handler has http.NoBody
		*w.body = bodyReader{eof: true}
		w.body.eofFlag.Store(true)
		if ex, ok := req.Header["Expect"]; ok && !(len(ex) == 1 && strings.EqualFold(ex[0], "100-continue")) {
			cancel()
			c.writeError(http.StatusExpectationFailed, "")
			return false
		}
		delete(req.Header, "Expect")
	}
	c.armWatch(req.Context(), cancel, w.body)
	aborted := true
	defer func() {
		w.body.close()
		c.endWatch()
		c.endRequest(cancel)
		if len(c.header) > maxReusedHeader {
			c.header = nil // not kept while the connection idles
		}
		if aborted {
			// A panic (http.ErrAbortHandler or another): the response is
			// cut short; serve's recover closes the connection.
			c.headBuf, c.pendBuf = w.head[:0], w.pend[:0]
		}
	}()
	c.srv.Handler.ServeHTTP(w, req)
	aborted = false
	w.body.close()
	if c.hijacked {
		return false
	}
	keep = w.finish()
	c.headBuf, c.pendBuf = w.head[:0], w.pend[:0]
	c.endWatch() // before reading gone, which the watch's goroutine sets (the deferred call is then a no-op)
	if c.gone {
		return false
	}
	return keep && c.discardBody(w)
}

// discardBody reads what the handler left of the request body, up to
// maxDiscard; false when the connection cannot be reused.
func (c *serverConn) discardBody(w *response) bool {
	b := w.body
	if b.eof {
		return true
	}
	if b.expect && !b.continued {
		return false // the client waits for a 100 it will not get
	}
	if t := c.srv.ReadHeaderTimeout; t > 0 {
		_ = c.rwc.SetReadDeadline(time.Now().Add(t))
		defer func() { _ = c.rwc.SetReadDeadline(time.Time{}) }()
	}
	n, err := io.CopyN(io.Discard, b.rc, maxDiscard+1)
	return n <= maxDiscard && err == io.EOF //nolint:errorlint // io.CopyN returns io.EOF itself
}

// armWatch marks a request as running, for the Server's scan.
func (c *serverConn) armWatch(ctx context.Context, cancel context.CancelFunc, body *bodyReader) {
	now := time.Now().UnixNano()
	c.wmu.Lock()
	c.cancel, c.body, c.wstate, c.armedAt, c.reqCtx = cancel, body, watchArmed, now, ctx
	c.wmu.Unlock()
	s := c.srv
	if !s.scanning.Load() && s.scanning.CompareAndSwap(false, true) {
		go s.scan()
	}
}

// scan runs while requests do: every WatchDelay it starts the watch of
// each request that has run for WatchDelay.
func (s *Server) scan() {
	var due []*serverConn
	for {
		time.Sleep(WatchDelay)
		now := time.Now().UnixNano()
		active := 0
		due = due[:0]
		s.mu.Lock()
		for c := range s.conns {
			if http.ConnState(c.state.Load()) == http.StateActive {
				active++
				due = append(due, c)
			}
		}
		s.mu.Unlock()
		for _, c := range due {
			c.wmu.Lock()
			if c.wstate == watchArmed && now-c.armedAt >= int64(WatchDelay) && c.body.eofSeen() {
				c.wstate = watchStarting
				go c.startWatch()
			}
			c.wmu.Unlock()
		}
		clear(due)
		if active > 0 {
			continue
		}
		s.scanning.Store(false)
		// A request that began meanwhile saw scanning set and started
		// no scan: look once more.
		s.mu.Lock()
		for c := range s.conns {
			if http.ConnState(c.state.Load()) == http.StateActive {
				active++
			}
		}
		s.mu.Unlock()
		if active == 0 || !s.scanning.CompareAndSwap(false, true) {
			return
		}
	}
}

// startWatch reads the connection while the request runs: a failed read
// (the client closed it) cancels the request; a byte read (the client's
// next request) is kept for the next read.
func (c *serverConn) startWatch() {
	c.wmu.Lock()
	if c.wstate != watchStarting {
		c.wmu.Unlock()
		return
	}
	if c.wending || c.br.Buffered() > 0 || c.cr.held {
		// The request has ended, or the client already sent its next one.
		c.wstate = watchOff
		c.wcond.Broadcast()
		c.wmu.Unlock()
		return
	}
	c.wstate = watchReading
	cancel := c.cancel
	c.wmu.Unlock()
	n, err := c.rwc.Read(c.cr.b[:])
	c.wmu.Lock()
	if n == 1 {
		c.cr.held = true
	} else if err != nil {
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			c.gone = true
			c.fireCall()
			cancel()
		}
	}
	c.wstate = watchOff
	c.wcond.Broadcast()
	c.wmu.Unlock()
}

// endWatch stops a request's watch and waits for its read to end.
func (c *serverConn) endWatch() {
	c.wmu.Lock()
	c.wending = true
	interrupted := false
	for c.wstate == watchStarting || c.wstate == watchReading {
		if c.wstate == watchReading && !interrupted {
			_ = c.rwc.SetReadDeadline(aLongTimeAgo)
			interrupted = true
		}
		c.wcond.Wait()
	}
	if interrupted {
		_ = c.rwc.SetReadDeadline(time.Time{})
	}
	c.wstate, c.cancel, c.body, c.wending = watchOff, nil, nil, false
	c.wmu.Unlock()
}

// serverConnKey finds, from a request's context, the connection serving it.
type serverConnKey struct{}

// fireCall interrupts the Transport call watching the running request's
// context (watchCall), as context.AfterFunc would when the context ends;
// c.wmu is held.
func (c *serverConn) fireCall() {
	if c.call != nil && !c.callFired {
		c.call.interrupt()
		c.callFired = true
	}
}

// endRequest ends the running request's context, interrupting a call still
// watching it; a later unwatchCall of that call reports it fired.
func (c *serverConn) endRequest(cancel context.CancelFunc) {
	c.wmu.Lock()
	c.fireCall()
	c.call, c.reqCtx = nil, nil
	c.callGen++
	c.wmu.Unlock()
	cancel()
}

// watchCall has t's call watched by the running request's context, with no
// allocation, when done is that context's Done channel (the call's context
// is the request's, or only adds values to it) and no other call is
// watched; it returns the watch's generation, for unwatchCall.
func (c *serverConn) watchCall(done <-chan struct{}, t *conn) (gen uint64, ok bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.reqCtx == nil || c.call != nil || c.reqCtx.Done() != done || c.reqCtx.Err() != nil {
		return 0, false
	}
	c.callGen++
	c.call, c.callFired = t, false
	return c.callGen, true
}

// unwatchCall ends watch gen; false when it had fired (the context ended:
// t's deadline may be in the past).
func (c *serverConn) unwatchCall(gen uint64) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.callGen != gen || c.call == nil {
		return false // ended with its request, which fired it
	}
	fired := c.callFired
	c.call, c.callFired = nil, false
	return !fired
}

var aLongTimeAgo = time.Unix(1, 0)

// bodyReader is a request's body as its handler sees it: it sends the
// 100 Continue a client waits for, and records the end.
//
// A handler may hand the body to a goroutine that outlives it (a
// transport writing a request body while the answer has already come):
// once the handler returns the server closes it (close), under the same
// lock as Read, so such a read fails with http.ErrBodyReadAfterClose
// instead of racing the server for the connection, as net/http's bodies
// do.
type bodyReader struct {
	mu        sync.Mutex
	rc        io.ReadCloser
	w         *response
	expect    bool // the client waits for 100 Continue
	continued bool
	eof       bool
	closed    bool
	eofFlag   atomic.Bool // eof, for the watch's goroutine
}

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return 0, http.ErrBodyReadAfterClose
	}
	if b.eof {
		return 0, io.EOF
	}
	if b.expect && !b.continued {
		b.continued = true
		c := b.w.c
		c.bwMu.Lock()
		if !b.w.committed {
			_, _ = c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
			_ = c.bw.Flush()
		}
		c.bwMu.Unlock()
	}
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.eof = true
		b.eofFlag.Store(true)
	}
	return n, err
}

// Close leaves the rest of the body to the server (discardBody).
func (b *bodyReader) Close() error { return nil }

// close ends the handler's use of the body (see bodyReader).
func (b *bodyReader) close() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
}

func (b *bodyReader) eofSeen() bool { return b == nil || b.eofFlag.Load() || b.rc == nil }

// response is the http.ResponseWriter of one request.
type response struct {
	c      *serverConn
	req    *http.Request
	header http.Header
	body   *bodyReader

	status    int   // 0 until WriteHeader
	cl        int64 // declared Content-Length, -1 if none
	written   int64 // body bytes accepted
	head      []byte
	pend      []byte   // body held before the head is committed
	trailers  []string // declared in the Trailer header
	hasDate   bool
	hasType   bool // the handler set Content-Type (or suppressed it with a nil value)
	closeReq  bool // the handler's Connection: close
	committed bool // the head is in c.bw
	chunked   bool
	keep      bool // the connection may serve another request
	noBody    bool // HEAD, 1xx, 204, 304
	finished  bool
}

func (w *response) Header() http.Header { return w.header }

// Started reports whether the response has begun: a final status taken (by
// WriteHeader, a Write or a flush) or the connection hijacked. A panic
// after that can only cut the response short (recovery.Handler asks).
func (w *response) Started() bool { return w.status != 0 || w.c.hijacked }

// WriteHeader records the status and serialises the header lines; the head
// is committed at the first flush, when the held body overflows, or when
// the handler returns. An informational status (1xx but 101) is written at
// once.
func (w *response) WriteHeader(code int) {
	if w.status != 0 || w.c.hijacked {
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		bw := w.c.bw
		w.writeStatus(code)
		w.head = appendHeaders(w.head[:0], w.header, nil)
		_, _ = bw.Write(w.head)
		_, _ = bw.WriteString("\r\n")
		_ = bw.Flush()
		w.head = w.head[:0]
		return
	}
	w.status = code
	w.noBody = w.req.Method == http.MethodHead || !bodyAllowed(code)
	h := w.header
	if v, ok := h["Content-Length"]; ok {
		if len(v) == 1 {
			if n, err := strconv.ParseInt(strings.TrimSpace(v[0]), 10, 64); err == nil && n >= 0 {
				w.cl = n
			}
		}
	}
	if v, ok := h["Connection"]; ok {
		for _, s := range v {
			if httpguts.HeaderValuesContainsToken([]string{s}, "close") {
				w.closeReq = true
			}
		}
	}
	if v, ok := h["Trailer"]; ok {
		w.trailers = w.trailers[:0]
		for _, s := range v {
			for _, k := range strings.Split(s, ",") {
				if k = http.CanonicalHeaderKey(textTrim(k)); k != "" {
					w.trailers = append(w.trailers, k)
				}
			}
		}
	}
	_, w.hasDate = h["Date"]
	_, w.hasType = h["Content-Type"]
	w.head = appendHeaders(w.head[:0], h, w.trailers)
}

func textTrim(s string) string { return strings.Trim(s, " \t") }

func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

// appendHeaders appends h's lines but those the server writes itself and
// the trailers, with CR and LF in values turned to spaces.
func appendHeaders(b []byte, h http.Header, trailers []string) []byte {
	for k, vv := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || contains(trailers, k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return b
}

func appendValue(b []byte, v string) []byte {
	v = textTrim(v)
	if !strings.ContainsAny(v, "\r\n") {
		return append(b, v...)
	}
	for i := 0; i < len(v); i++ {
		ch := v[i]
		if ch == '\r' || ch == '\n' {
			ch = ' '
		}
		b = append(b, ch)
	}
	return b
}

func contains(list []string, k string) bool {
	for _, s := range list {
		if s == k {
			return true
		}
	}
	return false
}

func (w *response) writeStatus(code int) {
	bw := w.c.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(code), 10))
	_ = bw.WriteByte(' ')
	text := http.StatusText(code)
	if text == "" {
		text = "status code " + strconv.Itoa(code)
	}
	_, _ = bw.WriteString(text)
	_, _ = bw.WriteString("\r\n")
}

// commit writes the head to c.bw; final when the handler has returned, so
// that the held body's length is the whole length. next is the body about
// to be written after the held part, for sniffing.
//
// Without a Content-Type, the body's first bytes choose one
// (http.DetectContentType), as net/http's server does: daprd is a
// net/http server, and apps that set none get what they got from it.
func (w *response) commit(final bool, next []byte) {
	if w.committed {
		return
	}
	// A body reader's 100 Continue (bodyReader.Read) may come from another
	// goroutine: before the head, or not at all.
	w.c.bwMu.Lock()
	defer w.c.bwMu.Unlock()
	w.committed = true
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	c, bw := w.c, w.c.bw
	w.writeStatus(w.status)
	_, _ = bw.Write(w.head)
	switch {
	case w.status == http.StatusSwitchingProtocols:
		// framing is the upgraded protocol's
	case w.cl >= 0:
		if bodyAllowed(w.status) {
			_, _ = bw.WriteString("Content-Length: ")
			_, _ = bw.Write(strconv.AppendInt(c.scratch[:0], w.cl, 10))
			_, _ = bw.WriteString("\r\n")
		}
	case w.noBody:
	case final && len(w.trailers) == 0 && !hasPrefixTrailers(w.header):
		w.cl = int64(len(w.pend))
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(strconv.AppendInt(c.scratch[:0], w.cl, 10))
		_, _ = bw.WriteString("\r\n")
	case w.req.ProtoAtLeast(1, 1):
		w.chunked = true
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	default:
		w.keep = false // HTTP/1.0: the end of the body is the end of the connection
	}
	if w.closeReq || c.srv.inShutdown.Load() || w.body.expect && !w.body.continued {
		// (A client holding back its body for a 100 Continue that was not
		// sent cannot go on on this connection: discardBody closes it.)
		w.keep = false
	}
	if w.status != http.StatusSwitchingProtocols {
		switch {
		case !w.keep && !w.closeReq:
			_, _ = bw.WriteString("Connection: close\r\n")
		case w.keep && !w.req.ProtoAtLeast(1, 1):
			_, _ = bw.WriteString("Connection: keep-alive\r\n")
		}
	}
	if !w.hasDate {
		_, _ = bw.Write(c.srv.dateHeader(time.Now()))
	}
	if !w.hasType && !w.noBody && w.status != http.StatusSwitchingProtocols {
		sniff := w.pend
		if len(sniff) == 0 {
			sniff = next
		}
		if len(sniff) > 0 {
			_, _ = bw.WriteString("Content-Type: ")
			_, _ = bw.WriteString(http.DetectContentType(sniff))
			_, _ = bw.WriteString("\r\n")
		}
	}
	_, _ = bw.WriteString("\r\n")
	if len(w.pend) > 0 {
		p := w.pend
		w.pend = w.pend[:0]
		w.writeBody(p)
	}
}

// hasPrefixTrailers reports whether h holds trailers named with
// http.TrailerPrefix, which need chunked encoding even for a body whose
// length is known (net/http's rule).
func hasPrefixTrailers(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

func (w *response) Write(p []byte) (int, error) {
	if w.c.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.cl >= 0 && w.written+int64(len(p)) > w.cl {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.committed {
		if len(w.pend)+len(p) <= pendingMax {
			w.pend = append(w.pend, p...)
			return len(p), w.sendIfComplete()
		}
		w.commit(false, p)
	}
	n, err := w.writeBody(p)
	if err == nil {
		err = w.sendIfComplete()
	}
	return n, err
}

// sendIfComplete sends the response as soon as its body is whole (all the
// Content-Length the handler declared is written): nothing can follow it,
// and the client need not wait for the handler's layers to finish their
// bookkeeping (metrics, spans, pools) before it has the answer.
func (w *response) sendIfComplete() error {
	if w.written != w.cl {
		return nil
	}
	w.commit(false, nil)
	return w.c.bw.Flush()
}

func (w *response) WriteString(s string) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	// Small strings (error bodies, JSON) are copied into the held body.
	if !w.committed && !w.noBody && len(w.pend)+len(s) <= pendingMax && (w.cl < 0 || w.written+int64(len(s)) <= w.cl) && !w.c.hijacked {
		w.pend = append(w.pend, s...)
		w.written += int64(len(s))
		return len(s), w.sendIfComplete()
	}
	return w.Write([]byte(s))
}

// writeBody writes p with the response's framing; over TLS, a long p in
// corked pieces (tlsio.go).
func (w *response) writeBody(p []byte) (int, error) {
	if w.c.cork == nil || len(p) <= maxRecord {
		return w.writeFramed(p)
	}
	buf, ok := w.c.srv.corkBufs.Get().(*corkBuf)
	if !ok {
		buf = new(corkBuf)
	}
	defer w.c.srv.corkBufs.Put(buf)
	var n int
	for n < len(p) {
		piece := p[n:min(len(p), n+copyBufSize)]
		m, err := corked(w.c.cork, buf[:0], func() (int, error) { return w.writeFramed(piece) })
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// writeFramed writes p with the response's framing.
func (w *response) writeFramed(p []byte) (int, error) {
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err != nil {
			return n, err
		}
		_, err = bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(p)
}

// Flush sends the head and the body written so far.
func (w *response) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush reporting a failed write (http.ResponseController).
func (w *response) FlushError() error {
	if w.c.hijacked {
		return http.ErrHijacked
	}
	w.commit(false, nil)
	return w.c.bw.Flush()
}

// finish completes the response after the handler returned; true when the
// connection may serve another request.
func (w *response) finish() bool {
	w.commit(true, nil)
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.WriteString("0\r\n")
		w.writeTrailers()
		_, _ = bw.WriteString("\r\n")
	}
	if err := bw.Flush(); err != nil {
		return false
	}
	if w.cl >= 0 && !w.noBody && w.written != w.cl {
		return false // the body was cut short: the client must see the connection end
	}
	return w.keep
}

func (w *response) writeTrailers() {
	bw := w.c.bw
	var b []byte
	for _, k := range w.trailers {
		if !httpguts.ValidHeaderFieldName(k) {
			continue // it would split the trailer block
		}
		for _, v := range w.header[k] {
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	for k, vv := range w.header {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok && httpguts.ValidHeaderFieldName(name) {
			for _, v := range vv {
				b = append(b, name...)
				b = append(b, ": "...)
				b = appendValue(b, v)
				b = append(b, "\r\n"...)
			}
		}
	}
	_, _ = bw.Write(b)
}

// Hijack hands the connection to the handler, after sending what was
// written (a 101's head is sent as it is).
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c := w.c
	if c.hijacked {
		return nil, nil, http.ErrHijacked
	}
	c.endWatch()
	if w.status != 0 {
		w.commit(false, nil)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	c.hijacked = true
	_ = c.rwc.SetDeadline(time.Time{})
	c.srv.setConn(c, false)
	c.setState(http.StateHijacked)
	return c.rwc, bufio.NewReadWriter(c.br, bufio.NewWriter(c.rwc)), nil
}

// SetReadDeadline and SetWriteDeadline serve http.ResponseController.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex serves http.ResponseController: a handler may always
// read the request body after it has started the response here.
func (w *response) EnableFullDuplex() error { return nil }
