package proxy

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// reloadInterval is how often the configuration files are checked. A
// change is loaded at the check after the one that saw it (watchConfig),
// so it applies within two intervals plus its compile.
const reloadInterval = 250 * time.Millisecond

// ConfigFiles are where the sidecar's configuration lives: the Dapr
// Configuration (--config) and resource directories (--resources-path).
// The sidecar watches them and applies every change; an invalid change is
// rejected and the last good snapshot keeps serving.
type ConfigFiles struct {
	Configuration string
	ResourceDirs  []string
}

func (f ConfigFiles) empty() bool { return f.Configuration == "" && len(f.ResourceDirs) == 0 }

// fingerprint summarises names, sizes and modification times of the files,
// so unchanged files are not read again.
func (f ConfigFiles) fingerprint() string {
	var b strings.Builder
	stat := func(p string) {
		if st, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%s|%d|%d;", p, st.Size(), st.ModTime().UnixNano())
		} else {
			fmt.Fprintf(&b, "%s|missing;", p)
		}
	}
	if f.Configuration != "" {
		stat(f.Configuration)
	}
	for _, d := range f.ResourceDirs {
		ents, _ := os.ReadDir(d)
		for _, e := range ents {
			stat(filepath.Join(d, e.Name()))
		}
	}
	return b.String()
}

// reloadMetrics count configuration reloads by result.
type reloadMetrics struct {
	reloads *prometheus.CounterVec
	applied prometheus.Gauge
}

func newReloadMetrics(reg prometheus.Registerer) *reloadMetrics {
	m := &reloadMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_config_reloads_total",
			Help: "Configuration changes seen on disk, by result (applied, rejected).",
		}, []string{"result"}),
		applied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "skein_config_last_applied_timestamp_seconds",
			Help: "When the current configuration snapshot was applied (Unix time).",
		}),
	}
	reg.MustRegister(m.reloads, m.applied)
	return m
}

// watchConfig applies every change of the configuration files until ctx
// ends. Bursts of writes coalesce: files are loaded once they have stayed
// unchanged for one check, so a file still being written (a 50 MB one
// takes a while) is not read half-way, and a content version equal to the
// current one is skipped. A load stops when ctx ends, so shutdown waits at
// most for a compile, which the size limit keeps short
// (MaxConfigFileSize); requests never wait: they keep the snapshot they
// loaded until Apply swaps in the next.
func (s *Sidecar) watchConfig(ctx context.Context, files ConfigFiles) {
	t := time.NewTicker(reloadInterval)
	defer t.Stop()
	last := files.fingerprint() // the state last loaded
	prev := last                // the state at the previous check
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fp := files.fingerprint()
		settled := fp == prev
		prev = fp
		if fp == last || !settled {
			continue
		}
		last = fp
		cfg, err := loadConfig(ctx, files.Configuration, files.ResourceDirs)
		if ctx.Err() != nil {
			return // shutting down: a load cut short is neither applied nor counted
		}
		if err == nil && cfg.Version == s.snap.Load().Version {
			continue
		}
		if err == nil {
			err = s.Apply(cfg)
		}
		if err != nil {
			s.reloadMetrics.reloads.WithLabelValues("rejected").Inc()
			s.log.Error("config rejected, the last good config keeps applying", "version", s.snap.Load().Version, "err", err)
			continue
		}
		s.reloadMetrics.reloads.WithLabelValues("applied").Inc()
	}
}
