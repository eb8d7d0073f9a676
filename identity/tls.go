package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is where a sidecar's SVID and trust bundle come from: the embedded
// CA (EmbeddedSource) or the SPIFFE Workload API (workloadapi.X509Source).
type Source interface {
	x509svid.Source
	x509bundle.Source
}

// Handshake failure reasons, the values of the reason label.
const (
	ReasonPlaintext        = "plaintext"
	ReasonUnknownAuthority = "unknown_authority"
	ReasonExpired          = "expired"
	ReasonNoSPIFFEID       = "no_spiffe_id"
	ReasonWrongID          = "wrong_id"
	ReasonOther            = "other"
)

// ErrWrongPeer is returned when a server's SPIFFE ID is not the one the
// caller meant to reach.
var ErrWrongPeer = errors.New("unexpected peer SPIFFE ID")

// Classify names why a TLS handshake failed, for logs and the handshake
// failure metric.
func Classify(err error) string {
	var rh tls.RecordHeaderError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	msg := err.Error()
	switch {
	case errors.As(err, &rh), strings.Contains(msg, "first record does not look like a TLS handshake"):
		return ReasonPlaintext
	case errors.Is(err, ErrWrongPeer):
		return ReasonWrongID
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return ReasonExpired
	case errors.As(err, &unknown), strings.Contains(msg, "could not get X509 bundle"):
		return ReasonUnknownAuthority
	case strings.Contains(msg, "no URI SAN"), strings.Contains(msg, "could not get leaf SPIFFE ID"):
		return ReasonNoSPIFFEID
	case strings.Contains(msg, "tls: bad certificate"), strings.Contains(msg, "tls: unknown certificate authority"),
		strings.Contains(msg, "certificate required"):
		// The other side refused our certificate; its logs say why.
		return "refused_by_peer"
	}
	return ReasonOther
}

// ServerConfig is the peer-facing port's TLS: TLS 1.3 only, HTTP/2, a
// client SVID required and verified against the bundle. Any identity of the
// trust domain may connect; what it may do is access control's decision.
func ServerConfig(src Source, nextProtos ...string) *tls.Config {
	c := tlsconfig.MTLSServerConfig(src, src, tlsconfig.AuthorizeAny())
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = nextProtos
	return c
}

// ClientConfig is the TLS of calls to one app: TLS 1.3, our SVID
// presented, and the server's SVID verified and required to be exactly
// want, so a wrong registry entry cannot redirect a call to another
// identity.
func ClientConfig(src Source, want spiffeid.ID, nextProtos ...string) *tls.Config {
	c := tlsconfig.MTLSClientConfig(src, src, func(id spiffeid.ID, _ [][]*x509.Certificate) error {
		if id != want {
			return fmt.Errorf("%w: got %s, want %s", ErrWrongPeer, id, want)
		}
		return nil
	})
	c.MinVersion = tls.VersionTLS13
	c.NextProtos = nextProtos
	return c
}

// Listener wraps ln so that Accept returns connections whose TLS handshake
// has completed. Handshakes run concurrently, bounded by a timeout, so a
// slow or hostile client cannot hold up others; each failure is passed to
// onFail with its reason and the connection closed.
type Listener struct {
	net.Listener
	cfg    *tls.Config
	onFail func(reason string, remote net.Addr, err error)

	conns chan net.Conn
	errc  chan error
	once  sync.Once
	done  chan struct{}
}

const handshakeTimeout = 10 * time.Second

// NewListener returns a handshaking TLS listener over ln.
func NewListener(ln net.Listener, cfg *tls.Config, onFail func(reason string, remote net.Addr, err error)) *Listener {
	l := &Listener{Listener: ln, cfg: cfg, onFail: onFail, conns: make(chan net.Conn), errc: make(chan error, 1), done: make(chan struct{})}
	go l.acceptLoop()
	return l
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errc <- err:
			case <-l.done:
			}
			return
		}
		go l.handshake(c)
	}
}

func (l *Listener) handshake(c net.Conn) {
	tc := tls.Server(c, l.cfg)
	ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		l.onFail(Classify(err), c.RemoteAddr(), err)
		_ = c.Close()
		return
	}
	select {
	case l.conns <- tc:
	case <-l.done:
		_ = tc.Close()
	}
}

// Accept returns the next connection whose handshake succeeded.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		return nil, err
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting.
func (l *Listener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type peerKey struct{}

// Peer is a verified caller identity.
type Peer struct {
	ID        spiffeid.ID
	AppID     string
	Namespace string
}

// PeerFrom returns the verified caller that RequirePeer put in ctx.
func PeerFrom(ctx context.Context) (Peer, bool) {
	p, ok := ctx.Value(peerKey{}).(Peer)
	return p, ok
}

// ParsePeer reads the caller from a verified connection's leaf certificate.
// Its path must be /ns/<namespace>/<app-id>.
func ParsePeer(cs *tls.ConnectionState) (Peer, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return Peer{}, errors.New("no client certificate")
	}
	id, err := x509svid.IDFromCert(cs.PeerCertificates[0])
	if err != nil {
		return Peer{}, err
	}
	seg := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if len(seg) != 3 || seg[0] != "ns" {
		return Peer{}, fmt.Errorf("spiffe id %s is not spiffe://<trust-domain>/ns/<namespace>/<app-id>", id)
	}
	return Peer{ID: id, AppID: seg[2], Namespace: seg[1]}, nil
}

// ConnContext is an http.Server ConnContext hook: for a TLS connection it
// parses the caller's identity once per connection and keeps it in the
// connection's context, which every request on it inherits.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return ctx
	}
	cs := tc.ConnectionState()
	return ContextWithPeer(ctx, &cs)
}

// ContextWithPeer returns ctx with the caller named by a verified
// connection's certificate, or ctx unchanged when it names none. It serves
// transports other than TCP, such as QUIC.
func ContextWithPeer(ctx context.Context, cs *tls.ConnectionState) context.Context {
	if p, err := ParsePeer(cs); err == nil {
		return context.WithValue(ctx, peerKey{}, p)
	}
	return ctx
}

// RequirePeer is the server layer that refuses a TLS request whose
// connection carried no usable SVID (see ConnContext) with 401; a cleartext
// request (mTLS disabled) passes without one.
func RequirePeer(refuse func(w http.ResponseWriter, r *http.Request)) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.TLS != nil {
				if _, ok := PeerFrom(r.Context()); !ok {
					refuse(w, r)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}
