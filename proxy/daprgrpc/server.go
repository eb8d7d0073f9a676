package daprgrpc

import (
	"context"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
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
}

// Options configure a Server.
type Options struct {
	// Invoke is the sidecar's app-facing HTTP API: every InvokeService
	// call is served by it as the equivalent HTTP invocation.
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
	Log         *slog.Logger
}

// Server is the gRPC API server. It is safe for concurrent use.
type Server struct {
	opts Options
	grpc *grpc.Server
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
		// Any other service: Dapr's proxy mode (dapr-app-id metadata).
		grpc.UnknownServiceHandler(s.unknownService),
	}
	if opts.IdleTimeout > 0 {
		serverOpts = append(serverOpts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: opts.IdleTimeout}))
	}
	s.grpc = grpc.NewServer(serverOpts...)
	runtimev1.RegisterDaprServer(s.grpc, daprService{s: s})
	return s
}

// Serve accepts connections on ln until Stop or GracefulStop.
func (s *Server) Serve(ln net.Listener) error { return s.grpc.Serve(ln) }

// GracefulStop stops accepting and waits for calls in flight, until ctx
// ends; then it closes every connection.
func (s *Server) GracefulStop(ctx context.Context) {
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
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
		HttpEndpoints:        []*runtimev1.MetadataHTTPEndpoint{},
		AppConnectionProperties: &runtimev1.AppConnectionProperties{
			Port:           int32(m.AppPort),
			Protocol:       m.AppProtocol,
			ChannelAddress: m.ChannelAddress,
			MaxConcurrency: int32(m.MaxConcurrency),
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

// unknownService answers a call of any other service. Dapr proxies those
// that carry dapr-app-id metadata to the target app; Skein does not yet
// (issue 12, point 2) and says so.
func (s *Server) unknownService(_ any, ss grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	if len(md.Get("dapr-app-id")) == 0 {
		return fmt.Errorf("cannot proxy request: missing dapr-app-id metadata")
	}
	method, _ := grpc.MethodFromServerStream(ss)
	return errUnimplemented("gRPC proxying (" + method + " with dapr-app-id) is not supported yet")
}
