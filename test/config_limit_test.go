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
	"syscall"
	"testing"
	"time"
)

// bulkPolicy is calleePolicy (without app-c's policy) with n more
// operations for app-a, /bulk<i>/* allowed for GET, written as editors
// write them: about 75 bytes an operation, so 700,000 make the 50 MB file
// of issue 11.
func bulkPolicy(n int) []byte {
	const list = "      operations:\n"
	s := strings.Replace(strings.Replace(calleePolicy, "MODE_A", "", 1), "POLICY_C", "", 1)
	head, tail, _ := strings.Cut(s, list)
	b := append(make([]byte, 0, len(s)+75*n), head+list...)
	for i := range n {
		b = strconv.AppendInt(append(b, "      - name: /bulk"...), int64(i), 10)
		b = append(b, "/*\n        httpVerb: ['GET']\n        action: allow\n"...)
	}
	return append(b, tail...)
}

// replaceFile writes b beside file and renames it over file, as editors do.
func replaceFile(t *testing.T, file string, b []byte) {
	t.Helper()
	if err := os.WriteFile(file+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		t.Fatal(err)
	}
}

// TestOversizedConfig is issue 11, point 4: a 50 MB Configuration (700,000
// operations) written over a live one is rejected, logged and counted
// while the last good policy keeps serving; a config of 40,000 operations
// (3.8 s to compile before) applies, and so does a small one after it;
// SIGTERM then stops the sidecar with code 0.
func TestOversizedConfig(t *testing.T) {
	m := newMesh(t)
	cfg := filepath.Join(t.TempDir(), "callee.yaml")
	writePolicy(t, cfg, "", false)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--config", cfg)
	a := m.sidecar("app-a", 0)
	call := func(method string) int {
		t.Helper()
		resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", method), nil))
		return resp.StatusCode
	}
	serves := func(t *testing.T, bulk int) {
		t.Helper()
		resp, _ := do(t, newRequest(t, http.MethodGet, b.url("/v1.0/healthz"), nil))
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("healthz: %d, want 204", resp.StatusCode)
		}
		if got := call("public"); got != http.StatusOK {
			t.Errorf("GET /public: %d, want 200", got)
		}
		if got := call("admin"); got != http.StatusForbidden {
			t.Errorf("GET /admin: %d, want 403", got)
		}
		if got := call("bulk7/x"); got != bulk {
			t.Errorf("GET /bulk7/x: %d, want %d", got, bulk)
		}
	}
	waitApplied := func(t *testing.T, applied float64, what string) {
		t.Helper()
		waitFor(t, 20*time.Second, what+" to apply", func() bool {
			return b.metric(t, "skein_config_reloads_total", `result="applied"`) > applied
		})
	}

	t.Run("50 MB written over the live config is rejected", func(t *testing.T) {
		rejected := b.metric(t, "skein_config_reloads_total", `result="rejected"`)
		huge := bulkPolicy(700_000)
		if len(huge) < 50_000_000 {
			t.Fatalf("generated %d bytes, want 50 MB", len(huge))
		}
		if err := os.WriteFile(cfg, huge, 0o600); err != nil { // in place, as in the issue
			t.Fatal(err)
		}
		waitFor(t, 10*time.Second, "the rejection to be counted", func() bool {
			return b.metric(t, "skein_config_reloads_total", `result="rejected"`) > rejected
		})
		// The rejection is counted, then logged: wait for the line too.
		want := fmt.Sprintf("%s: configuration too large: %d bytes, over the limit of 4194304 bytes (4 MiB)", cfg, len(huge))
		waitFor(t, 5*time.Second, "a log line saying "+want, func() bool { return strings.Contains(b.out.String(), want) })
		serves(t, http.StatusForbidden)
	})

	t.Run("40,000 operations apply", func(t *testing.T) {
		applied := b.metric(t, "skein_config_reloads_total", `result="applied"`)
		replaceFile(t, cfg, bulkPolicy(40_000))
		waitApplied(t, applied, "40,000 operations")
		serves(t, http.StatusOK)
		if got := call("bulk39999/x"); got != http.StatusOK {
			t.Errorf("GET /bulk39999/x: %d, want 200", got)
		}
	})

	t.Run("a small config after them applies", func(t *testing.T) {
		applied := b.metric(t, "skein_config_reloads_total", `result="applied"`)
		writePolicy(t, cfg, "", false)
		waitApplied(t, applied, "the small config")
		serves(t, http.StatusForbidden)
	})

	t.Run("SIGTERM stops the sidecar", func(t *testing.T) {
		b.signal(syscall.SIGTERM)
		// A bound against hanging, not a measure of speed: the grace
		// period is 5 s and nothing is in flight.
		if code := b.exitCode(t, 10*time.Second); code != 0 {
			t.Errorf("exit code %d after SIGTERM, want 0", code)
		}
	})
}

// TestOversizedConfigAtStartup: a sidecar whose --config is over the size
// limit refuses to start, saying which file and which limit.
func TestOversizedConfigAtStartup(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "config.yaml")
	replaceFile(t, cfg, bulkPolicy(60_000)) // 4.5 MB
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin.skein, "sidecar", "--app-id", "big", "--config", cfg,
		"--dapr-http-port", fmt.Sprint(freePort(t)), "--dapr-grpc-port", fmt.Sprint(freePort(t)), "--metrics-port", fmt.Sprint(freePort(t)))
	cmd.Env = append(os.Environ(), "SKEIN_HOME="+t.TempDir())
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 2 {
		t.Fatalf("skein sidecar: %v, want exit code 2; output:\n%s", err, out)
	}
	if want := cfg + ": configuration too large: "; !strings.Contains(string(out), want) || !strings.Contains(string(out), "over the limit of 4194304 bytes (4 MiB)") {
		t.Errorf("output does not name the file and the limit:\n%s", out)
	}
}
