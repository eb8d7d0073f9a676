package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/skeinmesh/skein/inject"
)

// podToken asks the API server for a token of the pod's service account
// (named for its app, as createPod makes it) bound to the pod, for
// audience: what the kubelet writes into the injector's projected volume.
// It writes it to a file of its own and returns the file.
func (k *kubeAPI) podToken(t *testing.T, p *kubePod, sa, audience string) string {
	t.Helper()
	var pod corev1.Pod
	if err := json.Unmarshal(k.must(t, "GET", p.path(), nil), &pod); err != nil {
		t.Fatal(err)
	}
	var tr struct{ Status struct{ Token string } }
	_ = json.Unmarshal(k.must(t, "POST", "/api/v1/namespaces/"+p.ns+"/serviceaccounts/"+sa+"/token", map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
		"spec": map[string]any{"audiences": []any{audience}, "expirationSeconds": 600,
			"boundObjectRef": map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID)}},
	}), &tr)
	if tr.Status.Token == "" {
		t.Fatal("TokenRequest returned no token")
	}
	file := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(file, []byte(tr.Status.Token), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// controlPlaneRules are the control plane's permissions as
// docs/kubernetes.md lists them; tokenreviews last.
var controlPlaneRules = []any{
	map[string]any{"apiGroups": []any{""}, "resources": []any{"pods"}, "verbs": []any{"get", "list", "watch"}},
	map[string]any{"apiGroups": []any{"discovery.k8s.io"}, "resources": []any{"endpointslices"}, "verbs": []any{"get", "list", "watch"}},
	map[string]any{"apiGroups": []any{"dapr.io"}, "resources": []any{"configurations", "resiliencies", "httpendpoints"}, "verbs": []any{"get", "list", "watch"}},
	// A replica's Lease and CA Secret (the chart grants these in its own
	// namespace only, by name: TestHelmChartOnAPIServer).
	map[string]any{"apiGroups": []any{"coordination.k8s.io"}, "resources": []any{"leases"}, "verbs": []any{"get", "create", "update"}},
	map[string]any{"apiGroups": []any{""}, "resources": []any{"secrets"}, "verbs": []any{"get", "list", "watch", "create", "update"}},
	// Last: the no-review case below drops it.
	map[string]any{"apiGroups": []any{"authentication.k8s.io"}, "resources": []any{"tokenreviews"}, "verbs": []any{"create"}},
}

// serviceAccountKubeconfig makes service account ns/name with a
// ClusterRole of rules bound to it, and returns a kubeconfig file that
// authenticates as it (a token from TokenRequest).
func (k *kubeAPI) serviceAccountKubeconfig(t *testing.T, ns, name string, rules []any) string {
	t.Helper()
	k.must(t, "POST", "/api/v1/namespaces/"+ns+"/serviceaccounts", map[string]any{"metadata": map[string]any{"name": name}})
	k.must(t, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", map[string]any{
		"metadata": map[string]any{"name": name}, "rules": rules,
	})
	k.must(t, "POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", map[string]any{
		"metadata": map[string]any{"name": name},
		"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": name},
		"subjects": []any{map[string]any{"kind": "ServiceAccount", "namespace": ns, "name": name}},
	})
	var tr struct{ Status struct{ Token string } }
	_ = json.Unmarshal(k.must(t, "POST", "/api/v1/namespaces/"+ns+"/serviceaccounts/"+name+"/token", map[string]any{
		"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{"expirationSeconds": 3600},
	}), &tr)
	if tr.Status.Token == "" {
		t.Fatal("TokenRequest returned no token")
	}
	return k.tokenKubeconfig(t, tr.Status.Token)
}

// tokenKubeconfig is a kubeconfig file that authenticates with token.
func (k *kubeAPI) tokenKubeconfig(t *testing.T, token string) string {
	t.Helper()
	b, err := os.ReadFile(k.kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(file, []byte(strings.ReplaceAll(string(b), "token: "+k.token, "token: "+token)), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// tokenSidecar starts app's sidecar as pod p would run it, proving its pod
// with the token in tokenFile alone (no join token), and does not wait.
func tokenSidecar(t *testing.T, cp *controlPlane, p *kubePod, app, tokenFile string) *sidecar {
	t.Helper()
	m := newMesh(t)
	appPort, _ := m.app(p.ns + "/" + p.name)
	s := &sidecar{appID: app, http: freePort(t), grpc: freePort(t), metrics: freePort(t)}
	s.proc = m.start("sidecar "+p.ns+"/"+p.name+" as "+app, bin.skein, []string{"NAMESPACE=" + p.ns, "DAPR_HOST_IP=" + p.ip},
		"sidecar", "--app-id", app, "--app-port", strconv.Itoa(appPort),
		"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc),
		"--metrics-port", strconv.Itoa(s.metrics), "--log-level", "debug",
		"--dapr-internal-grpc-port", strconv.Itoa(p.peer), "--dapr-internal-grpc-listen-address", p.ip,
		"--control-plane-address", cp.addr, "--kubernetes-token-file", tokenFile)
	return s
}

// refused waits for a sidecar that must get no SVID: it exits non-zero,
// saying why (want).
func refused(t *testing.T, s *sidecar, want string) {
	t.Helper()
	if code := s.exitCode(t, 30*time.Second); code == 0 {
		t.Errorf("sidecar %s exited 0, want a failure", s.name)
	}
	if out := s.out.String(); !strings.Contains(out, want) {
		t.Errorf("sidecar %s's output lacks %q:\n%s", s.name, want, out)
	}
}

// TestKubernetesIdentity: issue 13, point 2, against a real kube-apiserver.
// The control plane's CA signs spiffe://public/ns/<ns>/<app-id> only for a
// sidecar whose projected service-account token (audience
// inject.TokenAudience), checked with TokenReview, is bound to a pod that
// runs that app; a token for another pod or app id, of another audience,
// or of a deleted pod, and a join token alone, get nothing, and the
// control plane logs each refusal with the pod but never the token.
func TestKubernetesIdentity(t *testing.T) {
	k := startKubeAPI(t)
	k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": "ident"}})
	for _, sa := range []string{"orders", "billing"} {
		k.must(t, "POST", "/api/v1/namespaces/ident/serviceaccounts", map[string]any{"metadata": map[string]any{"name": sa}})
	}
	net := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), 1+rand.IntN(250))
	orders := k.createPod(t, "ident", "orders-0", "orders", net+"2", nil)
	billing := k.createPod(t, "ident", "billing-0", "billing", net+"3", nil)

	// The control plane runs as a service account with exactly the
	// permissions docs/kubernetes.md lists: least privilege, proven.
	k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": "skein-system"}})
	kubeconfig := k.serviceAccountKubeconfig(t, "skein-system", "skein-control-plane", controlPlaneRules)

	t.Run("a control plane that may not review tokens does not start", func(t *testing.T) {
		noReview := k.serviceAccountKubeconfig(t, "skein-system", "no-review", controlPlaneRules[:len(controlPlaneRules)-1])
		p := newMesh(t).start("control-plane without tokenreviews", bin.skein, nil, "control-plane", "--kubernetes", "--kubeconfig", noReview,
			"--listen-address", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--join-token", xdsToken)
		if code := p.exitCode(t, 30*time.Second); code != 1 || !strings.Contains(p.out.String(), "may not create authentication.k8s.io tokenreviews") {
			t.Errorf("exit %d, output:\n%s\nwant 1 and the missing permission named", code, p.out)
		}
	})

	m := newMesh(t)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	// No --allow-join-token-svids: pods prove themselves, join tokens only
	// register.
	cp := &controlPlane{m: m, addr: addr, proc: m.start("control-plane", bin.skein, nil, "control-plane", "--kubernetes", "--kubeconfig", kubeconfig,
		"--listen-address", addr, "--join-token", xdsToken, "--svid-ttl", "1m", "--log-level", "debug")}
	waitFor(t, 30*time.Second, "control plane synced with the API server", func() bool {
		if cp.exited() {
			t.Fatalf("control plane exited: %v\n%s", cp.err, cp.out)
		}
		return strings.Contains(cp.out.String(), "cluster state loaded") && strings.Contains(cp.out.String(), "control plane listening")
	})
	var tokens []string // none of them may reach a log
	token := func(p *kubePod, sa, audience string) string {
		f := k.podToken(t, p, sa, audience)
		b, _ := os.ReadFile(f)
		tokens = append(tokens, string(b))
		return f
	}
	ordersToken := token(orders, "orders", inject.TokenAudience)

	t.Run("the pod's token gets its app's SVID, and calls flow over mTLS", func(t *testing.T) {
		a := tokenSidecar(t, cp, orders, "orders", ordersToken)
		a.waitReady(t)
		b := tokenSidecar(t, cp, billing, "billing", token(billing, "billing", inject.TokenAudience))
		b.waitReady(t)
		untilEndpoints(t, a, "billing", "billing.ident", true, billing)
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("billing", "echo"), nil))
		// The callee reads the caller's app id from its SVID.
		if e := decodeEcho(t, body); resp.StatusCode != http.StatusOK || e.Header.Get("Dapr-Caller-App-Id") != "orders" {
			t.Errorf("orders→billing: %d, caller %q, want 200 from orders", resp.StatusCode, e.Header.Get("Dapr-Caller-App-Id"))
		}
		if n := b.metric(t, "skein_peer_connections_opened_total"); n < 1 {
			t.Errorf("billing's sidecar accepted %v mTLS connections", n)
		}
		for _, p := range []*kubePod{orders, billing} {
			cp.waitLogged(t, `msg="svid signed"`, "spiffe_id=spiffe://public/ns/ident/"+p.app+" ", "pod="+p.name, "service_account="+p.app)
		}
	})

	t.Run("pod orders-0's token claiming app billing", func(t *testing.T) {
		s := tokenSidecar(t, cp, orders, "billing", ordersToken)
		refused(t, s, `403 Forbidden: service-account token refused: pod ident/orders-0 runs app "orders", not "billing"`)
		cp.waitLogged(t, "level=WARN", "svid refused", "spiffe_id=spiffe://public/ns/ident/billing ", "namespace=ident pod=orders-0 service_account=orders")
	})

	t.Run("billing-0's token presented by orders' sidecar", func(t *testing.T) {
		s := tokenSidecar(t, cp, orders, "orders", token(billing, "billing", inject.TokenAudience))
		refused(t, s, `pod ident/billing-0 runs app "billing", not "orders"`)
	})

	t.Run("a token of another audience", func(t *testing.T) {
		// The API server's own audience: a token that would work against
		// it proves nothing to the control plane.
		s := tokenSidecar(t, cp, orders, "orders", token(orders, "orders", k.url+"/"))
		refused(t, s, "does not accept it for audience "+inject.TokenAudience)
		cp.waitLogged(t, "level=WARN", "svid refused", "spiffe_id=spiffe://public/ns/ident/orders ", "audiences")
	})

	t.Run("a token bound to a deleted pod", func(t *testing.T) {
		gone := k.createPod(t, "ident", "orders-1", "orders", net+"4", nil)
		f := token(gone, "orders", inject.TokenAudience)
		k.must(t, "DELETE", gone.path(), map[string]any{"gracePeriodSeconds": 0})
		waitFor(t, 10*time.Second, "pod orders-1 gone", func() bool {
			code, _ := k.try("GET", gone.path(), nil, "")
			return code == http.StatusNotFound
		})
		refused(t, tokenSidecar(t, cp, gone, "orders", f), "service-account token refused")
	})

	t.Run("a join token alone", func(t *testing.T) {
		m := newMesh(t)
		port, _ := m.app("outside")
		s := m.sidecarNoWait("orders", port, "--control-plane-address", cp.addr, "--join-token", xdsToken)
		refused(t, s, "a Kubernetes service-account token is required")
		cp.waitLogged(t, "level=WARN", "svid refused: no service-account token", "spiffe_id=spiffe://public/ns/default/orders ")
	})

	for _, tok := range append(tokens, xdsToken) {
		if strings.Contains(cp.out.String(), tok) {
			t.Errorf("a token reached the control plane's log")
		}
	}
}

// waitLogged waits (up to 10 s: the log reaches the test through a pipe,
// maybe after the answer it precedes) until one line of the control
// plane's output has every part, and fails the test otherwise.
func (c *controlPlane) waitLogged(t *testing.T, parts ...string) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("a control plane log line with %q", parts), func() bool {
		for line := range strings.Lines(c.out.String()) {
			all := true
			for _, p := range parts {
				all = all && strings.Contains(line, p)
			}
			if all {
				return true
			}
		}
		return false
	})
}
