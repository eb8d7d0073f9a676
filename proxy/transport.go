package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
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

// newAppTransport returns the transport to the local app: a keep-alive
// HTTP/1.1 pool, or h2c with --app-protocol h2c, or TLS without
// verification with https (as Dapr does toward its own app).
func newAppTransport(protocol string) *http.Transport {
	var p http.Protocols
	switch protocol {
	case "h2c":
		p.SetUnencryptedHTTP2(true)
	default:
		p.SetHTTP1(true)
	}
	t := &http.Transport{
		Protocols:           &p,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		DisableCompression:  true,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 1024,
		IdleConnTimeout:     90 * time.Second,
	}
	if protocol == "https" {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // #nosec G402 -- Dapr does not verify its own app
	}
	return t
}

// appChannelErrors marks every failure of the app transport as an
// app-channel failure, except the caller's own cancellation and deadline and
// the body limit, which keep their identity.
func appChannelErrors(next http.RoundTripper) http.RoundTripper {
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := next.RoundTrip(r)
		if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) &&
			!errors.Is(err, errBodyTooLarge) && !errors.Is(err, errNoAppChannel) {
			err = &appChannelError{err: err}
		}
		return resp, err
	})
}

// limitConcurrency queues calls beyond n in flight (n <= 0: unlimited). A
// queued call whose context ends gets its context error.
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
			resp, err := next.RoundTrip(r)
			if err != nil {
				<-sem
				return nil, err
			}
			resp.Body = &releaseBody{ReadCloser: resp.Body, release: func() { <-sem }}
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
