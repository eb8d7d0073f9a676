package inject

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// MaxReviewBytes bounds an AdmissionReview's body. The API server stores
// objects of at most 1.5 MiB (etcd's request limit) and a review carries
// one or two of them.
const MaxReviewBytes = 8 << 20

// Webhook is the mutating admission webhook (Kubernetes' AdmissionReview
// v1 over HTTPS; the caller provides the TLS): for a Pod CREATE it answers
// allowed with the JSON Patch that injects the sidecar, or with no patch
// when the pod gets none; every other request is allowed unchanged. A pod
// whose Dapr annotations are invalid is refused with their errors, as
// Dapr's injector refuses it. A malformed review gets 400, a wrong
// content type 415, a body over MaxReviewBytes 413. Safe for concurrent
// use.
type Webhook struct {
	in  *Injector
	log *slog.Logger
}

// NewWebhook returns the webhook handler of in.
func NewWebhook(in *Injector, log *slog.Logger) *Webhook {
	return &Webhook{in: in, log: log.With("component", "inject")}
}

func (h *Webhook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "admission reviews are POSTed", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, fmt.Sprintf("content type %q: want application/json", r.Header.Get("Content-Type")), http.StatusUnsupportedMediaType)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxReviewBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("admission review over %d bytes", MaxReviewBytes), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read admission review: "+err.Error(), http.StatusBadRequest)
		return
	}
	review, pod, err := decodeReview(body)
	if err != nil {
		h.log.Warn("malformed admission review", "err", err)
		http.Error(w, "malformed AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp := h.review(review.Request, pod)
	out, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: admissionv1.SchemeGroupVersion.String(), Kind: "AdmissionReview"},
		Response: resp,
	})
	if err != nil {
		http.Error(w, "encode admission response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(out)
}

// decodeReview checks that body is an AdmissionReview v1 with a request,
// and decodes the pod it is about (nil when it is not about a pod's
// creation).
func decodeReview(body []byte) (*admissionv1.AdmissionReview, *corev1.Pod, error) {
	var ar admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &ar); err != nil {
		return nil, nil, err
	}
	if ar.APIVersion != admissionv1.SchemeGroupVersion.String() || ar.Kind != "AdmissionReview" {
		return nil, nil, fmt.Errorf("apiVersion %q, kind %q: want admission.k8s.io/v1 AdmissionReview", ar.APIVersion, ar.Kind)
	}
	req := ar.Request
	switch {
	case req == nil:
		return nil, nil, errors.New("request: missing")
	case req.UID == "":
		return nil, nil, errors.New("request.uid: missing")
	}
	if req.Kind.Group != "" || req.Kind.Kind != "Pod" || req.Operation != admissionv1.Create || req.SubResource != "" {
		return &ar, nil, nil
	}
	if len(req.Object.Raw) == 0 {
		return nil, nil, errors.New("request.object: missing")
	}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		return nil, nil, fmt.Errorf("request.object: %w", err)
	}
	return &ar, &pod, nil
}

// review answers one request: allowed, with the patch when a sidecar is
// injected; refused when the pod's Dapr annotations are invalid.
func (h *Webhook) review(req *admissionv1.AdmissionRequest, pod *corev1.Pod) *admissionv1.AdmissionResponse {
	resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
	if pod == nil {
		return resp
	}
	ns := pod.Namespace
	if ns == "" {
		ns = req.Namespace
	}
	plan, err := h.in.Plan(&pod.ObjectMeta, &pod.Spec, ownerName(&pod.ObjectMeta))
	if err != nil {
		msg := "skein sidecar injection: " + strings.ReplaceAll(err.Error(), "\n", "; ")
		h.log.Warn("pod refused", "namespace", ns, "pod", podName(pod), "err", msg)
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusBadRequest, Reason: metav1.StatusReasonBadRequest, Message: msg}
		return resp
	}
	if !plan.Injected() {
		h.log.Debug("no injection", "namespace", ns, "pod", podName(pod), "reason", plan.Skip)
		return resp
	}
	patch, err := json.Marshal(plan.Patch("", &pod.ObjectMeta, &pod.Spec))
	if err != nil { // Kubernetes API values: not expected
		h.log.Error("encode patch", "namespace", ns, "pod", podName(pod), "err", err)
		resp.Allowed = false
		resp.Result = &metav1.Status{Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Message: err.Error()}
		return resp
	}
	pt := admissionv1.PatchTypeJSONPatch
	resp.Patch, resp.PatchType = patch, &pt
	// The API server hands warnings to the client that created the
	// object (kubectl prints them), each cut at 256 characters.
	resp.Warnings = plan.Warnings
	h.log.Info("sidecar injected", "namespace", ns, "pod", podName(pod), "app_id", plan.AppID, "warnings", len(plan.Warnings))
	return resp
}

// ownerName names the workload a pod belongs to: its controller, a
// Deployment rather than the ReplicaSet between them (named
// <deployment>-<pod-template-hash>); else its generateName's stem.
func ownerName(m *metav1.ObjectMeta) string {
	for _, o := range m.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if h := m.Labels["pod-template-hash"]; o.Kind == "ReplicaSet" && h != "" {
			return strings.TrimSuffix(o.Name, "-"+h)
		}
		return o.Name
	}
	return strings.TrimSuffix(m.GenerateName, "-")
}

func podName(p *corev1.Pod) string {
	if p.Name != "" {
		return p.Name
	}
	return p.GenerateName
}
