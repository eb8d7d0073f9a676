package proxy

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
)

// newAppHealth builds the checker of the local app at addr
// (--enable-app-health-check): nil when checks are off or there is no app
// channel, as in Dapr. HTTP apps are probed through the app transport rt;
// gRPC apps on a connection of their own.
func newAppHealth(opts Options, addr string, rt http.RoundTripper, reg prometheus.Registerer, log *slog.Logger) (*apphealth.Checker, error) {
	if opts.AppHealth == nil || opts.AppPort == 0 {
		return nil, nil
	}
	cfg := opts.AppHealth.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("app health check: %w", err)
	}
	m, err := apphealth.NewMetrics(reg, opts.AppID)
	if err != nil {
		return nil, err
	}
	var probe apphealth.Prober
	switch opts.AppProtocol {
	case "grpc", "grpcs":
		var creds credentials.TransportCredentials = insecure.NewCredentials()
		if opts.AppProtocol == "grpcs" {
			creds = credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}) // #nosec G402 -- Dapr does not verify its own app
		}
		if probe, err = apphealth.NewGRPCProbe(addr, creds, cfg.Interval, m); err != nil {
			return nil, fmt.Errorf("app health check: %w", err)
		}
	default:
		scheme := "http"
		if opts.AppProtocol == "https" {
			scheme = "https"
		}
		probe = apphealth.NewHTTPProbe(scheme+"://"+addr+cfg.Path, rt, m)
	}
	return apphealth.New(cfg, probe, m, log), nil
}

// advertise keeps this instance's record in the registry, marked with the
// app's health (--enable-app-health-check), beyond Dapr: callers pick an
// unhealthy instance only when no healthy one is left, and then get Dapr's
// "app is not in a healthy state" from this sidecar rather than no
// instance at all. It renews lease every heartbeat, writes the record
// again whenever the app's health changes (a failed write is retried
// every heartbeat), and releases it when stop closes.
func (s *Sidecar) advertise(in discovery.Instance, lease *discovery.Lease, stop <-chan struct{}) {
	t := time.NewTicker(discovery.HeartbeatInterval)
	defer t.Stop()
	follow := func() {
		unhealthy := !s.health.Healthy()
		if unhealthy == in.Unhealthy {
			return
		}
		in.Unhealthy = unhealthy
		l, err := s.registry.Register(in)
		if err != nil {
			in.Unhealthy = !unhealthy // try again at the next heartbeat
			s.log.Warn("registry update failed; retrying", "err", err)
			return
		}
		lease = l
		if unhealthy {
			s.log.Warn("instance marked unhealthy in discovery: callers prefer other instances")
		} else {
			s.log.Info("instance marked healthy in discovery")
		}
	}
	for {
		select {
		case <-stop:
			if err := lease.Release(); err != nil {
				s.log.Warn("deregister failed", "err", err)
			}
			return
		case <-s.health.Changed():
			follow()
		case <-t.C:
			if err := lease.Renew(); err != nil {
				s.log.Warn("registry renew failed", "err", err)
			}
			follow()
		}
	}
}

// appHealthStatus is appConnectionProperties.health of /v1.0/metadata:
// Dapr's fields (pkg/api/http/metadata.go; the path for HTTP apps only)
// plus Skein's status, "healthy" or "unhealthy".
type appHealthStatus struct {
	HealthCheckPath     string `json:"healthCheckPath,omitempty"`
	HealthProbeInterval string `json:"healthProbeInterval,omitempty"`
	HealthProbeTimeout  string `json:"healthProbeTimeout,omitempty"`
	HealthThreshold     int    `json:"healthThreshold,omitempty"`
	Status              string `json:"status"`
}

// appHealthMetadata reports the checks; nil without them.
func (s *Sidecar) appHealthMetadata() *appHealthStatus {
	if s.health == nil {
		return nil
	}
	cfg := s.health.Config()
	h := &appHealthStatus{
		HealthProbeInterval: cfg.Interval.String(),
		HealthProbeTimeout:  cfg.Timeout.String(),
		HealthThreshold:     cfg.Threshold,
		Status:              "unhealthy",
	}
	if s.opts.AppProtocol != "grpc" && s.opts.AppProtocol != "grpcs" {
		h.HealthCheckPath = cfg.Path
	}
	if s.health.Healthy() {
		h.Status = "healthy"
	}
	return h
}

// grpcAppHealth is the same for the gRPC API's GetMetadata, without the
// status Dapr's message has no field for.
func (s *Sidecar) grpcAppHealth() *daprgrpc.AppHealth {
	h := s.appHealthMetadata()
	if h == nil {
		return nil
	}
	return &daprgrpc.AppHealth{Path: h.HealthCheckPath, Interval: h.HealthProbeInterval, Timeout: h.HealthProbeTimeout, Threshold: h.HealthThreshold}
}
