package inject

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// webhookServer serves the webhook over TLS on 127.0.0.1, as the API
// server reaches it.
func webhookServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewTLSServer(NewWebhook(newInjector(t, testOptions), slog.New(slog.DiscardHandler)))
	t.Cleanup(srv.Close)
	return srv
}

// post sends body as the API server does and returns the status and body.
func post(t *testing.T, srv *httptest.Server, contentType string, body []byte) (int, []byte) {
	t.Helper()
	resp, err := srv.Client().Post(srv.URL+"/mutate", contentType, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func readReview(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "admissionreview-pod.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// review posts a review and decodes the answer, which must be a 200.
func review(t *testing.T, srv *httptest.Server, ar map[string]any) *admissionv1.AdmissionResponse {
	t.Helper()
	code, body := post(t, srv, "application/json", marshal(t, ar))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" || out.Response == nil {
		t.Fatalf("answer %s: want an admission.k8s.io/v1 AdmissionReview with a response", body)
	}
	if out.Response.UID != "5b8ea5a7-1f0e-4b5a-9d1c-3f1f0c6a2b77" {
		t.Errorf("response uid %q, want the request's", out.Response.UID)
	}
	return out.Response
}

// TestWebhookInjects: the API server's review of a Deployment's pod gets
// a JSON Patch that, applied to the pod as the API server applies it,
// gives the injected pod; fields the Go types do not know are kept.
func TestWebhookInjects(t *testing.T) {
	srv := webhookServer(t)
	ar := readReview(t)
	resp := review(t, srv, ar)
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response %+v: want allowed with a JSONPatch", resp)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("patch %s: %v", resp.Patch, err)
	}
	object := marshal(t, ar["request"].(map[string]any)["object"])
	patched, err := patch.Apply(object)
	if err != nil {
		t.Fatalf("apply %s: %v", resp.Patch, err)
	}
	var pod corev1.Pod
	if err := json.Unmarshal(patched, &pod); err != nil {
		t.Fatal(err)
	}
	if n := len(pod.Spec.Containers); n != 2 || pod.Spec.Containers[1].Name != "daprd" {
		t.Fatalf("containers %+v: want the app and daprd", pod.Spec.Containers)
	}
	d := pod.Spec.Containers[1]
	args := flagValues(t, d.Args)
	for flag, want := range map[string]string{
		"app-id":                  "order-processor", // the Deployment's name, from the ReplicaSet
		"app-port":                "6001",
		"enable-app-health-check": "true",
		"control-plane-address":   DefaultControlPlaneAddress,
	} {
		if args[flag] != want {
			t.Errorf("--%s = %q, want %q", flag, args[flag], want)
		}
	}
	if got := d.Resources.Limits.Memory().String(); got != "128Mi" {
		t.Errorf("memory limit %s, want 128Mi", got)
	}
	wantEnv := []corev1.EnvVar{{Name: "APP_PORT", Value: "6001"}, {Name: "DAPR_HTTP_PORT", Value: "3500"}, {Name: "DAPR_GRPC_PORT", Value: "50001"}, {Name: "APP_PROTOCOL", Value: "http"}}
	if diff := cmp.Diff(wantEnv, pod.Spec.Containers[0].Env); diff != "" {
		t.Errorf("app env (-want +got):\n%s", diff)
	}
	wantLabels := map[string]string{"app": "order-processor", "pod-template-hash": "7d9f8b6c5d",
		"dapr.io/sidecar-injected": "true", "dapr.io/app-id": "order-processor", "dapr.io/metrics-enabled": "true"}
	if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	if n := len(pod.Spec.Volumes); n != 3 || pod.Spec.Volumes[0].Name != "kube-api-access-x2k9p" || pod.Spec.Volumes[1].Name != "skein-home" || pod.Spec.Volumes[2].Name != "skein-identity-token" {
		t.Errorf("volumes %+v: want the API token volume, then skein-home and the control plane's token", pod.Spec.Volumes)
	}
	if !bytes.Contains(patched, []byte(`"futureContainerField":{"kept":true}`)) {
		t.Errorf("the patched pod lost a field the Go types do not know:\n%s", patched)
	}
	for _, w := range []string{"dapr.io/block-shutdown-duration: ignored", "dapr.io/app-id: not set"} {
		if !slices.ContainsFunc(resp.Warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("warnings %q: want one starting %q", resp.Warnings, w)
		}
	}

	t.Run("reinvoked on the injected pod", func(t *testing.T) {
		var obj map[string]any
		if err := json.Unmarshal(patched, &obj); err != nil {
			t.Fatal(err)
		}
		ar := readReview(t)
		ar["request"].(map[string]any)["object"] = obj
		if resp := review(t, srv, ar); !resp.Allowed || len(resp.Patch) != 0 {
			t.Errorf("response %+v: want allowed without a patch", resp)
		}
	})
}

// TestWebhookAllowsUnchanged: what is not a Dapr pod's creation is allowed
// with no patch.
func TestWebhookAllowsUnchanged(t *testing.T) {
	srv := webhookServer(t)
	tests := []struct {
		name   string
		change func(req, obj map[string]any)
	}{
		{"no annotations", func(_, obj map[string]any) { delete(obj["metadata"].(map[string]any), "annotations") }},
		{"disabled", func(_, obj map[string]any) {
			obj["metadata"].(map[string]any)["annotations"].(map[string]any)["dapr.io/enabled"] = "false"
		}},
		{"an update", func(req, _ map[string]any) { req["operation"] = "UPDATE" }},
		{"a subresource", func(req, _ map[string]any) { req["subResource"] = "ephemeralcontainers" }},
		{"another kind", func(req, _ map[string]any) {
			req["kind"] = map[string]any{"group": "apps", "version": "v1", "kind": "Deployment"}
		}},
		{"dry run", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ar := readReview(t)
			req := ar["request"].(map[string]any)
			if tt.change == nil { // a dry run is still injected: the webhook has no side effects
				req["dryRun"] = true
				if resp := review(t, srv, ar); !resp.Allowed || len(resp.Patch) == 0 {
					t.Errorf("response %+v: want allowed with a patch", resp)
				}
				return
			}
			tt.change(req, req["object"].(map[string]any))
			resp := review(t, srv, ar)
			if !resp.Allowed || len(resp.Patch) != 0 || resp.PatchType != nil {
				t.Errorf("response %+v: want allowed without a patch", resp)
			}
		})
	}
}

// TestWebhookRefusesInvalidAnnotations: a Dapr pod with a bad value is
// refused with a message naming the annotation, as Dapr's injector does.
func TestWebhookRefusesInvalidAnnotations(t *testing.T) {
	srv := webhookServer(t)
	ar := readReview(t)
	an := ar["request"].(map[string]any)["object"].(map[string]any)["metadata"].(map[string]any)["annotations"].(map[string]any)
	an["dapr.io/app-port"] = "http"
	an["dapr.io/sidecar-cpu-limit"] = "lots"
	resp := review(t, srv, ar)
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusBadRequest {
		t.Fatalf("response %+v: want refused with 400", resp)
	}
	for _, w := range []string{`dapr.io/app-port: "http": not a port`, `dapr.io/sidecar-cpu-limit: "lots"`} {
		if !strings.Contains(resp.Result.Message, w) {
			t.Errorf("message %q does not contain %q", resp.Result.Message, w)
		}
	}
	if strings.Contains(resp.Result.Message, "\n") {
		t.Errorf("message %q spans lines", resp.Result.Message)
	}
}

// TestWebhookBadRequests: what is not an AdmissionReview v1 gets a clear
// 4xx, not a review.
func TestWebhookBadRequests(t *testing.T) {
	srv := webhookServer(t)
	good := marshal(t, readReview(t))
	withRequest := func(f func(req map[string]any)) []byte {
		ar := readReview(t)
		f(ar["request"].(map[string]any))
		return marshal(t, ar)
	}
	tests := []struct {
		name, contentType string
		body              []byte
		code              int
		want              string
	}{
		{"not JSON", "application/json", []byte("{nope"), 400, "malformed AdmissionReview"},
		{"empty", "application/json", nil, 400, "malformed AdmissionReview"},
		{"v1beta1", "application/json", bytes.Replace(good, []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1), 400, "want admission.k8s.io/v1 AdmissionReview"},
		{"no request", "application/json", []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), 400, "request: missing"},
		{"no uid", "application/json", withRequest(func(r map[string]any) { delete(r, "uid") }), 400, "request.uid: missing"},
		{"no object", "application/json", withRequest(func(r map[string]any) { delete(r, "object") }), 400, "request.object: missing"},
		{"object not a pod", "application/json", withRequest(func(r map[string]any) { r["object"] = map[string]any{"spec": "x"} }), 400, "request.object:"},
		{"wrong type", "application/json", withRequest(func(r map[string]any) { r["operation"] = 7 }), 400, "malformed AdmissionReview"},
		{"content type", "text/plain", good, 415, "want application/json"},
		{"too big", "application/json", bytes.Repeat([]byte(" "), MaxReviewBytes+1), 413, "over"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(t, srv, tt.contentType, tt.body)
			if code != tt.code || !strings.Contains(string(body), tt.want) {
				t.Errorf("status %d %q, want %d containing %q", code, body, tt.code, tt.want)
			}
		})
	}
	t.Run("GET", func(t *testing.T) {
		resp, err := srv.Client().Get(srv.URL + "/mutate")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("status %d, want 405", resp.StatusCode)
		}
	})
	t.Run("charset", func(t *testing.T) {
		if code, body := post(t, srv, "application/json; charset=utf-8", good); code != 200 {
			t.Errorf("status %d %s, want 200", code, body)
		}
	})
}

func TestOwnerName(t *testing.T) {
	yes := true
	tests := []struct {
		name string
		pod  corev1.Pod
		want string
	}{
		{"deployment", podWithOwner("ReplicaSet", "web-5d8f", "5d8f", &yes), "web"},
		{"replicaset alone", podWithOwner("ReplicaSet", "web", "", &yes), "web"},
		{"job", podWithOwner("Job", "migrate", "", &yes), "migrate"},
		{"not the controller", podWithOwner("ReplicaSet", "web-5d8f", "5d8f", nil), "gen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ownerName(&tt.pod.ObjectMeta); got != tt.want {
				t.Errorf("owner %q, want %q", got, tt.want)
			}
		})
	}
}

func podWithOwner(kind, name, hash string, controller *bool) corev1.Pod {
	var p corev1.Pod
	p.GenerateName = "gen-"
	p.OwnerReferences = append(p.OwnerReferences, metaOwner(kind, name, controller))
	if hash != "" {
		p.Labels = map[string]string{"pod-template-hash": hash}
	}
	return p
}

func metaOwner(kind, name string, controller *bool) metav1.OwnerReference {
	return metav1.OwnerReference{APIVersion: "apps/v1", Kind: kind, Name: name, Controller: controller}
}
