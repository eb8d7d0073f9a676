package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity"
)

// peerTransports carries calls to other sidecars: pooled, multiplexed
// HTTP/2. With an identity source it is mTLS, with one pool per target app
// whose handshakes require the server to prove that app's SPIFFE ID, so a
// connection made for one app is never reused for another; without one it
// is cleartext h2c (--enable-mtls=false). Safe for concurrent use.
type peerTransports struct {
	src     identity.Source // nil: cleartext
	td      spiffeid.TrustDomain
	metrics *identity.Metrics
	log     *slog.Logger
	h3      bool // try HTTP/3 first
	plain   *http.Transport

	mu    sync.Mutex
	byApp map[string]peerPool // "<app-id>.<namespace>" → mTLS pool
}

// peerPool is the connection pool of one target app.
type peerPool interface {
	http.RoundTripper
	CloseIdleConnections()
}

func newPeerTransports(src identity.Source, td spiffeid.TrustDomain, m *identity.Metrics, h3 bool, log *slog.Logger) *peerTransports {
	return &peerTransports{src: src, td: td, metrics: m, h3: h3, log: log, plain: newPeerTransport(), byApp: map[string]peerPool{}}
}

// scheme is the URL scheme of peer calls.
func (p *peerTransports) scheme() string {
	if p.src == nil {
		return "http"
	}
	return "https"
}

// RoundTrip sends r on the pool of the app named by r.Host, with its
// remaining time budget (the try's deadline) in grpc-timeout.
func (p *peerTransports) RoundTrip(r *http.Request) (*http.Response, error) {
	propagateDeadline(r) // r is this sidecar's own copy (ReverseProxy's outbound request)
	if p.src == nil {
		return p.plain.RoundTrip(r)
	}
	t, err := p.transportFor(r.Host)
	if err != nil {
		return nil, err
	}
	return t.RoundTrip(r)
}

func (p *peerTransports) transportFor(name string) (peerPool, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if t, ok := p.byApp[name]; ok {
		return t, nil
	}
	appID, ns, _ := strings.Cut(name, ".")
	want, err := identity.AppID(p.td, ns, appID)
	if err != nil {
		return nil, fmt.Errorf("spiffe id of %s: %w", name, err)
	}
	cfg := identity.ClientConfig(p.src, want, "h2")
	t := newPeerTransport()
	var proto http.Protocols
	proto.SetHTTP2(true)
	t.Protocols = &proto
	t.ForceAttemptHTTP2 = true
	dialer := &net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	t.DialTLSContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		// With a custom TLS dialer net/http reports neither step to an
		// httptrace.ClientTrace (the access log's timings): report both.
		trace := httptrace.ContextClientTrace(ctx)
		if trace != nil && trace.ConnectStart != nil {
			trace.ConnectStart(network, addr)
		}
		c, err := dialer.DialContext(ctx, network, addr)
		if trace != nil && trace.ConnectDone != nil {
			trace.ConnectDone(network, addr, err)
		}
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, cfg)
		if trace != nil && trace.TLSHandshakeStart != nil {
			trace.TLSHandshakeStart()
		}
		err = tc.HandshakeContext(ctx)
		if trace != nil && trace.TLSHandshakeDone != nil {
			trace.TLSHandshakeDone(tc.ConnectionState(), err)
		}
		if err != nil {
			_ = c.Close()
			reason := identity.Classify(err)
			p.metrics.HandshakeFailed("client", reason)
			p.log.Warn("peer handshake refused", "peer", addr, "target", name, "reason", reason, "err", err)
			// Nothing was sent: the picker may try another instance.
			return nil, &net.OpError{Op: "dial", Net: network, Addr: c.RemoteAddr(), Err: err}
		}
		return tc, nil
	}
	var pool peerPool = t
	if p.h3 {
		pool = newH3First(identity.ClientConfig(p.src, want, "h3"), t, p.log)
	}
	p.byApp[name] = pool
	return pool, nil
}

// closeIdle closes idle connections of every pool.
func (p *peerTransports) closeIdle() {
	p.plain.CloseIdleConnections()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.byApp {
		t.CloseIdleConnections()
	}
}
