package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/overload"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/proxy/h1"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// newPeerTransport returns the pooled, multiplexed HTTP/2 transport to other
// sidecars. Cleartext h2c with prior knowledge for now; the identity layer
// replaces the dialer with SPIFFE mTLS. One transport serves every peer, with
// one pool per address.
func newPeerTransport() *http.Transport {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	return &http.Transport{
		Protocols:           &p,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true, // bodies pass through byte-exact
		IdleConnTimeout:     3 * time.Minute,
		MaxIdleConnsPerHost: 16,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 10 * time.Second,
			PingTimeout:     5 * time.Second,
		},
	}
}

// pool is a client transport with a connection pool.
type pool interface {
	http.RoundTripper
	CloseIdleConnections()
}

// newAppTransport returns the transport to the local app: the lean
// HTTP/1.1 client (proxy/h1: request and response on the caller's
// goroutine), over TLS without verification with https (as Dapr does
// toward its own app), or net/http's h2c with --app-protocol h2c; a gRPC
// app's (grpc, grpcs) is daprgrpc.AppTransport: gRPC calls as they are,
// HTTP invocations as AppCallback/OnInvoke.
func newAppTransport(protocol string) pool {
	d := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	switch protocol {
	case "h2c":
		var p http.Protocols
		p.SetUnencryptedHTTP2(true)
		return &http.Transport{
			Protocols:           &p,
			DialContext:         d.DialContext,
			DisableCompression:  true,
			MaxIdleConns:        1024,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
	case "https":
		cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}} // #nosec G402 -- Dapr does not verify its own app
		return &h1.Transport{Dial: h1.DialTLS(d, cfg), MaxIdlePerHost: 1024, IdleTimeout: appIdleTimeout}
	case "grpc":
		return &daprgrpc.AppTransport{Native: newAppTransport("h2c").(*http.Transport), Creds: insecure.NewCredentials()}
	case "grpcs":
		cfg := &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}} // #nosec G402 -- Dapr does not verify its own app
		var p http.Protocols
		p.SetHTTP2(true)
		native := &http.Transport{
			Protocols:           &p,
			DialContext:         d.DialContext,
			TLSClientConfig:     cfg,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 1024,
			IdleConnTimeout:     90 * time.Second,
		}
		return &daprgrpc.AppTransport{Native: native, Creds: credentials.NewTLS(cfg.Clone())}
	}
	return &h1.Transport{Dial: h1.DialTCP(d), MaxIdlePerHost: 1024, IdleTimeout: appIdleTimeout}
}

// appIdleTimeout closes app connections idle this long: below the 5 s
// keep-alive timeout of Node.js servers, so the app rarely closes a
// connection as the sidecar reuses it.
const appIdleTimeout = 4 * time.Second

// appChannelErrors marks every failure of the app transport as an
// app-channel failure, except the caller's own cancellation and deadline,
// the body limit and the refusals of the layers below (no channel,
// unhealthy app, overload), which keep their identity.
func appChannelErrors(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, errBodyTooLarge) && !errors.Is(err, errNoAppChannel) && !errors.Is(err, apphealth.ErrUnhealthy) &&
			!errors.Is(err, overload.ErrOverloaded) {
			err = &appChannelError{err: err}
		}
		return resp, err
	})
}

// limitConcurrency queues calls beyond n in flight (n <= 0: unlimited). A
// queued call whose context ends gets its context error. The slot is freed
// when the response body is closed, or at once if the layers below fail or
// panic (TestLimitConcurrencyReleasesOnPanic).
func limitConcurrency(n int) func(http.RoundTripper) http.RoundTripper {
	return func(next http.RoundTripper) http.RoundTripper {
		if n <= 0 {
			return next
		}
		sem := make(chan struct{}, n)
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			select {
			case sem <- struct{}{}:
			case <-r.Context().Done():
				return nil, r.Context().Err()
			}
			held := true
			defer func() {
				if held {
					<-sem
				}
			}()
			resp, err := next.RoundTrip(r)
			if err != nil {
				return nil, err
			}
			resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { <-sem }}
			held = false // the body frees it now
			return resp, nil
		})
	}
}

// releaseBody frees a concurrency slot once the response body is closed.
type releaseBody struct {
	io.ReadCloser
	release func()
	done    bool
}

func (b *releaseBody) Close() error {
	err := b.ReadCloser.Close()
	if !b.done {
		b.done = true
		b.release()
	}
	return err
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
