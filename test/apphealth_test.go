package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"github.com/google/go-cmp/cmp"
)

// appHealthFlags turn on app health checks with short probes: an app is
// unhealthy about 400 ms after it starts failing.
func appHealthFlags(extra ...string) []string {
	return append([]string{"--enable-app-health-check", "--app-health-probe-interval", "200ms",
		"--app-health-probe-timeout", "150ms", "--app-health-threshold", "2"}, extra...)
}

// setAppHealth makes test/testapp on port answer its health probes with
// 200 (ok) or 500.
func setAppHealth(t *testing.T, port int, ok bool) {
	t.Helper()
	v := "0"
	if ok {
		v = "1"
	}
	resp, _ := do(t, newRequest(t, http.MethodGet, appURL(port, "/sethealth?ok="+v), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("sethealth: %d", resp.StatusCode)
	}
}

func appURL(port int, path string) string { return "http://127.0.0.1:" + strconv.Itoa(port) + path }

// appHealthOf returns appConnectionProperties.health of s's metadata.
func appHealthOf(t *testing.T, s *sidecar) map[string]any {
	t.Helper()
	conn, _ := s.metadata(t)["appConnectionProperties"].(map[string]any)
	h, _ := conn["health"].(map[string]any)
	return h
}

func waitAppHealth(t *testing.T, s *sidecar, status string) {
	t.Helper()
	waitFor(t, 5*time.Second, s.appID+" app "+status, func() bool { return appHealthOf(t, s)["status"] == status })
}

// TestAppHealthRefusesCalls is issue 12 point 4 with one instance of the
// callee: healthy, calls pass; once its app fails Threshold probes, a call
// through the mesh that was already on its way gets Dapr's 500 "app is not
// in a healthy state" (reason APP_UNHEALTHY) without reaching the app, as
// does self-invocation; the instance leaves discovery; the metadata and
// metrics show the state; recovery restores everything.
func TestAppHealthRefusesCalls(t *testing.T) {
	m := newMesh(t)
	cPort, _ := m.app("c")
	// One call at a time to the app: a second call waits in c's queue,
	// where the test holds it while the app turns unhealthy.
	c := m.sidecar("app-c", cPort, appHealthFlags("--app-max-concurrency", "1")...)
	a := m.sidecar("app-a", 0, "--outlier-consecutive-failures", "0")
	call := func(s *sidecar) (*http.Response, []byte) {
		return do(t, newRequest(t, http.MethodGet, s.invokeURL("app-c", "echo"), nil))
	}

	waitFor(t, 10*time.Second, "app-c reachable from app-a", func() bool {
		resp, _ := call(a)
		return resp.StatusCode == http.StatusOK
	})
	want := map[string]any{"healthCheckPath": "/healthz", "healthProbeInterval": "200ms",
		"healthProbeTimeout": "150ms", "healthThreshold": 2.0, "status": "healthy"}
	if diff := cmp.Diff(want, appHealthOf(t, c)); diff != "" {
		t.Errorf("appConnectionProperties.health (-want +got):\n%s", diff)
	}
	if v := c.metric(t, "skein_app_healthy", `app_id="app-c"`); v != 1 {
		t.Errorf("skein_app_healthy = %v, want 1", v)
	}
	if v := c.metric(t, "dapr_http_healthprobes_completed_count", `app_id="app-c"`, `status="200"`); v < 1 {
		t.Errorf(`dapr_http_healthprobes_completed_count{status="200"} = %v, want at least 1`, v)
	}

	// Call x takes the app's one slot until its gate opens.
	x, err := http.Get(a.invokeURL("app-c", "chunks") + "?n=2&gate=x")
	if err != nil {
		t.Fatal(err)
	}
	defer x.Body.Close()
	xBody := bufio.NewReader(x.Body)
	if line, err := xBody.ReadString('\n'); err != nil || line != "chunk 0\n" {
		t.Fatalf("first chunk of x: %q, %v", line, err)
	}
	// Call y goes to the same instance and queues behind x. Its
	// connection reaching c proves the caller has chosen c for it.
	conns := c.metric(t, "skein_peer_connections_opened_total")
	type result struct {
		resp *http.Response
		body []byte
		err  error
	}
	yDone := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, a.invokeURL("app-c", "echo"), nil)
		req.Header.Set("X-Count-Key", "y")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			yDone <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		yDone <- result{resp, b, err}
	}()
	waitFor(t, 5*time.Second, "call y at app-c's sidecar", func() bool {
		return c.metric(t, "skein_peer_connections_opened_total") > conns
	})

	setAppHealth(t, cPort, false)
	waitAppHealth(t, c, "unhealthy")
	if v := c.metric(t, "skein_app_healthy", `app_id="app-c"`); v != 0 {
		t.Errorf("unhealthy: skein_app_healthy = %v, want 0", v)
	}
	do(t, newRequest(t, http.MethodGet, appURL(cPort, "/release?gate=x-1"), nil))
	if rest, err := io.ReadAll(xBody); err != nil || string(rest) != "chunk 1\n" {
		t.Errorf("rest of x (on the app before it turned unhealthy): %q, %v", rest, err)
	}

	const wantMsg = "failed to invoke, id: app-c, err: rpc error: code = Internal desc = app is not in a healthy state"
	check := func(name string, resp *http.Response, b []byte) {
		t.Helper()
		e := decodeError(t, resp, b)
		got := []any{resp.StatusCode, e.ErrorCode, e.Message, e.reason()}
		want := []any{http.StatusInternalServerError, "ERR_DIRECT_INVOKE", wantMsg, "APP_UNHEALTHY"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
	select {
	case y := <-yDone:
		if y.err != nil {
			t.Fatalf("call y: %v", y.err)
		}
		check("call y through the mesh", y.resp, y.body)
	case <-time.After(10 * time.Second):
		t.Fatal("call y did not end within 10s")
	}
	if _, b := do(t, newRequest(t, http.MethodGet, appURL(cPort, "/count?key=y"), nil)); string(b) != "0" {
		t.Errorf("the unhealthy app got call y (%s times)", b)
	}
	resp, b := call(c)
	check("self-invocation", resp, b)

	// Still listed, marked unhealthy: with no healthy instance left the
	// caller still reaches app-c's sidecar, whose answer is Dapr's.
	resp, b = call(a)
	check("a new call through the mesh", resp, b)
	if _, b := do(t, newRequest(t, http.MethodGet, appURL(cPort, "/count?key=y"), nil)); string(b) != "0" {
		t.Errorf("the unhealthy app was called (%s times)", b)
	}

	setAppHealth(t, cPort, true)
	waitAppHealth(t, c, "healthy")
	waitFor(t, 5*time.Second, "app-c back in discovery", func() bool {
		resp, _ := call(a)
		return resp.StatusCode == http.StatusOK
	})
	if resp, b := call(c); resp.StatusCode != http.StatusOK {
		t.Errorf("self-invocation after recovery: %d %s", resp.StatusCode, b)
	}
	for _, tt := range []struct {
		name   string
		want   float64
		labels []string
	}{
		{"skein_app_healthy", 1, []string{`app_id="app-c"`}},
		{"skein_app_health_transitions_total", 1, []string{`app_id="app-c"`, `status="unhealthy"`}},
		{"skein_app_health_transitions_total", 2, []string{`app_id="app-c"`, `status="healthy"`}}, // at start and on recovery
	} {
		if v := c.metric(t, tt.name, tt.labels...); v != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, v, tt.want)
		}
	}
	if v := c.metric(t, "dapr_http_healthprobes_completed_count", `app_id="app-c"`, `status="500"`); v < 2 {
		t.Errorf(`dapr_http_healthprobes_completed_count{status="500"} = %v, want at least the threshold, 2`, v)
	}
}

// TestAppHealthDiscovery: with two instances of app-b, calls go to both
// while both are healthy, only to the healthy one once the other's app
// fails its probes (its sidecar marks it unhealthy in discovery; outlier detection is
// off on the caller, so discovery alone does it), and to both again after
// it recovers.
func TestAppHealthDiscovery(t *testing.T) {
	m := newMesh(t)
	b1Port, _ := m.app("b1")
	b2Port, _ := m.app("b2")
	b1 := m.sidecar("app-b", b1Port, appHealthFlags()...)
	m.sidecar("app-b", b2Port, appHealthFlags()...)
	a := m.sidecar("app-a", 0, "--load-balancer", "round-robin", "--outlier-consecutive-failures", "0")
	// served makes n calls and counts the answers by instance (X-Instance),
	// or by status when not a 200.
	served := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil))
			if resp.StatusCode == http.StatusOK {
				got[resp.Header.Get("X-Instance")]++
			} else {
				got["status "+strconv.Itoa(resp.StatusCode)]++
			}
		}
		return got
	}
	bothServe := func() bool {
		got := served(10)
		return got["b1"] > 0 && got["b2"] > 0 && got["b1"]+got["b2"] == 10
	}
	waitFor(t, 10*time.Second, "both instances serving", bothServe)

	setAppHealth(t, b1Port, false)
	waitAppHealth(t, b1, "unhealthy")
	waitFor(t, 5*time.Second, "calls going to b2 only", func() bool { return served(10)["b2"] == 10 })
	if diff := cmp.Diff(map[string]int{"b2": 30}, served(30)); diff != "" {
		t.Errorf("calls while b1 is unhealthy, by instance (-want +got):\n%s", diff)
	}

	setAppHealth(t, b1Port, true)
	waitAppHealth(t, b1, "healthy")
	waitFor(t, 5*time.Second, "both instances serving again", bothServe)
}

// TestAppHealthGRPCApp: a gRPC app (--app-protocol grpc, the Dapr Go SDK's
// service) is probed with AppCallbackHealthCheck/HealthCheck: healthy while
// it serves, unhealthy (calls refused with Dapr's 500) once it is gone,
// healthy again when it is back on its port.
func TestAppHealthGRPCApp(t *testing.T) {
	m := newMesh(t)
	port := freePort(t)
	startApp := func() *proc {
		p := m.start("sdk app (grpc)", bin.sdkapp, nil, "--port", strconv.Itoa(port), "--protocol", "grpc")
		waitFor(t, 10*time.Second, "sdk app listening", func() bool {
			c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
			if err == nil {
				c.Close()
			}
			return err == nil
		})
		return p
	}
	app := startApp()
	g := m.sidecar("app-g", port, appHealthFlags("--app-protocol", "grpc")...)
	call := func() (*http.Response, []byte) {
		return do(t, newRequest(t, http.MethodPost, g.invokeURL("app-g", "echo"), strings.NewReader("hi")))
	}

	waitAppHealth(t, g, "healthy")
	want := map[string]any{"healthProbeInterval": "200ms", "healthProbeTimeout": "150ms", "healthThreshold": 2.0, "status": "healthy"}
	if diff := cmp.Diff(want, appHealthOf(t, g)); diff != "" {
		t.Errorf("appConnectionProperties.health of a gRPC app, no path (-want +got):\n%s", diff)
	}
	if resp, b := call(); resp.StatusCode != http.StatusOK {
		t.Fatalf("call to the healthy app: %d %s", resp.StatusCode, b)
	}
	client, _ := rawDapr(t, g)
	md, err := client.GetMetadata(t.Context(), &runtimev1.GetMetadataRequest{})
	if err != nil {
		t.Fatal(err)
	}
	h := md.GetAppConnectionProperties().GetHealth()
	if got := []any{h.GetHealthCheckPath(), h.GetHealthProbeInterval(), h.GetHealthProbeTimeout(), h.GetHealthThreshold()}; !cmp.Equal(got, []any{"", "200ms", "150ms", int32(2)}) {
		t.Errorf("gRPC GetMetadata health: %v, want no path, 200ms, 150ms, 2", got)
	}
	if v := g.metric(t, "dapr_grpc_io_healthprobes_completed_count", `app_id="app-g"`, `grpc_client_status="OK"`); v < 1 {
		t.Errorf(`dapr_grpc_io_healthprobes_completed_count{grpc_client_status="OK"} = %v, want at least 1`, v)
	}

	app.signal(os.Kill)
	app.exitCode(t, 5*time.Second)
	waitAppHealth(t, g, "unhealthy")
	resp, b := call()
	if e := decodeError(t, resp, b); resp.StatusCode != http.StatusInternalServerError || e.reason() != "APP_UNHEALTHY" ||
		e.Message != "failed to invoke, id: app-g, err: rpc error: code = Internal desc = app is not in a healthy state" {
		t.Errorf("call to the app gone: %d %s", resp.StatusCode, b)
	}
	if v := g.metric(t, "dapr_grpc_io_healthprobes_completed_count", `app_id="app-g"`, `grpc_client_status="Unavailable"`); v < 2 {
		t.Errorf(`dapr_grpc_io_healthprobes_completed_count{grpc_client_status="Unavailable"} = %v, want at least 2`, v)
	}

	startApp()
	waitAppHealth(t, g, "healthy")
	if resp, b := call(); resp.StatusCode != http.StatusOK {
		t.Errorf("call after the app came back: %d %s", resp.StatusCode, b)
	}
}
