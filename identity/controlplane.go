package identity

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// SignPath is the control plane's signing endpoint: POST a SignRequest as
// JSON with "Authorization: Bearer <join token>" (or, for a control plane
// on Kubernetes, the request's KubernetesToken), get a SignResponse (200)
// or a SignError (400 malformed, 401 no accepted credential, 403 SPIFFE
// ID or a refused service-account token, 503 the token could not be
// checked).
const SignPath = "/v1/svid"

// SignRequest asks the control plane to sign an SVID.
type SignRequest struct {
	// SPIFFEID is the ID asked for: spiffe://<td>/ns/<namespace>/<app-id>.
	SPIFFEID string `json:"spiffeId"`
	// CSR is a PEM "CERTIFICATE REQUEST" whose only URI SAN is SPIFFEID.
	CSR string `json:"csr"`
	// KubernetesToken is the pod's projected service-account token
	// (audience skein.io/control-plane): a control plane on Kubernetes signs
	// only for the app the pod it is bound to runs, as TokenReview proves
	// it. Empty outside Kubernetes; other control planes ignore it.
	KubernetesToken string `json:"kubernetesToken,omitempty"`
}

// SignResponse is a signed SVID and the trust bundle.
type SignResponse struct {
	// Chain is PEM certificates, leaf first, then the issuer.
	Chain string `json:"chain"`
	// Bundle is the trust domain's roots, PEM.
	Bundle string `json:"bundle"`
	// TrustDomain is the bundle's trust domain.
	TrustDomain string `json:"trustDomain"`
}

// SignError is the body of a refused request.
type SignError struct {
	Error string `json:"error"`
}

// ControlPlaneOptions say how to reach the control plane's CA.
type ControlPlaneOptions struct {
	// Address is the control plane's host:port, or several
	// comma-separated (replicas sharing one CA): each renewal asks the
	// one that answered last, then the others in turn.
	Address string
	// Token is a join token the control plane accepts.
	Token string
	// KubernetesTokenFile is the pod's projected service-account token
	// file, sent with every signing request (read again each time: the
	// kubelet rotates it). A control plane on Kubernetes needs it; a join
	// token alone is refused there unless it allows join tokens.
	KubernetesTokenFile string
	// Bundle, when set, pins the control plane's trust domain roots
	// (--control-plane-ca-file): its serving certificate must chain to them.
	// Nil trusts the first server on first use: the answer's bundle must
	// verify the certificate the server presented, and is pinned from then
	// on. An active attacker on that first connection would learn the token.
	Bundle *x509bundle.Bundle
	// Timeout bounds one signing request; 0 means 10 s.
	Timeout time.Duration
}

// ControlPlaneSource is an SVID and bundle source backed by `skein
// control-plane`'s CA, as istiod's is for Istio: the key is generated here
// and never leaves the process; a CSR and the join token (or, in a pod, its
// service-account token) go to the control plane, which returns the SVID
// and the trust bundle. It renews at half the
// SVID's lifetime and retries a failed renewal every 10 s while the SVID is
// valid. Safe for concurrent use; Run owns its goroutine.
type ControlPlaneSource struct {
	renewing
	opts ControlPlaneOptions
	now  func() time.Time

	pinned atomic.Pointer[x509bundle.Bundle] // verifies the control plane
	// received is when the current SVID arrived (Unix nanoseconds).
	received atomic.Int64
	// good is the index in Address of the replica that signed last.
	good atomic.Int32
}

// NewControlPlaneSource gets the first SVID for id from the control plane.
func NewControlPlaneSource(ctx context.Context, opts ControlPlaneOptions, id spiffeid.ID, m *Metrics, log *slog.Logger) (*ControlPlaneSource, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Second
	}
	if opts.Token == "" && opts.KubernetesTokenFile == "" {
		return nil, errors.New("control plane: a join token (--join-token or SKEIN_JOIN_TOKEN) or a Kubernetes service-account token (--kubernetes-token-file) is required")
	}
	s := &ControlPlaneSource{renewing: renewing{id: id, log: log.With("component", "identity"), metrics: m}, opts: opts, now: time.Now}
	if opts.Bundle != nil {
		if opts.Bundle.TrustDomain() != id.TrustDomain() {
			return nil, fmt.Errorf("control plane ca file: trust domain %s, want %s", opts.Bundle.TrustDomain(), id.TrustDomain())
		}
		s.pinned.Store(opts.Bundle)
	}
	if err := s.renew(ctx); err != nil {
		m.InitFailed("control_plane")
		return nil, err
	}
	m.Initialised(s.svid.Load())
	return s, nil
}

// ControlPlaneBundle returns the roots that verify the control plane: the
// pinned or last received bundle. Other clients of the control plane (the
// instance registrar) share it.
func (s *ControlPlaneSource) ControlPlaneBundle() *x509bundle.Bundle { return s.pinned.Load() }

// Run renews the SVID at half its lifetime until ctx ends.
func (s *ControlPlaneSource) Run(ctx context.Context) {
	t := time.NewTimer(s.untilRenewal())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(s.renewed(s.renew(ctx), "control_plane", "svid renewed by the control plane", s.untilRenewal))
	}
}

// untilRenewal is the time left until half the SVID's remaining lifetime
// at receipt has passed (NotBefore is back-dated for clock skew, so it
// does not say when the SVID was issued).
func (s *ControlPlaneSource) untilRenewal() time.Duration {
	leaf := s.svid.Load().Certificates[0]
	got := time.Unix(0, s.received.Load())
	return max(got.Add(leaf.NotAfter.Sub(got)/2).Sub(s.now()), 0)
}

// renew gets a new SVID from the first control plane replica that gives
// one, starting with the last that did.
func (s *ControlPlaneSource) renew(ctx context.Context) error {
	addrs := strings.Split(s.opts.Address, ",")
	first := int(s.good.Load())
	var errs []error
	for i := range addrs {
		n := (first + i) % len(addrs)
		err := s.renewFrom(ctx, strings.TrimSpace(addrs[n]))
		if err == nil {
			s.good.Store(int32(n))
			return nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// renewFrom generates a key, sends its CSR to the control plane at addr,
// and stores the SVID and bundle.
func (s *ControlPlaneSource) renewFrom(ctx context.Context, addr string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("svid key: %w", err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{s.id.URL()}}, key)
	if err != nil {
		return fmt.Errorf("csr: %w", err)
	}
	sr := SignRequest{SPIFFEID: s.id.String(), CSR: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))}
	if f := s.opts.KubernetesTokenFile; f != "" {
		if sr.KubernetesToken, err = ReadTokenFile(f); err != nil {
			return err
		}
	}
	body, _ := json.Marshal(sr)
	ctx, cancel := context.WithTimeout(ctx, s.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+SignPath, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("control plane %s: %w", addr, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if s.opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.opts.Token)
	}
	// One connection per signing, so what the server proved is what this
	// answer came over (trust on first use checks it below).
	tr := &http.Transport{TLSClientConfig: ControlPlaneClientConfig(s.pinned.Load, s.id.TrustDomain()), ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("control plane %s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e SignError
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("control plane %s refused to sign %s: %s: %s", addr, s.id, resp.Status, e.Error)
	}
	var ans SignResponse
	if err := json.Unmarshal(b, &ans); err != nil {
		return fmt.Errorf("control plane %s: answer: %w", addr, err)
	}
	certs, err := ParseCertsPEM([]byte(ans.Chain))
	if err != nil {
		return fmt.Errorf("control plane %s: chain: %w", addr, err)
	}
	roots, err := ParseCertsPEM([]byte(ans.Bundle))
	if err != nil {
		return fmt.Errorf("control plane %s: bundle: %w", addr, err)
	}
	if ans.TrustDomain != s.id.TrustDomain().Name() {
		return fmt.Errorf("control plane %s serves trust domain %q, want %q", addr, ans.TrustDomain, s.id.TrustDomain().Name())
	}
	bundle := x509bundle.FromX509Authorities(s.id.TrustDomain(), roots)
	if s.pinned.Load() == nil {
		// Trust on first use: the server must hold a certificate of the CA
		// whose bundle it just handed out.
		if resp.TLS == nil {
			return fmt.Errorf("control plane %s: not TLS", addr)
		}
		if err := VerifyControlPlane(resp.TLS.PeerCertificates, bundle); err != nil {
			return fmt.Errorf("control plane %s: first use: %w", addr, err)
		}
		s.log.Warn("control plane trusted on first use (pin it with --control-plane-ca-file)", "address", addr, "trust_domain", ans.TrustDomain)
	}
	sv := &x509svid.SVID{ID: s.id, Certificates: certs, PrivateKey: key}
	if _, _, err := x509svid.Verify(certs, bundle); err != nil {
		return fmt.Errorf("control plane %s: svid does not verify against its bundle: %w", addr, err)
	}
	if id, err := x509svid.IDFromCert(certs[0]); err != nil || id != s.id {
		return fmt.Errorf("control plane %s: svid is for %v, want %s", addr, id, s.id)
	}
	if !publicKeyMatches(certs[0], key) {
		return fmt.Errorf("control plane %s: svid does not certify our key", addr)
	}
	s.pinned.Store(bundle)
	s.bundle.Store(bundle)
	s.received.Store(s.now().UnixNano())
	s.svid.Store(sv)
	return nil
}

// maxTokenSize bounds a token file: a projected service-account token is
// a JWT of about a kilobyte.
const maxTokenSize = 64 << 10

// ReadTokenFile reads a token file (a projected service-account token),
// without surrounding white space. A missing, empty or oversized file is an
// error naming it; the token itself never appears in an error.
func ReadTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("kubernetes token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTokenSize+1))
	if err != nil {
		return "", fmt.Errorf("kubernetes token %s: %w", path, err)
	}
	if len(b) > maxTokenSize {
		return "", fmt.Errorf("kubernetes token %s: larger than %d bytes", path, maxTokenSize)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("kubernetes token %s: empty", path)
	}
	return tok, nil
}

func publicKeyMatches(c *x509.Certificate, key *ecdsa.PrivateKey) bool {
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	return ok && pub.Equal(&key.PublicKey)
}

// ControlPlaneClientConfig is the TLS of a client of the control plane:
// its serving certificate must chain to the bundle pinned() returns and
// carry ControlPlaneID of td. While pinned() returns nil (trust on first
// use), any certificate is accepted and the caller must verify it later.
func ControlPlaneClientConfig(pinned func() *x509bundle.Bundle, td spiffeid.TrustDomain) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified below by SPIFFE ID, not host name
		VerifyConnection: func(cs tls.ConnectionState) error {
			b := pinned()
			if b == nil {
				return nil
			}
			if b.TrustDomain() != td {
				return fmt.Errorf("pinned bundle is for %s, want %s", b.TrustDomain(), td)
			}
			return VerifyControlPlane(cs.PeerCertificates, b)
		},
	}
}

// VerifyControlPlane checks that certs (leaf first) chain to bundle and
// name the control plane of the bundle's trust domain.
func VerifyControlPlane(certs []*x509.Certificate, bundle *x509bundle.Bundle) error {
	if len(certs) == 0 {
		return errors.New("no server certificate")
	}
	id, _, err := x509svid.Verify(certs, bundle)
	if err != nil {
		return fmt.Errorf("control plane certificate: %w", err)
	}
	if want := ControlPlaneID(bundle.TrustDomain()); id != want {
		return fmt.Errorf("control plane certificate is %s, want %s", id, want)
	}
	return nil
}

// ParseCertsPEM reads every PEM certificate in b, in order (the inverse
// of CertsPEM; SignResponse's Chain and Bundle); other blocks are skipped.
func ParseCertsPEM(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM certificate")
	}
	return out, nil
}

// CertsPEM encodes certificates as PEM, in order.
func CertsPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(certPEM(c))
	}
	return b.Bytes()
}

// LoadBundleFile reads a PEM file of roots for trust domain td (the
// control plane's CA, --control-plane-ca-file).
func LoadBundleFile(path string, td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	return x509bundle.Load(td, path)
}
