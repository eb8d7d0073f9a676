package test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const xdsToken = "e2e-join-token"

// controlPlane is a running `skein control-plane` with its own $SKEIN_HOME.
type controlPlane struct {
	*proc
	m    *mesh
	addr string
	dir  string
}

func startControlPlane(t *testing.T, m *mesh, dir, addr string) *controlPlane {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:" + strconv.Itoa(freePort(t))
	}
	p := m.start("control-plane", bin.skein, nil, "control-plane", "--listen-address", addr,
		"--config-dir", dir, "--join-token", xdsToken, "--svid-ttl", "1m")
	waitFor(t, 10*time.Second, "control plane listening", func() bool {
		if p.exited() {
			t.Fatalf("control plane exited: %v\n%s", p.err, p.out)
		}
		return strings.Contains(p.out.String(), "control plane listening")
	})
	return &controlPlane{proc: p, m: m, addr: addr, dir: dir}
}

// status reads the control plane's /v1/status over TLS (not verified: a
// test reading state, not a sidecar).
func (c *controlPlane) status(t *testing.T) map[string]any {
	t.Helper()
	cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	return getJSON[map[string]any](t, cl, "https://"+c.addr+"/v1/status")
}

// xdsSidecar starts app name and its sidecar on a machine of its own
// (a private $SKEIN_HOME), configured by the control plane.
func xdsSidecar(t *testing.T, cp *controlPlane, appID, instance string, extra ...string) (*sidecar, *mesh) {
	t.Helper()
	m := newMesh(t)
	port, _ := m.app(instance)
	s := m.sidecar(appID, port, append([]string{"--control-plane-address", cp.addr, "--join-token", xdsToken}, extra...)...)
	return s, m
}

// steady calls target/method through s every few milliseconds until
// stopped, counting calls and failures.
type steady struct {
	calls, failed atomic.Int64
	mu            sync.Mutex
	firstErr      string
	stop          chan struct{}
	done          chan struct{}
}

func startSteady(s *sidecar, target, method string) *steady {
	st := &steady{stop: make(chan struct{}), done: make(chan struct{})}
	cl := &http.Client{Timeout: 10 * time.Second}
	go func() {
		defer close(st.done)
		for {
			select {
			case <-st.stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			resp, err := cl.Get(s.invokeURL(target, method))
			st.calls.Add(1)
			msg := ""
			if err != nil {
				msg = err.Error()
			} else {
				if resp.StatusCode != http.StatusOK {
					msg = resp.Status
				}
				resp.Body.Close()
			}
			if msg != "" {
				st.failed.Add(1)
				st.mu.Lock()
				if st.firstErr == "" {
					st.firstErr = msg
				}
				st.mu.Unlock()
			}
		}
	}()
	return st
}

// end stops the stream and fails the test if any call failed.
func (st *steady) end(t *testing.T, what string) {
	t.Helper()
	close(st.stop)
	<-st.done
	t.Logf("%s: %d steady calls, %d failed", what, st.calls.Load(), st.failed.Load())
	if st.calls.Load() < 10 {
		t.Errorf("%s: only %d steady calls", what, st.calls.Load())
	}
	if n := st.failed.Load(); n > 0 {
		t.Errorf("%s: %d of %d steady calls failed, first: %s", what, n, st.calls.Load(), st.firstErr)
	}
}

// untilStatus calls target/method every 20 ms (with headers) until it
// answers want, and returns how long that took after since.
func untilStatus(t *testing.T, s *sidecar, target, method string, want int, since time.Time, hdr map[string]string) time.Duration {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for i := 0; ; i++ {
		req := newRequest(t, http.MethodGet, s.invokeURL(target, method), nil)
		for k, v := range hdr {
			req.Header.Set(k, strings.ReplaceAll(v, "{i}", strconv.Itoa(i)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == want {
				return time.Since(since)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/%s never answered %d", target, method, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func writeCfg(t *testing.T, dir, name, content string) {
	t.Helper()
	// Write then rename: the control plane never reads half a file.
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}

const xdsRetry = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry-b
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 10ms
        maxRetries: 2
        matching:
          httpStatusCodes: "503"
  targets:
    apps:
      b:
        retry: twice
`

const xdsDenyAdmin = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: b
spec:
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
    - appId: a
      namespace: default
      trustDomain: public
      defaultAction: allow
      operations:
      - name: /admin
        httpVerb: ["*"]
        action: deny
`

// nackCluster is a Cluster b the sidecars do not support (RING_HASH): the
// control plane serves it as given, each sidecar NACKs it.
const nackCluster = `{"@type":"type.googleapis.com/envoy.config.cluster.v3.Cluster","name":"b","type":"EDS",
"edsClusterConfig":{"edsConfig":{"ads":{},"resourceApiVersion":"V3"}},"lbPolicy":"RING_HASH"}`

// TestXDSControlPlane runs `skein control-plane` and sidecars on three
// "machines" (separate $SKEIN_HOMEs) that find each other, get their SVIDs
// and their policy only through it.
func TestXDSControlPlane(t *testing.T) {
	parent := t
	cpHome := newMesh(t)
	dir := t.TempDir()
	cp := startControlPlane(t, cpHome, dir, "")
	a, mA := xdsSidecar(t, cp, "a", "a1")
	b, _ := xdsSidecar(t, cp, "b", "b1")
	c, _ := xdsSidecar(t, cp, "c", "c1", "--xds-mode", "delta") // incremental ADS

	t.Run("calls over mTLS with control-plane SVIDs", func(t *testing.T) {
		for _, target := range []string{"b", "c"} {
			waitFor(t, 10*time.Second, "a reaches "+target, func() bool {
				resp, err := http.Get(a.invokeURL(target, "echo"))
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL(target, "echo"), nil))
			e := decodeEcho(t, body)
			if resp.StatusCode != 200 || e.Header.Get("Dapr-Caller-App-Id") != "a" {
				t.Errorf("a→%s: %d, caller %q", target, resp.StatusCode, e.Header.Get("Dapr-Caller-App-Id"))
			}
		}
		if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h1"`); n < 1 {
			t.Errorf("b accepted %v mTLS HTTP/1.1 connections", n)
		}
		for _, s := range []*sidecar{a, b, c} {
			if !strings.Contains(cp.out.String(), "svid signed") || !strings.Contains(cp.out.String(), "spiffe://public/ns/default/"+s.appID) {
				t.Errorf("the control plane did not sign %s's SVID", s.appID)
			}
		}
		if x, _ := c.metadata(t)["xds"].(map[string]any); x["mode"] != "delta" || x["connected"] != true {
			t.Errorf("c's xDS status: %v, want connected in delta mode", x)
		}
		// No embedded CA was created on the sidecars' machines.
		if _, err := os.Stat(filepath.Join(mA.home, "ca")); err == nil {
			t.Errorf("sidecar a created an embedded CA in %s", mA.home)
		}
	})

	t.Run("config change within 1s, no failed call", func(t *testing.T) {
		st := startSteady(a, "b", "echo")
		time.Sleep(300 * time.Millisecond)
		// Before: a 503 on the first try reaches the caller.
		key := "k" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-{i}"
		flaky := map[string]string{"X-Count-Key": key}
		resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "flaky?fail=1&status=503"), nil))
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("before the retry policy: %d, want 503", resp.StatusCode)
		}
		start := time.Now()
		writeCfg(t, dir, "retry.yaml", xdsRetry)
		took := untilStatus(t, a, "b", "flaky?fail=1&status=503", http.StatusOK, start, flaky)
		t.Logf("retry policy took effect after %s", took)
		if took > time.Second {
			t.Errorf("retry policy took %s, want within 1s", took)
		}
		start = time.Now()
		writeCfg(t, dir, "access-b.yaml", xdsDenyAdmin)
		took = untilStatus(t, a, "b", "admin", http.StatusForbidden, start, nil)
		t.Logf("access deny took effect after %s", took)
		if took > time.Second {
			t.Errorf("access deny took %s, want within 1s", took)
		}
		time.Sleep(300 * time.Millisecond)
		st.end(t, "config change")
	})

	t.Run("invalid config refused by the control plane", func(t *testing.T) {
		st := startSteady(a, "b", "echo")
		writeCfg(t, dir, "bad.yaml", "apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata: {name: bad}\nspec:\n  policies:\n    retries:\n      r: {maxRetries: 1, bogusField: 2}\n")
		waitFor(t, 5*time.Second, "config rejected", func() bool { return strings.Contains(cp.out.String(), "config rejected") })
		if s := cp.status(t); !strings.Contains(fmt.Sprint(s["configError"]), "bogusField") {
			t.Errorf("status configError = %v", s["configError"])
		}
		// The last good config keeps serving: the deny still applies.
		if resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "admin"), nil)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("after a rejected change /admin = %d, want 403", resp.StatusCode)
		}
		os.Remove(filepath.Join(dir, "bad.yaml"))
		time.Sleep(500 * time.Millisecond)
		st.end(t, "invalid config")
	})

	t.Run("NACK by the sidecars, last good keeps serving", func(t *testing.T) {
		st := startSteady(a, "b", "echo")
		writeCfg(t, dir, "cluster-b.json", nackCluster)
		waitFor(t, 5*time.Second, "a NACKs the cluster", func() bool {
			ty := xdsType(t, a, "type.googleapis.com/envoy.config.cluster.v3.Cluster")
			return ty["status"] == "NACKED" && strings.Contains(fmt.Sprint(ty["error"]), "lb_policy")
		})
		waitFor(t, 5*time.Second, "the control plane logs the NACK", func() bool {
			return strings.Contains(cp.out.String(), "resource NACKed by a sidecar")
		})
		os.Remove(filepath.Join(dir, "cluster-b.json"))
		waitFor(t, 5*time.Second, "a ACKs again", func() bool {
			return xdsType(t, a, "type.googleapis.com/envoy.config.cluster.v3.Cluster")["status"] == "ACKED"
		})
		st.end(t, "NACK")
	})

	t.Run("a new instance is reachable from the others", func(t *testing.T) {
		xdsSidecar(parent, cp, "b", "b2") // lives until the whole test ends
		for _, from := range []*sidecar{a, c} {
			waitFor(t, 10*time.Second, from.appID+" reaches b2", func() bool {
				resp, err := http.Get(from.invokeURL("b", "echo"))
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				return resp.Header.Get("X-Instance") == "b2"
			})
		}
	})

	t.Run("killing the control plane leaves traffic flowing", func(t *testing.T) {
		st := startSteady(a, "c", "echo")
		st2 := startSteady(c, "b", "echo")
		time.Sleep(200 * time.Millisecond)
		_ = cp.cmd.Process.Signal(syscall.SIGKILL)
		<-cp.done
		time.Sleep(2 * time.Second)
		st.end(t, "control plane down (a→c)")
		st2.end(t, "control plane down (c→b)")
		ty := xdsType(t, a, "type.googleapis.com/envoy.config.cluster.v3.Cluster")
		if ty["status"] != "ACKED" {
			t.Errorf("a's clusters after the control plane died: %v", ty)
		}
		// A new control plane on the same address and CA: sidecars
		// reconnect and register again.
		cp2 := startControlPlane(t, cpHome, dir, cp.addr)
		waitFor(t, 15*time.Second, "sidecars registered again", func() bool {
			return len(cp2.status(t)["instances"].([]any)) >= 4
		})
	})
}

// xdsType returns the xDS status of one resource type from /v1.0/metadata.
func xdsType(t *testing.T, s *sidecar, typeURL string) map[string]any {
	t.Helper()
	md := s.metadata(t)
	x, _ := md["xds"].(map[string]any)
	types, _ := x["types"].(map[string]any)
	ty, _ := types[typeURL].(map[string]any)
	return ty
}
