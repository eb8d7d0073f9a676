package test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// kubePod is a pod of a test: its object in the API server and, on
// loopback, its app and its sidecar listening at the pod's IP, as the
// kubelet would run them.
type kubePod struct {
	ns, name, app, ip string
	peer              int
	s                 *sidecar
}

// podPath is the pod's API path.
func (p *kubePod) path() string { return "/api/v1/namespaces/" + p.ns + "/pods/" + p.name }

// createPod creates a Dapr pod as the injector leaves it (a daprd
// container with its peer port named dapr-internal), then sets its status
// as the kubelet would: Running at ip, Ready.
func (k *kubeAPI) createPod(t *testing.T, ns, name, app, ip string, annotations map[string]string) *kubePod {
	t.Helper()
	p := &kubePod{ns: ns, name: name, app: app, ip: ip, peer: freePort(t)}
	an := map[string]string{"dapr.io/enabled": "true", "dapr.io/app-id": app}
	for k, v := range annotations {
		an[k] = v
	}
	k.must(t, "POST", "/api/v1/namespaces/"+ns+"/pods", map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": name, "namespace": ns, "annotations": an},
		// The pod's identity: a service account named for its app (no
		// admission plugin checks that it exists; the token test makes one).
		"spec": map[string]any{"serviceAccountName": app, "containers": []any{
			map[string]any{"name": "app", "image": "app:test"},
			map[string]any{"name": "daprd", "image": "skein:test", "ports": []any{
				map[string]any{"name": "dapr-internal", "containerPort": p.peer},
			}},
		}},
	})
	k.setReady(t, p, true)
	return p
}

// setReady sets the pod's status: Running at its IP, Ready or not.
func (k *kubeAPI) setReady(t *testing.T, p *kubePod, ready bool) {
	t.Helper()
	st := "False"
	if ready {
		st = "True"
	}
	k.must(t, "PATCH", p.path()+"/status", map[string]any{"status": map[string]any{
		"phase": "Running", "podIP": p.ip, "podIPs": []any{map[string]any{"ip": p.ip}},
		"conditions": []any{map[string]any{"type": "Ready", "status": st}},
	}})
}

// runPod starts the pod's app (answering with X-Instance: ns/name) and
// its sidecar: the pod's namespace and IP, the peer port at that IP,
// configured and given its SVID by the control plane.
func runPod(t *testing.T, cp *controlPlane, p *kubePod) {
	t.Helper()
	m := newMesh(t)
	appPort, _ := m.app(p.ns + "/" + p.name)
	s := &sidecar{appID: p.app, http: freePort(t), grpc: freePort(t), metrics: freePort(t)}
	s.proc = m.start("sidecar "+p.ns+"/"+p.name, bin.skein, []string{"NAMESPACE=" + p.ns, "DAPR_HOST_IP=" + p.ip},
		"sidecar", "--app-id", p.app, "--app-port", strconv.Itoa(appPort),
		"--dapr-http-port", strconv.Itoa(s.http), "--dapr-grpc-port", strconv.Itoa(s.grpc),
		"--metrics-port", strconv.Itoa(s.metrics), "--log-level", "debug",
		"--dapr-internal-grpc-port", strconv.Itoa(p.peer), "--dapr-internal-grpc-listen-address", p.ip,
		"--control-plane-address", cp.addr, "--join-token", xdsToken)
	s.waitReady(t)
	p.s = s
}

// startKubeControlPlane runs `skein control-plane --kubernetes` against k,
// with extra flags, and waits until its caches are synced.
func startKubeControlPlane(t *testing.T, k *kubeAPI, extra ...string) *controlPlane {
	t.Helper()
	m := newMesh(t)
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	// Sidecars here get their SVIDs with the join token: pod identity by
	// service-account token is kube_identity_test.go's.
	p := m.start("control-plane", bin.skein, nil, append([]string{"control-plane", "--kubernetes", "--kubeconfig", k.kubeconfig,
		"--listen-address", addr, "--join-token", xdsToken, "--allow-join-token-svids", "--svid-ttl", "1m", "--log-level", "debug"}, extra...)...)
	waitFor(t, 30*time.Second, "control plane synced with the API server", func() bool {
		if p.exited() {
			t.Fatalf("control plane exited: %v\n%s", p.err, p.out)
		}
		return strings.Contains(p.out.String(), "cluster state loaded") && strings.Contains(p.out.String(), "control plane listening")
	})
	return &controlPlane{proc: p, m: m, addr: addr}
}

// instancesSeen calls target/echo through s n times and counts the
// answers by X-Instance ("status NNN" for a non-200 answer).
func instancesSeen(t *testing.T, s *sidecar, target string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		resp, err := http.Get(s.invokeURL(target, "echo"))
		if err != nil {
			seen["error"]++
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			seen["status "+strconv.Itoa(resp.StatusCode)]++
			continue
		}
		seen[resp.Header.Get("X-Instance")]++
	}
	return seen
}

// untilEndpoints polls (up to 20 s) until the sidecar s knows exactly
// the peer addresses of pods for target (key: "<app-id>.<namespace>" in its
// /v1.0/metadata), then checks that calls reach those pods only; with
// all, until each of them has answered. It fails the test otherwise.
func untilEndpoints(t *testing.T, s *sidecar, target, key string, all bool, pods ...*kubePod) {
	t.Helper()
	var want []string
	names := map[string]bool{}
	for _, p := range pods {
		want = append(want, p.ip+":"+strconv.Itoa(p.peer))
		names[p.ns+"/"+p.name] = true
	}
	slices.Sort(want)
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	var got []string
	for {
		// The resolver learns a name at its first call.
		instancesSeen(t, s, target, 1)
		got = nil
		if list, ok := s.metadata(t)["instances"].(map[string]any)[key].([]any); ok {
			for _, a := range list {
				got = append(got, fmt.Sprint(a))
			}
		}
		slices.Sort(got)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s's endpoints of %s: %v, want %v", s.appID, key, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%s knows %s at %v after %s", s.appID, key, want, time.Since(start).Round(time.Millisecond))
	seen := map[string]int{}
	for {
		for inst, n := range instancesSeen(t, s, target, 12) {
			if !names[inst] {
				t.Fatalf("%s → %s: %d answers from %q, want only %v", s.appID, target, n, inst, want)
			}
			seen[inst] += n
		}
		if !all || len(seen) == len(names) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s → %s: answers %v, want each of %v", s.appID, target, seen, want)
		}
	}
}

const kubeCalleeConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee-config
  namespace: shop
spec:
  accessControl:
    defaultAction: allow
    trustDomain: public
    policies:
    - appId: caller
      namespace: shop
      trustDomain: public
      defaultAction: allow
      operations:
      - name: /admin
        httpVerb: ["*"]
        action: deny
`

const kubeRetry = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry-callee
  namespace: shop
scopes: [caller]
spec:
  policies:
    retries:
      thrice:
        policy: constant
        duration: 10ms
        maxRetries: 3
        matching:
          httpStatusCodes: "503"
  targets:
    apps:
      callee:
        retry: thrice
`

// TestKubernetesControlPlane: `skein control-plane --kubernetes` against a
// real kube-apiserver. The test plays the kubelet and the endpoint
// controller (pod status, EndpointSlices); the control plane watches pods,
// slices and Dapr's resources for real, and sidecars running as the
// pods, at the pods' IPs on loopback, call each other over mTLS with the
// access policy and resiliency of the cluster's CRs.
func TestKubernetesControlPlane(t *testing.T) {
	k := startKubeAPI(t)
	for _, ns := range []string{"shop", "other"} {
		k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": ns}})
	}
	crd := func(method, path, doc string) {
		t.Helper()
		var obj map[string]any
		if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
			t.Fatal(err)
		}
		k.must(t, method, path, obj)
	}
	crd("POST", "/apis/dapr.io/v1alpha1/namespaces/shop/configurations", kubeCalleeConfig)
	crd("POST", "/apis/dapr.io/v1alpha1/namespaces/shop/resiliencies", kubeRetry)

	// Pod IPs: a loopback /24 of this test's own.
	net := fmt.Sprintf("127.%d.%d.", 100+rand.IntN(100), 1+rand.IntN(250))
	cfg := map[string]string{"dapr.io/config": "callee-config"}
	caller := k.createPod(t, "shop", "caller-0", "caller", net+"2", nil)
	callee0 := k.createPod(t, "shop", "callee-0", "callee", net+"3", cfg)
	callee1 := k.createPod(t, "shop", "callee-1", "callee", net+"4", cfg)
	stranger := k.createPod(t, "other", "callee-0", "callee", net+"5", nil)

	cp := startKubeControlPlane(t, k)
	for _, p := range []*kubePod{caller, callee0, callee1, stranger} {
		runPod(t, cp, p)
	}
	a := caller.s

	t.Run("calls flow over mTLS to the pods of the app, in its namespace", func(t *testing.T) {
		untilEndpoints(t, a, "callee", "callee.shop", true, callee0, callee1)
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("callee", "echo"), nil))
		if e := decodeEcho(t, body); resp.StatusCode != 200 || e.Header.Get("Dapr-Caller-App-Id") != "caller" {
			t.Errorf("caller→callee: %d, caller %q", resp.StatusCode, e.Header.Get("Dapr-Caller-App-Id"))
		}
		// The same app id in another namespace is another app.
		untilEndpoints(t, a, "callee.other", "callee.other", true, stranger)
		opened := callee0.s.metric(t, "skein_peer_connections_opened_total", `transport="h1"`) +
			callee1.s.metric(t, "skein_peer_connections_opened_total", `transport="h1"`)
		if opened < 1 {
			t.Errorf("the callee pods accepted %v mTLS connections", opened)
		}
		for _, p := range []*kubePod{caller, callee0, stranger} {
			id := "spiffe://public/ns/" + p.ns + "/" + p.app
			if !strings.Contains(cp.out.String(), id) {
				t.Errorf("the control plane signed no SVID %s", id)
			}
		}
		st := cp.status(t)
		if n := len(st["clusterInstances"].([]any)); n != 4 {
			t.Errorf("status lists %d cluster instances, want 4: %v", n, st["clusterInstances"])
		}
	})

	t.Run("access policy from the Configuration the pods name", func(t *testing.T) {
		if resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("callee", "admin"), nil)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("caller→callee/admin: %d, want 403 (callee-config denies it)", resp.StatusCode)
		}
		// other/callee's pod names no Configuration: no policy.
		if resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("callee.other", "admin"), nil)); resp.StatusCode != http.StatusOK {
			t.Errorf("caller→callee.other/admin: %d, want 200", resp.StatusCode)
		}
	})

	t.Run("resiliency from the Resiliency scoped to the caller", func(t *testing.T) {
		key := "k" + strconv.FormatInt(time.Now().UnixNano(), 36)
		req := newRequest(t, http.MethodGet, a.invokeURL("callee", "flaky?fail=1&status=503"), nil)
		req.Header.Set("X-Count-Key", key)
		if resp, _ := do(t, req); resp.StatusCode != http.StatusOK {
			t.Errorf("caller→callee/flaky (first try 503 on each instance): %d, want 200 after retries", resp.StatusCode)
		}
		// Scoped to caller: callee.other's sidecar calling shop's callee
		// gets no retries (and another namespace's Resiliency never applies).
		req = newRequest(t, http.MethodGet, stranger.s.invokeURL("callee.shop", "flaky?fail=1&status=503"), nil)
		req.Header.Set("X-Count-Key", key+"-stranger")
		if resp, _ := do(t, req); resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("other/callee→callee.shop/flaky: %d, want 503 (no retry policy for it)", resp.StatusCode)
		}
	})

	t.Run("readiness from the pod, then from its EndpointSlice", func(t *testing.T) {
		k.setReady(t, callee1, false)
		untilEndpoints(t, a, "callee", "callee.shop", false, callee0)
		k.setReady(t, callee1, true)
		untilEndpoints(t, a, "callee", "callee.shop", false, callee0, callee1)

		// The endpoint controller's view wins over the pod's condition.
		// The API server refuses loopback addresses in a slice; the control
		// plane reads the slice's targetRef and conditions, not its address.
		slice := map[string]any{
			"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
			"metadata":    map[string]any{"name": "callee-dapr-x1", "namespace": "shop", "labels": map[string]any{"kubernetes.io/service-name": "callee-dapr"}},
			"addressType": "IPv4",
			"endpoints": []any{map[string]any{
				"addresses":  []any{"192.0.2.4"},
				"conditions": map[string]any{"ready": false, "serving": false, "terminating": false},
				"targetRef":  map[string]any{"kind": "Pod", "namespace": "shop", "name": "callee-1"},
			}},
		}
		k.must(t, "POST", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices", slice)
		untilEndpoints(t, a, "callee", "callee.shop", false, callee0)
		k.must(t, "PATCH", "/apis/discovery.k8s.io/v1/namespaces/shop/endpointslices/callee-dapr-x1", map[string]any{
			"endpoints": []any{map[string]any{
				"addresses":  []any{"192.0.2.4"},
				"conditions": map[string]any{"ready": true, "serving": true, "terminating": false},
				"targetRef":  map[string]any{"kind": "Pod", "namespace": "shop", "name": "callee-1"},
			}},
		})
		untilEndpoints(t, a, "callee", "callee.shop", false, callee0, callee1)
	})

	t.Run("a change to the Configuration reaches the sidecars", func(t *testing.T) {
		if resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("callee", "reports"), nil)); resp.StatusCode != http.StatusOK {
			t.Fatalf("caller→callee/reports before the change: %d, want 200", resp.StatusCode)
		}
		start := time.Now()
		k.must(t, "PATCH", "/apis/dapr.io/v1alpha1/namespaces/shop/configurations/callee-config", map[string]any{
			"spec": map[string]any{"accessControl": map[string]any{"policies": []any{map[string]any{
				"appId": "caller", "namespace": "shop", "trustDomain": "public", "defaultAction": "allow",
				"operations": []any{
					map[string]any{"name": "/admin", "httpVerb": []any{"*"}, "action": "deny"},
					map[string]any{"name": "/reports", "httpVerb": []any{"*"}, "action": "deny"},
				},
			}}}},
		})
		took := untilStatus(t, a, "callee", "reports", http.StatusForbidden, start, nil)
		t.Logf("the Configuration change took effect after %s", took)
	})

	t.Run("a Configuration Skein refuses keeps its last good form", func(t *testing.T) {
		// A wildcard inside a path has no RBAC equivalent in the xDS
		// subset: the API server accepts it, Skein refuses it, and the
		// deny above still applies.
		k.must(t, "PATCH", "/apis/dapr.io/v1alpha1/namespaces/shop/configurations/callee-config", map[string]any{
			"spec": map[string]any{"accessControl": map[string]any{"policies": []any{map[string]any{
				"appId": "caller", "namespace": "shop", "trustDomain": "public", "defaultAction": "allow",
				"operations": []any{map[string]any{"name": "/a/*/b", "httpVerb": []any{"*"}, "action": "deny"}},
			}}}},
		})
		waitFor(t, 10*time.Second, "the refusal in the status", func() bool {
			return strings.Contains(fmt.Sprint(cp.status(t)["configError"]), "Configuration shop/callee-config")
		})
		if resp, _ := do(t, newRequest(t, http.MethodGet, a.invokeURL("callee", "reports"), nil)); resp.StatusCode != http.StatusForbidden {
			t.Errorf("caller→callee/reports after a refused change: %d, want 403 (the last good policy)", resp.StatusCode)
		}
	})

	t.Run("deleting a pod removes its endpoint", func(t *testing.T) {
		k.must(t, "DELETE", callee1.path(), map[string]any{"gracePeriodSeconds": 0})
		// Its sidecar still runs and still renews its registration with
		// the control plane: on Kubernetes only the cluster says where an
		// app runs.
		untilEndpoints(t, a, "callee", "callee.shop", false, callee0)
		if callee1.s.exited() {
			t.Errorf("callee-1's sidecar exited")
		}
	})

	t.Run("service-account tokens bound to a pod pass TokenReview", func(t *testing.T) {
		// What sidecars will prove their pod with (issue 13, point 2):
		// the API server issues and reviews projected tokens here.
		var pod corev1.Pod
		if err := json.Unmarshal(k.must(t, "GET", caller.path(), nil), &pod); err != nil {
			t.Fatal(err)
		}
		k.must(t, "POST", "/api/v1/namespaces/shop/serviceaccounts", map[string]any{"metadata": map[string]any{"name": "caller"}})
		var tr struct{ Status struct{ Token string } }
		_ = json.Unmarshal(k.must(t, "POST", "/api/v1/namespaces/shop/serviceaccounts/caller/token", map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
			"spec": map[string]any{"audiences": []any{"skein"}, "expirationSeconds": 600,
				"boundObjectRef": map[string]any{"apiVersion": "v1", "kind": "Pod", "name": pod.Name, "uid": string(pod.UID)}},
		}), &tr)
		if tr.Status.Token == "" {
			t.Fatal("TokenRequest returned no token")
		}
		var rev struct {
			Status struct {
				Authenticated bool
				User          struct {
					Username string
					Extra    map[string][]string
				}
			}
		}
		_ = json.Unmarshal(k.must(t, "POST", "/apis/authentication.k8s.io/v1/tokenreviews", map[string]any{
			"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
			"spec": map[string]any{"token": tr.Status.Token, "audiences": []any{"skein"}},
		}), &rev)
		u := rev.Status.User
		if !rev.Status.Authenticated || u.Username != "system:serviceaccount:shop:caller" || !slices.Contains(u.Extra["authentication.kubernetes.io/pod-name"], "caller-0") {
			t.Errorf("TokenReview: %+v, want authenticated as shop's caller in pod caller-0", rev.Status)
		}
	})

	t.Run("the API server calls the injection webhook", func(t *testing.T) {
		testKubeWebhook(t, k)
	})
}

// testKubeWebhook registers deploy/skein.yaml's MutatingWebhookConfiguration
// (pointed at a control plane's --webhook-listen on loopback, with the
// test's CA bundle) and creates a Dapr pod: the API server calls the
// webhook, and the stored pod has the sidecar.
func testKubeWebhook(t *testing.T, k *kubeAPI) {
	dir := t.TempDir()
	certFile, keyFile, _ := webhookCert(t, dir)
	caPEM, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	hookAddr := "127.0.0.1:" + strconv.Itoa(freePort(t))
	startKubeControlPlane(t, k, "--webhook-listen", hookAddr, "--webhook-cert", certFile, "--webhook-key", keyFile)

	b, err := os.ReadFile(filepath.Join("..", "deploy", "skein.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var hook *admissionregistrationv1.MutatingWebhookConfiguration
	for doc := range strings.SplitSeq(string(b), "\n---\n") {
		var head struct{ Kind string }
		if yaml.Unmarshal([]byte(doc), &head) == nil && head.Kind == "MutatingWebhookConfiguration" {
			hook = &admissionregistrationv1.MutatingWebhookConfiguration{}
			if err := yaml.UnmarshalStrict([]byte(doc), hook); err != nil {
				t.Fatal(err)
			}
		}
	}
	if hook == nil || len(hook.Webhooks) != 1 {
		t.Fatalf("deploy/skein.yaml: want one MutatingWebhookConfiguration with one webhook, got %v", hook)
	}
	url := "https://" + hookAddr + "/mutate"
	hook.Webhooks[0].ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caPEM}
	hook.APIVersion, hook.Kind = "admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"
	k.must(t, "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", hook)
	k.must(t, "POST", "/api/v1/namespaces", map[string]any{"metadata": map[string]any{"name": "injected"}})

	pod := func(name string) map[string]any {
		return map[string]any{
			"apiVersion": "v1", "kind": "Pod",
			"metadata": map[string]any{"name": name, "namespace": "injected", "annotations": map[string]any{
				"dapr.io/enabled": "true", "dapr.io/app-id": "orders", "dapr.io/app-port": "8080",
			}},
			// As the ServiceAccount admission plugin (off here) sets it: the
			// API server refuses a projected token of no service account.
			"spec": map[string]any{"serviceAccountName": "default", "containers": []any{map[string]any{"name": "app", "image": "orders:1"}}},
		}
	}
	containers := func(b []byte) []string {
		var p corev1.Pod
		if err := json.Unmarshal(b, &p); err != nil {
			t.Fatalf("pod: %v: %s", err, b)
		}
		var out []string
		for _, c := range p.Spec.Containers {
			out = append(out, c.Name)
		}
		return out
	}
	// The API server picks up a new webhook configuration within a moment:
	// dry runs (which call webhooks without side effects) until it does.
	waitFor(t, 30*time.Second, "the API server to call the webhook", func() bool {
		code, b := k.try("POST", "/api/v1/namespaces/injected/pods?dryRun=All", pod("orders-dry"), "")
		return code == http.StatusCreated && strings.Contains(strings.Join(containers(b), ","), "daprd")
	})
	k.must(t, "POST", "/api/v1/namespaces/injected/pods", pod("orders-0"))
	stored := k.must(t, "GET", "/api/v1/namespaces/injected/pods/orders-0", nil)
	if got := containers(stored); strings.Join(got, ",") != "app,daprd" {
		t.Errorf("stored pod's containers: %v, want app and daprd", got)
	}
	var p corev1.Pod
	_ = json.Unmarshal(stored, &p)
	if p.Labels["dapr.io/sidecar-injected"] != "true" {
		t.Errorf("stored pod's labels: %v, want dapr.io/sidecar-injected", p.Labels)
	}
	// The pod's proof of identity to the control plane (kube_identity_test.go).
	if !slices.ContainsFunc(p.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Projected != nil && len(v.Projected.Sources) == 1 && v.Projected.Sources[0].ServiceAccountToken != nil &&
			v.Projected.Sources[0].ServiceAccountToken.Audience == "skein.io/control-plane"
	}) {
		t.Errorf("stored pod's volumes: %+v, want the projected service-account token", p.Spec.Volumes)
	}
}
