package proxy

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/proxy/h1"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/skeinmesh/skein/accesslog"
	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity"
	"github.com/skeinmesh/skein/internal/inlineio"
	"github.com/skeinmesh/skein/overload"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/resiliency"
	"github.com/skeinmesh/skein/telemetry"
)

// Version is the runtime version reported on /v1.0/metadata.
const Version = "0.1.0"

// Options are the sidecar's start-up settings (daprd's flags). Zero ports
// mean "pick a free port".
type Options struct {
	AppID     string
	Namespace string
	// AppPort is the local app's port; 0 means no app channel.
	AppPort           int
	AppProtocol       string // http, h2c, https, grpc, grpcs
	AppChannelAddress string
	AppMaxConcurrency int // <= 0: unlimited
	// StartupDone, when set, is called once, on a goroutine of its own,
	// when the sidecar's first call has completed: an invocation it made
	// for its app, or a call from a peer (not a health check). Start-up's
	// one-time work, the TLS handshakes and what the first call builds
	// lazily, is then behind it; cmd/skein releases the executable's pages
	// (docs/performance.md, "Memory").
	StartupDone        func()
	AppAPIToken        string
	APIToken           string // DAPR_API_TOKEN: required on the HTTP API
	HTTPPort           int
	GRPCPort           int // Dapr's gRPC API (InvokeService, GetMetadata); 0: a free port
	ListenAddresses    []string
	InternalPort       int
	InternalListenAddr string
	MetricsPort        int
	MetricsListenAddr  string
	// PublicPort serves only the health endpoints, for probes from outside
	// the host (the kubelet), as daprd's --dapr-public-port; 0: none.
	PublicPort       int
	PublicListenAddr string // "": every interface
	EnableMetrics    bool
	MaxBodySize      int64 // 0: unlimited
	// AccessLog, when set, receives one JSON line per call (--access-log).
	AccessLog io.Writer
	// AppHealth turns on app health checks (--enable-app-health-check)
	// with these settings, zero fields meaning their defaults; nil: none,
	// the app counts as healthy. While the app is unhealthy calls to it
	// fail and the instance is marked unhealthy in discovery, so callers
	// pick it last (apphealth.go).
	AppHealth *apphealth.Config
	// MaxReplayBody is the largest fixed-length request body kept to be
	// sent again on a retry (0: resiliency.DefaultMaxReplayBody; negative:
	// none).
	MaxReplayBody int64
	// Overload turns on adaptive concurrency limits (package overload),
	// sized by it: one per target on the caller side and one on the app
	// channel; calls beyond a limit are refused at once with 503
	// OVERLOADED. Nil: off. The binary sets it unless
	// --overload-protection=false.
	Overload *overload.Config
	// OutlierDetection ejects failing instances of a target; the zero
	// value means discovery.DefaultOutlierDetection.
	OutlierDetection discovery.OutlierDetection
	// DiscoveryRefresh is how often the resolver re-reads every app id it
	// serves: 0 means discovery.DefaultRefreshInterval (250 ms), negative
	// turns polling off. Changes pushed by the source (xDS EDS) apply at
	// once either way; the embedded registry's are seen only by polling.
	DiscoveryRefresh time.Duration
	MaxHeaderBytes   int
	GracePeriod      time.Duration
	// DrainDelay is how long a stopping sidecar, once deregistered, keeps
	// accepting calls before it closes its ports: callers re-read
	// discovery every DiscoveryRefresh, and until they have, calls still
	// come (drain.go). 0 means DefaultDrainDelay, negative none; it is part
	// of GracePeriod, never longer.
	DrainDelay time.Duration
	Balancer   discovery.Balancer
	Host       Host // zero: DAPR_HOST_IP or the outbound address, and the hostname
	// Identity turns on mTLS between sidecars: this sidecar's SVID and the
	// trust bundle. Nil means cleartext h2c (--enable-mtls=false).
	Identity identity.Source
	// TrustDomain is the trust domain of the apps this sidecar calls; the
	// server of a call must prove spiffe://<TrustDomain>/ns/<ns>/<app-id>.
	TrustDomain spiffeid.TrustDomain
	// IdentityMetrics counts handshake failures; required with Identity.
	IdentityMetrics *identity.Metrics
	// ConfigFiles are watched and hot-reloaded while the sidecar runs.
	ConfigFiles ConfigFiles
	// PeerTransport is how calls reach other sidecars: PeerHTTP1 (the
	// default when empty), PeerHTTP2, or PeerHTTP3, which falls back to
	// HTTP/2 when QUIC cannot connect. Every sidecar serves HTTP/1.1 and
	// HTTP/2 on its TCP peer port (ALPN with mTLS) and, with mTLS, HTTP/3
	// on UDP with the same port number.
	PeerTransport string
	// Tracing is the tracer provider and its layers (spec.tracing, OTEL_*),
	// built by the caller from the Configuration; the sidecar flushes and
	// shuts it down when Run ends. Nil: the defaults (sampling rate 0.0001,
	// no export), so trace context still flows.
	Tracing *telemetry.Tracing

	// APIIdleTimeout closes an API keep-alive connection idle this long
	// (0: DefaultAPIIdleTimeout); APIReadHeaderTimeout bounds reading each
	// request's line and headers (0: DefaultAPIReadHeaderTimeout). The
	// largest header block is MaxHeaderBytes (--read-buffer-size; 0:
	// net/http's default, 1 MiB), exactly (apiserver.go).
	APIIdleTimeout, APIReadHeaderTimeout time.Duration
	// APIMaxIdleConns is how many idle keep-alive connections the API
	// port keeps; beyond it the one idle longest is closed (0:
	// DefaultAPIMaxIdleConns).
	APIMaxIdleConns int
}

// Registrar announces this sidecar to other sidecars.
type Registrar interface {
	Register(discovery.Instance) (*discovery.Lease, error)
}

// Sidecar is one running sidecar: its listeners, pipelines and state. Create
// it with New, call Listen, then Run.
type Sidecar struct {
	opts     Options
	log      *slog.Logger
	reg      *prometheus.Registry
	registry Registrar
	resolver *discovery.Resolver
	balancer discovery.Balancer
	caller   Caller
	self     Target
	appAddr  string      // host:port of the local app
	fwd      *forwarding // this host's Forwarded values

	snap atomic.Pointer[Snapshot] // current config; loaded once per request

	peers        *peerTransports
	appTransport pool
	remote       *forwarder // to other sidecars
	external     *forwarder // to services without a sidecar (URL and HTTPEndpoint targets)
	externalRT   *externalTransports
	local        *forwarder // to the local app
	tunnels      tunnels    // WebSocket connections of remote and local, ended at shutdown
	apiHandler   http.Handler
	peerHandler  http.Handler
	inbound      http.Handler // the call's steps of peerHandler, without the connection's (tests)
	toApp        http.Handler // local behind spec.appHttpPipeline: calls from peers and self-invocation

	apiLns            []net.Listener
	grpcLns           []net.Listener // --dapr-grpc-port, on every listen address
	grpcSrv           *daprgrpc.Server
	grpcMetrics       *daprgrpc.Metrics
	peerLn, metricsLn net.Listener
	peerUDP           net.PacketConn // HTTP/3; nil without mTLS or when the UDP port is taken
	apiSrv, peerH1Srv *h1.Server     // HTTP/1.x of the API and peer ports
	peerSrv, mSrv     *http.Server   // peerSrv: HTTP/2 (h2 or h2c) of the peer port
	publicLn          net.Listener   // --dapr-public-port; nil: none
	publicSrv         *http.Server
	apiH2Srv          *http.Server // h2c on the API port (apiserver.go)

	ready         atomic.Bool
	draining      atomic.Bool // stopping: HTTP/1.1 answers close their connections (drain.go)
	firstCallDone atomic.Bool // StartupDone has been called
	xds           xdsState    // xDS config, counters and status that outlive snapshots
	accessMetrics *accessMetrics
	rateMetrics   *rateMetrics
	reloadMetrics *reloadMetrics
	metrics       *sidecarMetrics // Dapr's HTTP and invocation metrics, Skein's per-edge ones

	// Resiliency state that outlives snapshots: breakers keep their state
	// across reloads, budgets their tokens.
	resMetrics *resiliency.Metrics
	breakers   *resiliency.Registry
	budgets    *resiliency.Budgets
	// Adaptive concurrency limits (Options.Overload); nil: off.
	overloadTargets *overload.Registry     // per target, caller side
	appLimit        *overload.Limiter      // the app channel, callee side
	peerConn        *prometheus.CounterVec // by transport: h2, h2c, h3
	access          *accesslog.Log         // nil: no access log
	tracing         *telemetry.Tracing
	health          *apphealth.Checker // --enable-app-health-check; nil: none, the app counts as healthy
}

// New builds a sidecar. It does not listen yet.
func New(opts Options, registry Registrar, source discovery.Source, reg *prometheus.Registry, log *slog.Logger) (*Sidecar, error) {
	if opts.Namespace == "" {
		opts.Namespace = "default"
	}
	if opts.AppChannelAddress == "" {
		opts.AppChannelAddress = "127.0.0.1"
	}
	if opts.AppProtocol == "" {
		opts.AppProtocol = "http"
	}
	if opts.Host.IP == "" {
		opts.Host.IP = os.Getenv("DAPR_HOST_IP")
		if opts.Host.IP == "" {
			opts.Host.IP = outboundIP()
		}
	}
	if opts.Host.Name == "" {
		opts.Host.Name, _ = os.Hostname()
	}
	if opts.Balancer == nil {
		opts.Balancer = discovery.P2C{}
	}
	if opts.OutlierDetection == (discovery.OutlierDetection{}) {
		opts.OutlierDetection = discovery.DefaultOutlierDetection
	}
	if opts.DiscoveryRefresh == 0 {
		opts.DiscoveryRefresh = discovery.DefaultRefreshInterval
	}
	if opts.DrainDelay == 0 {
		opts.DrainDelay = DefaultDrainDelay
	}
	switch {
	case opts.MaxReplayBody == 0:
		opts.MaxReplayBody = resiliency.DefaultMaxReplayBody
	case opts.MaxReplayBody < 0:
		opts.MaxReplayBody = 0
	}
	if err := ValidateAppID(opts.AppID); err != nil {
		return nil, err
	}
	log = log.With("app_id", opts.AppID)
	s := &Sidecar{
		opts:         opts,
		log:          log,
		reg:          reg,
		registry:     registry,
		resolver:     discovery.NewResolver(source, log, discovery.WithOutlierDetection(opts.OutlierDetection), discovery.WithMetrics(reg, opts.AppID), discovery.WithRefreshInterval(opts.DiscoveryRefresh)),
		balancer:     opts.Balancer,
		caller:       Caller{AppID: opts.AppID, Namespace: opts.Namespace},
		self:         Target{AppID: opts.AppID, Namespace: opts.Namespace},
		appAddr:      net.JoinHostPort(opts.AppChannelAddress, strconv.Itoa(opts.AppPort)),
		fwd:          newForwarding(opts.Host),
		peers:        newPeerTransports(opts.Identity, opts.TrustDomain, opts.IdentityMetrics, opts.PeerTransport, log),
		appTransport: newAppTransport(opts.AppProtocol),
		peerConn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "skein_peer_connections_opened_total",
			Help: "Connections accepted on the peer-facing port, by transport (h2, h2c, h3).",
		}, []string{"transport"}),
	}
	reg.MustRegister(s.peerConn)
	s.access = accesslog.New(opts.AccessLog) // nil (off) without a writer
	s.accessMetrics = newAccessMetrics(reg)
	s.rateMetrics = newRateMetrics(reg)
	s.reloadMetrics = newReloadMetrics(reg)
	s.metrics = newSidecarMetrics(reg, opts.AppID)
	rm, err := resiliency.NewMetrics(reg, opts.AppID)
	if err != nil {
		return nil, err
	}
	s.resMetrics, s.breakers, s.budgets = rm, resiliency.NewRegistry(rm), resiliency.NewBudgets(resiliency.DefaultBudget, rm)
	if cfg := opts.Overload; cfg != nil {
		if err := cfg.Validate(); err != nil {
			return nil, fmt.Errorf("overload: %w", err)
		}
		om, err := overload.NewMetrics(reg, opts.AppID)
		if err != nil {
			return nil, err
		}
		s.overloadTargets = overload.NewRegistry(*cfg, 0, om)
		if opts.AppPort != 0 {
			s.appLimit = overload.NewAppLimiter(*cfg, om, opts.AppID)
		}
	}
	if s.grpcMetrics, err = daprgrpc.NewMetrics(reg, opts.AppID); err != nil {
		return nil, err
	}
	if t, ok := s.appTransport.(*daprgrpc.AppTransport); ok {
		t.Metrics = s.grpcMetrics // OnInvoke calls: dapr_grpc_io_client_*
	}
	if s.tracing = opts.Tracing; s.tracing == nil {
		if s.tracing, err = telemetry.NewTracing(context.Background(), telemetry.TracingOptions{AppID: opts.AppID, Registry: reg, Log: log}); err != nil {
			return nil, err
		}
	}
	// Before the chains: the app-facing one holds the checker's layer.
	if s.health, err = newAppHealth(opts, s.appAddr, s.appTransport, reg, log); err != nil {
		return nil, err
	}
	bufs := &bufferPool{}
	s.remote = &forwarder{rewrite: s.rewriteRemote, onError: s.proxyError, bufs: bufs, tunnels: &s.tunnels}
	s.external = &forwarder{rewrite: s.rewriteExternal, onError: s.proxyError, bufs: bufs, tunnels: &s.tunnels}
	s.externalRT = newExternalTransports()
	s.local = &forwarder{rewrite: s.rewriteLocal, onError: s.proxyError, bufs: bufs, tunnels: &s.tunnels}
	s.buildChains()
	empty, err := compile(Config{Version: "none"}, opts.AppID)
	if err != nil {
		return nil, err
	}
	empty.meters = s.metrics.bind(empty.Metrics)
	s.snap.Store(empty)
	return s, nil
}

// Apply compiles cfg and swaps it in; on error the current snapshot keeps
// serving and the error says why.
func (s *Sidecar) Apply(cfg Config) error {
	s.xds.mu.Lock()
	defer s.xds.mu.Unlock()
	cfg = s.xds.merge(cfg) // files and xDS each keep the other's last config
	snap, err := compile(cfg, s.opts.AppID)
	if err != nil {
		return fmt.Errorf("config %s: %w", cfg.Version, err)
	}
	snap.meters = s.metrics.bind(snap.Metrics)
	s.bindXDS(snap, cfg)
	if old := s.snap.Load(); old != nil {
		snap.limits.inherit(&old.limits) // Apply runs one at a time (xds.mu): old is the one replaced
	}
	if old := s.snap.Swap(snap); old != nil {
		closeEndpoints(old.Endpoints) // calls in flight keep theirs; idle connections go now
	}
	s.tracing.Update(snap.Tracing) // the sampling rate follows; exporter changes need a restart
	s.reloadMetrics.applied.SetToCurrentTime()
	s.log.Info("config applied", "version", snap.Version, "configuration", snap.ConfigName)
	return nil
}

// Ports are the bound ports of a sidecar.
type Ports struct {
	HTTP     int `json:"http"`
	GRPC     int `json:"grpc"`
	Internal int `json:"internal"`
	Metrics  int `json:"metrics"`
}

// Ports returns the bound ports; valid after Listen.
func (s *Sidecar) Ports() Ports {
	p := Ports{GRPC: s.opts.GRPCPort}
	if len(s.apiLns) > 0 {
		p.HTTP = portOf(s.apiLns[0])
	}
	if len(s.grpcLns) > 0 {
		p.GRPC = portOf(s.grpcLns[0])
	}
	if s.peerLn != nil {
		p.Internal = portOf(s.peerLn)
	}
	if s.metricsLn != nil {
		p.Metrics = portOf(s.metricsLn)
	}
	return p
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// Listen binds every port. Port 0 picks a free one; with several listen
// addresses the later ones reuse the port the first got.
func (s *Sidecar) Listen() error {
	port := s.opts.HTTPPort
	for _, a := range s.opts.ListenAddresses {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen http api: %w", err)
		}
		port = portOf(ln)
		s.apiLns = append(s.apiLns, inlineio.Listener{Listener: ln})
	}
	port = s.opts.GRPCPort
	for _, a := range s.opts.ListenAddresses {
		ln, err := net.Listen("tcp", net.JoinHostPort(a, strconv.Itoa(port)))
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen grpc api: %w", err)
		}
		port = portOf(ln)
		s.grpcLns = append(s.grpcLns, ln)
	}
	// Dapr's gRPC API: InvokeService runs through the same app-facing
	// pipeline as an HTTP invocation. Built here, before start-up ends
	// (cmd/skein releases start-up's pages after Listen).
	s.grpcSrv = daprgrpc.New(daprgrpc.Options{
		Invoke:          s.apiHandler,
		APIToken:        s.opts.APIToken,
		Metadata:        s.grpcMetadata,
		MaxMessageBytes: int(min(s.opts.MaxBodySize, 1<<30)),
		IdleTimeout:     s.opts.APIIdleTimeout,
		Metrics:         s.grpcMetrics,
		Log:             s.log,
	})
	peerLn, err := net.Listen("tcp", net.JoinHostPort(s.opts.InternalListenAddr, strconv.Itoa(s.opts.InternalPort)))
	if err != nil {
		s.closeListeners()
		return fmt.Errorf("listen internal port: %w", err)
	}
	s.peerLn = inlineio.Listener{Listener: peerLn}
	if s.opts.Identity != nil {
		// HTTP/3 is a second way in; a taken UDP port costs only that.
		if s.peerUDP, err = net.ListenPacket("udp", s.peerLn.Addr().String()); err != nil {
			s.log.Warn("http/3 not served: udp port unavailable", "err", err)
			s.peerUDP = nil
		}
	}
	if s.opts.EnableMetrics {
		s.metricsLn, err = net.Listen("tcp", net.JoinHostPort(s.opts.MetricsListenAddr, strconv.Itoa(s.opts.MetricsPort)))
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen metrics port: %w", err)
		}
	}
	if s.opts.PublicPort > 0 {
		s.publicLn, err = net.Listen("tcp", net.JoinHostPort(s.opts.PublicListenAddr, strconv.Itoa(s.opts.PublicPort)))
		if err != nil {
			s.closeListeners()
			return fmt.Errorf("listen public port: %w", err)
		}
	}
	return nil
}

func (s *Sidecar) closeListeners() {
	for _, ln := range append(append(s.apiLns, s.grpcLns...), s.peerLn, s.metricsLn, s.publicLn) {
		if ln != nil {
			_ = ln.Close()
		}
	}
	if s.peerUDP != nil {
		_ = s.peerUDP.Close()
	}
}

// Run serves until ctx is done, then shuts down gracefully: it deregisters
// first so no new call is routed here, serves the calls still routed here
// for DrainDelay while callers notice (drain.go), stops accepting, waits up
// to the rest of the grace period for calls in flight, and returns. Before
// it returns nil the sidecar has become ready: app port reachable (when
// given) and registered (with app health checks: the first probe done,
// registered if it passed).
func (s *Sidecar) Run(ctx context.Context) error {
	// HTTP/1.1 and h2c on the API port, as daprd; one listener, split by
	// the first bytes of each connection.
	s.apiSrv, s.apiH2Srv = newAPIServers(s.apiHandler, s.opts.MaxHeaderBytes, s.opts.APIIdleTimeout, s.opts.APIReadHeaderTimeout, s.opts.APIMaxIdleConns, s.log)
	// The peer port: HTTP/1.1 on proxy/h1's lean server (the default peer
	// transport: keep-alive HTTP/1.1, the handler on the connection's
	// goroutine), HTTP/2 on net/http's; a connection goes to one by its
	// ALPN protocol (mTLS) or its first bytes (cleartext, h2c with prior
	// knowledge).
	var p2 http.Protocols
	var peerH1Ln, peerH2Ln net.Listener
	tcpTransport := "cleartext"
	if s.opts.Identity != nil {
		// mTLS, TLS 1.3 only; refused handshakes are logged and counted.
		p2.SetHTTP2(true)
		tcpTransport = "tls"
		peerH1Ln, peerH2Ln = splitALPN(identity.NewListener(s.peerLn, identity.ServerConfig(s.opts.Identity, "h2", "http/1.1"), func(reason string, remote net.Addr, err error) {
			s.opts.IdentityMetrics.HandshakeFailed("server", reason)
			s.log.Warn("peer handshake refused", "remote", remote.String(), "reason", reason, "err", err)
		}))
	} else {
		p2.SetUnencryptedHTTP2(true)
		peerH1Ln, peerH2Ln = splitH2C(s.peerLn)
	}
	countConn := func(c net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.peerConn.WithLabelValues(peerConnTransport(c, tcpTransport)).Inc()
		}
	}
	s.peerH1Srv = &h1.Server{
		Handler:           s.peerHandler,
		ConnContext:       identity.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       peerIdleTimeout,
		MaxHeaderBytes:    peerHeaderBytes(s.opts.MaxHeaderBytes) + bufioSlop, // what net/http's server admitted
		ConnState:         countConn,
		Log:               s.log,
	}
	s.peerSrv = &http.Server{
		Handler:           s.peerHandler,
		Protocols:         &p2,
		ConnContext:       identity.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       peerIdleTimeout,
		MaxHeaderBytes:    peerHeaderBytes(s.opts.MaxHeaderBytes),
		HTTP2:             h2Limits(), // streams, HPACK tables, frame size, windows (apiserver.go)
		ConnState:         countConn,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	errc := make(chan error, 2*len(s.apiLns)+len(s.grpcLns)+3)
	serve := func(srv interface{ Serve(net.Listener) error }, ln net.Listener) {
		wg.Go(func() {
			if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		})
	}
	for _, ln := range s.apiLns {
		web, h2c := splitH2C(ln)
		serve(s.apiSrv, web)
		serve(s.apiH2Srv, h2c)
	}
	serve(s.peerH1Srv, peerH1Ln)
	serve(s.peerSrv, peerH2Ln)
	for _, ln := range s.grpcLns {
		wg.Go(func() {
			if err := s.grpcSrv.Serve(ln); err != nil {
				errc <- fmt.Errorf("grpc api: %w", err)
			}
		})
	}
	if s.metricsLn != nil {
		s.mSrv = &http.Server{
			// On every path, as daprd; OpenMetrics when asked, so exemplars show.
			Handler:           promhttp.HandlerFor(s.metrics.gatherer(s.reg), promhttp.HandlerOpts{EnableOpenMetrics: true}),
			ReadHeaderTimeout: 10 * time.Second,
		}
		serve(s.mSrv, s.metricsLn)
	}
	if s.publicLn != nil {
		// Health only: the kubelet's probes, never an invocation.
		s.publicSrv = &http.Server{Handler: http.HandlerFunc(s.servePublic), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
		serve(s.publicSrv, s.publicLn)
	}
	var h3srv *http3.Server
	if s.peerUDP != nil {
		h3conns := s.peerConn.WithLabelValues("h3")
		h3srv = newH3Server(s.peerHandler, identity.ServerConfig(s.opts.Identity, "h3"), h3conns.Inc)
		wg.Go(func() {
			if err := h3srv.Serve(s.peerUDP); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, quic.ErrServerClosed) {
				s.log.Warn("http/3 server stopped", "err", err)
			}
		})
	}
	rctx, stopResolver := context.WithCancel(context.Background())
	wg.Go(func() { s.resolver.Run(rctx) })
	wctx, stopWatching := context.WithCancel(rctx)
	defer stopWatching()
	if !s.opts.ConfigFiles.empty() {
		wg.Go(func() { s.watchConfig(wctx, s.opts.ConfigFiles) })
	}
	if cp := s.xds.cp; cp != nil {
		wg.Go(func() { cp.Run(rctx) }) // pushes keep coming while calls drain
	}
	if r, ok := s.opts.Identity.(interface{ Run(context.Context) }); ok {
		wg.Go(func() { r.Run(rctx) }) // SVID renewal lives as long as the sidecar
	}

	p := s.Ports()
	s.log.Info("sidecar listening", "http_port", p.HTTP, "internal_port", p.Internal, "metrics_port", p.Metrics, "namespace", s.opts.Namespace)

	stopLease := make(chan struct{})
	var runErr error
	if err := s.becomeReady(ctx, rctx, &wg, stopLease); err != nil { // probes run until calls have drained
		runErr = err
	} else {
		select {
		case <-ctx.Done():
		case runErr = <-errc:
		}
	}
	registered := s.ready.Swap(false)
	stopping := time.Now()
	stopWatching()   // no file reload while calls drain; one being parsed stops
	close(stopLease) // deregister before draining: no new calls are routed here
	s.log.Info("shutting down", "grace", s.opts.GracePeriod)
	if registered {
		// Callers still routing here are served until they have noticed.
		s.drain(min(s.opts.DrainDelay, s.opts.GracePeriod))
	}
	// The grace period counts from the signal: the drain is part of it.
	sctx, cancel := context.WithDeadline(context.Background(), stopping.Add(s.opts.GracePeriod))
	defer cancel()
	var shut sync.WaitGroup
	type server interface {
		Shutdown(context.Context) error
		Close() error
	}
	servers := []server{s.apiSrv, s.peerH1Srv, s.apiH2Srv, s.peerSrv}
	if s.mSrv != nil {
		servers = append(servers, s.mSrv)
	}
	if s.publicSrv != nil {
		servers = append(servers, s.publicSrv)
	}
	for _, srv := range servers {
		{
			shut.Go(func() {
				if err := srv.Shutdown(sctx); err != nil {
					s.log.Warn("shutdown incomplete", "err", err)
					_ = srv.Close()
				}
			})
		}
	}
	shut.Go(func() { s.tunnels.shutdown(sctx) }) // WebSocket tunnels: net/http forgets hijacked connections
	if s.grpcSrv != nil {
		shut.Go(func() { s.grpcSrv.GracefulStop(sctx) })
	}
	if h3srv != nil {
		shut.Go(func() {
			if err := h3srv.Shutdown(sctx); err != nil {
				_ = h3srv.Close()
			}
		})
	}
	shut.Wait()
	stopResolver()
	wg.Wait()
	s.peers.closeIdle()
	s.appTransport.CloseIdleConnections()
	// Every span has ended: flush what is queued (bounded; the rest is counted as dropped).
	if err := s.tracing.Close(); err != nil {
		s.log.Warn("trace flush incomplete", "err", err)
	}
	s.log.Info("sidecar stopped")
	return runErr
}

// peerConnTransport names a new peer connection's transport for
// skein_peer_connections_opened_total: h2 or h1 by ALPN over mTLS; over
// cleartext the protocol is known only from the first bytes, so "cleartext".
func peerConnTransport(c net.Conn, plain string) string {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return plain
	}
	if tc.ConnectionState().NegotiatedProtocol == "h2" {
		return "h2"
	}
	return "h1"
}

// becomeReady waits for the app port, registers, and marks the sidecar
// ready. The lease goroutine is owned by wg and ends when stop closes.
// With app health checks, probes start once the port is reachable (they
// run until bg ends) and the first verdict is awaited: the instance is
// registered with it, and its record follows the app's health (advertise).
func (s *Sidecar) becomeReady(ctx, bg context.Context, wg *sync.WaitGroup, stop chan struct{}) error {
	if s.opts.AppPort > 0 {
		if err := waitForPort(ctx, s.appAddr); err != nil {
			return err
		}
	}
	if s.health != nil {
		wg.Go(func() { s.health.Run(bg) })
		select {
		case <-s.health.Checked():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	p := s.Ports()
	host, _, _ := net.SplitHostPort(s.peerLn.Addr().String())
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() {
		host = s.opts.Host.IP
	}
	in := discovery.Instance{
		AppID:       s.opts.AppID,
		Namespace:   s.opts.Namespace,
		Address:     net.JoinHostPort(host, strconv.Itoa(p.Internal)),
		PID:         os.Getpid(),
		Hostname:    s.opts.Host.Name,
		HTTPPort:    p.HTTP,
		GRPCPort:    p.GRPC,
		MetricsPort: p.Metrics,
		AppPort:     s.opts.AppPort,
		Started:     time.Now(),
	}
	in.Unhealthy = !s.health.Healthy() // no checks: healthy
	lease, err := s.registry.Register(in)
	if err != nil {
		return err
	}
	if s.health == nil {
		wg.Go(func() { lease.KeepAlive(stop, s.log) })
	} else {
		wg.Go(func() { s.advertise(in, lease, stop) })
	}
	s.ready.Store(true)
	s.log.Info("sidecar ready")
	return nil
}

// waitForPort dials addr every 50 ms until it accepts or ctx ends.
func waitForPort(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: time.Second}
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for app on %s: %w", addr, ctx.Err())
		case <-t.C:
		}
	}
}
