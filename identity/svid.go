package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net/url"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Defaults of spec.mtls (contract §7.2).
const (
	DefaultWorkloadCertTTL  = 24 * time.Hour
	DefaultAllowedClockSkew = 15 * time.Minute
)

// AppID returns the SPIFFE ID of an app: spiffe://<td>/ns/<namespace>/<app-id>.
func AppID(td spiffeid.TrustDomain, namespace, appID string) (spiffeid.ID, error) {
	return spiffeid.FromSegments(td, "ns", namespace, appID)
}

// MintSVID creates a fresh P-256 key, kept in memory only, and an X.509-SVID
// for id signed by the CA's issuer: valid for ttl, back-dated by skew, with
// the issuer in its chain.
func (ca *CA) MintSVID(id spiffeid.ID, ttl, skew time.Duration) (*x509svid.SVID, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("svid key: %w", err)
	}
	leaf, issuer, err := ca.sign(id, key.Public(), ttl, skew)
	if err != nil {
		return nil, err
	}
	return &x509svid.SVID{ID: id, Certificates: []*x509.Certificate{leaf, issuer}, PrivateKey: key}, nil
}

// sign issues a leaf certificate for id and pub, and returns it with the
// issuer that signed it (read once: a rotation may swap it meanwhile).
func (ca *CA) sign(id spiffeid.ID, pub crypto.PublicKey, ttl, skew time.Duration) (*x509.Certificate, *x509.Certificate, error) {
	if id.TrustDomain() != ca.TrustDomain() {
		return nil, nil, fmt.Errorf("sign %s: not in trust domain %s", id, ca.TrustDomain())
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	ca.mu.RLock()
	issuer, issuerKey := ca.issuer, ca.issuerKey
	ca.mu.RUnlock()
	now := ca.now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"Skein"}},
		URIs:         []*url.URL{id.URL()},
		NotBefore:    now.Add(-skew),
		NotAfter:     now.Add(ttl),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment | x509.KeyUsageKeyAgreement,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if tmpl.NotAfter.After(issuer.NotAfter) {
		tmpl.NotAfter = issuer.NotAfter
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, pub, issuerKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign %s: %w", id, err)
	}
	leaf, err := x509.ParseCertificate(der)
	return leaf, issuer, err
}

// Bundle returns the trust bundle of the CA's trust domain.
func (ca *CA) Bundle() *x509bundle.Bundle {
	return x509bundle.FromX509Authorities(ca.TrustDomain(), ca.Roots())
}
