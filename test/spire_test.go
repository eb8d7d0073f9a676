package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// peersBin is where test/peers/install.sh puts the real peers.
func peersBin(t *testing.T, name string) string {
	t.Helper()
	dir := os.Getenv("SKEIN_PEERS")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "skein", "peers")
	}
	p := filepath.Join(dir, "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("%s not built: run test/peers/install.sh (make test does): %v", name, err)
	}
	return p
}

// spire is a real SPIRE server and agent on loopback and unix sockets:
// join-token node attestation, unix workload attestation by binary path.
type spire struct {
	server, agent         string // binaries
	dir                   string
	serverSock, agentSock string
	td                    string
}

func (s *spire) serverCmd(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, s.server, append(args, "-socketPath", s.serverSock)...).CombinedOutput()
	if err != nil {
		t.Fatalf("spire-server %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func startSPIRE(t *testing.T, m *mesh) *spire {
	t.Helper()
	s := &spire{server: peersBin(t, "spire-server"), agent: peersBin(t, "spire-agent"), td: "example.org"}
	// Unix socket paths must stay short.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s.dir, s.serverSock, s.agentSock = dir, filepath.Join(dir, "server.sock"), filepath.Join(dir, "agent.sock")
	port := freePort(t)
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srvConf := write("server.conf", fmt.Sprintf(`server {
    bind_address = "127.0.0.1"
    bind_port = "%d"
    socket_path = "%s"
    trust_domain = "%s"
    data_dir = "%s/server"
    log_level = "INFO"
    ca_ttl = "24h"
    default_x509_svid_ttl = "1h"
}
plugins {
    DataStore "sql" {
        plugin_data {
            database_type = "sqlite3"
            connection_string = "%s/server/datastore.sqlite3"
        }
    }
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "memory" {
        plugin_data {}
    }
}
`, port, s.serverSock, s.td, dir, dir))
	m.start("spire-server", s.server, nil, "run", "-config", srvConf)
	waitFor(t, 30*time.Second, "spire-server healthy", func() bool {
		return exec.Command(s.server, "healthcheck", "-socketPath", s.serverSock).Run() == nil
	})
	write("bootstrap.crt", s.serverCmd(t, "bundle", "show"))
	tok := strings.Fields(s.serverCmd(t, "token", "generate", "-spiffeID", "spiffe://"+s.td+"/node/test", "-ttl", "600"))
	if len(tok) < 2 {
		t.Fatalf("no join token in %v", tok)
	}
	agentConf := write("agent.conf", fmt.Sprintf(`agent {
    data_dir = "%s/agent"
    log_level = "INFO"
    server_address = "127.0.0.1"
    server_port = "%d"
    socket_path = "%s"
    trust_bundle_path = "%s/bootstrap.crt"
    trust_domain = "%s"
}
plugins {
    NodeAttestor "join_token" {
        plugin_data {}
    }
    KeyManager "disk" {
        plugin_data {
            directory = "%s/agent"
        }
    }
    WorkloadAttestor "unix" {
        plugin_data {
            discover_workload_path = true
        }
    }
}
`, dir, port, s.agentSock, dir, s.td, dir))
	m.start("spire-agent", s.agent, nil, "run", "-config", agentConf, "-joinToken", tok[1])
	waitFor(t, 30*time.Second, "spire-agent healthy", func() bool {
		return exec.Command(s.agent, "healthcheck", "-socketPath", s.agentSock).Run() == nil
	})
	return s
}

// register creates an entry for the workload running binary path.
func (s *spire) register(t *testing.T, id, path string, ttl time.Duration) {
	t.Helper()
	s.serverCmd(t, "entry", "create", "-parentID", "spiffe://"+s.td+"/node/test", "-spiffeID", id,
		"-selector", "unix:path:"+path, "-x509SVIDTTL", strconv.Itoa(int(ttl.Seconds())))
}

// TestSPIREIdentities covers identity point 3: two sidecars, registered in
// a real SPIRE as different workloads (by binary path), take their SVIDs
// and bundle from the Workload API, call each other over mTLS with them,
// and take a renewed SVID when the agent pushes one.
func TestSPIREIdentities(t *testing.T) {
	m := newMesh(t)
	sp := startSPIRE(t, m)

	// One copy of the binary per workload, so the unix attestor tells them apart.
	bins := map[string]string{}
	for _, app := range []string{"app-a", "app-b"} {
		p := filepath.Join(sp.dir, "skein-"+app)
		b, err := os.ReadFile(bin.skein)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o755); err != nil {
			t.Fatal(err)
		}
		bins[app] = p
	}
	// app-b's SVID lives 30 s, so the agent pushes a renewal during the test.
	sp.register(t, "spiffe://example.org/ns/default/app-a", bins["app-a"], time.Hour)
	sp.register(t, "spiffe://example.org/ns/default/app-b", bins["app-b"], 30*time.Second)

	cfg := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(cfg, []byte("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: spire\nspec:\n  accessControl:\n    trustDomain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"SPIFFE_ENDPOINT_SOCKET=unix://" + sp.agentSock}
	start := func(app string, appPort int) *sidecar {
		s := &sidecar{appID: app, http: freePort(t), grpc: freePort(t), metrics: freePort(t)}
		args := []string{"sidecar", "--app-id", app, "--config", cfg, "--log-level", "debug",
			"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc), "--metrics-port", strconv.Itoa(s.metrics)}
		if appPort != 0 {
			args = append(args, "--app-port", strconv.Itoa(appPort))
		}
		s.proc = m.start("sidecar "+app, bins[app], env, args...)
		s.waitReady(t)
		return s
	}
	bPort, _ := m.app("b")
	b := start("app-b", bPort)
	a := start("app-a", 0)

	if _, err := os.Stat(filepath.Join(m.home, "ca")); err == nil {
		t.Error("an embedded CA was created although the Workload API was given")
	}
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "who"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a → b with SPIRE identities: %d %s", resp.StatusCode, body)
	}
	if e := decodeEcho(t, body); strings.Join(e.Header["Dapr-Caller-App-Id"], ",") != "app-a" {
		t.Errorf("b's app saw caller %v, want app-a from the SPIRE SVID", e.Header["Dapr-Caller-App-Id"])
	}
	for _, s := range []*sidecar{a, b} {
		if n := s.metric(t, "dapr_runtime_mtls_init_total"); n != 1 {
			t.Errorf("%s: mtls init total %v, want 1", s.appID, n)
		}
	}
	// The agent renews app-b's 30 s SVID at about half its life; calls keep working.
	waitFor(t, 60*time.Second, "the agent to push app-b a renewed SVID", func() bool {
		return b.metric(t, "dapr_runtime_mtls_workload_cert_rotated_total") >= 1
	})
	resp, body = do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "after-rotation"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after rotation: %d %s", resp.StatusCode, body)
	}
	if !strings.Contains(b.out.String(), "svid updated by the workload api") {
		t.Error("app-b logged no Workload API update")
	}
}
