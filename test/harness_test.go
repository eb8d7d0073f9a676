package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// bin holds the binaries TestMain builds.
var bin struct{ skein, testapp, grpcapp, sdkapp string }

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "skein-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin.skein = filepath.Join(dir, "skein")
	bin.testapp = filepath.Join(dir, "testapp")
	bin.grpcapp = filepath.Join(dir, "grpcapp")
	bin.sdkapp = filepath.Join(dir, "sdkapp")
	for _, b := range [][2]string{{bin.skein, "../cmd/skein"}, {bin.testapp, "./testapp"}, {bin.grpcapp, "./grpcapp"}, {bin.sdkapp, "./sdkapp"}} {
		cmd := exec.Command("go", "build", "-o", b[0], b[1])
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b[1], err)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuffer collects a process's output for failure messages.
type syncBuffer = harness.Output

// proc is a started process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // valid after done
}

// exitCode waits up to d for the process and returns its exit code.
func (p *proc) exitCode(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("%s did not exit within %s; output:\n%s", p.name, d, p.out)
	}
	code, ok := harness.ExitStatus(p.err)
	if !ok {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return code
}

func (p *proc) signal(sig os.Signal) { _ = p.cmd.Process.Signal(sig) }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// mesh is one test's machine: a private $SKEIN_HOME shared by its sidecars.
type mesh struct {
	t    *testing.T
	home string
}

func newMesh(t *testing.T) *mesh {
	return &mesh{t: t, home: t.TempDir()}
}

// start runs a binary with SKEIN_HOME set; it is killed when the test ends.
func (m *mesh) start(name, path string, env []string, args ...string) *proc {
	m.t.Helper()
	cmd := exec.Command(path, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(append(os.Environ(), "SKEIN_HOME="+m.home), env...)
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if m.t.Failed() {
			m.t.Logf("--- output of %s:\n%s", name, out)
		}
	})
	return p
}

// app starts a test app instance and waits for its port.
func (m *mesh) app(name string, args ...string) (int, *proc) {
	m.t.Helper()
	port := freePort(m.t)
	p := m.start("app "+name, bin.testapp, nil, append([]string{"--port", strconv.Itoa(port), "--name", name}, args...)...)
	waitFor(m.t, 10*time.Second, "app "+name+" listening", func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port, p
}

// sidecar is a running `skein sidecar`.
type sidecar struct {
	*proc
	appID   string
	http    int
	grpc    int // --dapr-grpc-port
	metrics int
}

// sidecar starts `skein sidecar` for appID in front of appPort (0: none)
// and waits until it is ready.
func (m *mesh) sidecar(appID string, appPort int, extra ...string) *sidecar {
	m.t.Helper()
	s := m.sidecarNoWait(appID, appPort, extra...)
	s.waitReady(m.t)
	return s
}

func (m *mesh) sidecarNoWait(appID string, appPort int, extra ...string) *sidecar {
	m.t.Helper()
	s := &sidecar{appID: appID, http: freePort(m.t), grpc: freePort(m.t), metrics: freePort(m.t)}
	args := []string{"sidecar", "--app-id", appID,
		"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc),
		"--metrics-port", strconv.Itoa(s.metrics), "--log-level", "debug"}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	s.proc = m.start("sidecar "+appID, bin.skein, nil, append(args, extra...)...)
	return s
}

func (s *sidecar) waitReady(t *testing.T) {
	t.Helper()
	waitFor(t, 15*time.Second, "sidecar "+s.appID+" ready", func() bool {
		if s.exited() {
			t.Fatalf("sidecar %s exited: %v\n%s", s.appID, s.err, s.out)
		}
		resp, err := http.Get(s.url("/v1.0/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	})
}

func (s *sidecar) url(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.http) + path
}

// invokeURL is the path form of the invoke API on this sidecar.
func (s *sidecar) invokeURL(target, method string) string {
	return s.url("/v1.0/invoke/" + target + "/method/" + method)
}

// metric returns the sum of all samples of a metric family whose label set
// contains every label in want (e.g. `app_id="a"`).
func (s *sidecar) metric(t *testing.T, name string, want ...string) float64 {
	t.Helper()
	v, err := harness.ScrapeMetric(s.metrics, name, want...)
	if err != nil {
		t.Fatalf("scrape %s: %v", s.appID, err)
	}
	return v
}

// metadata fetches /v1.0/metadata.
func (s *sidecar) metadata(t *testing.T) map[string]any {
	t.Helper()
	return getJSON[map[string]any](t, http.DefaultClient, s.url("/v1.0/metadata"))
}

// getJSON GETs url with cl and decodes the JSON answer into a T; any
// error fails the test.
func getJSON[T any](t *testing.T, cl *http.Client, url string) T {
	t.Helper()
	return harness.GetJSON[T](t, cl, url)
}

// echoed is what test/testapp's echo endpoint returns.
type echoed struct {
	Method   string      `json:"method"`
	Path     string      `json:"path"`
	RawPath  string      `json:"rawPath"`
	Query    string      `json:"query"`
	Host     string      `json:"host"`
	Header   http.Header `json:"header"`
	BodyLen  int64       `json:"bodyLen"`
	BodyHash string      `json:"bodySHA256"`
	Instance string      `json:"instance"`
}

// do sends req and returns the response with its body read.
func do(t *testing.T, req *http.Request) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp, b
}

func newRequest(t *testing.T, method, url string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// decodeEcho decodes an echo response, failing the test on a non-JSON body.
func decodeEcho(t *testing.T, b []byte) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("not an echo: %v: %s", err, b)
	}
	return e
}

// daprError is the JSON error body.
type daprError struct {
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
	Details   []struct {
		Type     string            `json:"@type"`
		Reason   string            `json:"reason"`
		Domain   string            `json:"domain"`
		Metadata map[string]string `json:"metadata"`
	} `json:"details"`
}

// decodeError checks the error envelope and returns it.
func decodeError(t *testing.T, resp *http.Response, b []byte) daprError {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	var e daprError
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body is not JSON: %v: %s", err, b)
	}
	return e
}

func (e daprError) reason() string {
	if len(e.Details) == 0 {
		return ""
	}
	return e.Details[0].Reason
}

// freePort returns a free loopback port for a process the test starts,
// never the same one twice (harness.FreePort).
func freePort(t *testing.T) int {
	t.Helper()
	return harness.FreePort(t)
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	harness.WaitFor(t, d, what, cond)
}
