package test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// kubeResources is where each kind Skein's chart renders lives in the API:
// its collection's path (namespaced ones under /namespaces/NS/).
var kubeResources = map[string]struct {
	prefix, plural string
	namespaced     bool
}{
	"v1 Namespace":                                                 {"/api/v1", "namespaces", false},
	"v1 ServiceAccount":                                            {"/api/v1", "serviceaccounts", true},
	"v1 Service":                                                   {"/api/v1", "services", true},
	"apps/v1 Deployment":                                           {"/apis/apps/v1", "deployments", true},
	"policy/v1 PodDisruptionBudget":                                {"/apis/policy/v1", "poddisruptionbudgets", true},
	"rbac.authorization.k8s.io/v1 ClusterRole":                     {"/apis/rbac.authorization.k8s.io/v1", "clusterroles", false},
	"rbac.authorization.k8s.io/v1 ClusterRoleBinding":              {"/apis/rbac.authorization.k8s.io/v1", "clusterrolebindings", false},
	"rbac.authorization.k8s.io/v1 Role":                            {"/apis/rbac.authorization.k8s.io/v1", "roles", true},
	"rbac.authorization.k8s.io/v1 RoleBinding":                     {"/apis/rbac.authorization.k8s.io/v1", "rolebindings", true},
	"admissionregistration.k8s.io/v1 MutatingWebhookConfiguration": {"/apis/admissionregistration.k8s.io/v1", "mutatingwebhookconfigurations", false},
}

// TestHelmChartOnAPIServer installs the chart's rendering (two replicas:
// the PodDisruptionBudget too) into a real kube-apiserver with server-side
// apply and strict field validation, as `kubectl apply --server-side`
// does, then proves its RBAC is enough and no more: `skein control-plane
// --kubernetes` running with the chart's service account's own token
// starts and serves, and the same token may neither read Secrets nor write
// Pods.
func TestHelmChartOnAPIServer(t *testing.T) {
	helm := peersBin(t, "helm")
	k := startKubeAPI(t)
	rendered := helmTemplate(t, helm, "--set", "createNamespace=true") // two replicas: the PodDisruptionBudget too

	applied := map[string]bool{}
	for _, doc := range bytes.Split(rendered, []byte("\n---")) {
		var head struct {
			APIVersion, Kind string
			Metadata         struct{ Name, Namespace string }
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatal(err)
		}
		if head.Kind == "" {
			continue
		}
		res, ok := kubeResources[head.APIVersion+" "+head.Kind]
		if !ok {
			t.Fatalf("the chart renders %s %s: add where it lives", head.APIVersion, head.Kind)
		}
		path := res.prefix
		if res.namespaced {
			path += "/namespaces/" + head.Metadata.Namespace
		}
		path += "/" + res.plural + "/" + head.Metadata.Name + "?fieldManager=skein-install&fieldValidation=Strict"
		if code, b := k.try("PATCH", path, doc, "application/apply-patch+yaml"); code != http.StatusOK && code != http.StatusCreated {
			t.Fatalf("server-side apply of %s %s: %d %s", head.Kind, head.Metadata.Name, code, b)
		}
		applied[head.Kind] = true
	}
	for _, kind := range []string{"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment", "PodDisruptionBudget", "MutatingWebhookConfiguration"} {
		if !applied[kind] {
			t.Errorf("the chart rendered no %s (applied: %v)", kind, applied)
		}
	}

	// The service account's own token, as the kubelet would mount it.
	var tr struct{ Status struct{ Token string } }
	b := k.must(t, "POST", "/api/v1/namespaces/skein-system/serviceaccounts/skein-control-plane/token",
		map[string]any{"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": map[string]any{"expirationSeconds": 3600}})
	if err := json.Unmarshal(b, &tr); err != nil || tr.Status.Token == "" {
		t.Fatalf("TokenRequest: %v %s", err, b)
	}
	sa := k.tokenKubeconfig(t, tr.Status.Token)
	// The API server answers 429 while a new user's priority-and-fairness
	// state settles: ask again then.
	as := func(method, path string) (code int) {
		waitFor(t, 20*time.Second, method+" "+path+" without a 429", func() bool {
			req, _ := http.NewRequest(method, k.url+path, strings.NewReader(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"},"spec":{"containers":[{"name":"x","image":"x"}]}}`))
			req.Header.Set("Authorization", "Bearer "+tr.Status.Token)
			req.Header.Set("Content-Type", "application/json")
			resp, err := k.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			code = resp.StatusCode
			return code != http.StatusTooManyRequests
		})
		return code
	}
	for _, c := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/api/v1/pods", http.StatusOK},
		{"GET", "/apis/discovery.k8s.io/v1/endpointslices", http.StatusOK},
		{"GET", "/apis/dapr.io/v1alpha1/configurations", http.StatusOK},
		{"GET", "/apis/dapr.io/v1alpha1/resiliencies", http.StatusOK},
		{"GET", "/apis/dapr.io/v1alpha1/httpendpoints", http.StatusOK},
		{"GET", "/api/v1/secrets", http.StatusForbidden},
		{"GET", "/api/v1/namespaces/skein-system/secrets", http.StatusForbidden},
		{"GET", "/api/v1/namespaces/skein-system/secrets/skein-ca", http.StatusNotFound}, // its own, not created yet
		{"GET", "/api/v1/namespaces/skein-system/secrets/skein-join-token", http.StatusForbidden},
		{"GET", "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases", http.StatusForbidden},
		{"POST", "/api/v1/namespaces/default/pods", http.StatusForbidden},
		{"DELETE", "/apis/dapr.io/v1alpha1/namespaces/default/configurations/x", http.StatusForbidden},
	} {
		if got := as(c.method, c.path); got != c.want {
			t.Errorf("the control plane's service account: %s %s answered %d, want %d", c.method, c.path, got, c.want)
		}
	}

	// The control plane itself, with only that token: it lists everything it
	// watches at start and exits naming what it may not read, so being up
	// and synced is the proof; as a replica it creates the CA Secret and
	// takes the Lease, which only the chart's Role allows.
	startKubeControlPlane(t, k, "--kubeconfig", sa, "--namespace", "skein-system")
	waitFor(t, 30*time.Second, "the replica to hold the Lease", func() bool {
		code, b := k.try("GET", "/apis/coordination.k8s.io/v1/namespaces/skein-system/leases/skein-control-plane", nil, "")
		return code == http.StatusOK && strings.Contains(string(b), `"holderIdentity"`)
	})
	if code, b := k.try("GET", "/api/v1/namespaces/skein-system/secrets/skein-ca", nil, ""); code != http.StatusOK {
		t.Errorf("the CA Secret: %d %s", code, b)
	}
}
