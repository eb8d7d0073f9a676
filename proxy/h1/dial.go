package h1

import (
	"context"
	"crypto/tls"
	"net"
	"net/http/httptrace"

	"github.com/skeinmesh/skein/internal/inlineio"
)

// DialTCP returns a Dial function for cleartext TCP with d, reporting the
// connect step to the context's httptrace.ClientTrace.
func DialTCP(d *net.Dialer) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		trace := httptrace.ContextClientTrace(ctx)
		if trace != nil && trace.ConnectStart != nil {
			trace.ConnectStart("tcp", addr)
		}
		c, err := d.DialContext(ctx, "tcp", addr)
		if trace != nil && trace.ConnectDone != nil {
			trace.ConnectDone("tcp", addr, err)
		}
		if err != nil {
			return nil, err
		}
		return inlineio.Wrap(c), nil
	}
}

// DialTLS returns a Dial function for TLS with cfg over TCP with d,
// reporting connect and handshake steps to the context's
// httptrace.ClientTrace. A cfg that verifies the server and names none is
// given the dialled host, as net/http's Transport does, so one cfg serves
// every host. A failed handshake is a *net.OpError with Op "dial":
// nothing of the request was sent.
func DialTLS(d *net.Dialer, cfg *tls.Config) func(ctx context.Context, addr string) (net.Conn, error) {
	dial := DialTCP(d)
	byHost := cfg.ServerName == "" && !cfg.InsecureSkipVerify
	return func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		hc := cfg
		if byHost {
			host, _, _ := net.SplitHostPort(addr)
			hc = cfg.Clone()
			hc.ServerName = host
		}
		tc, err := Handshake(ctx, c, hc)
		if err != nil {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
		}
		return tc, nil
	}
}

// Handshake runs the client side of a TLS handshake on c, reporting it to
// the context's httptrace.ClientTrace; on failure c is closed.
func Handshake(ctx context.Context, c net.Conn, cfg *tls.Config) (*tls.Conn, error) {
	trace := httptrace.ContextClientTrace(ctx)
	tc := tls.Client(c, cfg)
	if trace != nil && trace.TLSHandshakeStart != nil {
		trace.TLSHandshakeStart()
	}
	err := tc.HandshakeContext(ctx)
	if trace != nil && trace.TLSHandshakeDone != nil {
		trace.TLSHandshakeDone(tc.ConnectionState(), err)
	}
	if err != nil {
		_ = c.Close()
		return nil, err
	}
	return tc, nil
}
