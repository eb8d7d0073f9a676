package harness

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bin holds the paths of the binaries Build made.
type Bin struct{ Skein, TestApp string }

// Build compiles cmd/skein and test/testapp into dir (by import path, so
// from any package of the module).
func Build(dir string) (Bin, error) {
	b := Bin{Skein: filepath.Join(dir, "skein"), TestApp: filepath.Join(dir, "testapp")}
	for out, pkg := range map[string]string{b.Skein: "github.com/skeinmesh/skein/cmd/skein", b.TestApp: "github.com/skeinmesh/skein/test/testapp"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return Bin{}, fmt.Errorf("build %s: %w", pkg, err)
		}
	}
	return b, nil
}

// Output collects a process's output for failure messages; safe for
// concurrent writes.
type Output struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (o *Output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.Write(p)
}

func (o *Output) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// Proc is a started process.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	out  *Output
	done chan struct{}
	err  error // valid after done
}

// Output is what the process wrote to stdout and stderr so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) { _ = p.Cmd.Process.Signal(sig) }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Done is closed when the process has ended.
func (p *Proc) Done() <-chan struct{} { return p.done }

// ExitCode waits up to d for the process and returns its exit code
// (128+signal when a signal ended it).
func (p *Proc) ExitCode(t testing.TB, d time.Duration) int {
	t.Helper()
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-p.done:
	case <-tm.C:
		t.Fatalf("%s did not exit within %s; output:\n%s", p.Name, d, p.out)
	}
	code, ok := ExitStatus(p.err)
	if !ok {
		t.Fatalf("%s: %v", p.Name, p.err)
	}
	return code
}

// ExitStatus is the exit code cmd.Wait's error stands for (0 for nil,
// 128+signal when a signal ended the process); false when err is not an
// exit at all.
func ExitStatus(err error) (int, bool) {
	if err == nil {
		return 0, true
	}
	if ee, ok := err.(*exec.ExitError); ok {
		if st, ok := ee.Sys().(syscall.WaitStatus); ok && st.Signaled() {
			return 128 + int(st.Signal()), true
		}
		return ee.ExitCode(), true
	}
	return -1, false
}

// Kill ends the process with SIGKILL and waits for it.
func (p *Proc) Kill() {
	_ = p.Cmd.Process.Kill()
	<-p.done
}

// Mesh is one test's machine: a private $SKEIN_HOME shared by the
// sidecars it starts.
type Mesh struct {
	T    testing.TB
	Home string
	Bin  Bin
}

// NewMesh returns a machine with a new $SKEIN_HOME.
func NewMesh(t testing.TB, bin Bin) *Mesh {
	return &Mesh{T: t, Home: t.TempDir(), Bin: bin}
}

// Start runs a binary with SKEIN_HOME set and env added; it is killed when
// the test ends.
func (m *Mesh) Start(name, path string, env []string, args ...string) *Proc {
	m.T.Helper()
	cmd := exec.Command(path, args...)
	out := &Output{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.Env = append(append(os.Environ(), "SKEIN_HOME="+m.Home), env...)
	if err := cmd.Start(); err != nil {
		m.T.Fatalf("start %s: %v", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.T.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if m.T.Failed() {
			m.T.Logf("--- output of %s:\n%s", name, out)
		}
	})
	return p
}

// App starts a test app instance on port (0: a free one), waits until it
// listens and returns its port.
func (m *Mesh) App(name string, port int, args ...string) (int, *Proc) {
	m.T.Helper()
	if port == 0 {
		port = FreePort(m.T)
	}
	p := m.Start("app "+name, m.Bin.TestApp, nil, append([]string{"--port", strconv.Itoa(port), "--name", name}, args...)...)
	WaitFor(m.T, 10*time.Second, "app "+name+" listening", func() bool {
		if p.Exited() {
			m.T.Fatalf("app %s exited: %v\n%s", name, p.err, p.out)
		}
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return port, p
}

// Sidecar is a running `skein sidecar`.
type Sidecar struct {
	*Proc
	AppID   string
	HTTP    int // --dapr-http-port
	GRPC    int // --dapr-grpc-port
	Metrics int // --metrics-port
}

// Sidecar starts `skein sidecar` for appID in front of appPort (0: none)
// with extra flags, and waits until it is ready.
func (m *Mesh) Sidecar(appID string, appPort int, extra ...string) *Sidecar {
	m.T.Helper()
	s := m.SidecarEnv(appID, appPort, nil, extra...)
	s.WaitReady(m.T)
	return s
}

// SidecarEnv starts `skein sidecar` with env added and does not wait.
func (m *Mesh) SidecarEnv(appID string, appPort int, env []string, extra ...string) *Sidecar {
	m.T.Helper()
	s := &Sidecar{AppID: appID, HTTP: FreePort(m.T), GRPC: FreePort(m.T), Metrics: FreePort(m.T)}
	args := []string{"sidecar", "--app-id", appID,
		"--dapr-http-port", strconv.Itoa(s.HTTP), "--dapr-grpc-port", strconv.Itoa(s.GRPC),
		"--metrics-port", strconv.Itoa(s.Metrics), "--log-level", "debug"}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	s.Proc = m.Start("sidecar "+appID, m.Bin.Skein, env, append(args, extra...)...)
	return s
}

// WaitReady waits until /v1.0/healthz answers 204.
func (s *Sidecar) WaitReady(t testing.TB) {
	t.Helper()
	WaitFor(t, 15*time.Second, "sidecar "+s.AppID+" ready", func() bool {
		if s.Exited() {
			t.Fatalf("sidecar %s exited: %v\n%s", s.AppID, s.err, s.out)
		}
		resp, err := http.Get(s.URL("/v1.0/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusNoContent
	})
}

// URL is path on the sidecar's HTTP API.
func (s *Sidecar) URL(path string) string {
	return "http://127.0.0.1:" + strconv.Itoa(s.HTTP) + path
}

// InvokeURL is the path form of the invoke API on this sidecar.
func (s *Sidecar) InvokeURL(target, method string) string {
	return s.URL("/v1.0/invoke/" + target + "/method/" + method)
}

// Metric returns the sum of the samples of a metric family whose labels
// contain every one of want (e.g. `app_id="a"`).
func (s *Sidecar) Metric(t testing.TB, name string, want ...string) float64 {
	t.Helper()
	v, err := s.metric(name, want...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (s *Sidecar) metric(name string, want ...string) (float64, error) {
	v, err := ScrapeMetric(s.Metrics, name, want...)
	if err != nil {
		return 0, fmt.Errorf("scrape %s: %w", s.AppID, err)
	}
	return v, nil
}

// ScrapeMetric reads /metrics on 127.0.0.1:port and returns the sum of the
// samples of a metric family whose labels contain every one of want.
func ScrapeMetric(port int, name string, want ...string) (float64, error) {
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, name) || (len(line) > len(name) && line[len(name)] != '{' && line[len(name)] != ' ') {
			continue
		}
		ok := true
		for _, w := range want {
			ok = ok && strings.Contains(line, w)
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum, nil
}

// Metadata fetches /v1.0/metadata.
func (s *Sidecar) Metadata(t testing.TB) map[string]any {
	t.Helper()
	return GetJSON[map[string]any](t, http.DefaultClient, s.URL("/v1.0/metadata"))
}

// Instances returns the addresses of target's instances (app id in the
// default namespace) the sidecar knows, from /v1.0/metadata.
func (s *Sidecar) Instances(t testing.TB, target string) []string {
	t.Helper()
	ins, _ := s.Metadata(t)["instances"].(map[string]any)[target+".default"].([]any)
	out := make([]string, 0, len(ins))
	for _, i := range ins {
		out = append(out, fmt.Sprint(i))
	}
	return out
}

// GetJSON GETs url with cl and decodes the JSON answer into a T; any error
// fails the test.
func GetJSON[T any](t testing.TB, cl *http.Client, url string) T {
	t.Helper()
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v T
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return v
}

// ControlPlane is a running `skein control-plane`.
type ControlPlane struct {
	*Proc
	Addr string // host:port of its xDS and certificate API
	Dir  string // --config-dir
}

// ControlPlane starts `skein control-plane` on addr (""; a free port),
// reading dir, admitting sidecars that present token.
func (m *Mesh) ControlPlane(addr, dir, token string) *ControlPlane {
	m.T.Helper()
	if addr == "" {
		addr = "127.0.0.1:" + strconv.Itoa(FreePort(m.T))
	}
	p := m.Start("control-plane", m.Bin.Skein, nil, "control-plane", "--listen-address", addr,
		"--config-dir", dir, "--join-token", token, "--svid-ttl", "1m")
	WaitFor(m.T, 10*time.Second, "control plane listening", func() bool {
		if p.Exited() {
			m.T.Fatalf("control plane exited: %v\n%s", p.err, p.out)
		}
		return strings.Contains(p.out.String(), "control plane listening")
	})
	return &ControlPlane{Proc: p, Addr: addr, Dir: dir}
}

// Status reads the control plane's /v1/status (TLS not verified: a test
// reading state, not a sidecar).
func (c *ControlPlane) Status(t testing.TB) map[string]any {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	defer cl.CloseIdleConnections()
	return GetJSON[map[string]any](t, cl, "https://"+c.Addr+"/v1/status")
}

// handedOut holds every port FreePort has returned in this test process,
// so that no two callers get the same one.
var handedOut sync.Map

// FreePort returns a free loopback port for a process the test starts. It
// picks below the kernel's ephemeral range (32768 and up), so the port is
// not handed to another process's bind to port 0 before ours binds it.
func FreePort(t testing.TB) int {
	t.Helper()
	for range 100 {
		p := 20000 + rand.IntN(12000)
		if _, taken := handedOut.LoadOrStore(p, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err == nil {
			ln.Close()
			return p
		}
	}
	t.Fatal("no free port")
	return 0
}

// WaitFor polls cond every 20 ms until it holds or d passes.
func WaitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// AppGet GETs path from the test app on port directly (not through a
// sidecar) and returns the body.
func AppGet(t testing.TB, port int, path string) string {
	t.Helper()
	cl := http.Client{Timeout: 5 * time.Second}
	resp, err := cl.Get("http://127.0.0.1:" + strconv.Itoa(port) + path)
	if err != nil {
		t.Fatalf("app on %d: %v", port, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// AppNumber GETs path (/requests, /inflight, /count?key=K) from the test app
// on port directly and returns the number it answers.
func AppNumber(t testing.TB, port int, path string) int {
	t.Helper()
	s := AppGet(t, port, path)
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		t.Fatalf("app on %d: %s: %q is not a number", port, path, s)
	}
	return n
}
