package test

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// calleePolicy is app-b's access policy: app-a may use /public (any verb)
// and POST /orders, nothing else; app-c may use everything but /admin;
// anyone else gets the global deny.
const calleePolicy = `apiVersion: dapr.io/v1alpha1
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
      MODE_A
      operations:
      - name: /public
        httpVerb: ['*']
        action: allow
      - name: /orders
        httpVerb: ['POST']
        action: allow
      - name: /slow
        httpVerb: ['GET']
        action: allow
    POLICY_C
`

const policyC = `- appId: app-c
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /admin
        httpVerb: ['*']
        action: deny`

func writePolicy(t *testing.T, file, modeA string, withC bool) {
	t.Helper()
	s := strings.Replace(calleePolicy, "MODE_A", modeA, 1)
	c := ""
	if withC {
		c = policyC
	}
	s = strings.Replace(s, "POLICY_C", c, 1)
	// Write beside and rename, as editors do, so the watcher never reads half a file.
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// appRequests reads how many requests the test app has served.
func appRequests(t *testing.T, port int) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/requests")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.Atoi(string(b))
	return n
}

// TestAccessControl covers access-control points 2, 4, 5, 6 and 8: over
// mTLS, two callers with different identities and one callee; allow, deny,
// app default, global default, audit mode and hot reload.
func TestAccessControl(t *testing.T) {
	m := newMesh(t)
	cfg := filepath.Join(t.TempDir(), "callee.yaml")
	writePolicy(t, cfg, "", true)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--config", cfg)
	a := m.sidecar("app-a", 0)
	c := m.sidecar("app-c", 0)

	call := func(from *sidecar, verb, method string) (int, string) {
		t.Helper()
		resp, body := do(t, newRequest(t, verb, from.invokeURL("app-b", method), nil))
		return resp.StatusCode, string(body)
	}

	cases := []struct {
		name       string
		from       *sidecar
		verb, path string
		want       int
		rule       string // deciding rule named in a denial
		appPath    string // what the app must see when allowed
	}{
		{"operation allows any verb", a, "GET", "public", 200, "", "/public"},
		{"prefix rule", a, "DELETE", "public/extra", 200, "", "/public/extra"},
		{"encoded traversal decided as delivered", a, "GET", "admin%2F..%2Fpublic", 200, "", "/public"},
		{"dot segments", a, "GET", "x/../public", 200, "", "/public"},
		{"doubled slashes", a, "GET", "public//x", 200, "", "/public/x"},
		{"case-insensitive for HTTP apps", a, "GET", "PUBLIC", 200, "", "/PUBLIC"},
		{"verb listed", a, "POST", "orders", 200, "", "/orders"},
		{"verb not listed falls to app default", a, "PUT", "orders", 403, "app default", ""},
		{"no operation falls to app default", a, "GET", "admin", 403, "app default", ""},
		{"traversal into a denied operation", a, "GET", "public%2F..%2Fadmin", 403, "app default", ""},
		{"other caller, app default allow", c, "GET", "anything", 200, "", "/anything"},
		{"other caller, operation deny", c, "GET", "admin/users", 403, "operation", ""},
	}
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			before := appRequests(t, bPort)
			status, body := call(tt.from, tt.verb, tt.path)
			if status != tt.want {
				t.Fatalf("%s %s from %s: %d, want %d: %s", tt.verb, tt.path, tt.from.appID, status, tt.want, body)
			}
			served := appRequests(t, bPort) - before
			if tt.want == 200 {
				if tt.verb != "HEAD" && !strings.Contains(body, `"path":"`+tt.appPath+`"`) {
					t.Errorf("app saw %s, want %s", body, tt.appPath)
				}
				return
			}
			if served != 0 {
				t.Errorf("the app was called %d times for a denied call", served)
			}
			resp, raw := do(t, newRequest(t, tt.verb, tt.from.invokeURL("app-b", tt.path), nil))
			e := decodeError(t, resp, raw)
			if e.ErrorCode != "ERR_DIRECT_INVOKE" || e.reason() != "ACCESS_DENIED" {
				t.Errorf("denial body %s", raw)
			}
			wantMsg := "rpc error: code = PermissionDenied desc = access control policy has denied access to id: spiffe://public/ns/default/" + tt.from.appID
			if !strings.Contains(e.Message, wantMsg) || !strings.Contains(e.Message, "verb: "+tt.verb) {
				t.Errorf("message %q lacks %q", e.Message, wantMsg)
			}
			if rule := e.Details[0].Metadata["rule"]; !strings.Contains(rule, tt.rule) {
				t.Errorf("rule %q, want it to name %q", rule, tt.rule)
			}
		})
	}

	t.Run("metrics", func(t *testing.T) {
		if n := b.metric(t, "dapr_runtime_acl_app_policy_action_blocked_total", `app_id="app-a"`, `namespace="default"`, `trustDomain="public"`); n < 3 {
			t.Errorf("app-level blocked for app-a = %v, want ≥ 3", n)
		}
		if n := b.metric(t, "dapr_runtime_acl_app_policy_action_allowed_total", `app_id="app-a"`); n < 5 {
			t.Errorf("app-level allowed for app-a = %v, want ≥ 5", n)
		}
		if n := b.metric(t, "skein_access_decisions_total", `caller_app="app-c"`, `decision="deny"`); n < 1 {
			t.Errorf("skein decisions deny for app-c = %v", n)
		}
	})

	// Hot reload: drop app-c's policy; app-c now meets the global default.
	t.Run("reload to global default, no call in flight dropped", func(t *testing.T) {
		done := make(chan int, 1)
		go func() {
			resp, err := http.Get(a.invokeURL("app-b", "slow?ms=1500"))
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
		waitFor(t, 5*time.Second, "the slow call to reach the app", func() bool {
			r, err := http.Get("http://127.0.0.1:" + strconv.Itoa(bPort) + "/inflight")
			if err != nil {
				return false
			}
			defer r.Body.Close()
			v, _ := io.ReadAll(r.Body)
			return string(v) == "1"
		})
		writePolicy(t, cfg, "", false)
		changed := time.Now()
		waitFor(t, 2*time.Second, "the new policy to apply within 2 s", func() bool {
			status, _ := call(c, "GET", "anything")
			return status == 403
		})
		t.Logf("policy changed after %s", time.Since(changed))
		if st := <-done; st != 200 {
			t.Errorf("call in flight across the reload: %d", st)
		}
		_, body := call(c, "GET", "anything")
		if !strings.Contains(body, "global default") {
			t.Errorf("denial does not name the global default: %s", body)
		}
		if n := b.metric(t, "dapr_runtime_acl_global_policy_action_blocked_total", `app_id="app-c"`); n < 1 {
			t.Errorf("global blocked for app-c = %v", n)
		}
	})

	t.Run("invalid file rejected, last good keeps applying", func(t *testing.T) {
		rejected := b.metric(t, "skein_config_reloads_total", `result="rejected"`)
		bad := strings.Replace(calleePolicy, "namespace: default\n      MODE_A", "MODE_A", 1) // a policy without namespace
		bad = strings.Replace(strings.Replace(bad, "MODE_A", "", 1), "POLICY_C", "", 1)
		if err := os.WriteFile(cfg, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 3*time.Second, "the rejection to be counted", func() bool {
			return b.metric(t, "skein_config_reloads_total", `result="rejected"`) > rejected
		})
		if !strings.Contains(b.out.String(), "config rejected") || !strings.Contains(b.out.String(), "namespace") {
			t.Error("no log line names the rejected field")
		}
		if status, _ := call(a, "GET", "public"); status != 200 {
			t.Errorf("allowed call after a bad reload: %d", status)
		}
		if status, _ := call(a, "GET", "admin"); status != 403 {
			t.Errorf("denied call after a bad reload: %d", status)
		}
	})

	t.Run("audit mode allows and counts what enforcement would deny", func(t *testing.T) {
		writePolicy(t, cfg, "mode: audit", true)
		waitFor(t, 2*time.Second, "audit mode to apply", func() bool {
			status, _ := call(a, "GET", "admin")
			return status == 200
		})
		if n := b.metric(t, "skein_access_decisions_total", `caller_app="app-a"`, `decision="audit_deny"`); n < 1 {
			t.Errorf("audit denials counted %v", n)
		}
		if !strings.Contains(b.out.String(), "access audit") {
			t.Error("no audit log line")
		}
		// Audit on app-a's policy does not soften app-c's.
		if status, _ := call(c, "GET", "admin"); status != 403 {
			t.Errorf("app-c /admin in app-a's audit mode: %d, want 403", status)
		}
	})
}

// TestPolicyCommands covers access-control point 7: skein policy explain
// and lint, offline.
func TestPolicyCommands(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "callee.yaml")
	writePolicy(t, cfg, "", true)
	run := func(args ...string) (string, int) {
		t.Helper()
		cmd := exec.Command(bin.skein, append([]string{"policy"}, args...)...)
		out, err := cmd.CombinedOutput()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return string(out), code
	}
	tests := []struct {
		name      string
		args      []string
		wantCode  int
		wantParts []string
	}{
		{"allowed by operation", []string{"explain", "--config", cfg, "--caller", "spiffe://public/ns/default/app-a", "--verb", "GET", "--path", "/public/x"}, 0, []string{"allow", "/public"}},
		{"denied by app default", []string{"explain", "--config", cfg, "--caller", "spiffe://public/ns/default/app-a", "--verb", "PUT", "--path", "/orders"}, 3, []string{"deny", "app default"}},
		{"traversal explained as delivered", []string{"explain", "--config", cfg, "--caller", "spiffe://public/ns/default/app-a", "--verb", "GET", "--path", "/admin/../public"}, 0, []string{"allow", "public"}},
		{"unknown caller gets the global default", []string{"explain", "--config", cfg, "--caller", "spiffe://public/ns/default/app-z", "--verb", "GET", "--path", "/x"}, 3, []string{"deny", "global default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := run(tt.args...)
			if code != tt.wantCode {
				t.Errorf("exit %d, want %d:\n%s", code, tt.wantCode, out)
			}
			for _, p := range tt.wantParts {
				if !strings.Contains(out, p) {
					t.Errorf("output lacks %q:\n%s", p, out)
				}
			}
		})
	}
	t.Run("lint", func(t *testing.T) {
		lint := filepath.Join(t.TempDir(), "lint.yaml")
		_ = os.WriteFile(lint, []byte(`apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: lint
spec:
  accessControl:
    defaultAction: deny
    policies:
    - appId: app-a
      trustDomain: public
      namespace: default
      operations:
      - name: /a/*/c
        httpVerb: ['GET']
        action: allow
      - name: /v1
        httpVerb: ['post']
        action: allow
      - name: /v1/orders
        httpVerb: ['GET']
        action: deny
`), 0o600)
		out, code := run("lint", "--config", lint)
		if code == 0 {
			t.Errorf("lint found nothing:\n%s", out)
		}
		for _, want := range []string{"/a/*/c", "post", "operations[2]: shadowed"} {
			if !strings.Contains(out, want) {
				t.Errorf("lint output lacks a warning about %q:\n%s", want, out)
			}
		}
		clean, code := run("lint", "--config", cfg)
		if code != 0 || !strings.Contains(clean, "no warnings") {
			t.Errorf("clean policy: exit %d:\n%s", code, clean)
		}
	})
}
