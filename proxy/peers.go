package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/proxy/h1"
)

// peerTransports carries calls to other sidecars: pooled keep-alive
// HTTP/1.1 on the lean transport (proxy/h1, the default), or pooled,
// multiplexed HTTP/2, or HTTP/3 falling back to HTTP/2 (--peer-transport).
// With an identity source it is mTLS, with one pool per target app whose
// handshakes require the server to prove that app's SPIFFE ID, so a
// connection made for one app is never reused for another; without one it
// is cleartext (h2c with prior knowledge for HTTP/2;
// --enable-mtls=false). Safe for concurrent use.
type peerTransports struct {
	src     identity.Source // nil: cleartext
	td      spiffeid.TrustDomain
	metrics *identity.Metrics
	log     *slog.Logger
	kind    string   // PeerHTTP1, PeerHTTP2 or PeerHTTP3
	plain   peerPool // cleartext HTTP/1.1: calls when kind is PeerHTTP1, protocol switches whatever it is
	plainH2 peerPool // cleartext HTTP/2: calls when kind is not PeerHTTP1, gRPC calls always

	mu    sync.RWMutex         // read-locked on every call, locked to add a pool
	byApp map[poolKey]peerPool // mTLS pool of each target app and transport
}

// poolKey names a pool: a target app and the transport to it.
type poolKey struct {
	target Target
	kind   string
}

// peerPool is the connection pool of one target app.
type peerPool interface {
	http.RoundTripper
	CloseIdleConnections()
}

func newPeerTransports(src identity.Source, td spiffeid.TrustDomain, m *identity.Metrics, kind string, log *slog.Logger) *peerTransports {
	if kind == "" {
		kind = PeerHTTP1
	}
	p := &peerTransports{src: src, td: td, metrics: m, kind: kind, log: log, byApp: map[poolKey]peerPool{}}
	p.plainH2 = newPeerTransport()
	p.plain = &h1.Transport{Dial: h1.DialTCP(peerDialer()), IdleTimeout: peerClientIdleTimeout}
	return p
}

// peerClientIdleTimeout closes a pooled HTTP/1.1 connection to a peer
// idle this long, well before the peer's own idle timeout, so the server
// never closes a connection as the caller reuses it.
const peerClientIdleTimeout = time.Minute

func peerDialer() *net.Dialer {
	return &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
}

// scheme is the URL scheme of peer calls.
func (p *peerTransports) scheme() string {
	if p.src == nil {
		return "http"
	}
	return "https"
}

// RoundTrip sends r on the pool of its call's target app (targetOf), with
// its remaining time budget (the try's deadline) in grpc-timeout.
// A gRPC call (proxy mode) needs trailers and full-duplex streams: it goes
// over HTTP/2 when the default transport is HTTP/1.1. A protocol switch
// (WebSocket) goes over HTTP/1.1 whatever the transport, since HTTP/2 and
// HTTP/3 have no Upgrade (RFC 9113 §8.2.2; RFC 8441's extended CONNECT
// would need the app to speak HTTP/2).
func (p *peerTransports) RoundTrip(r *http.Request) (*http.Response, error) {
	propagateDeadline(r) // r is this sidecar's own copy (the forwarder's outbound request)
	kind := p.kind
	if _, up := r.Header["Upgrade"]; up {
		kind = PeerHTTP1 // only the forwarder's askUpgrade sets it: rewriteRemote drops the client's
	} else if kind == PeerHTTP1 && daprgrpc.IsGRPC(r.Header) {
		kind = PeerHTTP2
	}
	if p.src == nil {
		if kind == PeerHTTP1 {
			return p.plain.RoundTrip(r)
		}
		return p.plainH2.RoundTrip(r)
	}
	target, ok := targetOf(r)
	if !ok {
		// Every peer call is made by the remote forwarder, inside a call.
		return nil, fmt.Errorf("peer call to %s outside an invocation", r.Host)
	}
	t, err := p.transportFor(target, kind)
	if err != nil {
		return nil, err
	}
	return t.RoundTrip(r)
}

func (p *peerTransports) transportFor(target Target, kind string) (peerPool, error) {
	key := poolKey{target, kind}
	p.mu.RLock()
	known, ok := p.byApp[key]
	p.mu.RUnlock()
	if ok {
		return known, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.byApp[key]; ok {
		return t, nil
	}
	want, err := identity.AppID(p.td, target.Namespace, target.AppID)
	if err != nil {
		return nil, fmt.Errorf("spiffe id of %s: %w", target, err)
	}
	dial := p.dialTLS(target)
	if kind == PeerHTTP1 {
		pool := &h1.Transport{Dial: dial(identity.ClientConfig(p.src, want, "http/1.1")), IdleTimeout: peerClientIdleTimeout}
		p.byApp[key] = pool
		return pool, nil
	}
	t := newPeerTransport()
	var proto http.Protocols
	proto.SetHTTP2(true)
	t.Protocols = &proto
	t.ForceAttemptHTTP2 = true
	h2dial := dial(identity.ClientConfig(p.src, want, "h2"))
	t.DialTLSContext = func(ctx context.Context, _, addr string) (net.Conn, error) { return h2dial(ctx, addr) }
	var pool peerPool = t
	if kind == PeerHTTP3 {
		pool = newH3First(identity.ClientConfig(p.src, want, "h3"), t, p.log)
	}
	p.byApp[key] = pool
	return pool, nil
}

// dialTLS returns, for a TLS configuration, the dialer of mTLS connections
// to instances of target: refused handshakes are counted and logged, and
// reported as dial errors, since nothing was sent.
func (p *peerTransports) dialTLS(target Target) func(cfg *tls.Config) func(context.Context, string) (net.Conn, error) {
	return func(cfg *tls.Config) func(context.Context, string) (net.Conn, error) {
		dial := h1.DialTCP(peerDialer())
		return func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dial(ctx, addr)
			if err != nil {
				return nil, err
			}
			remote := c.RemoteAddr()
			tc, err := h1.Handshake(ctx, c, cfg)
			if err != nil {
				reason := identity.Classify(err)
				p.metrics.HandshakeFailed("client", reason)
				p.log.Warn("peer handshake refused", "peer", addr, "target", target.String(), "reason", reason, "err", err)
				// Nothing was sent: the picker may try another instance.
				return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: remote, Err: err}
			}
			return tc, nil
		}
	}
}

// closeIdle closes idle connections of every pool.
func (p *peerTransports) closeIdle() {
	p.plain.CloseIdleConnections()
	p.plainH2.CloseIdleConnections()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.byApp {
		t.CloseIdleConnections()
	}
}

// splitALPN divides a listener of TLS connections, handshakes done, between
// the peer port's HTTP/1.1 server (h1) and its HTTP/2 server (h2), by the
// protocol each connection negotiated. Closing h1 closes ln; closing h2
// stops hand-overs.
func splitALPN(ln net.Listener) (h1, h2 net.Listener) {
	q := newConnQueue(ln.Addr())
	return &alpnListener{Listener: ln, h2: q}, q
}

// alpnListener is the HTTP/1.1 side of splitALPN.
type alpnListener struct {
	net.Listener
	h2 *connQueue
}

func (l *alpnListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc, ok := c.(*tls.Conn)
		if !ok || tc.ConnectionState().NegotiatedProtocol != "h2" {
			return c, nil
		}
		if !l.h2.put(c) {
			_ = c.Close()
		}
	}
}
