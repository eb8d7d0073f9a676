package controlplane

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/skeinmesh/skein/identity"
)

// Defaults of Options.
const (
	DefaultSVIDTTL      = time.Hour
	DefaultLeaseTTL     = 5 * time.Second
	DefaultPollInterval = 200 * time.Millisecond
	sweepInterval       = 250 * time.Millisecond
	servingCertTTL      = 24 * time.Hour
)

// Options configure a control plane.
type Options struct {
	// ConfigDir holds Dapr YAML (Configuration, Resiliency), Skein's
	// Endpoints resources and raw xDS JSON; "" serves registrations only.
	ConfigDir string
	// TrustDomain of the CA created in CADir (an existing CA keeps its own).
	TrustDomain spiffeid.TrustDomain
	// CADir holds the control plane's CA (identity's embedded CA format).
	CADir string
	// CA, when set, is the CA to sign with instead of CADir's: on
	// Kubernetes, the one the replicas share through a Secret, which its
	// owner keeps current (identity.CA.SetFiles).
	CA *identity.CA
	// Election, when set, says which replica leads; the status shows it.
	Election Election
	// Tokens are the join tokens sidecars present to register and to get
	// an SVID. None means both endpoints refuse every request (an SVID
	// then needs the Attester's proof).
	Tokens []string
	// Attester, when set, proves a sidecar's pod from the service-account
	// token in its SignRequest (package kube: TokenReview): the CA then
	// signs an SVID only for the app of the pod the token is bound to, and
	// a join token alone gets none unless JoinTokenSVIDs.
	Attester Attester
	// JoinTokenSVIDs lets a join token alone get an SVID when an Attester
	// is set: for sidecars outside the cluster. Whoever holds a join token
	// can then get any app's SVID.
	JoinTokenSVIDs bool
	// SVIDTTL is the lifetime of issued SVIDs; 0 means DefaultSVIDTTL.
	SVIDTTL time.Duration
	// LeaseTTL is how long a registration lives without a heartbeat; 0
	// means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// PollInterval is how often ConfigDir is re-read; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Cluster: the config and the instances come from a Kubernetes
	// cluster through SetCluster (with no ConfigDir); no snapshot is
	// served before the first call, and registrations are accepted but
	// serve no endpoint: the pods say where an app runs.
	Cluster bool
}

// Election is the leader election among replicas, as the status reports
// it (kube.Elector).
type Election interface {
	Identity() string // this replica's
	Leader() string   // the holder last seen, "" for none
	Leading() bool
}

// Server is a running control plane: go-control-plane's snapshot cache and
// ADS server (state of the world and incremental), the instance registry,
// the config directory watcher and the CA. Create it with New, then Serve.
type Server struct {
	opts    Options
	log     *slog.Logger
	cache   cachev3.SnapshotCache
	xds     serverv3.Server
	grpc    *grpc.Server
	ca      *identity.CA
	tokens  [][sha256.Size]byte
	prefix  string // of every snapshot version: differs across restarts
	kick    chan struct{}
	certMu  sync.Mutex
	cert    *tls.Certificate
	buildMu sync.Mutex                        // serialises snapshot builds; guards the next three
	hashes  map[string][sha256.Size]byte      // of the snapshot set, by node
	builds  uint64                            // rebuilds so far
	typeVer map[string]map[string]typeVersion // by callerSpecs key, by type: its last content

	clusterMu  sync.Mutex // serialises SetCluster's compiles
	compiler   *clusterCompiler
	clusterSet bool // guarded by mu

	mu     sync.Mutex
	cfg    *dirConfig // last good
	cfgErr error      // last rejected change, nil once a good one applies
	regs   map[string]*registration
	nodes  map[string]appKey // xDS node id → app
}

// registration is one instance registered by its sidecar.
type registration struct {
	key     appKey
	inst    instance
	expires time.Time
}

// New loads (or creates) the CA and the config directory. An invalid
// config directory at start is an error; later it only keeps the last
// good one serving.
func New(opts Options, log *slog.Logger) (*Server, error) {
	if opts.SVIDTTL == 0 {
		opts.SVIDTTL = DefaultSVIDTTL
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.PollInterval == 0 {
		opts.PollInterval = DefaultPollInterval
	}
	log = log.With("component", "control-plane")
	ca := opts.CA
	if ca == nil {
		var err error
		if ca, err = identity.LoadOrInit(opts.CADir, opts.TrustDomain, nil); err != nil {
			return nil, err
		}
	}
	if opts.Cluster && opts.ConfigDir != "" {
		return nil, errors.New("a config directory and a cluster: give one source of config")
	}
	cfg, err := loadDir(opts.ConfigDir)
	if err != nil {
		return nil, err
	}
	s := &Server{
		opts:    opts,
		log:     log,
		ca:      ca,
		prefix:  strconv.FormatInt(time.Now().UnixMilli(), 36),
		kick:    make(chan struct{}, 1),
		hashes:  map[string][sha256.Size]byte{},
		typeVer: map[string]map[string]typeVersion{},
		cfg:     cfg,
		regs:    map[string]*registration{},
		nodes:   map[string]appKey{},

		compiler: newClusterCompiler(),
	}
	for _, t := range opts.Tokens {
		s.tokens = append(s.tokens, sha256.Sum256([]byte(t)))
	}
	s.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, cacheLogger{log})
	s.xds = serverv3.NewServer(context.Background(), s.cache, serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoverygrpc.DiscoveryRequest) error {
			s.observe(r.GetNode(), r.GetTypeUrl(), r.GetErrorDetail().GetMessage(), r.GetResponseNonce())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoverygrpc.DeltaDiscoveryRequest) error {
			s.observe(r.GetNode(), r.GetTypeUrl(), r.GetErrorDetail().GetMessage(), r.GetResponseNonce())
			return nil
		},
	})
	s.grpc = grpc.NewServer(
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, s.xds)
	if opts.Cluster {
		log.Info("config from the cluster: no snapshot until its state is loaded")
	} else {
		log.Info("config loaded", "dir", opts.ConfigDir, "version", cfg.version)
	}
	return s, nil
}

// TrustDomain is the CA's trust domain.
func (s *Server) TrustDomain() spiffeid.TrustDomain { return s.ca.TrustDomain() }

// observe learns a node from its first request, so it gets its snapshot
// at once, and logs NACKs.
func (s *Server) observe(n *corev3.Node, typeURL, nack, nonce string) {
	if n != nil && n.GetId() != "" {
		s.mu.Lock()
		_, known := s.nodes[n.GetId()]
		k, ok := nodeKey(n)
		if !known && ok {
			s.nodes[n.GetId()] = k
		}
		s.mu.Unlock()
		if !known && ok {
			s.log.Info("node connected", "node", n.GetId())
			s.rebuild([]string{n.GetId()})
		}
	}
	if nack != "" {
		s.log.Warn("resource NACKed by a sidecar", "node", n.GetId(), "type", shortType(typeURL), "nonce", nonce, "error", nack)
	}
}

// nodeKey reads the app of a node: metadata app_id and namespace, else
// the id "<app-id>.<namespace>".
func nodeKey(n *corev3.Node) (appKey, bool) {
	md := n.GetMetadata().GetFields()
	app, ns := md["app_id"].GetStringValue(), md["namespace"].GetStringValue()
	if app == "" {
		app, ns, _ = strings.Cut(n.GetId(), ".")
	}
	if ns == "" {
		ns = "default"
	}
	return appKey{app, ns}, app != ""
}

// Serve serves ADS, the registry and the CA on ln until ctx ends. A
// connection that starts a TLS handshake gets HTTPS (HTTP/2): ADS, the
// registry and the signing endpoint; any other gets cleartext gRPC (h2c):
// ADS only, since xDS resources carry no secret and tokens must not travel
// in the clear.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.rebuild(nil)
	tlsLn, plainLn := newChanListener(ln.Addr()), newChanListener(ln.Addr())
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetHTTP2(true)
	hs := &http.Server{
		Handler:           s.Handler(),
		Protocols:         &protos,
		TLSConfig:         &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: s.servingCert},
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	wg.Go(func() {
		if err := s.grpc.Serve(plainLn); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, net.ErrClosed) {
			errc <- err
		}
	})
	wg.Go(func() {
		if err := hs.ServeTLS(tlsLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			errc <- err
		}
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					errc <- err
				}
				return
			}
			go route(c, tlsLn, plainLn)
		}
	})
	lctx, stop := context.WithCancel(ctx)
	wg.Go(func() { s.watchDir(lctx) })
	wg.Go(func() { s.sweep(lctx) })
	wg.Go(func() { s.rebuildLoop(lctx) })
	s.log.Info("control plane listening", "address", ln.Addr().String(), "trust_domain", s.TrustDomain().String(), "config_dir", s.opts.ConfigDir)
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	stop()
	_ = ln.Close()
	s.grpc.Stop()
	_ = hs.Close()
	tlsLn.Close()
	plainLn.Close()
	wg.Wait()
	return err
}

// route sends a connection to the TLS or the cleartext server by its
// first byte (0x16: a TLS handshake record).
func route(c net.Conn, tlsLn, plainLn *chanListener) {
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	b, err := br.Peek(1)
	_ = c.SetReadDeadline(time.Time{})
	if err != nil {
		_ = c.Close()
		return
	}
	pc := &peekedConn{Conn: c, r: br}
	if b[0] == 0x16 {
		tlsLn.deliver(pc)
	} else {
		plainLn.deliver(pc)
	}
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener is a listener fed connections by route.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.done:
		_ = c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// servingCert is the control plane's TLS certificate: an SVID of
// identity.ControlPlaneID from its own CA, re-minted at half its life.
func (s *Server) servingCert(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	s.certMu.Lock()
	defer s.certMu.Unlock()
	if c := s.cert; c != nil && time.Now().Before(c.Leaf.NotBefore.Add(c.Leaf.NotAfter.Sub(c.Leaf.NotBefore)/2)) {
		return c, nil
	}
	sv, err := s.ca.MintSVID(identity.ControlPlaneID(s.TrustDomain()), servingCertTTL, time.Minute)
	if err != nil {
		return nil, err
	}
	c := &tls.Certificate{PrivateKey: sv.PrivateKey, Leaf: sv.Certificates[0]}
	for _, x := range sv.Certificates {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	s.cert = c
	return c, nil
}

// watchDir re-reads the config dir every PollInterval; a changed,
// valid directory replaces the config and rebuilds every snapshot; an
// invalid one is logged and the last good one keeps serving.
func (s *Server) watchDir(ctx context.Context) {
	if s.opts.ConfigDir == "" {
		return
	}
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	last := dirHash(s.opts.ConfigDir)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h := dirHash(s.opts.ConfigDir)
		if h == last {
			continue
		}
		last = h
		cfg, err := loadDir(s.opts.ConfigDir)
		s.mu.Lock()
		if err != nil {
			s.cfgErr = err
		} else {
			s.cfg, s.cfgErr = cfg, nil
		}
		good := s.cfg.version
		s.mu.Unlock()
		if err != nil {
			s.log.Error("config rejected; the last good config keeps serving", "dir", s.opts.ConfigDir, "serving", good, "err", err)
			continue
		}
		s.log.Info("config changed", "version", cfg.version)
		s.rebuild(nil)
	}
}

// dirHash summarises the names and contents of the config dir's files.
func dirHash(dir string) [sha256.Size]byte {
	h := sha256.New()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		fmt.Fprintf(h, "%s %d\n", e.Name(), len(b))
		h.Write(b)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// sweep drops registrations whose lease has run out.
func (s *Server) sweep(ctx context.Context) {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var gone []string
		s.mu.Lock()
		for id, r := range s.regs {
			if now.After(r.expires) {
				delete(s.regs, id)
				gone = append(gone, id)
			}
		}
		s.mu.Unlock()
		if len(gone) > 0 {
			s.log.Info("leases expired", "instances", gone)
			s.trigger()
		}
	}
}

// trigger asks the rebuild loop for new snapshots; bursts coalesce.
func (s *Server) trigger() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *Server) rebuildLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.rebuild(nil)
	}
}

// rebuild builds the snapshot of the given nodes (nil: every node) from
// the current config and registrations, and sets those that changed.
func (s *Server) rebuild(only []string) {
	s.mu.Lock()
	if s.opts.Cluster && !s.clusterSet {
		// Snapshots from half a cluster would drop endpoints and policy.
		s.mu.Unlock()
		return
	}
	cfg := s.cfg
	ins := map[appKey][]instance{}
	for k, eps := range cfg.endpoints {
		for _, in := range eps.Instances {
			ins[k] = append(ins[k], staticToInstance(in))
		}
	}
	for k, list := range cfg.cluster {
		ins[k] = append(ins[k], list...)
	}
	if !s.opts.Cluster {
		// On Kubernetes the pods alone say where an app runs, and when it
		// is ready: a sidecar's registration there only makes its node
		// known (its pod may be deleted, or not ready, while it runs).
		for _, r := range s.regs {
			ins[r.key] = append(ins[r.key], r.inst)
		}
	}
	nodes := map[string]appKey{}
	for id, k := range s.nodes {
		if only == nil || slices.Contains(only, id) {
			nodes[id] = k
		}
	}
	s.mu.Unlock()
	for k := range ins {
		slices.SortFunc(ins[k], func(a, b instance) int { return strings.Compare(a.id, b.id) })
	}
	s.buildMu.Lock()
	defer s.buildMu.Unlock()
	// A node's resources depend on its app only through the Resiliency
	// resources that apply to it (buildResources), so nodes with the same
	// ones share one snapshot, built, validated and hashed once: a change
	// costs O(endpoints) however many nodes there are, not O(nodes ×
	// endpoints), and go-control-plane hashes a delta stream's resources
	// once per snapshot, not once per node.
	s.builds++
	groups := map[string]*builtSnapshot{}
	for id, k := range nodes {
		_, key := callerSpecs(k, cfg)
		b := groups[key]
		if b == nil {
			b = s.buildSnapshot(k, key, cfg, ins)
			groups[key] = b
		}
		if b.err != nil {
			s.log.Error("snapshot refused; the node keeps its last good one", "node", id, "err", b.err)
			continue
		}
		if b.hash == s.hashes[id] {
			continue
		}
		if err := s.cache.SetSnapshot(context.Background(), id, b.snap); err != nil {
			s.log.Error("set snapshot", "node", id, "err", err)
			continue
		}
		s.hashes[id] = b.hash
		s.log.Debug("snapshot set", "node", id, "config", cfg.version)
	}
	if only == nil { // forget the versions of sets of Resiliency resources no node has now
		for key := range s.typeVer {
			if groups[key] == nil {
				delete(s.typeVer, key)
			}
		}
	}
}

// builtSnapshot is the snapshot of the nodes of one set of Resiliency
// resources, or why it was refused.
type builtSnapshot struct {
	snap *sharedSnapshot
	hash [sha256.Size]byte
	err  error
}

// typeVersion is the version of one type of a group's resources and the
// hash of the content it was given to.
type typeVersion struct {
	hash    [sha256.Size]byte
	version string
}

// buildSnapshot builds and validates the resources of the node of app k
// (whose Resiliency resources are named by key) and versions each type
// on its own: an endpoint change then sends only ClusterLoadAssignments
// (state of the world resends a type whose version changed, whole). A
// type keeps its version while its content is the same and otherwise gets
// "<start time>-<rebuild>-<hash>": never one it had before (content that
// comes back after a NACKed change gets a new version, which the
// sidecars ACK again), never one of other content, and never one of an
// earlier run of the control plane.
func (s *Server) buildSnapshot(k appKey, key string, cfg *dirConfig, ins map[appKey][]instance) *builtSnapshot {
	rs, err := buildResources(k, cfg, ins)
	if err == nil {
		err = rs.validate()
	}
	if err != nil {
		return &builtSnapshot{err: err}
	}
	all, byType := rs.hashes()
	snap, err := cachev3.NewSnapshot("", map[resource.Type][]types.Resource(rs))
	if err != nil {
		return &builtSnapshot{err: err}
	}
	last := s.typeVer[key]
	if last == nil {
		last = map[string]typeVersion{}
		s.typeVer[key] = last
	}
	for typ, h := range byType {
		tv, ok := last[typ]
		if !ok || tv.hash != h {
			tv = typeVersion{hash: h, version: s.prefix + "-" + strconv.FormatUint(s.builds, 10) + "-" + hex.EncodeToString(h[:6])}
			last[typ] = tv
		}
		snap.Resources[cachev3.GetResponseType(typ)].Version = tv.version
	}
	shared := &sharedSnapshot{Snapshot: snap, byType: map[string]map[string]types.Resource{}}
	for typ := range byType {
		shared.byType[typ] = snap.GetResources(typ)
	}
	return &builtSnapshot{snap: shared, hash: all}
}

// sharedSnapshot is a snapshot set for many nodes. go-control-plane asks
// for a type's resources by name on every delta watch it answers (every
// stream and type, at every change), and cachev3.Snapshot makes a new map
// each time; this one makes them once. Callers only read them.
type sharedSnapshot struct {
	*cachev3.Snapshot
	byType map[string]map[string]types.Resource
}

func (s *sharedSnapshot) GetResources(typeURL string) map[string]types.Resource {
	return s.byType[typeURL]
}

// hashes fingerprints each type of a resource set (deterministic protobuf
// encoding, resources sorted by name), and the whole set.
func (rs resourceSet) hashes() (all [sha256.Size]byte, byType map[string][sha256.Size]byte) {
	byType = map[string][sha256.Size]byte{}
	sum := sha256.New()
	opt := proto.MarshalOptions{Deterministic: true}
	for _, typ := range servedTypes {
		list, ok := rs[typ]
		if !ok {
			continue
		}
		list = slices.Clone(list)
		slices.SortFunc(list, func(a, b types.Resource) int { return strings.Compare(resourceName(a), resourceName(b)) })
		h := sha256.New()
		for _, r := range list {
			b, _ := opt.Marshal(r)
			fmt.Fprintf(h, "%d\n", len(b))
			h.Write(b)
		}
		var th [sha256.Size]byte
		h.Sum(th[:0])
		byType[typ] = th
		fmt.Fprintf(sum, "%s ", typ)
		sum.Write(th[:])
	}
	sum.Sum(all[:0])
	return all, byType
}

// cacheLogger sends go-control-plane's logs to slog. Its Infof lines
// (one per delta watch, with the watch's subscribed names) go to debug,
// and are formatted only when debug is on: formatting a sidecar's
// thousand names on every ACK was a sixth of the control plane's CPU.
type cacheLogger struct{ l *slog.Logger }

func (c cacheLogger) Debugf(string, ...any) {} // one line per watch: too much even for debug
func (c cacheLogger) Infof(f string, a ...any) {
	if c.l.Enabled(context.Background(), slog.LevelDebug) {
		c.l.Debug(fmt.Sprintf(f, a...))
	}
}
func (c cacheLogger) Warnf(f string, a ...any) {
	if strings.HasPrefix(f, "ADS mode: not responding") {
		// A client that has not yet subscribed to a new cluster's or
		// listener's name: it will once it has the new CDS/LDS.
		c.Infof(f, a...)
		return
	}
	c.l.Warn(fmt.Sprintf(f, a...))
}
func (c cacheLogger) Errorf(f string, a ...any) { c.l.Error(fmt.Sprintf(f, a...)) }
