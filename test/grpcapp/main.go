// Command grpcapp is the gRPC app of the end-to-end tests: grpc-go's own
// interoperability TestService (unary, client-, server- and
// bidirectional streaming, echoed metadata, requested status codes) and
// the standard health service, on --port, in cleartext HTTP/2.
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
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
	healthpb.RegisterHealthServer(s, health.NewServer())
	log.Printf("grpcapp listening on %s", ln.Addr())
	log.Fatal(s.Serve(ln))
}
