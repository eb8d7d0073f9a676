package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"google.golang.org/grpc/credentials"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/xds"
)

// controlPlaneSpec is the Skein extension spec.controlPlane of the Dapr
// Configuration: where the xDS control plane is. The flags win. It is read
// at start-up only; a change needs a restart.
type controlPlaneSpec struct {
	ControlPlane struct {
		Address string `yaml:"address"`
		Mode    string `yaml:"mode"`
	} `yaml:"controlPlane"`
}

// checkXDS validates --control-plane-address and --xds-mode.
func (f *sidecarFlags) checkXDS() error {
	var errs []error
	if f.controlPlaneAddress != "" {
		if err := checkAddresses(f.controlPlaneAddress); err != nil {
			errs = append(errs, fmt.Errorf("--control-plane-address: %w", err))
		}
	}
	switch f.xdsMode {
	case "", xds.ModeSotW, xds.ModeDelta:
	default:
		errs = append(errs, fmt.Errorf("--xds-mode: %q: want %s or %s", f.xdsMode, xds.ModeSotW, xds.ModeDelta))
	}
	return errors.Join(errs...)
}

// checkAddresses checks a control plane address: HOST:PORT, or several
// comma-separated (replicas, tried in turn when one fails).
func checkAddresses(list string) error {
	for a := range strings.SplitSeq(list, ",") {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(a)); err != nil {
			return fmt.Errorf("%q: want HOST:PORT, or several comma-separated", a)
		}
	}
	return nil
}

// controlPlaneFromConfig fills --control-plane-address and --xds-mode left
// empty from the Configuration's spec.controlPlane.
func (f *sidecarFlags) controlPlaneFromConfig(cfg proxy.Config) error {
	c := cfg.Configuration
	if c == nil || c.Spec.Kind == 0 {
		return nil
	}
	var spec controlPlaneSpec
	if err := c.Spec.Decode(&spec); err != nil {
		return fmt.Errorf("%s: spec: %w", c.File, err)
	}
	cp := spec.ControlPlane
	if f.controlPlaneAddress == "" && cp.Address != "" {
		if err := checkAddresses(cp.Address); err != nil {
			return fmt.Errorf("%s: spec.controlPlane.address: %w", c.File, err)
		}
		f.controlPlaneAddress = cp.Address
	}
	if f.xdsMode == "" && cp.Mode != "" {
		if cp.Mode != xds.ModeSotW && cp.Mode != xds.ModeDelta {
			return fmt.Errorf("%s: spec.controlPlane.mode: %q: want %s or %s", c.File, cp.Mode, xds.ModeSotW, xds.ModeDelta)
		}
		f.xdsMode = cp.Mode
	}
	return nil
}

// xdsSource returns the discovery source of a sidecar: with a control
// plane, xDS EDS for the apps it has Clusters for and the embedded
// registry for the others; without, the registry alone (eds nil).
func xdsSource(f *sidecarFlags, reg *discovery.Registry) (discovery.Source, *xds.Endpoints) {
	if f.controlPlaneAddress == "" {
		return reg, nil
	}
	eds := xds.NewEndpoints(reg)
	return eds, eds
}

// attachXDS makes sc an xDS client of the control plane (no-op without
// one). The ADS connection uses TLS when the control plane's roots are
// known (its CA gave this sidecar its SVID, or --control-plane-ca-file),
// cleartext otherwise: xDS resources carry no secrets.
func attachXDS(f *sidecarFlags, eds *xds.Endpoints, sc *proxy.Sidecar, opts proxy.Options, reg prometheus.Registerer, log *slog.Logger) error {
	if f.controlPlaneAddress == "" {
		return nil
	}
	xo := xds.Options{Address: f.controlPlaneAddress, Mode: f.xdsMode, AppID: opts.AppID, Namespace: opts.Namespace}
	if opts.Identity != nil {
		if sv, err := opts.Identity.GetX509SVID(); err == nil && sv != nil {
			xo.SPIFFEID = sv.ID.String()
		}
	} else if id, err := identity.AppID(opts.TrustDomain, opts.Namespace, opts.AppID); err == nil && !opts.TrustDomain.IsZero() {
		xo.SPIFFEID = id.String()
	}
	var tlsCfg *tls.Config
	if cps, ok := opts.Identity.(*identity.ControlPlaneSource); ok {
		tlsCfg = identity.ControlPlaneClientConfig(cps.ControlPlaneBundle, opts.TrustDomain)
	} else if f.controlPlaneCAFile != "" {
		b, err := identity.LoadBundleFile(f.controlPlaneCAFile, opts.TrustDomain)
		if err != nil {
			return fmt.Errorf("--control-plane-ca-file: %w", err)
		}
		tlsCfg = identity.ControlPlaneClientConfig(func() *x509bundle.Bundle { return b }, opts.TrustDomain)
	}
	if tlsCfg != nil {
		xo.Credentials = credentials.NewTLS(tlsCfg)
	}
	c, err := xds.New(xo, sc, eds, reg, log)
	if err != nil {
		return err
	}
	sc.SetControlPlane(c)
	log.Info("xds client configured", "server", f.controlPlaneAddress, "mode", xo.Mode, "node", c.NodeID(), "tls", tlsCfg != nil)
	return nil
}
