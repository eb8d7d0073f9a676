package test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// grpcApp starts test/grpcapp (grpc-go's interop TestService and the
// health service) and returns its port.
func (m *mesh) grpcApp(name string) int {
	port, _ := m.grpcAppProc(name)
	return port
}

// grpcAppProc is grpcApp, with the app's process (whose output logs the
// calls stopped by their context).
func (m *mesh) grpcAppProc(name string) (int, *proc) {
	m.t.Helper()
	port := freePort(m.t)
	p := m.start("grpc app "+name, bin.grpcapp, nil, "--port", strconv.Itoa(port))
	waitFor(m.t, 10*time.Second, "grpc app "+name+" listening", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port, p
}

// TestGRPCProxying: a plain grpc-go client calls a gRPC service through two
// sidecars over mTLS by setting dapr-app-id metadata, as Dapr's proxy mode
// has it: unary and every kind of streaming, metadata and trailers both
// ways, statuses with their details, deadlines.
func TestGRPCProxying(t *testing.T) {
	m := newMesh(t)
	g := m.sidecar("app-g", m.grpcApp("g"), "--app-protocol", "grpc")
	a := m.sidecar("app-a", 0)
	conn := grpcConn(t, a)
	tc := testgrpc.NewTestServiceClient(conn)
	base, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ctx := metadata.AppendToOutgoingContext(base, "dapr-app-id", "app-g")

	// Unary, with metadata echoed as headers and binary trailers.
	var hdr, trl metadata.MD
	echoCtx := metadata.AppendToOutgoingContext(ctx, "x-grpc-test-echo-initial", "hello", "x-grpc-test-echo-trailing-bin", string([]byte{0, 1, 0xfe}))
	resp, err := tc.UnaryCall(echoCtx, &testgrpc.SimpleRequest{ResponseSize: 2000, Payload: &testgrpc.Payload{Body: make([]byte, 1000)}},
		grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatalf("unary through the mesh: %v", err)
	}
	if n := len(resp.GetPayload().GetBody()); n != 2000 {
		t.Errorf("unary answer of %d bytes, want 2000", n)
	}
	if got := hdr.Get("x-grpc-test-echo-initial"); len(got) != 1 || got[0] != "hello" {
		t.Errorf("echoed header %q, want hello", got)
	}
	if got := trl.Get("x-grpc-test-echo-trailing-bin"); len(got) != 1 || got[0] != string([]byte{0, 1, 0xfe}) {
		t.Errorf("echoed binary trailer %q, want 00 01 fe", got)
	}

	// A status the app chose comes back unchanged.
	_, err = tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.InvalidArgument), Message: "bad thing ünïcode"}})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != "bad thing ünïcode" {
		t.Errorf("app status: %v, want InvalidArgument \"bad thing ünïcode\"", err)
	}

	// Server streaming: 16 messages of 1 MiB, streamed (16 MiB in all).
	sizes := make([]*testgrpc.ResponseParameters, 16)
	for i := range sizes {
		sizes[i] = &testgrpc.ResponseParameters{Size: 1 << 20}
	}
	ss, err := tc.StreamingOutputCall(ctx, &testgrpc.StreamingOutputCallRequest{ResponseParameters: sizes})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for {
		r, err := ss.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("server stream after %d messages: %v", got, err)
		}
		if len(r.GetPayload().GetBody()) != 1<<20 {
			t.Fatalf("server stream message %d: %d bytes", got, len(r.GetPayload().GetBody()))
		}
		got++
	}
	if got != len(sizes) {
		t.Errorf("server stream: %d messages, want %d", got, len(sizes))
	}

	// Client streaming.
	cs, err := tc.StreamingInputCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range []int{27182, 8, 1828, 45904} {
		if err := cs.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: bytes.Repeat([]byte{1}, n)}}); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	agg, err := cs.CloseAndRecv()
	if err != nil || int(agg.GetAggregatedPayloadSize()) != total {
		t.Errorf("client stream: %v, aggregated %d, want %d", err, agg.GetAggregatedPayloadSize(), total)
	}

	// Bidirectional ping-pong: each answer must arrive before the next
	// request is sent, so nothing may wait for the whole stream.
	bs, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, n := range []int32{31415, 9, 2653, 58979} {
		if err := bs.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: n}}}); err != nil {
			t.Fatalf("ping %d: %v", i, err)
		}
		r, err := bs.Recv()
		if err != nil || int32(len(r.GetPayload().GetBody())) != n {
			t.Fatalf("pong %d: %v, %d bytes, want %d", i, err, len(r.GetPayload().GetBody()), n)
		}
	}
	if err := bs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bs.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("end of the bidirectional stream: %v, want io.EOF", err)
	}

	// The client's deadline holds through both sidecars: the app was asked
	// to answer after 5 s.
	dctx, dcancel := context.WithTimeout(ctx, 500*time.Millisecond)
	start := time.Now()
	ds, err := tc.FullDuplexCall(dctx)
	if err == nil {
		err = ds.Send(&testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 5_000_000}}})
	}
	if err == nil {
		_, err = ds.Recv()
	}
	dcancel()
	if status.Code(err) != codes.DeadlineExceeded || time.Since(start) > 4*time.Second {
		t.Errorf("deadline: %v after %s, want DeadlineExceeded", err, time.Since(start))
	}

	// The health service of the same app, by the same route.
	h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("health through the mesh: %v %v", h, err)
	}

	// An app id nobody serves: Dapr's Internal error with Skein's reason.
	_, err = tc.EmptyCall(metadata.AppendToOutgoingContext(base, "dapr-app-id", "nosuch"), &testgrpc.Empty{})
	st, info := statusOf(t, err)
	if st.Code() != codes.Internal || info == nil || info.Reason != "APP_NOT_FOUND" {
		t.Errorf("unknown app: %v (%v), want Internal with reason APP_NOT_FOUND", err, info)
	}
	// Dapr's gRPC server metrics, by the user's method and status.
	if n := a.metric(t, "dapr_grpc_io_server_completed_rpcs", `grpc_server_method="/grpc.testing.TestService/UnaryCall"`, `grpc_server_status="InvalidArgument"`); n != 1 {
		t.Errorf("proxied UnaryCall counted InvalidArgument: %v, want 1", n)
	}
	if n := a.metric(t, "dapr_grpc_io_server_completed_rpcs", `grpc_server_method="/grpc.testing.TestService/FullDuplexCall"`, `grpc_server_status="OK"`); n < 1 {
		t.Errorf("proxied FullDuplexCall counted OK: %v, want the ping-pong", n)
	}
	// gRPC went sidecar to sidecar over HTTP/2 with mTLS (the default
	// peer transport, HTTP/1.1, has no trailers).
	if n := g.metric(t, "skein_peer_connections_opened_total", `transport="h2"`); n < 1 {
		t.Errorf("callee: %v HTTP/2 peer connections opened, want the gRPC calls' one", n)
	}
}

// TestGRPCProxyingAccessControl: the callee's access policy applies to
// proxied gRPC calls on the method's path, case-sensitively and whatever
// the verb (Dapr: verb NONE); a denied call is PermissionDenied and never
// reaches the app.
func TestGRPCProxyingAccessControl(t *testing.T) {
	m := newMesh(t)
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	policy := `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: grpc-callee
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app-a
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /grpc.testing.TestService/UnaryCall
        httpVerb: ['GET']
        action: allow
`
	if err := os.WriteFile(cfg, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	m.sidecar("app-g", m.grpcApp("g"), "--app-protocol", "h2c", "--config", cfg)
	a := m.sidecar("app-a", 0)
	conn := grpcConn(t, a)
	tc := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "app-g")

	// Allowed although gRPC calls are POSTs: the verb is not looked at.
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 10}); err != nil {
		t.Errorf("allowed method: %v", err)
	}
	for _, call := range []func() error{
		func() error { _, err := tc.EmptyCall(ctx, &testgrpc.Empty{}); return err },
		func() error { // another case: a different method in gRPC
			return conn.Invoke(ctx, "/grpc.testing.TestService/unarycall", &testgrpc.SimpleRequest{}, &testgrpc.SimpleResponse{})
		},
	} {
		err := call()
		st, info := statusOf(t, err)
		if st.Code() != codes.PermissionDenied || info == nil || info.Reason != "ACCESS_DENIED" || !strings.Contains(st.Message(), "verb: NONE") {
			t.Errorf("denied method: %v (%v), want PermissionDenied, reason ACCESS_DENIED, verb NONE", err, info)
		}
	}
}

// TestGRPCProxyingSpans: a proxied gRPC call is one trace in Jaeger, named
// as Dapr names it on both sidecars (the user's full method), the callee's
// SERVER span the child of the caller's CLIENT span, and an app's error
// status marks both spans as errors with its message.
func TestGRPCProxyingSpans(t *testing.T) {
	m := newMesh(t)
	j := startJaeger(t, m)
	fast := []string{"OTEL_BSP_SCHEDULE_DELAY=200"}
	m.sidecarEnv("app-g", m.grpcApp("g"), fast, "--app-protocol", "grpc", "--config", tracingConfig(t, "grpc", j.otlpGRPC, "5s"))
	a := m.sidecarEnv("app-a", m.grpcApp("a"), fast, "--app-protocol", "grpc", "--config", tracingConfig(t, "http", j.otlpHTTP, "5s"))
	conn := grpcConn(t, a)
	tc := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "app-g")
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.EmptyCall(ctx, &testgrpc.Empty{}); err != nil {
		t.Fatal(err)
	}
	_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.NotFound), Message: "no such thing"}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("app's NotFound: %v", err)
	}

	var traces []jaegerTrace
	waitFor(t, 30*time.Second, "three traces with both spans in jaeger", func() bool {
		traces = j.traces(t, "app-a")
		if len(traces) < 3 {
			return false
		}
		for _, tr := range traces {
			if len(tr.Spans) < 2 {
				return false
			}
		}
		return true
	})
	failed := 0
	for _, tr := range traces {
		var client, server *span
		ss := tr.spans()
		for i := range ss {
			switch s := &ss[i]; {
			case s.service == "app-a" && s.tags["span.kind"] == "client":
				client = s
			case s.service == "app-g" && s.tags["span.kind"] == "server":
				server = s
			}
		}
		if client == nil || server == nil {
			t.Errorf("trace %s: spans %+v, want an app-a client and an app-g server", tr.TraceID, ss)
			continue
		}
		if server.parent != client.id {
			t.Errorf("trace %s: server span's parent %q, want the client span %s", tr.TraceID, server.parent, client.id)
		}
		if !strings.HasPrefix(client.name, "/grpc.testing.TestService/") || server.name != client.name {
			t.Errorf("trace %s: names %q / %q, want the full gRPC method on both", tr.TraceID, client.name, server.name)
		}
		if client.tags["dapr.protocol"] != "grpc" || client.tags["dapr.api"] != client.name {
			t.Errorf("trace %s: client dapr.protocol %q dapr.api %q, want grpc and the method", tr.TraceID, client.tags["dapr.protocol"], client.tags["dapr.api"])
		}
		if client.tags["otel.status_code"] == "ERROR" {
			failed++
			if client.tags["otel.status_description"] != "no such thing" || server.tags["otel.status_code"] != "ERROR" {
				t.Errorf("trace %s: error spans %q / %q, want ERROR with the app's message on both", tr.TraceID, client.tags["otel.status_description"], server.tags["otel.status_code"])
			}
		}
	}
	if failed != 1 {
		t.Errorf("%d traces with an error status, want the NotFound call's", failed)
	}
}

// TestGRPCProxyingStopsTheAppCall: the client's deadline, and its
// cancellation, reach the app through both sidecars: the app's call ends
// then, not when the app would have answered.
func TestGRPCProxyingStopsTheAppCall(t *testing.T) {
	m := newMesh(t)
	gPort, g := m.grpcAppProc("g")
	m.sidecar("app-g", gPort, "--app-protocol", "grpc")
	a := m.sidecar("app-a", 0)
	conn := grpcConn(t, a)
	tc := testgrpc.NewTestServiceClient(conn)
	base := metadata.AppendToOutgoingContext(context.Background(), "dapr-app-id", "app-g")
	slow := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1, IntervalUs: 3_000_000}, {Size: 1, IntervalUs: 3_000_000}}}

	// A deadline: the app's stream sees its context end.
	ctx, cancel := context.WithTimeout(base, 300*time.Millisecond)
	ss, err := tc.StreamingOutputCall(ctx, slow)
	if err == nil {
		_, err = ss.Recv()
	}
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("deadline: %v", err)
	}
	waitFor(t, 10*time.Second, "the app's call stopped by the deadline", func() bool {
		return strings.Count(g.out.String(), "call /grpc.testing.TestService/StreamingOutputCall ended") >= 1
	})

	// A cancellation mid-stream: the same.
	ctx, cancel = context.WithCancel(base)
	ss, err = tc.StreamingOutputCall(ctx, slow)
	if err != nil {
		t.Fatal(err)
	}
	time.AfterFunc(300*time.Millisecond, cancel)
	if _, err := ss.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("cancel: %v", err)
	}
	waitFor(t, 10*time.Second, "the app's call stopped by the cancellation", func() bool {
		return strings.Count(g.out.String(), "call /grpc.testing.TestService/StreamingOutputCall ended") >= 2
	})
}

// TestGRPCProxyingRetries: a Resiliency retry policy matching gRPC status
// codes retries a proxied call that failed before any answer, with its
// streamed request body replayed, and leaves other codes alone.
func TestGRPCProxyingRetries(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	writeFile(t, dir, "res.yaml", `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: grpc-retries
spec:
  policies:
    retries:
      unavailable:
        policy: constant
        duration: 10ms
        maxRetries: 2
        matching:
          gRPCStatusCodes: "14"
  targets:
    apps:
      app-g:
        retry: unavailable
`)
	m.sidecar("app-g", m.grpcApp("g"), "--app-protocol", "grpc")
	a := m.sidecar("app-a", 0, "--resources-path", dir)
	conn := grpcConn(t, a)
	tc := testgrpc.NewTestServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "app-g")
	retries := func() float64 {
		return a.metric(t, "dapr_resiliency_activations_total", `policy="retry"`)
	}
	payload := &testgrpc.Payload{Body: bytes.Repeat([]byte{7}, 50_000)}
	_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: payload, ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.Unavailable), Message: "busy"}})
	if st := status.Convert(err); st.Code() != codes.Unavailable || st.Message() != "busy" {
		t.Fatalf("always Unavailable: %v", err)
	}
	if n := retries(); n != 2 {
		t.Errorf("retries of an Unavailable call: %v, want 2", n)
	}
	_, err = tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: payload, ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.InvalidArgument), Message: "bad"}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("InvalidArgument: %v", err)
	}
	if n := retries(); n != 2 {
		t.Errorf("retries after an InvalidArgument call: %v, want still 2 (not a listed code)", n)
	}
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: payload, ResponseSize: 10}); err != nil {
		t.Errorf("a call that succeeds: %v", err)
	}
}
