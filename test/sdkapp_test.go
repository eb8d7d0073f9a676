package test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	daprc "github.com/dapr/go-sdk/client"
)

// sdkEcho is what test/sdkapp's method echo answers.
type sdkEcho struct {
	Verb        string `json:"verb"`
	Query       string `json:"query"`
	ContentType string `json:"contentType"`
	Data        string `json:"data"`
}

// sdkApp starts test/sdkapp with the Dapr Go SDK's HTTP or gRPC service.
func (m *mesh) sdkApp(protocol string) int {
	m.t.Helper()
	port := freePort(m.t)
	m.start("sdk app ("+protocol+")", bin.sdkapp, nil, "--port", strconv.Itoa(port), "--protocol", protocol)
	waitFor(m.t, 10*time.Second, "sdk app listening", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port
}

// TestDaprGoSDKApps: apps written with the Dapr Go SDK's services are
// called through the mesh by HTTP callers and by the SDK's client: the
// HTTP service (service/http) as an HTTP app, the gRPC service
// (service/grpc) with --app-protocol grpc, where each invocation becomes
// AppCallback/OnInvoke.
func TestDaprGoSDKApps(t *testing.T) {
	for _, tc := range []struct{ protocol, appProtocol string }{{"http", "http"}, {"grpc", "grpc"}} {
		t.Run(tc.protocol, func(t *testing.T) {
			m := newMesh(t)
			s := m.sidecar("app-s", m.sdkApp(tc.protocol), "--app-protocol", tc.appProtocol)
			a := m.sidecar("app-a", 0)
			check := func(how string, out []byte, verb string) {
				t.Helper()
				var e sdkEcho
				if err := json.Unmarshal(out, &e); err != nil {
					t.Fatalf("%s: answer %q: %v", how, out, err)
				}
				if e.Verb != verb || e.Query != "x=1&y=2" || e.ContentType != "text/plain" || e.Data != "hello" {
					t.Errorf("%s: the app got %+v, want %s with x=1&y=2, text/plain, hello", how, e, verb)
				}
			}

			// An HTTP caller.
			req := newRequest(t, http.MethodPut, a.invokeURL("app-s", "echo?x=1&y=2"), strings.NewReader("hello"))
			req.Header.Set("Content-Type", "text/plain")
			resp, body := do(t, req)
			if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
				t.Fatalf("HTTP caller: %d %s %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			check("HTTP caller", body, "PUT")

			// The SDK's client, through the gRPC API.
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := daprc.NewClientWithAddressContext(ctx, a.grpcAddr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			out, err := c.InvokeMethodWithContent(ctx, "app-s", "echo?x=1&y=2", "post", &daprc.DataContent{ContentType: "text/plain", Data: []byte("hello")})
			if err != nil {
				t.Fatalf("SDK client: %v", err)
			}
			check("SDK client", out, "POST")

			// The app's error reaches both callers as an error.
			resp, body = do(t, newRequest(t, http.MethodPost, a.invokeURL("app-s", "fail"), nil))
			if resp.StatusCode < 400 {
				t.Errorf("HTTP caller of a failing handler: %d %q", resp.StatusCode, body)
			}
			if tc.protocol == "grpc" && (resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(body), "the app failed on purpose")) {
				t.Errorf("gRPC app's error: %d %q, want 500 with the status as JSON", resp.StatusCode, body)
			}
			if v := resp.Header.Get("Skein-Grpc-App-Status"); v != "" {
				t.Errorf("the HTTP caller got the sidecars' own header Skein-Grpc-App-Status: %q", v)
			}
			_, err = c.InvokeMethod(ctx, "app-s", "fail", "post")
			if err == nil {
				t.Error("SDK client of a failing handler: no error")
			}
			if tc.protocol == "grpc" && !strings.Contains(err.Error(), "the app failed on purpose") {
				// Dapr returns a gRPC app's status unchanged (contract §2.2).
				t.Errorf("SDK client of a failing gRPC handler: %v, want the app's own status", err)
			}
			if tc.protocol == "grpc" {
				// The callee's OnInvoke calls in Dapr's gRPC client metrics.
				if n := s.metric(t, "dapr_grpc_io_client_completed_rpcs", `grpc_client_method="/dapr.proto.runtime.v1.AppCallback/OnInvoke"`, `grpc_client_status="OK"`); n != 2 {
					t.Errorf("OnInvoke calls counted OK: %v, want 2", n)
				}
			}
		})
	}
}
