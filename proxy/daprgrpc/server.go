package daprgrpc

import (
	"context"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// HeaderAPIToken is the metadata key (and HTTP header) carrying
// DAPR_API_TOKEN.
const HeaderAPIToken = "dapr-api-token"

// Metadata is what GetMetadata reports of the sidecar.
type Metadata struct {
	ID             string
	RuntimeVersion string
	Extended       map[string]string
	AppPort        int
	AppProtocol    string
	ChannelAddress string
	MaxConcurrency int
	HTTPEndpoints  []string // names
	// AppHealth is the app health check settings; nil without checks.
	AppHealth *AppHealth
}

// AppHealth is AppConnectionProperties.health of GetMetadata: durations
// as Go writes them ("5s"), the path empty for gRPC apps.
type AppHealth struct {
	Path              string
	Interval, Timeout string
	Threshold         int
}

// Options configure a Server.
type Options struct {
	// Invoke is the sidecar's app-facing HTTP API: every InvokeService
	// call is served by it as the equivalent HTTP invocation, and every
	// call of another service that carries dapr-app-id metadata (proxy
	// mode) is forwarded through it as it is.
	Invoke http.Handler
	// APIToken is DAPR_API_TOKEN; empty: no token is asked for.
	APIToken string
	// Metadata reports the sidecar for GetMetadata.
	Metadata func() Metadata
	// MaxMessageBytes bounds a request's and an answer's message (Dapr's
	// --max-body-size, 4 MiB by default); 0 means 4 MiB.
	MaxMessageBytes int
	// IdleTimeout closes a connection that has had no call for this long
	// (0: never).
	IdleTimeout time.Duration
	// Metrics records Dapr's gRPC server metrics; nil: none.
	Metrics *Metrics
	Log     *slog.Logger
}

// Server is the gRPC API server. It is safe for concurrent use.
type Server struct {
	opts Options
	grpc *grpc.Server

	mu      sync.Mutex
	servers []*http.Server // one per listener Serve was given
	stopped bool
}

// maxConcurrentStreams matches the HTTP/2 listeners' limit (proxy/apiserver.go).
const maxConcurrentStreams = 250

// New returns a Server; Serve starts it.
func New(opts Options) *Server {
	if opts.MaxMessageBytes <= 0 {
		opts.MaxMessageBytes = 4 << 20
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	s := &Server{opts: opts}
	serverOpts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxMessageBytes),
		grpc.MaxSendMsgSize(opts.MaxMessageBytes),
		grpc.MaxConcurrentStreams(maxConcurrentStreams),
		grpc.MaxHeaderListSize(1 << 20),
		grpc.ChainUnaryInterceptor(s.authorizeUnary),
		grpc.ChainStreamInterceptor(s.authorizeStream),
		// Any other service without dapr-app-id (ServeHTTP forwards those
		// with it).
		grpc.UnknownServiceHandler(s.unknownService),
	}
	s.grpc = grpc.NewServer(serverOpts...)
	runtimev1.RegisterDaprServer(s.grpc, daprService{s: s})
	return s
}

// Serve accepts connections on ln until GracefulStop: gRPC is HTTP/2
// with prior knowledge (h2c), as on daprd's gRPC port.
func (s *Server) Serve(ln net.Listener) error {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	p.SetHTTP1(true) // an HTTP/1 client gets gRPC's refusal, not a closed connection
	srv := &http.Server{
		Handler:           s,
		Protocols:         &p,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       s.opts.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		HTTP2:             &http.HTTP2Config{MaxConcurrentStreams: maxConcurrentStreams},
		ErrorLog:          slog.NewLogLogger(s.opts.Log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	if s.stopped {
		s.mu.Unlock()
		return nil
	}
	s.servers = append(s.servers, srv)
	s.mu.Unlock()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// GracefulStop stops accepting and waits for calls in flight (streams
// included) until ctx ends; then it closes every connection.
func (s *Server) GracefulStop(ctx context.Context) {
	s.mu.Lock()
	s.stopped = true
	servers := s.servers
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, srv := range servers {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
		})
	}
	wg.Wait()
}

// daprService implements dapr.proto.runtime.v1.Dapr; methods it does not
// override answer Unimplemented.
type daprService struct {
	runtimev1.UnimplementedDaprServer
	s *Server
}

func (d daprService) InvokeService(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	return d.s.invoke(ctx, in)
}

func (d daprService) GetMetadata(context.Context, *runtimev1.GetMetadataRequest) (*runtimev1.GetMetadataResponse, error) {
	m := Metadata{}
	if d.s.opts.Metadata != nil {
		m = d.s.opts.Metadata()
	}
	return &runtimev1.GetMetadataResponse{
		Id:                   m.ID,
		RuntimeVersion:       m.RuntimeVersion,
		ExtendedMetadata:     m.Extended,
		EnabledFeatures:      []string{},
		RegisteredComponents: []*runtimev1.RegisteredComponents{},
		HttpEndpoints:        endpoints(m.HTTPEndpoints),
		AppConnectionProperties: &runtimev1.AppConnectionProperties{
			Port:           int32(m.AppPort),
			Protocol:       m.AppProtocol,
			ChannelAddress: m.ChannelAddress,
			MaxConcurrency: int32(m.MaxConcurrency),
			Health:         appHealth(m.AppHealth),
		},
	}, nil
}

// authorizeUnary and authorizeStream enforce DAPR_API_TOKEN on every
// method, with daprd's errors (contract §3.6).
func (s *Server) authorizeUnary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	if err := s.checkToken(ctx); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

func (s *Server) authorizeStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	if err := s.checkToken(ss.Context()); err != nil {
		return err
	}
	return next(srv, ss)
}

func (s *Server) checkToken(ctx context.Context) error {
	if s.opts.APIToken == "" {
		return nil
	}
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return httpStatusError(http.StatusUnauthorized, "missing metadata in request")
	}
	v := md.Get(HeaderAPIToken)
	if len(v) == 0 {
		return httpStatusError(http.StatusUnauthorized, "missing api token in request metadata")
	}
	if subtle.ConstantTimeCompare([]byte(v[0]), []byte(s.opts.APIToken)) != 1 {
		return httpStatusError(http.StatusUnauthorized, "authentication error: api token mismatch")
	}
	return nil
}

// unknownService answers a call of another service that carries no
// dapr-app-id, as daprd does.
func (s *Server) unknownService(any, grpc.ServerStream) error {
	return errors.New("cannot proxy request: missing dapr-app-id metadata")
}

func appHealth(h *AppHealth) *runtimev1.AppConnectionHealthProperties {
	if h == nil {
		return nil
	}
	return &runtimev1.AppConnectionHealthProperties{
		HealthCheckPath:     h.Path,
		HealthProbeInterval: h.Interval,
		HealthProbeTimeout:  h.Timeout,
		HealthThreshold:     int32(h.Threshold),
	}
}

func endpoints(names []string) []*runtimev1.MetadataHTTPEndpoint {
	out := make([]*runtimev1.MetadataHTTPEndpoint, len(names))
	for i, n := range names {
		out[i] = &runtimev1.MetadataHTTPEndpoint{Name: n}
	}
	return out
}
