package identity

import (
	"crypto"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// caState is ca.json: what the PEM files do not say.
type caState struct {
	TrustDomain string       `json:"trustDomain"`
	Retired     []retiredPEM `json:"retiredRoots,omitempty"`
}

type retiredPEM struct {
	Cert  string    `json:"cert"`
	Until time.Time `json:"trustedUntil"`
}

// save writes the CA's files atomically; keys get mode 0600. The root's
// files are written only when withRoot (init and root rotation).
func (ca *CA) save(withRoot bool) error {
	st := caState{TrustDomain: ca.td.String()}
	for _, r := range ca.retired {
		st.Retired = append(st.Retired, retiredPEM{Cert: string(certPEM(r.cert)), Until: r.until})
	}
	js, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{fileIssuer, certPEM(ca.issuer), 0o644},
		{fileState, js, 0o644},
	}
	ik, err := keyPEM(ca.issuerKey)
	if err != nil {
		return err
	}
	files = append(files, struct {
		name string
		data []byte
		mode os.FileMode
	}{fileIssuerKey, ik, 0o600})
	if withRoot {
		rk, err := keyPEM(ca.rootKey)
		if err != nil {
			return err
		}
		files = append(files, []struct {
			name string
			data []byte
			mode os.FileMode
		}{{fileRoot, certPEM(ca.root), 0o644}, {fileRootKey, rk, 0o600}}...)
	}
	for _, f := range files {
		if err := writeFileAtomic(filepath.Join(ca.dir, f.name), f.data, f.mode); err != nil {
			return fmt.Errorf("ca save: %w", err)
		}
	}
	return nil
}

// load reads the CA's files; a missing directory or root yields an error
// wrapping fs.ErrNotExist.
func (ca *CA) load() error {
	var st caState
	b, err := os.ReadFile(filepath.Join(ca.dir, fileState))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return fmt.Errorf("ca %s: %s: %w", ca.dir, fileState, err)
	}
	td, err := spiffeid.TrustDomainFromString(st.TrustDomain)
	if err != nil {
		return fmt.Errorf("ca %s: trust domain: %w", ca.dir, err)
	}
	root, err := readCert(filepath.Join(ca.dir, fileRoot))
	if err != nil {
		return err
	}
	rootKey, err := readKey(filepath.Join(ca.dir, fileRootKey))
	if err != nil {
		return err
	}
	issuer, err := readCert(filepath.Join(ca.dir, fileIssuer))
	if err != nil {
		return err
	}
	issuerKey, err := readKey(filepath.Join(ca.dir, fileIssuerKey))
	if err != nil {
		return err
	}
	var retired []retiredRoot
	for _, r := range st.Retired {
		c, err := parseCert([]byte(r.Cert))
		if err != nil {
			return fmt.Errorf("ca %s: retired root: %w", ca.dir, err)
		}
		retired = append(retired, retiredRoot{cert: c, until: r.Until})
	}
	if err := issuer.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("ca %s: issuer is not signed by the root: %w", ca.dir, err)
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.td, ca.root, ca.rootKey, ca.issuer, ca.issuerKey, ca.retired = td, root, rootKey, issuer, issuerKey, retired
	return nil
}

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

func keyPEM(k crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func readCert(path string) (*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := parseCert(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// readKey reads a PKCS#8 key and refuses one readable by others.
func readKey(path string) (crypto.Signer, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v: a key must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: not a signing key", path)
	}
	return s, nil
}

// writeFileAtomic writes data to path through a temporary file created
// with mode, so the file never exists with wider permissions or half
// written.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// lockDir takes an exclusive advisory lock on dir/.lock, so processes that
// initialise or rotate the CA take turns.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ca lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("ca lock: %w", err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
