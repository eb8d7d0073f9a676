package identity

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"testing"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"plaintext", tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"}, ReasonPlaintext},
		{"unknown authority", fmt.Errorf("x509svid: could not verify leaf certificate: %w", x509.UnknownAuthorityError{}), ReasonUnknownAuthority},
		{"foreign trust domain", errors.New(`x509svid: could not get X509 bundle: no bundle for trust domain "other.org"`), ReasonUnknownAuthority},
		{"expired", fmt.Errorf("x509svid: could not verify leaf certificate: %w", x509.CertificateInvalidError{Reason: x509.Expired}), ReasonExpired},
		{"no URI SAN", errors.New("x509svid: could not get leaf SPIFFE ID: certificate contains no URI SAN"), ReasonNoSPIFFEID},
		{"wrong server", fmt.Errorf("%w: got a, want b", ErrWrongPeer), ReasonWrongID},
		{"peer refused us", errors.New("remote error: tls: bad certificate"), "refused_by_peer"},
		{"anything else", errors.New("EOF"), ReasonOther},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err); got != tt.want {
				t.Errorf("Classify(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}

func TestParsePeer(t *testing.T) {
	cert := func(uri string) *tls.ConnectionState {
		u, _ := url.Parse(uri)
		return &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
	}
	p, err := ParsePeer(cert("spiffe://public/ns/prod/orders"))
	if err != nil {
		t.Fatal(err)
	}
	want := Peer{ID: spiffeid.RequireFromString("spiffe://public/ns/prod/orders"), AppID: "orders", Namespace: "prod"}
	if p != want {
		t.Errorf("ParsePeer = %+v, want %+v", p, want)
	}
	for _, bad := range []string{"spiffe://public/orders", "spiffe://public/ns/prod/orders/extra", "spiffe://public/x/prod/orders"} {
		if _, err := ParsePeer(cert(bad)); err == nil {
			t.Errorf("ParsePeer(%s) accepted", bad)
		}
	}
	if _, err := ParsePeer(&tls.ConnectionState{}); err == nil {
		t.Error("ParsePeer without certificates accepted")
	}
}
