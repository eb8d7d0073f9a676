package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"k8s.io/klog/v2"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/inject"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/telemetry"
	"github.com/skeinmesh/skein/xds/controlplane"
	"github.com/skeinmesh/skein/xds/controlplane/kube"
)

// cmdControlPlane runs `skein control-plane`: the reference xDS control
// plane, instance registry and CA (docs/xds.md).
func cmdControlPlane(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("control-plane", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var (
		listen, configDir, td, caDir, tokenFile, logLevel string
		tokens                                            stringList
		svidTTL, leaseTTL                                 time.Duration
		logJSON, kubernetes, joinTokenSVIDs               bool
		kubeconfig                                        string
		ha                                                haFlags
	)
	fs.StringVar(&listen, "listen-address", "", "HOST:PORT to serve ADS (gRPC, TLS or cleartext), the registry and the CA (HTTPS) on (required)")
	fs.StringVar(&configDir, "config-dir", "", "directory of Dapr YAML (Configuration, Resiliency), Endpoints resources and raw xDS JSON, watched")
	fs.StringVar(&td, "trust-domain", "public", "trust domain of the CA created on first start")
	fs.StringVar(&caDir, "ca-dir", "", "the CA's directory (default $SKEIN_HOME/control-plane/ca)")
	fs.Var(&tokens, "join-token", "a join token sidecars may present (repeatable; also $SKEIN_JOIN_TOKENS, comma-separated)")
	fs.StringVar(&tokenFile, "join-token-file", "", "file of join tokens, one per line")
	fs.DurationVar(&svidTTL, "svid-ttl", controlplane.DefaultSVIDTTL, "lifetime of the SVIDs the CA signs")
	fs.DurationVar(&leaseTTL, "lease-ttl", controlplane.DefaultLeaseTTL, "how long a registration lives without a heartbeat")
	fs.BoolVar(&kubernetes, "kubernetes", false, "take instances and Dapr resources from the Kubernetes API server (in-cluster config, or --kubeconfig) instead of --config-dir")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "with --kubernetes: a kubeconfig file to reach the API server with, instead of the pod's service account")
	fs.BoolVar(&joinTokenSVIDs, "allow-join-token-svids", false, "with --kubernetes: a join token alone also gets an SVID, for sidecars outside the cluster (whoever holds one can then get any app's SVID); without it only a pod's service-account token, checked with TokenReview, does")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&logJSON, "log-as-json", false, "log JSON lines")
	ha.add(fs)
	wh := addWebhookFlags(fs) // the sidecar injection webhook (webhook.go)
	if err := fs.Parse(args); err != nil {
		return flagError(fs, "control-plane", err, stdout, stderr)
	}
	var errs []error
	if fs.NArg() > 0 {
		errs = append(errs, fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if _, _, err := net.SplitHostPort(listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen-address: %q: want HOST:PORT", listen))
	}
	trust, err := spiffeid.TrustDomainFromString(td)
	if err != nil {
		errs = append(errs, fmt.Errorf("--trust-domain: %w", err))
	}
	level, err := telemetry.ParseLevel(logLevel)
	if err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	if svidTTL < time.Second || leaseTTL < time.Second {
		errs = append(errs, errors.New("--svid-ttl and --lease-ttl: at least 1s"))
	}
	if kubernetes && configDir != "" {
		errs = append(errs, errors.New("--kubernetes and --config-dir: give one source of config"))
	}
	if kubeconfig != "" && !kubernetes {
		errs = append(errs, errors.New("--kubeconfig: only with --kubernetes"))
	}
	if joinTokenSVIDs && !kubernetes {
		errs = append(errs, errors.New("--allow-join-token-svids: only with --kubernetes (without it join tokens always get SVIDs)"))
	}
	if err := wh.check(); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, ha.check(fs, kubernetes))
	all := append([]string(nil), tokens...)
	for t := range strings.SplitSeq(os.Getenv("SKEIN_JOIN_TOKENS"), ",") {
		if t = strings.TrimSpace(t); t != "" {
			all = append(all, t)
		}
	}
	if tokenFile != "" {
		ft, err := readTokenFile(tokenFile)
		if err != nil {
			errs = append(errs, fmt.Errorf("--join-token-file: %w", err))
		}
		all = append(all, ft...)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "skein control-plane: %v\n", oneLine(err))
		return 2
	}
	lv := new(slog.LevelVar)
	lv.Set(level)
	log := telemetry.NewLogger(stderr, lv, logJSON)
	if caDir == "" {
		caDir = filepath.Join(skeinHome(), "control-plane", "ca")
	}
	opts := controlplane.Options{
		ConfigDir: configDir, TrustDomain: trust, CADir: caDir, Tokens: all, SVIDTTL: svidTTL, LeaseTTL: leaseTTL,
		Cluster: kubernetes, JoinTokenSVIDs: joinTokenSVIDs,
	}
	var (
		srv     *controlplane.Server
		cluster *kubeParts
	)
	if kubernetes {
		// The watch's sink is srv, made below with the CA the cluster holds.
		sink := func(c controlplane.Cluster) { srv.SetCluster(c) }
		if cluster, err = startKube(kubeconfig, ha, trust, sink, log); err != nil {
			fmt.Fprintf(stderr, "skein control-plane: %v\n", oneLine(err))
			return 1
		}
		opts.CA = cluster.ca
		opts.Attester = cluster.attester
		if cluster.elector != nil {
			opts.Election = cluster.elector
		}
	}
	srv, err = controlplane.New(opts, log)
	if err != nil {
		fmt.Fprintf(stderr, "skein control-plane: %v\n", oneLine(err))
		return 2
	}
	if kubernetes {
		join := "registrations only"
		if joinTokenSVIDs {
			join = "registrations and SVIDs (--allow-join-token-svids)"
		}
		log.Info("svids for pods proven by their service-account tokens (TokenReview)", "audience", inject.TokenAudience, "join_tokens", join)
	}
	if len(all) == 0 {
		log.Warn("no join token given: registrations and SVID requests will all be refused (--join-token)")
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		fmt.Fprintf(stderr, "skein control-plane: %v\n", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serve := func(ctx context.Context) error { return srv.Serve(ctx, ln) }
	if cluster != nil {
		serve = func(ctx context.Context) error { return serveWatching(ctx, srv, ln, cluster) }
	}
	if err := wh.serveWith(ctx, log, serve); err != nil {
		log.Error("control plane failed", "err", err)
		return 1
	}
	return 0
}

// kubeParts are the control plane's links to Kubernetes: the cluster's
// watch, the attester that proves a sidecar's pod (TokenReview, reading
// the watch's pods), the CA Secret every replica signs from, and the
// leader election (nil with --leader-elect=false).
type kubeParts struct {
	watch    *kube.Watcher
	attester *kube.Attester
	store    *kube.CAStore
	ca       *identity.CA
	elector  *kube.Elector
}

// startKube connects to the API server and checks that every watched
// resource can be listed, a TokenReview made and the Lease read (a missing
// CRD or permission fails the start), then loads the CA from its Secret,
// creating it on the first start.
func startKube(kubeconfig string, ha haFlags, td spiffeid.TrustDomain, sink func(controlplane.Cluster), log *slog.Logger) (*kubeParts, error) {
	// client-go logs through klog; send it to our logger (klog's state
	// is global: wiring, so it is set here).
	klog.SetSlogLogger(log.With("component", "client-go"))
	cfg, err := kube.RESTConfig(kubeconfig)
	if err != nil {
		return nil, err
	}
	w, err := kube.New(cfg, sink, log)
	if err != nil {
		return nil, err
	}
	a, err := kube.NewAttester(cfg, w)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := errors.Join(w.Check(ctx), a.Check(ctx)); err != nil {
		return nil, err
	}
	ns := ha.namespace
	if ns == "" {
		ns = kube.OwnNamespace()
	}
	host := os.Getenv("POD_NAME")
	if host == "" {
		host, _ = os.Hostname()
	}
	replica := kube.NewIdentity(host)
	parts := &kubeParts{watch: w, attester: a}
	if ha.elect {
		parts.elector, err = kube.NewElector(cfg, kube.ElectionConfig{
			Namespace: ns, Name: ha.leaseName, Identity: replica,
			LeaseDuration: ha.leaseDuration, RenewDeadline: ha.renewDeadline, RetryPeriod: ha.retryPeriod,
		}, log)
		if err != nil {
			return nil, err
		}
		if err := parts.elector.Check(ctx); err != nil {
			return nil, err
		}
	}
	if parts.store, err = kube.NewCAStore(cfg, ns, ha.caSecret, replica, log); err != nil {
		return nil, err
	}
	if parts.ca, err = parts.store.Load(ctx, td); err != nil {
		return nil, err
	}
	log.Info("kubernetes replica", "namespace", ns, "replica", replica, "leader_elect", ha.elect, "ca_secret", ha.caSecret)
	return parts, nil
}

// serveWatching serves the control plane, runs the cluster's watch and
// the CA Secret's, and campaigns for the leadership (or, without an
// election, does the leader's work itself), until ctx ends or one fails.
func serveWatching(ctx context.Context, srv *controlplane.Server, ln net.Listener, k *kubeParts) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() {
		defer cancel()
		errc <- srv.Serve(ctx, ln)
	})
	wg.Go(func() {
		defer cancel()
		if err := k.watch.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("kubernetes watch: %w", err)
		}
	})
	wg.Go(func() {
		defer cancel()
		if err := k.store.Run(ctx); err != nil && ctx.Err() == nil {
			errc <- fmt.Errorf("ca secret watch: %w", err)
		}
	})
	wg.Go(func() {
		// Ends with ctx; a lost leadership only stops the leader's work.
		if k.elector != nil {
			k.elector.Run(ctx, k.store.Lead)
		} else {
			k.store.Lead(ctx)
		}
	})
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// haFlags are the control plane's settings for running replicated on
// Kubernetes (docs/kubernetes.md, High availability).
type haFlags struct {
	elect                                     bool
	leaseName, namespace, caSecret            string
	leaseDuration, renewDeadline, retryPeriod time.Duration
}

// haFlagNames are the flags only --kubernetes takes.
var haFlagNames = []string{"leader-elect", "leader-elect-resource-name", "leader-elect-lease-duration", "leader-elect-renew-deadline", "leader-elect-retry-period", "namespace", "ca-secret"}

func (h *haFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&h.elect, "leader-elect", true, "with --kubernetes: elect a leader among the replicas on a coordination.k8s.io Lease for the work done once (CA rotation); false: this replica does it (run one replica only)")
	fs.StringVar(&h.leaseName, "leader-elect-resource-name", "skein-control-plane", "with --kubernetes: the Lease in --namespace the replicas compete for")
	fs.DurationVar(&h.leaseDuration, "leader-elect-lease-duration", kube.DefaultLeaseDuration, "with --kubernetes: how long the other replicas wait on a silent leader before taking the Lease")
	fs.DurationVar(&h.renewDeadline, "leader-elect-renew-deadline", kube.DefaultRenewDeadline, "with --kubernetes: how long the leader leads without renewing the Lease (shorter than the lease duration)")
	fs.DurationVar(&h.retryPeriod, "leader-elect-retry-period", kube.DefaultRetryPeriod, "with --kubernetes: time between attempts to take or renew the Lease")
	fs.StringVar(&h.namespace, "namespace", "", "with --kubernetes: the control plane's namespace, holding its Lease and CA Secret (default $POD_NAMESPACE, else the service account's namespace, else default)")
	fs.StringVar(&h.caSecret, "ca-secret", "skein-ca", "with --kubernetes: the Secret in --namespace holding the CA every replica signs with (created on first start)")
}

// check refuses HA flags without --kubernetes and bad election timing.
func (h *haFlags) check(fs *flag.FlagSet, kubernetes bool) error {
	var errs []error
	fs.Visit(func(f *flag.Flag) {
		if !kubernetes && slices.Contains(haFlagNames, f.Name) {
			errs = append(errs, fmt.Errorf("--%s: only with --kubernetes", f.Name))
		}
		if kubernetes && f.Name == "ca-dir" {
			errs = append(errs, errors.New("--ca-dir: not with --kubernetes (the CA lives in the Secret --ca-secret)"))
		}
	})
	if kubernetes && h.elect {
		cfg := kube.ElectionConfig{Namespace: "-", Name: h.leaseName, Identity: "-", LeaseDuration: h.leaseDuration, RenewDeadline: h.renewDeadline, RetryPeriod: h.retryPeriod}
		if err := cfg.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("--leader-elect-*: %w", err))
		}
	}
	if kubernetes && h.caSecret == "" {
		errs = append(errs, errors.New("--ca-secret: empty"))
	}
	return errors.Join(errs...)
}

// readTokenFile reads one token per line; blank lines and # comments are
// skipped.
func readTokenFile(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" && !strings.HasPrefix(t, "#") {
			out = append(out, t)
		}
	}
	return out, sc.Err()
}

// controlPlaneFlags are a sidecar's settings for `skein control-plane`.
type controlPlaneFlags struct {
	address       string // --control-plane-address
	token         string // --join-token, else $SKEIN_JOIN_TOKEN
	caFile        string // --control-plane-ca-file
	kubeTokenFile string // --kubernetes-token-file, else inject.TokenPath if it exists
}

// controlPlane returns the sidecar's control plane settings.
func (f *sidecarFlags) controlPlane() controlPlaneFlags {
	c := controlPlaneFlags{address: f.controlPlaneAddress, token: f.joinToken, caFile: f.controlPlaneCAFile, kubeTokenFile: f.kubeTokenFile}
	if c.kubeTokenFile == "" {
		// Where the injector mounts it: a sidecar in a pod proves its pod
		// with no flag.
		if _, err := os.Stat(inject.TokenPath); err == nil {
			c.kubeTokenFile = inject.TokenPath
		}
	}
	return c
}

// sidecarRegistrar is where a sidecar registers: the control plane's
// registry when it has a control plane and a join token, else the embedded
// registry (without a token the control plane only configures it).
func sidecarRegistrar(f *sidecarFlags, reg *discovery.Registry, opts proxy.Options, log *slog.Logger) (proxy.Registrar, error) {
	cp := f.controlPlane()
	if cp.address == "" {
		return reg, nil
	}
	if cp.joinToken() == "" && cp.kubeTokenFile != "" {
		// On Kubernetes the pod is the registration: the control plane
		// watches it.
		log.Info("no join token: not registering with the control plane (on Kubernetes it finds this sidecar's pod)")
		return reg, nil
	}
	if cp.joinToken() == "" {
		log.Warn("no join token: this sidecar registers in the embedded registry only, so sidecars on other machines cannot find it (--join-token or SKEIN_JOIN_TOKEN)")
		return reg, nil
	}
	return controlPlaneRegistrar(cp, opts.TrustDomain, opts.Identity, log)
}

// joinToken returns the flag's token, else $SKEIN_JOIN_TOKEN.
func (c controlPlaneFlags) joinToken() string {
	if c.token != "" {
		return c.token
	}
	return os.Getenv("SKEIN_JOIN_TOKEN")
}

// pinnedBundle reads --control-plane-ca-file; nil without one.
func (c controlPlaneFlags) pinnedBundle(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if c.caFile == "" {
		return nil, nil
	}
	b, err := identity.LoadBundleFile(c.caFile, td)
	if err != nil {
		return nil, fmt.Errorf("--control-plane-ca-file: %w", err)
	}
	return b, nil
}

// controlPlaneRegistrar is the registrar of a sidecar with a control plane
// and a join token: it trusts the control plane as the SVID source does
// (src may be nil with mTLS off: then the pinned file, else first use).
func controlPlaneRegistrar(c controlPlaneFlags, td spiffeid.TrustDomain, src identity.Source, log *slog.Logger) (*controlplane.Registrar, error) {
	tok := c.joinToken()
	var cfg *tls.Config
	if cps, ok := src.(*identity.ControlPlaneSource); ok {
		cfg = identity.ControlPlaneClientConfig(cps.ControlPlaneBundle, td)
	} else {
		b, err := c.pinnedBundle(td)
		if err != nil {
			return nil, err
		}
		if b == nil {
			log.Warn("the control plane's certificate is not verified: give --control-plane-ca-file (the registry then trusts any server)")
		}
		cfg = identity.ControlPlaneClientConfig(func() *x509bundle.Bundle { return b }, td)
	}
	return controlplane.NewRegistrar(c.address, tok, cfg), nil
}
