package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy"
)

// mtlsSpec is the part of a Dapr Configuration identity reads: spec.mtls,
// and the trust domain from spec.accessControl (contract §7.2, §4.1).
type mtlsSpec struct {
	MTLS struct {
		Enabled          *bool  `yaml:"enabled"`
		WorkloadCertTTL  string `yaml:"workloadCertTTL"`
		AllowedClockSkew string `yaml:"allowedClockSkew"`
		// PeerTransport (Skein's extension): h1, h2 or h3.
		PeerTransport string `yaml:"peerTransport"`
	} `yaml:"mtls"`
	AccessControl struct {
		TrustDomain string `yaml:"trustDomain"`
	} `yaml:"accessControl"`
}

// mtlsSettings are the resolved identity settings.
type mtlsSettings struct {
	enabled     bool
	trustDomain spiffeid.TrustDomain
	ttl, skew   time.Duration
	transport   string // proxy.PeerHTTP1, PeerHTTP2 or PeerHTTP3
}

// resolveMTLS combines --enable-mtls and --peer-transport with the
// Configuration: mTLS is on unless either turns it off; the flag's
// transport wins over the Configuration's.
func resolveMTLS(cfg proxy.Config, flagEnabled bool, flagTransport string) (mtlsSettings, error) {
	var spec mtlsSpec
	if c := cfg.Configuration; c != nil && c.Spec.Kind != 0 {
		if err := c.Spec.Decode(&spec); err != nil {
			return mtlsSettings{}, fmt.Errorf("%s: spec: %w", c.File, err)
		}
	}
	st := mtlsSettings{
		enabled: flagEnabled && (spec.MTLS.Enabled == nil || *spec.MTLS.Enabled),
		ttl:     identity.DefaultWorkloadCertTTL,
		skew:    identity.DefaultAllowedClockSkew,
	}
	var err error
	if st.ttl, err = durationOr(spec.MTLS.WorkloadCertTTL, st.ttl); err != nil {
		return st, fmt.Errorf("spec.mtls.workloadCertTTL: %w", err)
	}
	if st.skew, err = durationOr(spec.MTLS.AllowedClockSkew, st.skew); err != nil {
		return st, fmt.Errorf("spec.mtls.allowedClockSkew: %w", err)
	}
	if st.ttl < time.Second {
		return st, fmt.Errorf("spec.mtls.workloadCertTTL: %s is shorter than a second", st.ttl)
	}
	st.transport = flagTransport
	if st.transport == "" {
		st.transport = spec.MTLS.PeerTransport
	}
	switch st.transport {
	case "", proxy.PeerHTTP1:
		st.transport = proxy.PeerHTTP1
	case proxy.PeerHTTP2:
	case proxy.PeerHTTP3:
		if !st.enabled {
			return st, fmt.Errorf("peer transport h3 needs mTLS (QUIC is always TLS)")
		}
	default:
		return st, fmt.Errorf("peer transport %q: want h1, h2 or h3", st.transport)
	}
	td := spec.AccessControl.TrustDomain
	if td == "" {
		td = "public"
	}
	if st.trustDomain, err = spiffeid.TrustDomainFromString(td); err != nil {
		return st, fmt.Errorf("spec.accessControl.trustDomain: %w", err)
	}
	return st, nil
}

func durationOr(s string, def time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("invalid duration %q", s)
	}
	return d, nil
}

// newIdentity returns the sidecar's SVID source: the SPIFFE Workload API
// when a socket is given, else the control plane's CA with a control plane
// address and a join token or a Kubernetes service-account token (both
// sent when both are given: each kind of control plane reads its own),
// else the embedded CA under $SKEIN_HOME/ca.
func newIdentity(st mtlsSettings, opts proxy.Options, socket string, cp controlPlaneFlags, home string, reg prometheus.Registerer, log *slog.Logger) (identity.Source, *identity.Metrics, error) {
	m := identity.NewMetrics(reg, opts.AppID)
	id, err := identity.AppID(st.trustDomain, opts.Namespace, opts.AppID)
	if err != nil {
		return nil, nil, err
	}
	if socket != "" {
		src, err := identity.NewWorkloadSource(context.Background(), socket, id, 30*time.Second, m, log)
		return src, m, err
	}
	if cp.address != "" && (cp.joinToken() != "" || cp.kubeTokenFile != "") {
		pinned, err := cp.pinnedBundle(st.trustDomain)
		if err != nil {
			return nil, nil, err
		}
		src, err := identity.NewControlPlaneSource(context.Background(), identity.ControlPlaneOptions{
			Address: cp.address, Token: cp.joinToken(), KubernetesTokenFile: cp.kubeTokenFile, Bundle: pinned,
		}, id, m, log)
		return src, m, err
	}
	dir := filepath.Join(home, "ca")
	if _, err := identity.LoadOrInit(dir, st.trustDomain, nil); err != nil {
		return nil, nil, err
	}
	src, err := identity.NewEmbeddedSource(dir, id, st.ttl, st.skew, m, log)
	return src, m, err
}

// cmdCA manages the embedded trust domain under $SKEIN_HOME/ca.
func cmdCA(args []string, stdout, stderr io.Writer) int {
	dir := filepath.Join(skeinHome(), "ca")
	if len(args) == 0 {
		fmt.Fprintln(stderr, "skein ca: want init [--trust-domain TD], show, or rotate [--root]")
		return 2
	}
	switch args[0] {
	case "init":
		td := "public"
		if len(args) == 3 && args[1] == "--trust-domain" {
			td = args[2]
		} else if len(args) != 1 {
			fmt.Fprintln(stderr, "skein ca init: usage: skein ca init [--trust-domain TD]")
			return 2
		}
		t, err := spiffeid.TrustDomainFromString(td)
		if err != nil {
			fmt.Fprintf(stderr, "skein ca init: --trust-domain: %v\n", err)
			return 2
		}
		ca, err := identity.LoadOrInit(dir, t, nil)
		if err != nil {
			fmt.Fprintf(stderr, "skein ca init: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "trust domain %s in %s\n", ca.TrustDomain(), dir)
		return 0
	case "show":
		ca, err := identity.Load(dir, nil)
		if err != nil {
			fmt.Fprintf(stderr, "skein ca show: %v (run skein ca init)\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "trust domain: %s\ndirectory:    %s\n", ca.TrustDomain(), dir)
		iss := ca.Issuer()
		fmt.Fprintf(stdout, "issuer:       serial %x, expires %s\n", iss.SerialNumber, iss.NotAfter.UTC().Format(time.RFC3339))
		for i, r := range ca.Roots() {
			fmt.Fprintf(stdout, "root %d:       serial %x, expires %s\n", i, r.SerialNumber, r.NotAfter.UTC().Format(time.RFC3339))
		}
		b, err := ca.Bundle().Marshal()
		if err != nil {
			fmt.Fprintf(stderr, "skein ca show: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "bundle:\n%s", b)
		return 0
	case "rotate":
		root := len(args) == 2 && args[1] == "--root"
		if len(args) > 2 || (len(args) == 2 && !root) {
			fmt.Fprintln(stderr, "skein ca rotate: usage: skein ca rotate [--root]")
			return 2
		}
		ca, err := identity.Load(dir, nil)
		if err != nil {
			fmt.Fprintf(stderr, "skein ca rotate: %v\n", err)
			return 1
		}
		if root {
			err = ca.RotateRoot()
		} else {
			err = ca.RotateIssuer()
		}
		if err != nil {
			fmt.Fprintf(stderr, "skein ca rotate: %v\n", err)
			return 1
		}
		what := "issuer"
		if root {
			what = fmt.Sprintf("root and issuer; the old root stays trusted for %s", identity.RootOverlap)
		}
		fmt.Fprintf(stdout, "rotated the %s; sidecars pick it up at their next renewal\n", what)
		return 0
	}
	fmt.Fprintf(stderr, "skein ca: unknown command %q\n", args[0])
	return 2
}

// spiffeSocket returns the Workload API address from the flag or
// SPIFFE_ENDPOINT_SOCKET.
func spiffeSocket(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	return os.Getenv("SPIFFE_ENDPOINT_SOCKET")
}
