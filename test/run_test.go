package test

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestRunSetsAppEnvironment is acceptance point 9: skein run starts the app
// with APP_ID, APP_PORT and the sidecar's ports and endpoints in its
// environment, the ports given or, when not given, chosen free.
func TestRunSetsAppEnvironment(t *testing.T) {
	tests := []struct {
		name  string
		given bool     // pass --dapr-http-port and --dapr-grpc-port
		flags []string // more skein run flags
		extra map[string]string
	}{
		{name: "ports given", given: true},
		{name: "ports chosen"},
		{name: "h2c app", given: true, flags: []string{"--app-protocol", "h2c"}, extra: map[string]string{"APP_PROTOCOL": "h2c"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			appPort := freePort(t)
			args := []string{"--app-id", "env-app", "--app-port", strconv.Itoa(appPort)}
			httpPort, grpcPort := 0, 0
			if tt.given {
				httpPort, grpcPort = freePort(t), freePort(t)
				args = append(args, "--dapr-http-port", strconv.Itoa(httpPort), "--dapr-grpc-port", strconv.Itoa(grpcPort))
			}
			args = append(append(args, tt.flags...), "--", bin.testapp, "--name", "env-app")
			r := m.skeinRun(args...)

			// The app listens on $APP_PORT: ask it directly what it got.
			var env map[string]string
			waitFor(t, 15*time.Second, "the app answering on its $APP_PORT", func() bool {
				resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(appPort) + "/env")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				return json.NewDecoder(resp.Body).Decode(&env) == nil
			})
			if !tt.given {
				httpPort, _ = strconv.Atoi(env["DAPR_HTTP_PORT"])
				grpcPort, _ = strconv.Atoi(env["DAPR_GRPC_PORT"])
				if httpPort == 0 || grpcPort == 0 || httpPort == grpcPort || httpPort == appPort {
					t.Fatalf("chosen ports: http %q, grpc %q (app %d)", env["DAPR_HTTP_PORT"], env["DAPR_GRPC_PORT"], appPort)
				}
			}
			want := map[string]string{
				"APP_ID":             "env-app",
				"APP_PORT":           strconv.Itoa(appPort),
				"DAPR_HTTP_PORT":     strconv.Itoa(httpPort),
				"DAPR_GRPC_PORT":     strconv.Itoa(grpcPort),
				"DAPR_HTTP_ENDPOINT": "http://127.0.0.1:" + strconv.Itoa(httpPort),
				"DAPR_GRPC_ENDPOINT": "127.0.0.1:" + strconv.Itoa(grpcPort),
			}
			for k, v := range tt.extra {
				want[k] = v
			}
			if diff := cmp.Diff(want, env); diff != "" {
				t.Errorf("app environment (-want +got):\n%s", diff)
			}

			// DAPR_HTTP_PORT is this app's sidecar: it calls the app by its id.
			s := &sidecar{proc: r.proc, appID: "env-app", http: httpPort}
			s.waitReady(t)
			resp, body := do(t, newRequest(t, http.MethodGet, s.invokeURL("env-app", "env"), nil))
			if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Instance") != "env-app" {
				t.Fatalf("self-invocation through DAPR_HTTP_PORT: %d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestRunWaitsForAppPort is acceptance point 9: the sidecar skein run starts
// is not ready while the app's port is closed, and is once it opens.
func TestRunWaitsForAppPort(t *testing.T) {
	m := newMesh(t)
	appPort, httpPort := freePort(t), freePort(t)
	m.skeinRun("--app-id", "late", "--app-port", strconv.Itoa(appPort), "--dapr-http-port", strconv.Itoa(httpPort),
		"--", bin.testapp, "--listen-after", "1s")
	appUp := func() bool {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(appPort), 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
	notReadyWhileDown := 0
	waitFor(t, 15*time.Second, "sidecar ready", func() bool {
		resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(httpPort) + "/v1.0/healthz")
		if err != nil {
			return false // sidecar not listening yet
		}
		resp.Body.Close()
		up := appUp()
		if resp.StatusCode != http.StatusNoContent {
			if !up {
				notReadyWhileDown++
			}
			return false
		}
		if !up {
			t.Fatalf("sidecar ready while the app's port %d is closed", appPort)
		}
		return true
	})
	if notReadyWhileDown == 0 {
		t.Errorf("never saw the sidecar up and not ready while the app's port was closed")
	}
}

// TestRunDrainsOnSignal is acceptance point 9: on SIGTERM or SIGINT skein
// run deregisters, lets a call in flight through it finish, forwards the
// signal to the app (which exits 0 on it) and exits with the app's code.
func TestRunDrainsOnSignal(t *testing.T) {
	tests := []struct {
		name string
		sig  syscall.Signal
	}{
		{"SIGTERM", syscall.SIGTERM},
		{"SIGINT", syscall.SIGINT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			a := m.sidecar("caller", 0)
			appPort, httpPort := freePort(t), freePort(t)
			r := m.skeinRun("--app-id", "drain", "--app-port", strconv.Itoa(appPort), "--dapr-http-port", strconv.Itoa(httpPort),
				"--", bin.testapp, "--name", "drain")
			(&sidecar{proc: r.proc, appID: "drain", http: httpPort}).waitReady(t)

			type result struct {
				status int
				body   string
				err    error
			}
			slow := make(chan result, 1)
			go func() {
				resp, err := http.Get(a.invokeURL("drain", "slow?ms=2000"))
				if err != nil {
					slow <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				slow <- result{resp.StatusCode, string(b), err}
			}()
			waitFor(t, 5*time.Second, "the slow call reaching the app", func() bool { return appInflight(t, appPort) == 1 })
			known := func() bool {
				_, ok := a.metadata(t)["instances"].(map[string]any)["drain.default"]
				return ok
			}
			if !known() {
				t.Fatal("the caller does not list drain's instance")
			}
			r.signal(tt.sig)
			waitFor(t, time.Second, "drain leaving the caller's rotation", func() bool { return !known() })
			if len(slow) != 0 {
				t.Error("the call in flight ended before drain deregistered")
			}
			select {
			case got := <-slow:
				if got.err != nil || got.status != http.StatusOK || got.body != "slept 2000ms" {
					t.Errorf("call in flight during shutdown: %d %q %v, want 200 \"slept 2000ms\"", got.status, got.body, got.err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("call in flight did not finish")
			}
			if code := r.exitCode(t, 15*time.Second); code != 0 {
				t.Errorf("skein run exited %d after %s, want the app's 0", code, tt.name)
			}
			if c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(appPort), time.Second); err == nil {
				c.Close()
				t.Errorf("the app still listens after skein run exited")
			}
		})
	}
}

// TestRunExitCode is acceptance point 9: skein run exits with the app's exit
// code and says why on stderr when the app fails.
func TestRunExitCode(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		want    int
		stderr  []string // substrings of stderr
	}{
		{"app exits 3", []string{bin.testapp, "--exit-after", "300ms", "--exit-code", "3"}, 3, []string{"exited with code 3"}},
		{"app exits 0", []string{bin.testapp, "--exit-after", "300ms", "--exit-code", "0"}, 0, nil},
		{"app crashes", []string{"sh", "-c", "sleep 0.3; kill -SEGV $$"}, 128 + int(syscall.SIGSEGV), []string{"app crashed", "segmentation fault"}},
		{"app cannot start", []string{"/nonexistent/app"}, 1, []string{"start app", "/nonexistent/app"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			r := m.skeinRun(append([]string{"--app-id", "exiting", "--"}, tt.command...)...)
			if got := r.exitCode(t, 15*time.Second); got != tt.want {
				t.Errorf("exit code = %d, want %d", got, tt.want)
			}
			for _, s := range tt.stderr {
				if !strings.Contains(r.stderr.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
				}
			}
		})
	}
}

// TestDemo is acceptance point 10: skein demo makes the calls it is asked
// for and exits 0, or runs until SIGINT and then exits 0; either way its
// sidecars leave the registry.
func TestDemo(t *testing.T) {
	callLine := regexp.MustCompile(`(?m)^  call (\d+): checkout → orders 201 Created: order #\d+ "\w+", orders saw caller "checkout"`)
	calls := func(out string) []string {
		var n []string
		for _, m := range callLine.FindAllStringSubmatch(out, -1) {
			n = append(n, m[1])
		}
		return n
	}
	t.Run("three calls", func(t *testing.T) {
		m := newMesh(t)
		d := m.startSkein("demo", "demo", "--calls", "3", "--interval", "100ms")
		if code := d.exitCode(t, 60*time.Second); code != 0 {
			t.Fatalf("skein demo exited %d, want 0", code)
		}
		if diff := cmp.Diff([]string{"1", "2", "3"}, calls(d.stdout.String())); diff != "" {
			t.Errorf("successful calls (-want +got):\n%s\nstdout:\n%s", diff, d.stdout)
		}
		m.wantRegistryEmpty(t)
	})
	t.Run("until SIGINT", func(t *testing.T) {
		m := newMesh(t)
		d := m.startSkein("demo", "demo")
		waitFor(t, 30*time.Second, "the first call", func() bool { return len(calls(d.stdout.String())) > 0 })
		d.signal(os.Interrupt)
		if code := d.exitCode(t, 30*time.Second); code != 0 {
			t.Fatalf("skein demo exited %d after SIGINT, want 0", code)
		}
		if !strings.Contains(d.stdout.String(), "skein demo: stopping") {
			t.Errorf("stdout lacks the stop message:\n%s", d.stdout)
		}
		m.wantRegistryEmpty(t)
	})
}

// skeinProc is a skein process with its stdout and stderr kept apart.
type skeinProc struct {
	*proc
	stdout, stderr *syncBuffer
}

// skeinRun starts `skein run args...`.
func (m *mesh) skeinRun(args ...string) *skeinProc {
	m.t.Helper()
	return m.startSkein("skein run", append([]string{"run"}, args...)...)
}

// startSkein starts the skein binary with SKEIN_HOME set, like start, but
// keeps stdout and stderr apart. When the test ends it kills the process and
// everything it started that still runs (skein run puts its app in a
// process group of its own).
func (m *mesh) startSkein(name string, args ...string) *skeinProc {
	m.t.Helper()
	cmd := exec.Command(bin.skein, args...)
	out, stdout, stderr := &syncBuffer{}, &syncBuffer{}, &syncBuffer{}
	cmd.Stdout, cmd.Stderr = io.MultiWriter(out, stdout), io.MultiWriter(out, stderr)
	cmd.Env = append(os.Environ(), "SKEIN_HOME="+m.home)
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	m.t.Cleanup(func() {
		for _, pid := range descendants(cmd.Process.Pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		_ = cmd.Process.Kill()
		<-p.done
		if m.t.Failed() {
			m.t.Logf("--- output of %s:\n%s", name, out)
		}
	})
	return &skeinProc{proc: p, stdout: stdout, stderr: stderr}
}

// descendants lists the processes below pid, children first.
func descendants(pid int) []int {
	tasks, _ := filepath.Glob("/proc/" + strconv.Itoa(pid) + "/task/*/children")
	var out []int
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(s); err == nil {
				out = append(append(out, c), descendants(c)...)
			}
		}
	}
	return out
}

// wantRegistryEmpty checks that no sidecar of the mesh is still registered.
func (m *mesh) wantRegistryEmpty(t *testing.T) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(m.home, "registry", "*", "*", "*.json"))
	if len(left) > 0 {
		t.Errorf("still registered after exit: %v", left)
	}
}
