package identity

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

// WorkloadSource is an SVID and bundle source backed by the SPIFFE Workload
// API (a SPIRE agent): SVIDs and bundles rotate when the agent pushes them.
// Of the SVIDs the agent offers, the one for want is used.
type WorkloadSource struct {
	*workloadapi.X509Source
	want    spiffeid.ID
	metrics *Metrics
	log     *slog.Logger
}

// NewWorkloadSource connects to the Workload API at addr (e.g.
// unix:///run/spire/agent.sock) and waits up to timeout for an SVID whose ID
// is want.
func NewWorkloadSource(ctx context.Context, addr string, want spiffeid.ID, timeout time.Duration, m *Metrics, log *slog.Logger) (*WorkloadSource, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	src, err := workloadapi.NewX509Source(ctx,
		workloadapi.WithClientOptions(workloadapi.WithAddr(addr)),
		workloadapi.WithDefaultX509SVIDPicker(func(svids []*x509svid.SVID) *x509svid.SVID {
			for _, s := range svids {
				if s.ID == want {
					return s
				}
			}
			return svids[0]
		}))
	if err != nil {
		m.InitFailed("workload_api")
		return nil, fmt.Errorf("workload api %s: %w", addr, err)
	}
	sv, err := src.GetX509SVID()
	if err == nil && sv.ID != want {
		err = fmt.Errorf("workload api %s issued %s, want %s (register the workload with that SPIFFE ID)", addr, sv.ID, want)
	}
	if err != nil {
		_ = src.Close()
		m.InitFailed("wrong_id")
		return nil, err
	}
	m.Initialised(sv)
	return &WorkloadSource{X509Source: src, want: want, metrics: m, log: log.With("component", "identity")}, nil
}

// Run counts the agent's pushes as rotations until ctx ends, then closes
// the source.
func (w *WorkloadSource) Run(ctx context.Context) {
	defer w.Close()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.Updated():
		}
		sv, err := w.GetX509SVID()
		if err != nil {
			w.metrics.RotateFailed("workload_api")
			w.log.Error("workload api update failed", "err", err)
			continue
		}
		w.metrics.Rotated(sv)
		w.log.Info("svid updated by the workload api", "spiffe_id", sv.ID.String(), "expires", sv.Certificates[0].NotAfter)
	}
}
