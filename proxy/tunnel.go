package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Protocol switches through invoke (WebSocket, RFC 6455): an HTTP/1.1
// request asking to upgrade goes to the target app over HTTP/1.1 on every
// hop, through every layer like any call (access control on GET and the
// method path, metrics, tracing, resiliency up to the answer). When the
// app answers 101 each sidecar answers 101 to its client and joins the
// client's connection to the upstream's: a tunnel, whose bytes pass
// through untouched until either side closes.

// upgradeOf is the protocol an HTTP/1.1 request asks to switch to, as it
// spelled it: "websocket", the one protocol the invoke API carries, when
// Upgrade offers it and Connection names Upgrade (RFC 9110 §7.8); ""
// otherwise. HTTP/1.0 requests' Upgrade is ignored (§7.8) and HTTP/2 and
// HTTP/3 have none (RFC 9113 §8.2.2). h2c is never carried: it is a
// switch of this hop only.
func upgradeOf(r *http.Request) string {
	if r.ProtoMajor != 1 || r.ProtoMinor < 1 {
		return ""
	}
	up, ok := r.Header["Upgrade"]
	if !ok || !hasToken(r.Header["Connection"], "upgrade") {
		return ""
	}
	for _, v := range up {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); strings.EqualFold(p, "websocket") {
				return p
			}
		}
	}
	return ""
}

// hasToken reports whether a comma-separated header field has token,
// compared case-insensitively.
func hasToken(vs []string, token string) bool {
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// switched is where handOver leaves the connection a 101 hands over, for
// the forwarder that asked for the switch. Written and read on the call's
// goroutine.
type switched struct{ conn io.ReadWriteCloser }

type switchedKey struct{}

// askUpgrade asks the next hop to switch to proto, as the client asked
// this one (rewrite dropped Connection and Upgrade: they are hop-by-hop,
// RFC 9110 §7.6.1). The request it returns carries the slot for the
// connection.
func askUpgrade(out *http.Request, proto string) (*http.Request, *switched) {
	out.Header["Connection"] = []string{"Upgrade"}
	out.Header["Upgrade"] = []string{proto}
	sw := &switched{}
	return out.WithContext(context.WithValue(out.Context(), switchedKey{}, sw)), sw
}

// handOver is the innermost client layer of the paths that carry protocol
// switches: it takes a 101's connection (proxy/h1 gives it as an
// io.ReadWriteCloser body) for the forwarder, before layers above wrap the
// body in readers that hide its Write. The body stays as it is: closing it
// is what releases those layers.
func handOver(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			if sw, ok := r.Context().Value(switchedKey{}).(*switched); ok {
				sw.conn, _ = resp.Body.(io.ReadWriteCloser)
			}
		}
		return resp, err
	})
}

// Errors of a protocol switch that cannot be carried; answered 502.
var (
	// errUpgrade answers a 101 to a call that asked for no switch.
	errUpgrade = errors.New("upstream switched protocols unasked")
	// errNoHandOver answers a 101 from a transport that cannot hand its
	// connection over.
	errNoHandOver = errors.New("upstream switched protocols on a transport that cannot hand over its connection")
)

// switchProtocols completes a call the upstream answered 101 to: the
// client gets the 101 with the upstream's end-to-end headers
// (Sec-WebSocket-Accept, -Protocol, -Extensions) and its connection is
// joined to the upstream's until the tunnel ends. resp.Body is closed at
// the end, which closes the upstream connection and releases what the
// client layers hold for the call (breaker, xDS max_requests, timeouts,
// --app-max-concurrency slot): an open tunnel counts as a call in flight.
func (f *forwarder) switchProtocols(w http.ResponseWriter, r *http.Request, resp *http.Response, proto string, sw *switched) {
	defer resp.Body.Close()
	if sw.conn == nil {
		f.onError(w, r, errNoHandOver)
		return
	}
	if got := resp.Header.Get("Upgrade"); !strings.EqualFold(got, proto) {
		f.onError(w, r, fmt.Errorf("upstream switched to %q, not the %q asked for", got, proto))
		return
	}
	removeHopHeaders(resp.Header)
	h := w.Header()
	for k, vv := range resp.Header {
		h[k] = vv
	}
	h["Connection"] = []string{"Upgrade"}
	h["Upgrade"] = []string{proto}
	// A 101 written before Hijack is sent by Hijack as it is, without
	// body framing or Connection: close (net/http, go.dev/issue/36381);
	// written through the layers' writers, it is the status they record.
	w.WriteHeader(http.StatusSwitchingProtocols)
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// Cannot happen on net/http's HTTP/1 servers, the only ones whose
		// requests ask to upgrade.
		f.onError(w, r, fmt.Errorf("take over the client's connection: %w", err))
		return
	}
	var fromClient io.Reader = conn
	if n := brw.Reader.Buffered(); n > 0 {
		// Sent by the client right after its request, before the 101.
		early, _ := brw.Reader.Peek(n)
		fromClient = io.MultiReader(bytes.NewReader(early), conn)
	}
	f.tunnels.run(conn, fromClient, sw.conn, f.bufs)
}

// tunnelLinger is how long a tunnel stays open after one side has ended
// its stream (closed, or half-closed), for the other to finish: a
// WebSocket peer closes its connection right after the closing handshake,
// so only a peer that never closes waits this long.
const tunnelLinger = 5 * time.Second

// tunnels are the open tunnels of a sidecar, which net/http's Shutdown
// does not know of once their connections are hijacked. Safe for
// concurrent use; the zero value is ready.
type tunnels struct {
	mu     sync.Mutex
	open   map[*tunnel]struct{}
	closed bool
	wg     sync.WaitGroup // one per open tunnel
}

// tunnel is one client connection joined to one upstream connection.
type tunnel struct {
	client  net.Conn
	up      io.ReadWriteCloser
	closing sync.Once
}

// close ends both directions at once.
func (t *tunnel) close() {
	t.closing.Do(func() {
		_ = t.client.Close()
		_ = t.up.Close()
	})
}

// run relays bytes both ways between client (read from fromClient) and up
// until both directions have ended, then closes both connections. A side
// that ends its stream cleanly (EOF) is passed on as a half-close (TCP
// FIN, TLS close_notify), so the other side learns of it and may still
// answer; the tunnel then closes when that side ends too, or tunnelLinger
// after, whichever comes first. A failed read or write ends the tunnel at
// once. It returns when the tunnel is closed, with no goroutine left.
func (ts *tunnels) run(client net.Conn, fromClient io.Reader, up io.ReadWriteCloser, bufs *bufferPool) {
	t := &tunnel{client: client, up: up}
	if !ts.add(t) {
		t.close() // the sidecar is stopping
		return
	}
	defer ts.remove(t)
	linger := time.AfterFunc(tunnelLinger, t.close)
	linger.Stop() // armed by the first direction to end
	var ended atomic.Int32
	oneWay := func(dst io.Writer, src io.Reader) {
		bp := bufs.get(smallCopyBuf) // held while the tunnel is idle: small
		ok := relay(dst, src, *bp)
		bufs.put(bp)
		if !ok || !closeWrite(dst) {
			t.close()
			return
		}
		if ended.Add(1) == 1 {
			linger.Reset(tunnelLinger)
		}
	}
	done := make(chan struct{})
	go func() { // client → upstream; owned by run, which waits for it
		defer close(done)
		oneWay(up, fromClient)
	}()
	oneWay(client, up)
	<-done
	linger.Stop()
	t.close()
}

// relay copies src to dst until src ends; false when a read or a write
// failed rather than src ending cleanly.
func relay(dst io.Writer, src io.Reader, buf []byte) bool {
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return false
			}
		}
		if err == io.EOF {
			return true
		}
		if err != nil {
			return false
		}
	}
}

// closeWrite half-closes w; false when it cannot.
func closeWrite(w io.Writer) bool {
	cw, ok := w.(interface{ CloseWrite() error })
	return ok && cw.CloseWrite() == nil
}

// add registers t; false once shutdown has begun.
func (ts *tunnels) add(t *tunnel) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if ts.closed {
		return false
	}
	if ts.open == nil {
		ts.open = map[*tunnel]struct{}{}
	}
	ts.open[t] = struct{}{}
	ts.wg.Add(1)
	return true
}

func (ts *tunnels) remove(t *tunnel) {
	ts.mu.Lock()
	delete(ts.open, t)
	ts.mu.Unlock()
	ts.wg.Done()
}

// shutdown refuses new tunnels, waits for the open ones to end until ctx
// is done, then closes the rest and waits for their handlers to return:
// the grace period of calls in flight, as http.Server.Shutdown gives.
func (ts *tunnels) shutdown(ctx context.Context) {
	ts.mu.Lock()
	ts.closed = true
	ts.mu.Unlock()
	done := make(chan struct{})
	go func() { // owned by shutdown, which waits for it
		ts.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	ts.mu.Lock()
	for t := range ts.open {
		t.close()
	}
	ts.mu.Unlock()
	<-done
}
