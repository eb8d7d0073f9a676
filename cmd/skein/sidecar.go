package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/internal/residency"
	"github.com/skeinmesh/skein/internal/residency/early"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/telemetry"
)

const version = proxy.Version

func cmdSidecar(args []string, stdout, stderr io.Writer) int {
	var f sidecarFlags
	fs := newSidecarFlagSet("sidecar", &f, false)
	if err := fs.Parse(args); err != nil {
		return flagError(fs, "sidecar", err, stdout, stderr)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "skein sidecar: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	sc, log, err := newSidecar(&f, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "skein sidecar: %v\n", oneLine(err))
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	context.AfterFunc(ctx, stop) // after the first signal, a second one ends the process at once
	done := make(chan error, 1)
	go func() { done <- sc.Run(ctx) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		grace := time.Duration(f.graceSeconds) * time.Second
		var stopped bool
		if stopped, err = waitStopped(done, grace); !stopped {
			log.Error("sidecar did not stop in time; exiting", "grace", grace, "allowance", shutdownAllowance)
			return 1
		}
	}
	if err != nil {
		log.Error("sidecar failed", "err", err)
		return 1
	}
	return 0
}

// shutdownAllowance is how long a stopping sidecar may take past its
// grace period (the drain of calls in flight) for the rest of its
// teardown: deregistering, flushing traces (bounded at 5 s), a reload
// compiling (bounded by proxy.MaxConfigFileSize). Past it the process
// does not wait any longer: a signal always ends it.
const shutdownAllowance = 5 * time.Second

// waitStopped waits for the error of a sidecar told to stop, for at most
// its grace period plus shutdownAllowance; stopped reports whether it came.
func waitStopped(done <-chan error, grace time.Duration) (stopped bool, err error) {
	t := time.NewTimer(grace + shutdownAllowance)
	defer t.Stop()
	select {
	case err := <-done:
		return true, err
	case <-t.C:
		return false, nil
	}
}

// flagError reports a flag parse error on one line (or prints help).
func flagError(fs *flag.FlagSet, cmd string, err error, stdout, stderr io.Writer) int {
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fmt.Fprintf(stdout, "Usage of skein %s:\n", cmd)
		fs.PrintDefaults()
		return 0
	}
	fmt.Fprintf(stderr, "skein %s: %v\n", cmd, err)
	return 2
}

// oneLine joins a multi-error into one line.
func oneLine(err error) string {
	s := err.Error()
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, ';', ' ')
			continue
		}
		out = append(out, s[i])
	}
	return string(out)
}

// newSidecar validates flags, loads config, and builds a listening sidecar.
func newSidecar(f *sidecarFlags, stderr io.Writer) (*proxy.Sidecar, *slog.Logger, error) {
	opts, err := f.options()
	if err != nil {
		return nil, nil, err
	}
	// One core by default, as linkerd2-proxy: a sidecar on more cores spends
	// its time waking and parking threads (test/bench/README.md).
	if _, set := os.LookupEnv("GOMAXPROCS"); !set && f.cores > 0 {
		runtime.GOMAXPROCS(f.cores)
	}
	lv := new(slog.LevelVar)
	level, _ := telemetry.ParseLevel(f.logLevel)
	lv.Set(level)
	log := telemetry.NewLogger(stderr, lv, f.logAsJSON)
	cfg, err := proxy.LoadConfig(f.config, f.resourcesPaths)
	if err != nil {
		return nil, nil, err
	}
	if err := f.controlPlaneFromConfig(cfg); err != nil {
		return nil, nil, err
	}
	home := skeinHome()
	if err := os.MkdirAll(home, 0o700); err != nil {
		return nil, nil, fmt.Errorf("SKEIN_HOME: %w", err)
	}
	reg, err := discovery.NewRegistry(filepath.Join(home, "registry"))
	if err != nil {
		return nil, nil, err
	}
	metrics := telemetry.NewRegistry()
	mtls, err := resolveMTLS(cfg, f.enableMTLS, f.peerTransport)
	if err != nil {
		return nil, nil, err
	}
	if mtls.enabled {
		opts.Identity, opts.IdentityMetrics, err = newIdentity(mtls, opts, spiffeSocket(f.spiffeSocket), f.controlPlane(), home, metrics, log)
		if err != nil {
			return nil, nil, fmt.Errorf("identity: %w", err)
		}
		opts.TrustDomain = mtls.trustDomain
		opts.PeerTransport = mtls.transport
	} else {
		log.Warn("mTLS between sidecars is disabled: peer traffic is cleartext h2c and callers are not authenticated")
	}
	opts.ConfigFiles = proxy.ConfigFiles{Configuration: f.config, ResourceDirs: f.resourcesPaths}
	switch f.accessLog {
	case "":
	case "-":
		opts.AccessLog = stderr
	default:
		// Kept open for the life of the process; 0600 like every file Skein writes.
		w, err := os.OpenFile(f.accessLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
		if err != nil {
			return nil, nil, fmt.Errorf("--access-log: %w", err)
		}
		opts.AccessLog = w
	}
	// Tracing comes from the Configuration as loaded and the OTEL_*
	// environment; a reload changes its sampling rate only (Sidecar.Apply).
	tspec, err := proxy.TracingConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	opts.Tracing, err = telemetry.NewTracing(context.Background(), telemetry.TracingOptions{
		AppID: opts.AppID, Spec: tspec, Registry: metrics, Log: log,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("tracing: %w", err)
	}
	// The first call's one-time work (TLS handshakes, what it builds
	// lazily) maps about 6-8 MB of the executable that steady serving does
	// not use again: release it once that call is done, as at listen
	// below (docs/performance.md, "Memory").
	opts.StartupDone = func() {
		if n, err := residency.ReleaseImage(); err != nil {
			log.Warn("release first-call pages", "err", err)
		} else {
			log.Debug("first-call pages released", "bytes", n)
		}
	}
	source, eds := xdsSource(f, reg) // with a control plane: xDS EDS, then the registry
	// With a control plane and a join token, register in its registry.
	registrar, err := sidecarRegistrar(f, reg, opts, log)
	if err != nil {
		return nil, nil, err
	}
	sc, err := proxy.New(opts, registrar, source, metrics, log)
	if err != nil {
		return nil, nil, err
	}
	if err := sc.Apply(cfg); err != nil {
		return nil, nil, err
	}
	if err := attachXDS(f, eds, sc, opts, metrics, log); err != nil {
		return nil, nil, fmt.Errorf("xds: %w", err)
	}
	if err := sc.Listen(); err != nil {
		return nil, nil, err
	}
	// Start-up (package inits, config, identity) mapped about 20 MB of the
	// executable, much of it never used again: unmap it, and let serving
	// fault back what it uses (internal/residency; docs/performance.md,
	// "Memory"). This lowers VmRSS from here on, not the start-up peak.
	early.Stop() // start-up's own releasing (internal/residency/early), then one last release
	if n, err := residency.ReleaseImage(); err != nil {
		log.Warn("release start-up pages", "err", err)
	} else {
		log.Debug("start-up pages released", "bytes", n)
	}
	return sc, log, nil
}
