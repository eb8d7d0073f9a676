package identity

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// TestCAFilesRoundTrip: a CA in memory, stored as Files and loaded by
// another (a second control-plane replica reading the Secret), signs
// SVIDs that verify with either's bundle; a root rotation in one reaches
// the other through SetFiles, with the old root kept trusted.
func TestCAFilesRoundTrip(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	a, err := NewCA(td, nil)
	if err != nil {
		t.Fatal(err)
	}
	files, err := a.Files()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(files); got != len(CAFileNames) {
		t.Errorf("%d files, want %d", got, len(CAFileNames))
	}
	b, err := FromFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := AppID(td, "shop", "orders")
	sv, err := b.MintSVID(id, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := x509svid.Verify(sv.Certificates, a.Bundle()); err != nil {
		t.Errorf("an SVID of the loaded copy does not verify with the original's bundle: %v", err)
	}

	if err := a.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	rotated, _ := a.Files()
	if err := b.SetFiles(rotated); err != nil {
		t.Fatal(err)
	}
	if !b.Roots()[0].Equal(a.Roots()[0]) || len(b.Roots()) != 2 {
		t.Errorf("after SetFiles: %d roots, current equal %v; want the new root and the retired one", len(b.Roots()), b.Roots()[0].Equal(a.Roots()[0]))
	}
	if _, _, err := x509svid.Verify(sv.Certificates, b.Bundle()); err != nil {
		t.Errorf("an SVID of the old root no longer verifies during the overlap: %v", err)
	}
}

// TestCASetFilesRefuses: damaged or foreign files leave the CA as it was.
func TestCASetFilesRefuses(t *testing.T) {
	a, _ := NewCA(spiffeid.RequireTrustDomainFromString("public"), nil)
	other, _ := NewCA(spiffeid.RequireTrustDomainFromString("other.org"), nil)
	third, _ := NewCA(spiffeid.RequireTrustDomainFromString("public"), nil)
	good, _ := a.Files()
	foreign, _ := other.Files()
	thirds, _ := third.Files()
	with := func(name string, v []byte) map[string][]byte {
		f := maps.Clone(good)
		f[name] = v
		return f
	}
	for _, tc := range []struct {
		name  string
		files map[string][]byte
		want  string
	}{
		{"missing issuer key", with(fileIssuerKey, nil), "issuer.key: missing"},
		{"not PEM", with(fileRoot, []byte("x")), "root.crt: no PEM certificate"},
		{"key of another CA", with(fileIssuerKey, thirds[fileIssuerKey]), "a key does not match its certificate"},
		{"issuer of another root", with(fileIssuer, thirds[fileIssuer]), "a key does not match"},
		{"another trust domain", foreign, `trust domain is "other.org", not "public"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := a.Issuer()
			err := a.SetFiles(tc.files)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SetFiles: %v, want an error with %q", err, tc.want)
			}
			if !a.Issuer().Equal(before) {
				t.Error("a refused SetFiles changed the issuer")
			}
		})
	}
	// An issuer of another root, with its own key, fails the signature check.
	f := maps.Clone(good)
	f[fileIssuer], f[fileIssuerKey] = thirds[fileIssuer], thirds[fileIssuerKey]
	if err := a.SetFiles(f); err == nil || !strings.Contains(err.Error(), "issuer is not signed by the root") {
		t.Errorf("SetFiles with another root's issuer: %v", err)
	}
}

// TestCARotationDue: an issuer is due with a third of its life left, the
// root with less than the overlap and an issuer's lifetime.
func TestCARotationDue(t *testing.T) {
	start := time.Now()
	now := start
	ca, _ := NewCA(spiffeid.TrustDomain{}, func() time.Time { return now })
	if ca.IssuerDue() || ca.RootDue() {
		t.Fatalf("a new CA is due: issuer %v, root %v", ca.IssuerDue(), ca.RootDue())
	}
	now = start.Add(issuerTTL * 2 / 3).Add(time.Hour)
	if !ca.IssuerDue() {
		t.Error("an issuer with less than a third of its life left is not due")
	}
	if err := ca.RotateIssuer(); err != nil {
		t.Fatal(err)
	}
	if ca.IssuerDue() {
		t.Error("a fresh issuer is due")
	}
	now = start.Add(rootTTL - RootOverlap - issuerTTL).Add(time.Hour)
	if !ca.RootDue() {
		t.Error("a root with less than overlap+issuer lifetime left is not due")
	}
	if err := ca.RotateRoot(); err != nil {
		t.Fatal(err)
	}
	if ca.RootDue() || ca.IssuerDue() {
		t.Errorf("after a root rotation: root due %v, issuer due %v", ca.RootDue(), ca.IssuerDue())
	}
}
