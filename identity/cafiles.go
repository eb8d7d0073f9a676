package identity

import (
	"crypto"
	"encoding/json"
	"fmt"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// CAFileNames are the names of the CA's files, in its directory and as the
// keys of Files: what a Kubernetes Secret holding the CA carries.
var CAFileNames = []string{fileRoot, fileRootKey, fileIssuer, fileIssuerKey, fileState}

// NewCA creates a trust domain held in memory only (no directory): its
// owner stores it with Files, as the control plane does in a Kubernetes
// Secret. A zero td means "public".
func NewCA(td spiffeid.TrustDomain, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	if td.IsZero() {
		td = spiffeid.RequireTrustDomainFromString("public")
	}
	ca := &CA{now: now}
	root, rootKey, err := newAuthority(td, "root", nil, nil, now(), rootTTL)
	if err != nil {
		return nil, err
	}
	issuer, issuerKey, err := newAuthority(td, "issuer", root, rootKey, now(), issuerTTL)
	if err != nil {
		return nil, err
	}
	ca.td, ca.root, ca.rootKey, ca.issuer, ca.issuerKey = td, root, rootKey, issuer, issuerKey
	return ca, nil
}

// FromFiles makes an in-memory CA of Files' form.
func FromFiles(files map[string][]byte, now func() time.Time) (*CA, error) {
	if now == nil {
		now = time.Now
	}
	ca := &CA{now: now}
	return ca, ca.setFiles(files)
}

// Files returns the CA in its directory's form, file name (CAFileNames)
// to content, keys included: whoever holds the result can sign as the
// CA. The map is the caller's.
func (ca *CA) Files() (map[string][]byte, error) {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.files()
}

// files is Files with ca.mu held.
func (ca *CA) files() (map[string][]byte, error) {
	st := caState{TrustDomain: ca.td.String()}
	for _, r := range ca.retired {
		st.Retired = append(st.Retired, retiredPEM{Cert: string(certPEM(r.cert)), Until: r.until})
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return nil, err
	}
	ik, err := keyPEM(ca.issuerKey)
	if err != nil {
		return nil, err
	}
	rk, err := keyPEM(ca.rootKey)
	if err != nil {
		return nil, err
	}
	return map[string][]byte{
		fileRoot: certPEM(ca.root), fileRootKey: rk,
		fileIssuer: certPEM(ca.issuer), fileIssuerKey: ik,
		fileState: js,
	}, nil
}

// SetFiles replaces the CA's authorities with those of files (Files'
// form), as a replica of the control plane does when the Secret it shares
// with the others changes. Files of another trust domain, or whose issuer
// the root did not sign, are refused and the CA stays as it was. Signing
// that runs meanwhile uses the old or the new authorities, never a mix.
func (ca *CA) SetFiles(files map[string][]byte) error {
	return ca.setFiles(files)
}

func (ca *CA) setFiles(files map[string][]byte) error {
	for _, name := range CAFileNames {
		if len(files[name]) == 0 {
			return fmt.Errorf("%s: missing", name)
		}
	}
	var st caState
	if err := json.Unmarshal(files[fileState], &st); err != nil {
		return fmt.Errorf("%s: %w", fileState, err)
	}
	td, err := spiffeid.TrustDomainFromString(st.TrustDomain)
	if err != nil {
		return fmt.Errorf("%s: trust domain: %w", fileState, err)
	}
	root, err := parseCert(files[fileRoot])
	if err != nil {
		return fmt.Errorf("%s: %w", fileRoot, err)
	}
	issuer, err := parseCert(files[fileIssuer])
	if err != nil {
		return fmt.Errorf("%s: %w", fileIssuer, err)
	}
	rootKey, err := parseKey(files[fileRootKey])
	if err != nil {
		return fmt.Errorf("%s: %w", fileRootKey, err)
	}
	issuerKey, err := parseKey(files[fileIssuerKey])
	if err != nil {
		return fmt.Errorf("%s: %w", fileIssuerKey, err)
	}
	if !publicKeysEqual(root.PublicKey, rootKey.Public()) || !publicKeysEqual(issuer.PublicKey, issuerKey.Public()) {
		return fmt.Errorf("a key does not match its certificate")
	}
	var retired []retiredRoot
	for _, r := range st.Retired {
		c, err := parseCert([]byte(r.Cert))
		if err != nil {
			return fmt.Errorf("%s: retired root: %w", fileState, err)
		}
		retired = append(retired, retiredRoot{cert: c, until: r.Until})
	}
	if err := issuer.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("issuer is not signed by the root: %w", err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if !ca.td.IsZero() && ca.td != td {
		return fmt.Errorf("trust domain is %q, not %q", td, ca.td)
	}
	ca.td, ca.root, ca.rootKey, ca.issuer, ca.issuerKey, ca.retired = td, root, rootKey, issuer, issuerKey, retired
	return nil
}

// publicKeysEqual compares two public keys (every crypto key type has
// Equal).
func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// IssuerDue reports whether the issuing CA should be replaced: less than
// a third of its lifetime is left (it is capped by the root's, so an
// ageing root shows here too). Whoever owns the CA's storage rotates it
// then: the control plane's leader on Kubernetes.
func (ca *CA) IssuerDue() bool {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	life := ca.issuer.NotAfter.Sub(ca.issuer.NotBefore)
	return ca.issuer.NotAfter.Sub(ca.now()) < life/3
}

// RootDue reports whether the root should be replaced: less than
// RootOverlap plus issuerTTL is left, so a new root is in every bundle
// long before the old one expires.
func (ca *CA) RootDue() bool {
	ca.mu.RLock()
	defer ca.mu.RUnlock()
	return ca.root.NotAfter.Sub(ca.now()) < RootOverlap+issuerTTL
}
