package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/inject"
	"github.com/skeinmesh/skein/overload"
	"github.com/skeinmesh/skein/proxy"
	"github.com/skeinmesh/skein/telemetry"
)

// sidecarFlags are daprd's flag names for what Skein implements.
type sidecarFlags struct {
	appID, appProtocol, appChannelAddress string
	appPort, appMaxConcurrency            int
	httpPort, grpcPort, internalPort      int
	internalListenAddr                    string
	listenAddresses                       string
	metricsPort                           int
	metricsListenAddr                     string
	publicPort                            int
	publicListenAddr                      string
	enableMetrics                         bool
	config                                string
	resourcesPaths                        stringList
	logLevel                              string
	logAsJSON                             bool
	maxBodySize, readBufferSize           string
	enableMTLS                            bool
	mode                                  string
	graceSeconds                          int
	balancer                              string
	cores                                 int
	spiffeSocket                          string
	peerTransport                         string
	maxReplayBody                         string
	accessLog                             string
	outlierConsecutive                    int
	joinToken, controlPlaneCAFile         string
	kubeTokenFile                         string
	controlPlaneAddress, xdsMode          string
	outlierBase, outlierMax               time.Duration
	apiIdleTimeout, apiReadHeaderTimeout  time.Duration
	apiMaxIdleConns                       int
	appHealth                             bool
	appHealthPath                         string
	appHealthInterval, appHealthTimeout   time.Duration
	appHealthThreshold                    int
	overloadProtection                    bool
	overloadMinLimit, overloadMaxLimit    int
}

type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// newSidecarFlagSet registers the flags on a new set. In run mode every
// port defaults to 0, a free port, as the Dapr CLI does.
func newSidecarFlagSet(name string, f *sidecarFlags, runMode bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	defHTTP, defGRPC, defMetrics := 3500, 50001, 9090
	if runMode {
		defHTTP, defGRPC, defMetrics = 0, 0, 0
	}
	fs.StringVar(&f.appID, "app-id", "", "the app's id (required; no dots)")
	fs.IntVar(&f.appPort, "app-port", 0, "the port the app listens on (0: no app channel)")
	fs.StringVar(&f.appProtocol, "app-protocol", "http", "protocol to the app: http, h2c, https, grpc or grpcs")
	fs.StringVar(&f.appChannelAddress, "app-channel-address", "127.0.0.1", "the app's address")
	fs.IntVar(&f.appMaxConcurrency, "app-max-concurrency", -1, "calls in flight to the app at most; more queue (-1: unlimited)")
	fs.IntVar(&f.httpPort, "dapr-http-port", defHTTP, "HTTP API port (0: a free port)")
	fs.IntVar(&f.grpcPort, "dapr-grpc-port", defGRPC, "Dapr gRPC API port: InvokeService, GetMetadata (0: a free port)")
	fs.IntVar(&f.internalPort, "dapr-internal-grpc-port", 0, "peer-facing port other sidecars call (0: a free port)")
	fs.StringVar(&f.internalListenAddr, "dapr-internal-grpc-listen-address", "127.0.0.1", "address of the peer-facing port")
	fs.StringVar(&f.listenAddresses, "dapr-listen-addresses", "127.0.0.1", "comma-separated addresses of the HTTP API")
	fs.IntVar(&f.metricsPort, "metrics-port", defMetrics, "Prometheus metrics port (0: a free port)")
	fs.StringVar(&f.metricsListenAddr, "metrics-listen-address", "127.0.0.1", "address of the metrics port")
	fs.IntVar(&f.publicPort, "dapr-public-port", 0, "port serving only /v1.0/healthz and /v1.0/healthz/outbound, for probes (0: none)")
	fs.StringVar(&f.publicListenAddr, "dapr-public-listen-address", "", "address of the public port (empty: every interface)")
	fs.BoolVar(&f.enableMetrics, "enable-metrics", true, "serve Prometheus metrics")
	fs.StringVar(&f.config, "config", "", "Dapr Configuration YAML file")
	fs.Var(&f.resourcesPaths, "resources-path", "directory of resource YAML files (repeatable)")
	fs.Var(&f.resourcesPaths, "components-path", "alias of --resources-path")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.BoolVar(&f.logAsJSON, "log-as-json", false, "log JSON lines")
	fs.StringVar(&f.maxBodySize, "max-body-size", "", "largest request body, e.g. 4Mi (empty: unlimited)")
	fs.StringVar(&f.readBufferSize, "read-buffer-size", "4Ki", "largest request header block on the API port, request line included (larger gets 431)")
	fs.DurationVar(&f.apiIdleTimeout, "api-idle-timeout", proxy.DefaultAPIIdleTimeout, "close an API keep-alive connection idle this long")
	fs.IntVar(&f.apiMaxIdleConns, "api-max-idle-connections", proxy.DefaultAPIMaxIdleConns, "most idle keep-alive connections the API port keeps; beyond it the one idle longest is closed")
	fs.DurationVar(&f.apiReadHeaderTimeout, "api-read-header-timeout", proxy.DefaultAPIReadHeaderTimeout, "longest time to read a request's line and headers on the API port, each request of a connection")
	fs.BoolVar(&f.enableMTLS, "enable-mtls", true, "SPIFFE mTLS between sidecars (false: cleartext h2c, for debugging)")
	fs.StringVar(&f.peerTransport, "peer-transport", "", "calls to other sidecars: h1 (keep-alive HTTP/1.1 over TCP, default), h2 (HTTP/2 over TCP) or h3 (HTTP/3 over QUIC, falling back to h2)")
	fs.StringVar(&f.controlPlaneAddress, "control-plane-address", "", "HOST:PORT of an xDS control plane (ADS over gRPC), or several comma-separated (replicas: when one fails the next is tried): routes, endpoints, resiliency and access policy come from it too (default: the Configuration's spec.controlPlane.address)")
	fs.StringVar(&f.xdsMode, "xds-mode", "", "ADS variant: sotw (state of the world, default) or delta (incremental) (default: spec.controlPlane.mode)")
	fs.StringVar(&f.joinToken, "join-token", "", "token for the control plane's registry and CA (default $SKEIN_JOIN_TOKEN); with --control-plane-address the SVID comes from the control plane")
	fs.StringVar(&f.kubeTokenFile, "kubernetes-token-file", "", "the pod's projected service-account token (audience "+inject.TokenAudience+"), re-read at each SVID request: proves the pod to a control plane on Kubernetes (default "+inject.TokenPath+" when that file exists)")
	fs.StringVar(&f.controlPlaneCAFile, "control-plane-ca-file", "", "PEM roots the control plane's certificate must chain to (empty: trust on first use, checked against the bundle it returns)")
	fs.StringVar(&f.spiffeSocket, "spiffe-endpoint-socket", "", "SPIFFE Workload API address, e.g. unix:///run/spire/agent.sock (default $SPIFFE_ENDPOINT_SOCKET; empty: the embedded CA)")
	fs.StringVar(&f.mode, "mode", "standalone", "standalone only")
	fs.IntVar(&f.graceSeconds, "dapr-graceful-shutdown-seconds", 5, "how long shutdown waits for calls in flight")
	fs.StringVar(&f.balancer, "load-balancer", "p2c", "p2c (peak-EWMA power of two choices) or round-robin")
	fs.StringVar(&f.accessLog, "access-log", "", "one JSON line per call (caller, callee, method, status, bytes, timings): - for stderr, or a file path; off when empty")
	fs.StringVar(&f.maxReplayBody, "max-replay-body-size", "1Mi", "largest fixed-length request body kept to replay on a retry; larger and chunked bodies are sent once")
	fs.IntVar(&f.outlierConsecutive, "outlier-consecutive-failures", discovery.DefaultOutlierDetection.Consecutive, "5xx answers or connection failures in a row that eject an instance (0: no ejection)")
	fs.DurationVar(&f.outlierBase, "outlier-base-ejection", discovery.DefaultOutlierDetection.BaseEjection, "how long a first ejection lasts; each further one doubles it")
	fs.DurationVar(&f.outlierMax, "outlier-max-ejection", discovery.DefaultOutlierDetection.MaxEjection, "the longest ejection")
	fs.BoolVar(&f.appHealth, "enable-app-health-check", false, "probe the app's health; calls to an unhealthy app fail and its instance leaves discovery")
	fs.StringVar(&f.appHealthPath, "app-health-check-path", apphealth.DefaultPath, "path the health probes GET (HTTP apps; gRPC apps answer AppCallbackHealthCheck)")
	f.appHealthInterval, f.appHealthTimeout = apphealth.DefaultInterval, apphealth.DefaultTimeout
	fs.Var(daprDuration{&f.appHealthInterval, time.Second}, "app-health-probe-interval", "time between health probes: a duration, or whole seconds as daprd takes it")
	fs.Var(daprDuration{&f.appHealthTimeout, time.Millisecond}, "app-health-probe-timeout", "timeout of a health probe, at most the interval: a duration, or milliseconds as daprd takes it")
	fs.IntVar(&f.appHealthThreshold, "app-health-threshold", apphealth.DefaultThreshold, "failed health probes in a row that make the app unhealthy")
	fs.BoolVar(&f.overloadProtection, "overload-protection", true, "adaptive concurrency limits per target and on the app channel: calls beyond one are refused at once with 503 OVERLOADED (false: calls queue)")
	fs.IntVar(&f.overloadMinLimit, "overload-min-limit", overload.DefaultConfig.MinLimit, "lowest an adaptive concurrency limit goes: calls in flight never refused")
	fs.IntVar(&f.overloadMaxLimit, "overload-max-limit", overload.DefaultConfig.MaxLimit, "highest an adaptive concurrency limit goes")
	fs.IntVar(&f.cores, "cores", 1, "CPU cores the sidecar uses (0: all; the GOMAXPROCS variable overrides)")
	return fs
}

// options validates the flags and turns them into sidecar options.
func (f *sidecarFlags) options() (proxy.Options, error) {
	var errs []error
	if err := proxy.ValidateAppID(f.appID); err != nil {
		errs = append(errs, fmt.Errorf("--app-id: %w", err))
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"app-port", f.appPort}, {"dapr-http-port", f.httpPort}, {"dapr-grpc-port", f.grpcPort},
		{"dapr-internal-grpc-port", f.internalPort}, {"metrics-port", f.metricsPort}, {"dapr-public-port", f.publicPort}} {
		if p.v < 0 || p.v > 65535 {
			errs = append(errs, fmt.Errorf("--%s: %d is not a port", p.name, p.v))
		}
	}
	if f.appPort != 0 && (f.appPort == f.httpPort || f.appPort == f.grpcPort) {
		errs = append(errs, fmt.Errorf("--app-port: %d is also the sidecar's API port", f.appPort))
	}
	switch f.appProtocol {
	case "http", "h2c", "https", "grpc", "grpcs":
	default:
		errs = append(errs, fmt.Errorf("--app-protocol: unknown protocol %q (want http, h2c, https, grpc or grpcs)", f.appProtocol))
	}
	if err := f.checkXDS(); err != nil {
		errs = append(errs, err)
	}
	if f.mode != "standalone" {
		errs = append(errs, fmt.Errorf("--mode: %q is not supported (want standalone)", f.mode))
	}
	if _, err := telemetry.ParseLevel(f.logLevel); err != nil {
		errs = append(errs, fmt.Errorf("--log-level: %w", err))
	}
	var maxBody int64
	if f.maxBodySize != "" {
		v, err := parseQuantity(f.maxBodySize)
		if err != nil {
			errs = append(errs, fmt.Errorf("--max-body-size: %w", err))
		}
		maxBody = v
	}
	replay, err := parseQuantity(f.maxReplayBody)
	if err != nil || replay < 0 {
		errs = append(errs, fmt.Errorf("--max-replay-body-size: invalid size %q", f.maxReplayBody))
	}
	if replay == 0 {
		replay = -1 // proxy.Options: negative keeps no body
	}
	outlier := discovery.OutlierDetection{Consecutive: f.outlierConsecutive, BaseEjection: f.outlierBase, MaxEjection: f.outlierMax}
	if err := outlier.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--outlier-*: %w", err))
	}
	rbs, err := parseQuantity(f.readBufferSize)
	if err != nil || rbs <= 0 {
		errs = append(errs, fmt.Errorf("--read-buffer-size: invalid size %q", f.readBufferSize))
	}
	addrs, err := parseListenAddresses(f.listenAddresses)
	if err != nil {
		errs = append(errs, fmt.Errorf("--dapr-listen-addresses: %w", err))
	}
	for _, a := range []struct{ name, v string }{{"app-channel-address", f.appChannelAddress},
		{"dapr-internal-grpc-listen-address", f.internalListenAddr}, {"metrics-listen-address", f.metricsListenAddr}} {
		if a.v == "" {
			errs = append(errs, fmt.Errorf("--%s: empty address", a.name))
		}
	}
	if f.apiMaxIdleConns < 1 {
		errs = append(errs, fmt.Errorf("--api-max-idle-connections: %d is less than 1", f.apiMaxIdleConns))
	}
	if f.cores < 0 {
		errs = append(errs, fmt.Errorf("--cores: %d is negative", f.cores))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"api-idle-timeout", f.apiIdleTimeout}, {"api-read-header-timeout", f.apiReadHeaderTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s: %s is not positive", d.name, d.v))
		}
	}
	if err := f.checkAppHealth(); err != nil {
		errs = append(errs, err)
	}
	if f.overloadMinLimit < 1 {
		errs = append(errs, fmt.Errorf("--overload-min-limit: %d is below 1", f.overloadMinLimit))
	}
	if f.overloadMaxLimit < f.overloadMinLimit {
		errs = append(errs, fmt.Errorf("--overload-max-limit: %d is below --overload-min-limit %d", f.overloadMaxLimit, f.overloadMinLimit))
	}
	if f.graceSeconds < 0 {
		errs = append(errs, fmt.Errorf("--dapr-graceful-shutdown-seconds: %d is negative", f.graceSeconds))
	}
	var bal discovery.Balancer
	switch f.balancer {
	case "p2c":
		bal = discovery.P2C{}
	case "round-robin":
		bal = &discovery.RoundRobin{}
	default:
		errs = append(errs, fmt.Errorf("--load-balancer: unknown balancer %q (want p2c or round-robin)", f.balancer))
	}
	if err := errors.Join(errs...); err != nil {
		return proxy.Options{}, err
	}
	ns := os.Getenv("NAMESPACE")
	if ns == "" {
		ns = "default"
	}
	return proxy.Options{
		AppID:              f.appID,
		Namespace:          ns,
		AppPort:            f.appPort,
		AppProtocol:        f.appProtocol,
		AppChannelAddress:  f.appChannelAddress,
		AppMaxConcurrency:  f.appMaxConcurrency,
		AppAPIToken:        os.Getenv("APP_API_TOKEN"),
		APIToken:           os.Getenv("DAPR_API_TOKEN"),
		HTTPPort:           f.httpPort,
		GRPCPort:           f.grpcPort,
		ListenAddresses:    addrs,
		InternalPort:       f.internalPort,
		InternalListenAddr: f.internalListenAddr,
		MetricsPort:        f.metricsPort,
		MetricsListenAddr:  f.metricsListenAddr,
		PublicPort:         f.publicPort,
		PublicListenAddr:   f.publicListenAddr,
		EnableMetrics:      f.enableMetrics,
		MaxBodySize:        maxBody,
		MaxHeaderBytes:     int(rbs),
		GracePeriod:        time.Duration(f.graceSeconds) * time.Second,
		Balancer:           bal,
		MaxReplayBody:      replay,
		OutlierDetection:   outlier,
		AppHealth:          f.appHealthConfig(),
		Overload:           f.overloadConfig(),

		APIIdleTimeout:       f.apiIdleTimeout,
		APIReadHeaderTimeout: f.apiReadHeaderTimeout,
		APIMaxIdleConns:      f.apiMaxIdleConns,
	}, nil
}

// overloadConfig sizes the adaptive concurrency limits; nil with
// --overload-protection=false.
func (f *sidecarFlags) overloadConfig() *overload.Config {
	if !f.overloadProtection {
		return nil
	}
	cfg := overload.DefaultConfig
	cfg.MinLimit, cfg.MaxLimit = f.overloadMinLimit, f.overloadMaxLimit
	return &cfg
}

// checkAppHealth validates the --app-health-* flags, used or not (daprd
// refuses a timeout past the interval either way).
func (f *sidecarFlags) checkAppHealth() error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"app-health-probe-interval", f.appHealthInterval}, {"app-health-probe-timeout", f.appHealthTimeout}} {
		if d.v <= 0 {
			errs = append(errs, fmt.Errorf("--%s: %s is not positive", d.name, d.v))
		}
	}
	if f.appHealthTimeout > f.appHealthInterval {
		errs = append(errs, fmt.Errorf("--app-health-probe-timeout: %s is longer than --app-health-probe-interval %s", f.appHealthTimeout, f.appHealthInterval))
	}
	if f.appHealthThreshold < 1 {
		errs = append(errs, fmt.Errorf("--app-health-threshold: %d is below 1", f.appHealthThreshold))
	}
	if len(errs) == 0 {
		if err := f.appHealthSettings().Validate(); err != nil { // what is left: the path
			errs = append(errs, fmt.Errorf("--app-health-check-path: %w", err))
		}
	}
	return errors.Join(errs...)
}

// appHealthConfig is the checks' settings; nil without
// --enable-app-health-check.
func (f *sidecarFlags) appHealthConfig() *apphealth.Config {
	if !f.appHealth {
		return nil
	}
	cfg := f.appHealthSettings()
	return &cfg
}

func (f *sidecarFlags) appHealthSettings() apphealth.Config {
	return apphealth.Config{Path: f.appHealthPath, Interval: f.appHealthInterval, Timeout: f.appHealthTimeout, Threshold: f.appHealthThreshold}
}

// daprDuration is a duration flag that also takes daprd's form, a whole
// number in unit (--app-health-probe-interval 5 is 5s, and
// --app-health-probe-timeout 500 is 500ms, as in daprd).
type daprDuration struct {
	d    *time.Duration
	unit time.Duration
}

func (v daprDuration) String() string {
	if v.d == nil {
		return ""
	}
	return v.d.String()
}

func (v daprDuration) Set(s string) error {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n > int64(math.MaxInt64/v.unit) || n < int64(math.MinInt64/v.unit) {
			return fmt.Errorf("%s is out of range", s)
		}
		*v.d = time.Duration(n) * v.unit
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("want a duration such as 5s or a whole number")
	}
	*v.d = d
	return nil
}

// parseListenAddresses accepts daprd's forms: "127.0.0.1", "[::1],127.0.0.1",
// "0.0.0.0", "localhost".
func parseListenAddresses(s string) ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "["), "]")
		if a == "" {
			continue
		}
		if a != "localhost" && net.ParseIP(a) == nil {
			return nil, fmt.Errorf("%q is not an IP address", a)
		}
		out = append(out, a)
	}
	if len(out) == 0 {
		return nil, errors.New("no address given")
	}
	return out, nil
}

// parseQuantity parses a Kubernetes-style size: "4Mi", "4M", "512Ki",
// "1Gi", "1048576".
func parseQuantity(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
		{"k", 1e3}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}}
	mult := int64(1)
	num := s
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q (want e.g. 4Mi)", s)
	}
	return n * mult, nil
}

// skeinHome returns $SKEIN_HOME, default ~/.skein.
func skeinHome() string {
	if h := os.Getenv("SKEIN_HOME"); h != "" {
		return h
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ".skein"
	}
	return filepath.Join(home, ".skein")
}
