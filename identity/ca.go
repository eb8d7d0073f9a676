package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Lifetimes of the embedded trust domain's authorities.
const (
	rootTTL   = 365 * 24 * time.Hour
	issuerTTL = 30 * 24 * time.Hour
	// RootOverlap is how long a replaced root stays trusted after
	// `skein ca rotate --root`, so SVIDs it signed keep verifying until they
	// have all been renewed.
	RootOverlap = 48 * time.Hour
)

// File names under the CA directory ($SKEIN_HOME/ca).
const (
	fileRoot      = "root.crt"
	fileRootKey   = "root.key"
	fileIssuer    = "issuer.crt"
	fileIssuerKey = "issuer.key"
	fileState     = "ca.json" // trust domain and retired roots with their overlap ends
)

// CA is the embedded trust domain: a root, an issuing CA signed by it, and
// the bundle of roots peers trust. Its files live in one directory (0700,
// keys 0600); every sidecar of the local user loads it, so the embedded
// mode trusts whoever can read $SKEIN_HOME.
//
// A CA is safe for concurrent use.
type CA struct {
	dir string
	now func() time.Time

	mu        sync.RWMutex
	td        spiffeid.TrustDomain
	root      *x509.Certificate
	rootKey   crypto.Signer
	issuer    *x509.Certificate
	issuerKey crypto.Signer
	retired   []retiredRoot // replaced roots still trusted
}

// retiredRoot is a replaced root, trusted until its overlap ends.
type retiredRoot struct {
	cert  *x509.Certificate
	until time.Time
}

// LoadOrInit loads the CA in dir, creating a new trust domain td when dir
// holds none. An existing CA keeps its own trust domain; asking for another
// is an error.
func LoadOrInit(dir string, td spiffeid.TrustDomain, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	ca := &CA{dir: dir, now: now}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	// Sidecars started together must not each create a trust domain.
	unlock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	defer unlock()
	err = ca.load()
	if errors.Is(err, fs.ErrNotExist) {
		return ca, ca.init(td)
	}
	if err != nil {
		return nil, err
	}
	if !td.IsZero() && td != ca.td {
		return nil, fmt.Errorf("ca %s: trust domain is %q, not %q (skein ca init --force to replace it)", dir, ca.td, td)
	}
	return ca, nil
}

// Load loads the CA in dir; it fails if there is none.
func Load(dir string, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	ca := &CA{dir: dir, now: now}
	return ca, ca.load()
}

// TrustDomain returns the CA's trust domain.
func (ca *CA) TrustDomain() spiffeid.TrustDomain {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.td
}

// Roots returns the trusted roots, current first: the root and every
// replaced root whose overlap has not ended.
func (ca *CA) Roots() []*x509.Certificate {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	now := ca.now()
	roots := []*x509.Certificate{ca.root}
	for _, r := range ca.retired {
		if now.Before(r.until) {
			roots = append(roots, r.cert)
		}
	}
	return roots
}

// Issuer returns the issuing CA certificate.
func (ca *CA) Issuer() *x509.Certificate {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.issuer
}

func (ca *CA) init(td spiffeid.TrustDomain) error {
	if td.IsZero() {
		td = spiffeid.RequireTrustDomainFromString("public")
	}
	if err := os.Chmod(ca.dir, 0o700); err != nil {
		return fmt.Errorf("ca init: %w", err)
	}
	root, rootKey, err := newAuthority(td, "root", nil, nil, ca.now(), rootTTL)
	if err != nil {
		return err
	}
	issuer, issuerKey, err := newAuthority(td, "issuer", root, rootKey, ca.now(), issuerTTL)
	if err != nil {
		return err
	}
	ca.td, ca.root, ca.rootKey, ca.issuer, ca.issuerKey = td, root, rootKey, issuer, issuerKey
	return ca.save(true)
}

// RotateIssuer replaces the issuing CA at once; SVIDs it signed before stay
// valid because they chain to the same root. A CA with a directory saves
// it; an in-memory one (NewCA, FromFiles) leaves storing it to its owner.
func (ca *CA) RotateIssuer() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.dir != "" {
		unlock, err := lockDir(ca.dir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	issuer, key, err := newAuthority(ca.td, "issuer", ca.root, ca.rootKey, ca.now(), issuerTTL)
	if err != nil {
		return err
	}
	ca.issuer, ca.issuerKey = issuer, key
	if ca.dir == "" {
		return nil
	}
	return ca.save(false)
}

// RotateRoot replaces the root and the issuer. The old root stays trusted
// for RootOverlap, so peers holding SVIDs it signed keep verifying while
// they renew.
func (ca *CA) RotateRoot() error {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if ca.dir != "" {
		unlock, err := lockDir(ca.dir)
		if err != nil {
			return err
		}
		defer unlock()
	}
	now := ca.now()
	root, rootKey, err := newAuthority(ca.td, "root", nil, nil, now, rootTTL)
	if err != nil {
		return err
	}
	issuer, issuerKey, err := newAuthority(ca.td, "issuer", root, rootKey, now, issuerTTL)
	if err != nil {
		return err
	}
	retired := []retiredRoot{{cert: ca.root, until: now.Add(RootOverlap)}}
	for _, r := range ca.retired {
		if now.Before(r.until) {
			retired = append(retired, r)
		}
	}
	ca.root, ca.rootKey, ca.issuer, ca.issuerKey, ca.retired = root, rootKey, issuer, issuerKey, retired
	if ca.dir == "" {
		return nil
	}
	return ca.save(true)
}

// newAuthority creates a CA certificate (self-signed when parent is nil).
func newAuthority(td spiffeid.TrustDomain, role string, parent *x509.Certificate, parentKey crypto.Signer, now time.Time, ttl time.Duration) (*x509.Certificate, crypto.Signer, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("ca %s key: %w", role, err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Skein"}, CommonName: "skein " + role + " " + td.String()},
		URIs:                  []*url.URL{td.ID().URL()},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(ttl),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	signer, signerCert := crypto.Signer(key), tmpl
	if parent != nil {
		signer, signerCert = parentKey, parent
		if tmpl.NotAfter.After(parent.NotAfter) {
			tmpl.NotAfter = parent.NotAfter
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signerCert, key.Public(), signer)
	if err != nil {
		return nil, nil, fmt.Errorf("ca %s certificate: %w", role, err)
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}
