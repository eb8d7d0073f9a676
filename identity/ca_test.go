package identity

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func TestCAInitFilesAndModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := LoadOrInit(dir, spiffeid.TrustDomain{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := ca.TrustDomain().String(); got != "public" {
		t.Errorf("default trust domain = %q, want public", got)
	}
	for path, want := range map[string]os.FileMode{
		dir:                               0o700 | os.ModeDir,
		filepath.Join(dir, fileRootKey):   0o600,
		filepath.Join(dir, fileIssuerKey): 0o600,
		filepath.Join(dir, fileRoot):      0o644,
	} {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode() != want {
			t.Errorf("%s: mode %v, want %v", filepath.Base(path), st.Mode(), want)
		}
	}
	// Loading again gives the same CA; another trust domain is refused.
	again, err := LoadOrInit(dir, spiffeid.RequireTrustDomainFromString("public"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Roots()[0].Equal(ca.Roots()[0]) {
		t.Error("reload created a new root")
	}
	if _, err := LoadOrInit(dir, spiffeid.RequireTrustDomainFromString("other.org"), nil); err == nil {
		t.Error("loading with another trust domain succeeded")
	}
}

func TestCARefusesReadableKey(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadOrInit(dir, spiffeid.TrustDomain{}, nil); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, fileIssuerKey), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir, nil)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("Load with a 0644 key: %v, want a refusal", err)
	}
}

func TestMintSVIDVerifies(t *testing.T) {
	ca, err := LoadOrInit(t.TempDir(), spiffeid.TrustDomain{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := AppID(ca.TrustDomain(), "default", "orders")
	if err != nil {
		t.Fatal(err)
	}
	if id.String() != "spiffe://public/ns/default/orders" {
		t.Fatalf("id = %s", id)
	}
	sv, err := ca.MintSVID(id, time.Hour, 15*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := x509svid.Verify(sv.Certificates, ca.Bundle())
	if err != nil || got != id {
		t.Fatalf("Verify = %v, %v", got, err)
	}
	leaf := sv.Certificates[0]
	if life := leaf.NotAfter.Sub(leaf.NotBefore); life < time.Hour+14*time.Minute || life > time.Hour+16*time.Minute {
		t.Errorf("lifetime %v, want ttl plus skew", life)
	}
	other := spiffeid.RequireFromString("spiffe://other.org/ns/default/orders")
	if _, err := ca.MintSVID(other, time.Hour, 0); err == nil {
		t.Error("minted an SVID outside the trust domain")
	}
}

func TestRotateIssuerKeepsOldSVIDsValid(t *testing.T) {
	ca, err := LoadOrInit(t.TempDir(), spiffeid.TrustDomain{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := AppID(ca.TrustDomain(), "default", "orders")
	old, _ := ca.MintSVID(id, time.Hour, 0)
	oldIssuer := ca.Issuer()
	if err := ca.RotateIssuer(); err != nil {
		t.Fatal(err)
	}
	if ca.Issuer().Equal(oldIssuer) {
		t.Fatal("issuer unchanged")
	}
	fresh, _ := ca.MintSVID(id, time.Hour, 0)
	for name, sv := range map[string]*x509svid.SVID{"old": old, "fresh": fresh} {
		if _, _, err := x509svid.Verify(sv.Certificates, ca.Bundle()); err != nil {
			t.Errorf("%s SVID: %v", name, err)
		}
	}
}

func TestRotateRootOverlap(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	dir := t.TempDir()
	ca, err := LoadOrInit(dir, spiffeid.TrustDomain{}, clock)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := AppID(ca.TrustDomain(), "default", "orders")
	old, _ := ca.MintSVID(id, 72*time.Hour, 0)
	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	fresh, _ := ca.MintSVID(id, time.Hour, 0)

	// During the overlap both roots are trusted, also by a reloaded CA.
	reloaded, err := Load(dir, clock)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(reloaded.Roots()); n != 2 {
		t.Fatalf("%d roots trusted during the overlap, want 2", n)
	}
	for name, sv := range map[string]*x509svid.SVID{"old": old, "fresh": fresh} {
		if _, _, err := x509svid.Verify(sv.Certificates, reloaded.Bundle(), x509svid.WithTime(now)); err != nil {
			t.Errorf("%s SVID during overlap: %v", name, err)
		}
	}
	// After it, only the new root.
	now = now.Add(RootOverlap + time.Minute)
	if n := len(reloaded.Roots()); n != 1 {
		t.Fatalf("%d roots trusted after the overlap, want 1", n)
	}
	if _, _, err := x509svid.Verify(old.Certificates, reloaded.Bundle(), x509svid.WithTime(now)); err == nil {
		t.Error("SVID of the retired root still verifies after the overlap")
	}
}
