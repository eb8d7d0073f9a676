package test

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// runPodEnv is runPod with the sidecar's environment extended by env
// (KEY=value): what the pod spec's env (or a Secret mapped into it) gives.
func runPodEnv(t *testing.T, cp *controlPlane, p *kubePod, env ...string) {
	t.Helper()
	m := newMesh(t)
	appPort, _ := m.app(p.ns + "/" + p.name)
	s := &sidecar{appID: p.app, http: freePort(t), grpc: freePort(t), metrics: freePort(t)}
	s.proc = m.start("sidecar "+p.ns+"/"+p.name, bin.skein, append([]string{"NAMESPACE=" + p.ns, "DAPR_HOST_IP=" + p.ip}, env...),
		"sidecar", "--app-id", p.app, "--app-port", strconv.Itoa(appPort),
		"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc),
		"--metrics-port", strconv.Itoa(s.metrics), "--log-level", "debug",
		"--dapr-internal-grpc-port", strconv.Itoa(p.peer), "--dapr-internal-grpc-listen-address", p.ip,
		"--control-plane-address", cp.addr, "--join-token", xdsToken)
	s.waitReady(t)
	p.s = s
}

// kubeHTTPEndpoint is an HTTPEndpoint CR.
func kubeHTTPEndpoint(t *testing.T, ns, name, baseURL string, scopes ...string) map[string]any {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: dapr.io/v1alpha1
kind: HTTPEndpoint
metadata: {name: %s, namespace: %s}
spec:
  baseUrl: %s
  headers:
  - {name: X-Static, value: "100%% static"}
  - name: Authorization
    secretKeyRef: {name: EXT_TOKEN, key: EXT_TOKEN}
  - {name: X-From-Env, envRef: EXT_ENV}
`, name, ns, baseURL)
	if len(scopes) > 0 {
		doc += "scopes: [" + strings.Join(scopes, ", ") + "]\n"
	}
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	return obj
}

// TestKubernetesHTTPEndpoint: Dapr's HTTPEndpoint CRs on a real
// kube-apiserver reach the sidecars of their namespace over ADS. A
// sidecar invokes an endpoint by name (external service invocation): the
// service sees the base path and the CR's headers, whose secretKeyRef and
// envRef the sidecar reads from its own environment; an update of the
// baseUrl moves the calls, a baseUrl Skein refuses keeps the last good
// one, and deleting the CR makes calls fail with Dapr's error.
func TestKubernetesHTTPEndpoint(t *testing.T) {
	k := startKubeAPI(t)
	for _, ns := range []string{"ext", "ext-other"} {
		k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}})
	}
	m := newMesh(t)
	portA, _ := m.app("service-a") // services without a sidecar, on loopback
	portB, _ := m.app("service-b")
	urlA := "http://127.0.0.1:" + strconv.Itoa(portA)
	urlB := "http://127.0.0.1:" + strconv.Itoa(portB)
	const crs = "/apis/dapr.io/v1alpha1/namespaces/"
	k.must(t, "POST", crs+"ext/httpendpoints", kubeHTTPEndpoint(t, "ext", "payments", urlA+"/api"))
	// The same name in another namespace, and one scoped to another app:
	// neither is the caller's.
	k.must(t, "POST", crs+"ext-other/httpendpoints", kubeHTTPEndpoint(t, "ext-other", "payments", urlB))
	k.must(t, "POST", crs+"ext/httpendpoints", kubeHTTPEndpoint(t, "ext", "private", urlB, "someone-else"))

	net := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), 1+rand.IntN(250))
	caller := k.createPod(t, "ext", "caller-0", "caller", net+"2", nil)
	cp := startKubeControlPlane(t, k)
	runPodEnv(t, cp, caller, "EXT_TOKEN=Bearer s3cret", "EXT_ENV=from-env")
	a := caller.s

	// call invokes payments/charge and returns the status and, for a 200,
	// the service's echo.
	call := func(target string) (int, echoed, []byte) {
		t.Helper()
		resp, body := do(t, newRequest(t, http.MethodPost, a.invokeURL(target, "charge?id=7"), strings.NewReader("x")))
		var e echoed
		if resp.StatusCode == http.StatusOK {
			e = decodeEcho(t, body)
		}
		return resp.StatusCode, e, body
	}
	// until polls (every 20 ms, up to 15 s) until cond holds for a call.
	until := func(what string, since time.Time, cond func(int, echoed, []byte) bool) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			code, e, body := call("payments")
			if cond(code, e, body) {
				t.Logf("%s after %s", what, time.Since(since).Round(time.Millisecond))
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: never; last answer %d %s", what, code, body)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	t.Run("invoked by name, with the CR's path and headers", func(t *testing.T) {
		until("payments served by service-a", time.Now(), func(code int, e echoed, _ []byte) bool {
			return code == http.StatusOK && e.Instance == "service-a"
		})
		_, e, _ := call("payments")
		got := []string{e.Method, e.Path, e.Query, e.Host, e.Header.Get("X-Static"), e.Header.Get("Authorization"), e.Header.Get("X-From-Env")}
		want := []string{"POST", "/api/charge", "id=7", "127.0.0.1:" + strconv.Itoa(portA), "100% static", "Bearer s3cret", "from-env"}
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("service-a got %q, want %q", got, want)
		}
		if code, _, body := call("private"); code != http.StatusInternalServerError || !strings.Contains(string(body), "ERR_DIRECT_INVOKE") {
			t.Errorf("an endpoint scoped to another app: %d %s, want 500 ERR_DIRECT_INVOKE", code, body)
		}
		resp, body := do(t, newRequest(t, http.MethodGet, a.url("/v1.0/metadata"), nil))
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `"httpEndpoints":[{"name":"payments"}]`) {
			t.Errorf("metadata: %d %s, want payments listed alone", resp.StatusCode, body)
		}
	})

	t.Run("an update of the baseUrl moves the calls", func(t *testing.T) {
		start := time.Now()
		k.must(t, "PATCH", crs+"ext/httpendpoints/payments", map[string]any{"spec": map[string]any{"baseUrl": urlB + "/v2"}})
		until("payments served by service-b", start, func(code int, e echoed, _ []byte) bool {
			return code == http.StatusOK && e.Instance == "service-b" && e.Path == "/v2/charge"
		})
	})

	t.Run("a baseUrl Skein refuses keeps the last good one", func(t *testing.T) {
		k.must(t, "PATCH", crs+"ext/httpendpoints/payments", map[string]any{"spec": map[string]any{"baseUrl": "ftp://127.0.0.1:1"}})
		waitFor(t, 10*time.Second, "the refusal in the status", func() bool {
			return strings.Contains(fmt.Sprint(cp.status(t)["configError"]), "HTTPEndpoint ext/payments")
		})
		if !strings.Contains(cp.out.String(), "scheme must be http or https") {
			t.Errorf("the control plane did not log why it refused the baseUrl")
		}
		if code, e, body := call("payments"); code != http.StatusOK || e.Instance != "service-b" {
			t.Errorf("after a refused change: %d %s, want service-b still", code, body)
		}
	})

	t.Run("deleting the CR makes calls fail with Dapr's error", func(t *testing.T) {
		start := time.Now()
		k.must(t, "DELETE", crs+"ext/httpendpoints/payments", nil)
		until("payments gone", start, func(code int, _ echoed, body []byte) bool {
			return code == http.StatusInternalServerError
		})
		resp, body := do(t, newRequest(t, http.MethodPost, a.invokeURL("payments", "charge"), nil))
		checkInvokeError(t, resp, body, http.StatusInternalServerError, "APP_NOT_FOUND", "failed to invoke, id: payments, err: ")
	})
}
