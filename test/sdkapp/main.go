// Command sdkapp is an app written with the official Dapr Go SDK's
// service packages (github.com/dapr/go-sdk/service/http or /grpc), for the
// end-to-end tests: method "echo" answers what it was called with as
// JSON; method "fail" answers an error; its app health check (HTTP
// /healthz, gRPC AppCallbackHealthCheck) always passes.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"log"
	"net"
	"strconv"

	"github.com/dapr/go-sdk/service/common"
	daprgrpc "github.com/dapr/go-sdk/service/grpc"
	daprhttp "github.com/dapr/go-sdk/service/http"
)

// Echo is what method echo answers.
type Echo struct {
	Verb        string `json:"verb"`
	Query       string `json:"query"`
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
}

func main() {
	port := flag.Int("port", 0, "port to listen on")
	protocol := flag.String("protocol", "http", "http or grpc: which of the SDK's services")
	flag.Parse()
	addr := "127.0.0.1:" + strconv.Itoa(*port)
	var s common.Service
	switch *protocol {
	case "grpc":
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		s = daprgrpc.NewServiceWithListener(ln)
	default:
		s = daprhttp.NewService(addr)
	}
	echo := func(_ context.Context, in *common.InvocationEvent) (*common.Content, error) {
		b, err := json.Marshal(Echo{Verb: in.Verb, Query: in.QueryString, ContentType: in.ContentType, Data: string(in.Data)})
		return &common.Content{Data: b, ContentType: "application/json"}, err
	}
	fail := func(context.Context, *common.InvocationEvent) (*common.Content, error) {
		return nil, errors.New("the app failed on purpose")
	}
	if err := s.AddServiceInvocationHandler("echo", echo); err != nil {
		log.Fatal(err)
	}
	if err := s.AddServiceInvocationHandler("fail", fail); err != nil {
		log.Fatal(err)
	}
	// Always healthy: the gRPC service answers AppCallbackHealthCheck with
	// an error unless a handler is set; the HTTP one serves it on /healthz.
	if err := s.AddHealthCheckHandler("/healthz", func(context.Context) error { return nil }); err != nil {
		log.Fatal(err)
	}
	log.Printf("sdkapp (%s) listening on %s", *protocol, addr)
	if err := s.Start(); err != nil {
		log.Fatal(err)
	}
}
