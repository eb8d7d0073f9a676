package test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	daprc "github.com/dapr/go-sdk/client"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// grpcAddr is the sidecar's Dapr gRPC API address.
func (s *sidecar) grpcAddr() string { return "127.0.0.1:" + strconv.Itoa(s.grpc) }

// rawDapr is a plain grpc-go client of the sidecar's Dapr gRPC API, for
// what the SDK hides (headers, verbs it does not send, other services).
func rawDapr(t *testing.T, s *sidecar) (runtimev1.DaprClient, *grpc.ClientConn) {
	conn := grpcConn(t, s)
	return runtimev1.NewDaprClient(conn), conn
}

// grpcConn is a plain grpc-go connection to the sidecar's gRPC port,
// closed at the end of the test.
func grpcConn(t *testing.T, s *sidecar) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(s.grpcAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func statusOf(t *testing.T, err error) (*status.Status, *errdetails.ErrorInfo) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok {
		t.Fatalf("error %v carries no gRPC status", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st, info
		}
	}
	return st, nil
}

// TestDaprGoSDKClient: an app using the official Dapr Go SDK's client
// invokes another app through two sidecars over mTLS, and gets Dapr's
// answers and errors.
func TestDaprGoSDKClient(t *testing.T) {
	m := newMesh(t)
	portB, _ := m.app("b")
	portA, _ := m.app("a")
	m.sidecar("app-b", portB)
	a := m.sidecar("app-a", portA)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := daprc.NewClientWithAddressContext(ctx, a.grpcAddr())
	if err != nil {
		t.Fatalf("SDK client: %v", err)
	}
	defer c.Close()

	out, err := c.InvokeMethodWithContent(ctx, "app-b", "orders/42?x=1&y=two", "post",
		&daprc.DataContent{ContentType: "text/plain", Data: []byte("hello")})
	if err != nil {
		t.Fatalf("InvokeMethodWithContent: %v", err)
	}
	var e echoed
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatalf("answer %q: %v", out, err)
	}
	sum := sha256.Sum256([]byte("hello"))
	if e.Method != "POST" || e.Path != "/orders/42" || e.Query != "x=1&y=two" || e.BodyLen != 5 || e.BodyHash != hex.EncodeToString(sum[:]) {
		t.Errorf("app got %s %s?%s with %d bytes (%s), want POST /orders/42?x=1&y=two with hello", e.Method, e.Path, e.Query, e.BodyLen, e.BodyHash)
	}
	if got := e.Header.Get("Content-Type"); got != "text/plain" {
		t.Errorf("app got Content-Type %q, want text/plain", got)
	}
	if got := e.Header.Get("Dapr-Caller-App-Id"); got != "app-a" {
		t.Errorf("app got dapr-caller-app-id %q, want app-a", got)
	}
	if got := e.Header.Get("User-Agent"); !strings.Contains(got, "dapr-sdk-go") {
		t.Errorf("app got User-Agent %q, want the SDK's", got)
	}

	out, err = c.InvokeMethod(ctx, "app-b", "items", "get")
	if err != nil {
		t.Fatalf("InvokeMethod GET: %v", err)
	}
	if err := json.Unmarshal(out, &e); err != nil || e.Method != "GET" || e.Path != "/items" || e.BodyLen != 0 {
		t.Errorf("GET: app got %s %s with %d bytes (%v)", e.Method, e.Path, e.BodyLen, err)
	}

	// The app's 404: NotFound "Not Found" with Dapr's ErrorInfo.
	_, err = c.InvokeMethod(metadata.AppendToOutgoingContext(ctx, "x-echo-status", "404"), "app-b", "missing", "get")
	st, info := statusOf(t, err)
	if st.Code() != codes.NotFound || st.Message() != "Not Found" {
		t.Errorf("app 404: %v, want NotFound \"Not Found\"", err)
	}
	if info == nil || info.Domain != "dapr.io" || info.Metadata["http.code"] != "404" || !strings.HasPrefix(info.Metadata["http.error_message"], "{") {
		t.Errorf("app 404: ErrorInfo %v, want dapr.io with http.code 404 and the body's start", info)
	}
	// The app's 500: Unknown, as in Dapr.
	_, err = c.InvokeMethod(metadata.AppendToOutgoingContext(ctx, "x-echo-status", "500"), "app-b", "broken", "get")
	if st, _ := statusOf(t, err); st.Code() != codes.Unknown || st.Message() != "Internal Server Error" {
		t.Errorf("app 500: %v, want Unknown \"Internal Server Error\"", err)
	}
	// A failure of the sidecar: Internal, Dapr's message, Skein's reason.
	_, err = c.InvokeMethod(ctx, "nosuch", "x", "get")
	st, info = statusOf(t, err)
	if st.Code() != codes.Internal || !strings.HasPrefix(st.Message(), "failed to invoke, id: nosuch, err: ") {
		t.Errorf("unknown app: %v, want Internal \"failed to invoke, id: nosuch, err: ...\"", err)
	}
	if info == nil || info.Reason != "APP_NOT_FOUND" {
		t.Errorf("unknown app: ErrorInfo %v, want reason APP_NOT_FOUND (as the HTTP API)", info)
	}

	md, err := c.GetMetadata(ctx)
	if err != nil {
		t.Fatalf("GetMetadata: %v", err)
	}
	if md.ID != "app-a" || !strings.HasPrefix(md.ExtendedMetadata["daprRuntimeVersion"], "skein-") {
		t.Errorf("GetMetadata: id %q extended %v, want app-a and Skein's daprRuntimeVersion", md.ID, md.ExtendedMetadata)
	}
	// Dapr's gRPC metrics count the calls, not its HTTP ones.
	if n := a.metric(t, "dapr_grpc_io_server_completed_rpcs", `grpc_server_method="/dapr.proto.runtime.v1.Dapr/InvokeService"`, `grpc_server_status="OK"`); n != 2 {
		t.Errorf("InvokeService calls counted OK: %v, want 2", n)
	}
	if n := a.metric(t, "dapr_grpc_io_server_completed_rpcs", `grpc_server_method="/dapr.proto.runtime.v1.Dapr/InvokeService"`, `grpc_server_status="NotFound"`); n != 1 {
		t.Errorf("InvokeService calls counted NotFound: %v, want 1", n)
	}
	if n := a.metric(t, "dapr_http_server_request_count", `method="POST"`); n != 0 {
		t.Errorf("dapr_http_server_request_count{method=POST} = %v; gRPC calls must not count as HTTP API requests", n)
	}
}

// TestDaprGRPCInvokeDetails: what the SDK does not show — response
// headers as Dapr renames them, dapr-http-status, verbs, other services.
func TestDaprGRPCInvokeDetails(t *testing.T) {
	m := newMesh(t)
	portB, _ := m.app("b")
	m.sidecar("app-b", portB)
	a := m.sidecar("app-a", 0)
	client, conn := rawDapr(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	var hdr metadata.MD
	call := metadata.AppendToOutgoingContext(ctx, "x-echo-header", "X-Custom: v1", "grpc-foo", "bar")
	resp, err := client.InvokeService(call, &runtimev1.InvokeServiceRequest{Id: "app-b", Message: &commonv1.InvokeRequest{
		Method: "put/here", ContentType: "application/json",
		HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_PUT, Querystring: "a=b"},
	}}, grpc.Header(&hdr))
	if err != nil {
		t.Fatalf("InvokeService: %v", err)
	}
	if resp.GetContentType() != "application/json" {
		t.Errorf("content_type %q, want the app's application/json", resp.GetContentType())
	}
	var e echoed
	if err := json.Unmarshal(resp.GetData().GetValue(), &e); err != nil || e.Method != "PUT" || e.Path != "/put/here" || e.Query != "a=b" {
		t.Errorf("app got %s %s?%s (%v), want PUT /put/here?a=b", e.Method, e.Path, e.Query, err)
	}
	if got := e.Header.Get("Dapr-Grpc-Foo"); got != "bar" {
		t.Errorf("app got dapr-grpc-foo %q, want grpc-foo renamed, as Dapr does", got)
	}
	for k, want := range map[string]string{"dapr-http-status": "200", "x-custom": "v1", "x-echo-method": "PUT", "dapr-content-type": "application/json"} {
		if got := hdr.Get(k); len(got) != 1 || got[0] != want {
			t.Errorf("response header %s = %q, want %q", k, got, want)
		}
	}
	if got := hdr.Get("content-length"); len(got) != 0 {
		t.Errorf("response header content-length %q, want none", got)
	}

	_, err = client.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "app-b", Message: &commonv1.InvokeRequest{
		Method: "x", HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_NONE},
	}})
	if st, _ := statusOf(t, err); st.Code() != codes.Internal || st.Message() != "failed to invoke, id: app-b, err: rpc error: code = InvalidArgument desc = invalid HTTP verb" {
		t.Errorf("verb NONE: %v, want Dapr's invalid HTTP verb", err)
	}
	_, err = client.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "app-b", Message: &commonv1.InvokeRequest{Method: "x"}})
	if st, _ := statusOf(t, err); st.Code() != codes.Internal || !strings.Contains(st.Message(), "missing HTTP extension field") {
		t.Errorf("no http_extension: %v, want Dapr's missing HTTP extension field", err)
	}

	// Another service without dapr-app-id: Dapr's proxy-mode refusal.
	err = conn.Invoke(ctx, "/foo.Bar/Baz", &emptypb.Empty{}, &emptypb.Empty{})
	if st, _ := statusOf(t, err); st.Code() != codes.Unknown || st.Message() != "cannot proxy request: missing dapr-app-id metadata" {
		t.Errorf("unknown service: %v, want Dapr's missing dapr-app-id", err)
	}
	// The sidecar keeps serving.
	if _, err := client.GetMetadata(ctx, &runtimev1.GetMetadataRequest{}); err != nil {
		t.Errorf("GetMetadata after the refusals: %v", err)
	}
}

// TestDaprGRPCAPIToken: DAPR_API_TOKEN guards every gRPC method with
// daprd's errors; the token never reaches the app.
func TestDaprGRPCAPIToken(t *testing.T) {
	m := newMesh(t)
	portB, _ := m.app("b")
	portA, _ := m.app("a")
	m.sidecar("app-b", portB)
	a := m.sidecarEnv("app-a", portA, []string{"DAPR_API_TOKEN=s3cret"})
	client, _ := rawDapr(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		msg  string
	}{
		{"no token", ctx, "missing api token in request metadata"},
		{"wrong token", metadata.AppendToOutgoingContext(ctx, "dapr-api-token", "nope"), "authentication error: api token mismatch"},
	} {
		_, err := client.GetMetadata(tc.ctx, &runtimev1.GetMetadataRequest{})
		st, info := statusOf(t, err)
		if st.Code() != codes.Unauthenticated || st.Message() != "Unauthorized" || info == nil || info.Metadata["http.error_message"] != tc.msg {
			t.Errorf("%s: %v (%v), want Unauthenticated Unauthorized with %q", tc.name, err, info, tc.msg)
		}
	}
	c, err := daprc.NewClientWithAddressContext(ctx, a.grpcAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WithAuthToken("s3cret")
	out, err := c.InvokeMethod(ctx, "app-b", "tok", "get")
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	var e echoed
	if err := json.Unmarshal(out, &e); err != nil {
		t.Fatal(err)
	}
	if v := e.Header.Values("Dapr-Api-Token"); len(v) != 0 {
		t.Errorf("the app got dapr-api-token %q; the caller's token must go no further", v)
	}
}

// TestDaprGRPCCalleeRefusal: a refusal by the callee's sidecar (access
// control) reaches an InvokeService caller as Dapr gives it, Internal
// wrapping PermissionDenied, with the same ErrorInfo reason as over HTTP.
func TestDaprGRPCCalleeRefusal(t *testing.T) {
	m := newMesh(t)
	cfg := writeFile(t, t.TempDir(), "callee.yaml", `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee
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
      - name: /open
        httpVerb: ['*']
        action: allow
`)
	portB, _ := m.app("b")
	m.sidecar("app-b", portB, "--config", cfg)
	a := m.sidecar("app-a", 0)
	client, _ := rawDapr(t, a)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	invoke := func(method string) error {
		_, err := client.InvokeService(ctx, &runtimev1.InvokeServiceRequest{Id: "app-b", Message: &commonv1.InvokeRequest{
			Method: method, HttpExtension: &commonv1.HTTPExtension{Verb: commonv1.HTTPExtension_GET},
		}})
		return err
	}
	if err := invoke("open"); err != nil {
		t.Fatalf("allowed method: %v", err)
	}
	st, info := statusOf(t, invoke("closed"))
	if st.Code() != codes.Internal || !strings.HasPrefix(st.Message(), "failed to invoke, id: app-b, err: rpc error: code = PermissionDenied desc = ") {
		t.Errorf("denied: %v %q, want Internal wrapping PermissionDenied, as Dapr", st.Code(), st.Message())
	}
	if info == nil || info.Reason != "ACCESS_DENIED" || info.Domain != "skein" {
		t.Errorf("denied: ErrorInfo %v, want Skein's ACCESS_DENIED, as over HTTP", info)
	}
}
