package controlplane

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
)

// Registrar registers a sidecar's instance with the control plane; it is
// the proxy.Registrar of a sidecar started with --control-plane-address.
// Each renewal re-sends the whole record, so a restarted control plane
// learns the instance again within one heartbeat.
type Registrar struct {
	addr, token string
	client      *http.Client
	good        atomic.Int32 // index in addr of the replica that answered last
}

// NewRegistrar returns a registrar for the control plane at addr (host:port,
// or several comma-separated: replicas, tried in turn) presenting token. tlsConfig verifies the control plane; see
// identity.ControlPlaneClientConfig.
func NewRegistrar(addr, token string, tlsConfig *tls.Config) *Registrar {
	return &Registrar{addr: addr, token: token, client: &http.Client{
		Timeout:   5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true, IdleConnTimeout: 90 * time.Second},
	}}
}

// Register registers in and returns the lease that renews it every
// discovery.HeartbeatInterval and removes it on release.
func (r *Registrar) Register(in discovery.Instance) (*discovery.Lease, error) {
	if err := r.send(http.MethodPut, in); err != nil {
		return nil, err
	}
	return discovery.NewLease(
		func() error { return r.send(http.MethodPut, in) },
		func() error { return r.send(http.MethodDelete, in) },
	), nil
}

// send sends the record to the replica that took the last one, else to
// the others in turn.
func (r *Registrar) send(method string, in discovery.Instance) error {
	addrs := strings.Split(r.addr, ",")
	first := int(r.good.Load())
	var errs []error
	for i := range addrs {
		n := (first + i) % len(addrs)
		err := r.sendTo(strings.TrimSpace(addrs[n]), method, in)
		if err == nil {
			r.good.Store(int32(n))
			return nil
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *Registrar) sendTo(addr, method string, in discovery.Instance) error {
	body, err := json.Marshal(in)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+InstancesPath, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+r.token)
	resp, err := r.client.Do(req)
	if err != nil {
		return fmt.Errorf("control plane %s: %w", addr, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		var e identity.SignError
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("control plane %s refused the registration of %s: %s: %s", addr, in.AppID, resp.Status, e.Error)
	}
	return nil
}
