package test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/skeinmesh/skein/identity"
)

// peerClient calls a sidecar's peer-facing port directly with the given
// client certificate (nil: none), as another sidecar would.
func peerClient(cert *tls.Certificate) *http.Client {
	cfg := &tls.Config{
		InsecureSkipVerify: true, // the test inspects the server certificate itself
		NextProtos:         []string{"h2"},
		MinVersion:         tls.VersionTLS13,
	}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	var p http.Protocols
	p.SetHTTP2(true)
	return &http.Client{Transport: &http.Transport{TLSClientConfig: cfg, Protocols: &p, ForceAttemptHTTP2: true}, Timeout: 5 * time.Second}
}

func svidCert(sv *x509svid.SVID) *tls.Certificate {
	c := &tls.Certificate{PrivateKey: sv.PrivateKey, Leaf: sv.Certificates[0]}
	for _, x := range sv.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c
}

// internalPort reads a sidecar's peer-facing port from its metadata.
func (s *sidecar) internalPort(t *testing.T) int {
	t.Helper()
	return int(s.metadata(t)["ports"].(map[string]any)["internal"].(float64))
}

// TestPeerPortRequiresMTLS covers identity points 4 and 5: the peer-facing
// port speaks only mTLS (TLS 1.3) and refuses, with a counted reason,
// plaintext, a foreign CA, an expired certificate and one without a SPIFFE
// ID; a good SVID gets through and the app sees the caller the certificate
// names, not the one the headers claim.
func TestPeerPortRequiresMTLS(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort)
	url := "https://127.0.0.1:" + strconv.Itoa(b.internalPort(t)) + "/echo"
	ca, err := identity.Load(filepath.Join(m.home, "ca"), nil)
	if err != nil {
		t.Fatal(err)
	}
	td := ca.TrustDomain()
	testerID, _ := identity.AppID(td, "default", "tester")

	good, err := ca.MintSVID(testerID, time.Hour, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	past, _ := identity.Load(filepath.Join(m.home, "ca"), func() time.Time { return time.Now().Add(-2 * time.Hour) })
	expired, err := past.MintSVID(testerID, time.Hour, 0)
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := identity.LoadOrInit(t.TempDir(), td, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _ := foreignCA.MintSVID(testerID, time.Hour, 0)
	noSAN := certWithoutSPIFFEID(t, m.home)

	t.Run("good SVID, spoofed caller header", func(t *testing.T) {
		req := newRequest(t, http.MethodGet, url, nil)
		req.Host = "app-b.default"
		req.Header.Set("Dapr-Caller-App-Id", "admin")
		req.Header.Set("Dapr-Caller-Namespace", "kube-system")
		resp, err := peerClient(svidCert(good)).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("%s %d TLS %x: %s", resp.Proto, resp.StatusCode, resp.TLS.Version, body)
		}
		srvID, err := x509svid.IDFromCert(resp.TLS.PeerCertificates[0])
		if err != nil || srvID.String() != "spiffe://public/ns/default/app-b" {
			t.Errorf("server SPIFFE ID = %v (%v), want spiffe://public/ns/default/app-b", srvID, err)
		}
		e := decodeEcho(t, body)
		if got := e.Header["Dapr-Caller-App-Id"]; len(got) != 1 || got[0] != "tester" {
			t.Errorf("app saw caller %v, want [tester] from the certificate", got)
		}
		if got := e.Header["Dapr-Caller-Namespace"]; len(got) != 1 || got[0] != "default" {
			t.Errorf("app saw caller namespace %v, want [default]", got)
		}
	})

	refusals := []struct {
		name   string
		do     func() error
		reason string
	}{
		{"plaintext", func() error {
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			c := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
			return get(c, strings.Replace(url, "https://", "http://", 1))
		}, identity.ReasonPlaintext},
		{"certificate from another CA", func() error { return get(peerClient(svidCert(foreign)), url) }, identity.ReasonUnknownAuthority},
		{"expired certificate", func() error { return get(peerClient(svidCert(expired)), url) }, identity.ReasonExpired},
		{"certificate without a SPIFFE ID", func() error { return get(peerClient(noSAN), url) }, identity.ReasonNoSPIFFEID},
		{"no client certificate", func() error { return get(peerClient(nil), url) }, "other"},
	}
	for _, tt := range refusals {
		t.Run(tt.name, func(t *testing.T) {
			before := b.metric(t, "skein_identity_handshake_failures_total", `side="server"`, `reason="`+tt.reason+`"`)
			if err := tt.do(); err == nil {
				t.Fatal("call succeeded, want it refused")
			}
			waitFor(t, 5*time.Second, "the refusal to be counted", func() bool {
				return b.metric(t, "skein_identity_handshake_failures_total", `side="server"`, `reason="`+tt.reason+`"`) > before
			})
			// The sidecar counts the refusal, then logs it: wait for the line too.
			waitFor(t, 5*time.Second, "a log line naming reason "+tt.reason, func() bool {
				return strings.Contains(b.out.String(), "reason="+tt.reason)
			})
		})
	}
	t.Run("still serving", func(t *testing.T) {
		if err := get(peerClient(svidCert(good)), url); err != nil {
			t.Fatal(err)
		}
	})
}

// get GETs url as app-b's caller and fails on a transport error or non-200.
func get(c *http.Client, url string) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Host = "app-b.default"
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// certWithoutSPIFFEID returns a client certificate signed by the mesh's own
// issuer but carrying no URI SAN.
func certWithoutSPIFFEID(t *testing.T, home string) *tls.Certificate {
	t.Helper()
	issuer, err := tls.LoadX509KeyPair(filepath.Join(home, "ca", "issuer.crt"), filepath.Join(home, "ca", "issuer.key"))
	if err != nil {
		t.Fatal(err)
	}
	issuerCert, _ := x509.ParseCertificate(issuer.Certificate[0])
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "no-spiffe-id"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuerCert, key.Public(), issuer.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, issuerCert.Raw}, PrivateKey: key}
}

// TestCallerChecksServerID covers identity point 4 on the calling side: a
// registry entry that sends calls for app-c to app-b's sidecar is refused
// in the handshake (wrong_id), counted, and the call fails unreachable.
func TestCallerChecksServerID(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0)
	host, _ := os.Hostname()
	rec, _ := json.Marshal(map[string]any{
		"appID": "app-c", "namespace": "default", "pid": os.Getpid(), "hostname": host,
		"address": "127.0.0.1:" + strconv.Itoa(b.internalPort(t)),
	})
	dir := filepath.Join(m.home, "registry", "default", "app-c")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "impostor.json"), rec, 0o600); err != nil {
		t.Fatal(err)
	}
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-c", "echo"), nil))
	e := decodeError(t, resp, body)
	if resp.StatusCode != http.StatusInternalServerError || e.reason() != "APP_UNREACHABLE" {
		t.Errorf("call to the impostor: %d %s, want 500 APP_UNREACHABLE: %s", resp.StatusCode, e.reason(), body)
	}
	if n := a.metric(t, "skein_identity_handshake_failures_total", `side="client"`, `reason="wrong_id"`); n < 1 {
		t.Errorf("caller counted %v wrong_id handshakes, want at least 1", n)
	}
	if !strings.Contains(a.out.String(), "reason=wrong_id") {
		t.Error("caller logged no wrong_id refusal")
	}
	// The real app-b still answers.
	if resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil)); resp.StatusCode != http.StatusOK {
		t.Errorf("app-b: %d %s", resp.StatusCode, body)
	}
}

// TestSVIDRotationUnderLoad covers identity point 2: with a 10-second
// workload certificate TTL, 30 seconds of continuous calls see no failure
// while each sidecar renews its SVID at least twice.
func TestSVIDRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("30-second load")
	}
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: short-certs
spec:
  mtls:
    enabled: true
    workloadCertTTL: 10s
    allowedClockSkew: 1s
`), 0o600); err != nil {
		t.Fatal(err)
	}
	m := newMesh(t)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--config", cfg)
	a := m.sidecar("app-a", 0, "--config", cfg)

	var calls, failures atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(30 * time.Second)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			c := &http.Client{Timeout: 10 * time.Second}
			for time.Now().Before(stop) {
				calls.Add(1)
				resp, err := c.Get(a.invokeURL("app-b", "echo"))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						err = fmt.Errorf("status %d", resp.StatusCode)
					}
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
				}
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	wg.Wait()
	if f := failures.Load(); f != 0 {
		t.Errorf("%d of %d calls failed; first: %v", f, calls.Load(), firstErr.Load())
	}
	for _, s := range []*sidecar{a, b} {
		if n := s.metric(t, "dapr_runtime_mtls_workload_cert_rotated_total"); n < 2 {
			t.Errorf("%s renewed its SVID %v times in 30 s with a 10 s TTL, want at least 2", s.appID, n)
		}
		if n := s.metric(t, "dapr_runtime_mtls_init_total"); n != 1 {
			t.Errorf("%s mtls init total = %v, want 1", s.appID, n)
		}
		exp := s.metric(t, "skein_identity_svid_expiry_timestamp_seconds")
		if left := time.Until(time.Unix(int64(exp), 0)); left <= 0 || left > 11*time.Second {
			t.Errorf("%s SVID expires in %s, want within the 10 s TTL", s.appID, left)
		}
	}
	t.Logf("%d calls, %d failed", calls.Load(), failures.Load())
}

// TestMTLSDisabled covers identity point 6: --enable-mtls=false and
// Configuration spec.mtls.enabled: false fall back to cleartext h2c, with a
// warning at start-up.
func TestMTLSDisabled(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: no-mtls\nspec:\n  mtls:\n    enabled: false\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"flag", []string{"--enable-mtls=false"}},
		{"configuration", []string{"--config", cfg}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			bPort, _ := m.app("b")
			b := m.sidecar("app-b", bPort, tt.args...)
			a := m.sidecar("app-a", 0, tt.args...)
			if resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil)); resp.StatusCode != http.StatusOK {
				t.Fatalf("call: %d %s", resp.StatusCode, body)
			}
			for _, s := range []*sidecar{a, b} {
				if !strings.Contains(s.out.String(), "mTLS between sidecars is disabled") {
					t.Errorf("%s logged no warning", s.appID)
				}
			}
			var p http.Protocols
			p.SetUnencryptedHTTP2(true)
			c := &http.Client{Transport: &http.Transport{Protocols: &p}, Timeout: 5 * time.Second}
			req := newRequest(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(b.internalPort(t))+"/direct", nil)
			req.Host = "app-b.default"
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("h2c to the peer port: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/2.0" {
				t.Errorf("h2c to the peer port: %s %d", resp.Proto, resp.StatusCode)
			}
		})
	}
}

// TestCACommands covers identity point 1: skein ca init, show and rotate,
// file modes, and a root rotation during which sidecars on the old and the
// new root keep calling each other.
func TestCACommands(t *testing.T) {
	m := newMesh(t)
	ca := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(bin.skein, append([]string{"ca"}, args...)...)
		cmd.Env = append(os.Environ(), "SKEIN_HOME="+m.home)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skein ca %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	ca("init", "--trust-domain", "example.org")
	dir := filepath.Join(m.home, "ca")
	for name, want := range map[string]os.FileMode{".": 0o700 | os.ModeDir, "root.key": 0o600, "issuer.key": 0o600} {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil || st.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, st.Mode(), err, want)
		}
	}
	show := ca("show")
	for _, want := range []string{"trust domain: example.org", "issuer:", "expires", "root 0:", "BEGIN CERTIFICATE"} {
		if !strings.Contains(show, want) {
			t.Errorf("ca show lacks %q:\n%s", want, show)
		}
	}
	issuerLine := func(s string) string {
		for _, l := range strings.Split(s, "\n") {
			if strings.HasPrefix(l, "issuer:") {
				return l
			}
		}
		return ""
	}
	ca("rotate")
	if after := ca("show"); issuerLine(after) == issuerLine(show) {
		t.Error("rotate kept the issuer")
	}

	// Sidecars take the trust domain of the existing CA from the Configuration.
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	_ = os.WriteFile(cfg, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: td\nspec:\n  accessControl:\n    trustDomain: example.org\n"), 0o600)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--config", cfg) // SVID from the first root
	ca("rotate", "--root")
	if n := strings.Count(ca("show"), "root "); n != 2 {
		t.Errorf("after a root rotation show lists %d roots, want 2 (old one in its overlap)", n)
	}
	a := m.sidecar("app-a", 0, "--config", cfg) // SVID from the new root
	waitFor(t, 10*time.Second, "calls across the root rotation", func() bool {
		resp, err := http.Get(a.invokeURL("app-b", "echo"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	// app-b noticed the rotation on disk and moved to the new root at once.
	if !strings.Contains(b.out.String(), "ca changed on disk") {
		t.Error("app-b did not renew its SVID after the root rotation")
	}
}
