package identity

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// retryInterval is how soon a failed renewal is tried again (contract §7.2).
const retryInterval = 10 * time.Second

// EmbeddedSource is an SVID and bundle source backed by the embedded CA:
// it mints an SVID for one SPIFFE ID and renews it at half its lifetime,
// reloading the CA from disk each time so `skein ca rotate` run by another
// process reaches it. It is safe for concurrent use; Run owns its goroutine.
type EmbeddedSource struct {
	renewing
	dir       string
	ttl, skew time.Duration
	now       func() time.Time
}

// renewing is what the sources that renew their own SVID (the embedded
// CA's and the control plane's) share: the current SVID and bundle, and
// how a renewal is recorded.
type renewing struct {
	id      spiffeid.ID
	log     *slog.Logger
	metrics *Metrics

	svid   atomic.Pointer[x509svid.SVID]
	bundle atomic.Pointer[x509bundle.Bundle]
}

// GetX509SVID implements x509svid.Source.
func (r *renewing) GetX509SVID() (*x509svid.SVID, error) { return r.svid.Load(), nil }

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (r *renewing) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b := r.bundle.Load()
	if b.TrustDomain() != td {
		return nil, fmt.Errorf("no bundle for trust domain %q", td)
	}
	return b, nil
}

// renewed records the outcome err of a renewal and returns how long until
// the next: after a failure (counted with reason), retryInterval; after a
// success (logged as msg), until().
func (r *renewing) renewed(err error, reason, msg string, until func() time.Duration) time.Duration {
	if err != nil {
		r.metrics.RotateFailed(reason)
		r.log.Error("svid renewal failed", "spiffe_id", r.id.String(), "err", err)
		return retryInterval
	}
	sv := r.svid.Load()
	r.metrics.Rotated(sv)
	r.log.Info(msg, "spiffe_id", r.id.String(), "expires", sv.Certificates[0].NotAfter)
	return until()
}

// NewEmbeddedSource loads the CA in dir and mints the first SVID for id,
// valid for ttl and back-dated by skew.
func NewEmbeddedSource(dir string, id spiffeid.ID, ttl, skew time.Duration, m *Metrics, log *slog.Logger) (*EmbeddedSource, error) {
	s := &EmbeddedSource{renewing: renewing{id: id, log: log.With("component", "identity"), metrics: m}, dir: dir, ttl: ttl, skew: skew, now: time.Now}
	if err := s.renew(); err != nil {
		m.InitFailed("sign")
		return nil, err
	}
	m.Initialised(s.svid.Load())
	return s, nil
}

func (s *EmbeddedSource) renew() error {
	ca, err := Load(s.dir, s.now)
	if err != nil {
		return fmt.Errorf("load ca: %w", err)
	}
	sv, err := ca.MintSVID(s.id, s.ttl, s.skew)
	if err != nil {
		return err
	}
	s.bundle.Store(ca.Bundle())
	s.svid.Store(sv)
	return nil
}

// caPollInterval is how often the CA directory is checked for a rotation
// made by `skein ca rotate` in another process.
const caPollInterval = 2 * time.Second

// Run renews the SVID at half its lifetime, and at once when the CA's
// issuer or roots change on disk, until ctx ends; a failed renewal is
// retried every 10 s while the current SVID is still valid.
func (s *EmbeddedSource) Run(ctx context.Context) {
	t := time.NewTimer(s.untilRenewal())
	defer t.Stop()
	poll := time.NewTicker(caPollInterval)
	defer poll.Stop()
	stamp := s.caStamp()
	for {
		select {
		case <-ctx.Done():
			return
		case <-poll.C:
			if st := s.caStamp(); st != stamp {
				stamp = st
				s.log.Info("ca changed on disk, renewing", "spiffe_id", s.id.String())
				t.Stop() // Go 1.23+ timers: no stale tick to drain
			} else {
				continue
			}
		case <-t.C:
		}
		t.Reset(s.renewed(s.renew(), "sign", "svid renewed", s.untilRenewal))
	}
}

// untilRenewal is the time left until half the SVID's lifetime has passed
// (measured from issuance, not from the back-dated NotBefore).
func (s *EmbeddedSource) untilRenewal() time.Duration {
	leaf := s.svid.Load().Certificates[0]
	issued := leaf.NotBefore.Add(s.skew)
	d := issued.Add(leaf.NotAfter.Sub(issued) / 2).Sub(s.now())
	return max(d, 0)
}

// caStamp summarises the modification times of the CA's certificate files.
func (s *EmbeddedSource) caStamp() string {
	var b strings.Builder
	for _, f := range []string{fileRoot, fileIssuer, fileState} {
		if st, err := os.Stat(filepath.Join(s.dir, f)); err == nil {
			b.WriteString(st.ModTime().String())
		}
	}
	return b.String()
}
