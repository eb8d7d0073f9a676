// Command grpcapp is the gRPC app of the end-to-end tests: grpc-go's own
// interoperability TestService (unary, client-, server- and
// bidirectional streaming, echoed metadata, requested status codes) and
// the standard health service, on --port, in cleartext HTTP/2. A stream
// stopped by its context is logged ("call <method> ended: <reason>").
package main

import (
	"flag"
	"log"
	"net"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
)

func main() {
	port := flag.Int("port", 0, "port to listen on")
	flag.Parse()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(*port))
	if err != nil {
		log.Fatal(err)
	}
	// Every call whose context ended before it did (the client's deadline
	// or cancellation, carried through the sidecars) is logged, for the
	// tests to see that the app's call was stopped.
	s := grpc.NewServer(grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		err := next(srv, ss)
		if cerr := ss.Context().Err(); cerr != nil {
			log.Printf("call %s ended: %v", info.FullMethod, cerr)
		}
		return err
	}))
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	healthpb.RegisterHealthServer(s, health.NewServer())
	log.Printf("grpcapp listening on %s", ln.Addr())
	log.Fatal(s.Serve(ln))
}
