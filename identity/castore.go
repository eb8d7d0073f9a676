package identity

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
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
	files, err := ca.files()
	if err != nil {
		return err
	}
	for _, name := range []string{fileIssuer, fileState, fileIssuerKey, fileRoot, fileRootKey} {
		if !withRoot && (name == fileRoot || name == fileRootKey) {
			continue
		}
		mode := os.FileMode(0o644)
		if name == fileIssuerKey || name == fileRootKey {
			mode = 0o600
		}
		if err := writeFileAtomic(filepath.Join(ca.dir, name), files[name], mode); err != nil {
			return fmt.Errorf("ca save: %w", err)
		}
	}
	return nil
}

// load reads the CA's files; a missing directory or root yields an error
// wrapping fs.ErrNotExist.
func (ca *CA) load() error {
	files := map[string][]byte{}
	for _, name := range []string{fileState, fileRoot, fileIssuer} {
		b, err := os.ReadFile(filepath.Join(ca.dir, name))
		if err != nil {
			return err
		}
		files[name] = b
	}
	for _, name := range []string{fileRootKey, fileIssuerKey} {
		b, err := readKeyFile(filepath.Join(ca.dir, name))
		if err != nil {
			return err
		}
		files[name] = b
	}
	if err := ca.setFiles(files); err != nil {
		return fmt.Errorf("ca %s: %w", ca.dir, err)
	}
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

func parseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// readKeyFile reads a key file and refuses one readable by others.
func readKeyFile(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s: mode %v: a key must be readable by its owner only (chmod 600)", path, st.Mode().Perm())
	}
	return os.ReadFile(path)
}

// parseKey reads a PEM PKCS#8 signing key.
func parseKey(b []byte) (crypto.Signer, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM key")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("not a signing key")
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
