package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"

	"github.com/skeinmesh/skein/identity"
)

// Peer transports a caller can choose (--peer-transport).
const (
	PeerHTTP1 = "h1"
	PeerHTTP2 = "h2"
	PeerHTTP3 = "h3"
)

// h3HandshakeIdle bounds a QUIC handshake (quic-go allows twice this), so a
// caller whose UDP is blocked falls back to HTTP/2 within a second.
const h3HandshakeIdle = 300 * time.Millisecond

// h3Backoff is how long HTTP/3 is not tried again on an address where it
// failed to connect.
const h3Backoff = 30 * time.Second

// h3First sends calls over HTTP/3 (QUIC, the same SPIFFE mTLS) and falls
// back to HTTP/2 over TCP when QUIC cannot connect: UDP blocked, nothing
// listening on UDP. An address that failed is sent HTTP/2 for h3Backoff.
type h3First struct {
	h3  *http3.Transport
	h2  http.RoundTripper
	log *slog.Logger

	mu     sync.Mutex
	broken map[string]time.Time // address → HTTP/3 not before
}

func newH3First(cfg *tls.Config, h2 http.RoundTripper, log *slog.Logger) *h3First {
	return &h3First{
		h3: &http3.Transport{
			TLSClientConfig:    cfg,
			QUICConfig:         &quic.Config{HandshakeIdleTimeout: h3HandshakeIdle, KeepAlivePeriod: 10 * time.Second},
			DisableCompression: true,
		},
		h2:     h2,
		log:    log,
		broken: map[string]time.Time{},
	}
}

func (t *h3First) RoundTrip(r *http.Request) (*http.Response, error) {
	addr := r.URL.Host
	t.mu.Lock()
	until, bad := t.broken[addr]
	t.mu.Unlock()
	if bad && time.Now().Before(until) {
		return t.h2.RoundTrip(r)
	}
	resp, err := t.h3.RoundTrip(r)
	if err == nil || !quicUnreachable(err) {
		return resp, err
	}
	// QUIC never connected, so nothing was sent: HTTP/2 gets the same request.
	t.mu.Lock()
	t.broken[addr] = time.Now().Add(h3Backoff)
	t.mu.Unlock()
	t.log.Warn("http/3 unavailable, falling back to http/2", "peer", addr, "err", err)
	return t.h2.RoundTrip(r)
}

// quicUnreachable reports whether a QUIC connection could not be made at
// all (as opposed to failing after requests were sent).
func quicUnreachable(err error) bool {
	var hto *quic.HandshakeTimeoutError
	var ito *quic.IdleTimeoutError
	var op *net.OpError
	return errors.As(err, &hto) || errors.As(err, &ito) || errors.As(err, &op)
}

// CloseIdleConnections closes idle connections of both transports.
func (t *h3First) CloseIdleConnections() {
	t.h3.CloseIdleConnections()
	if c, ok := t.h2.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// newH3Server serves the peer handler over HTTP/3 on a UDP socket, with the
// same TLS and caller identity as the TCP port; opened is called per
// connection.
func newH3Server(h http.Handler, cfg *tls.Config, opened func()) *http3.Server {
	return &http3.Server{
		Handler:   h,
		TLSConfig: http3.ConfigureTLSConfig(cfg),
		ConnContext: func(ctx context.Context, c *quic.Conn) context.Context {
			opened()
			// The server accepts 0.5-RTT: wait for the client's certificate.
			select {
			case <-c.HandshakeComplete():
			case <-c.Context().Done():
				return ctx
			}
			cs := c.ConnectionState().TLS
			return identity.ContextWithPeer(ctx, &cs)
		},
	}
}
