package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployWebhook: deploy/webhook.yaml decodes strictly as Kubernetes
// types and registers /mutate for pod creation as docs/kubernetes.md says.
func TestDeployWebhook(t *testing.T) {
	src, err := os.ReadFile("../deploy/webhook.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := splitDocuments(src)
	if len(docs) != 2 {
		t.Fatalf("%d documents, want the Service and the MutatingWebhookConfiguration", len(docs))
	}
	var svc corev1.Service
	if err := yaml.UnmarshalStrict(docs[0].body, &svc); err != nil {
		t.Fatalf("Service: %v", err)
	}
	var mwc admissionregistrationv1.MutatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(docs[1].body, &mwc); err != nil {
		t.Fatalf("MutatingWebhookConfiguration: %v", err)
	}
	if len(mwc.Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(mwc.Webhooks))
	}
	w := mwc.Webhooks[0]
	cc := w.ClientConfig.Service
	if cc == nil || cc.Name != svc.Name || cc.Namespace != svc.Namespace || cc.Path == nil || *cc.Path != "/mutate" || cc.Port == nil {
		t.Fatalf("clientConfig %+v: want /mutate on the Service %s/%s", w.ClientConfig, svc.Namespace, svc.Name)
	}
	i := slices.IndexFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == *cc.Port })
	if i < 0 || svc.Spec.Ports[i].TargetPort.IntValue() != 9443 {
		t.Errorf("Service ports %+v: want %d to 9443", svc.Spec.Ports, *cc.Port)
	}
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Ignore ||
		w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone ||
		!slices.Equal(w.AdmissionReviewVersions, []string{"v1"}) ||
		w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Errorf("webhook %+v: want failurePolicy Ignore, sideEffects None, review v1, reinvocation IfNeeded", w)
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) ||
		!slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("rules %+v: want pods, CREATE", w.Rules)
	}
	if w.NamespaceSelector == nil || w.ObjectSelector == nil {
		t.Errorf("selectors %v %v: want both", w.NamespaceSelector, w.ObjectSelector)
	}
}

// TestDeployCRDs: deploy/crds has Dapr's CRDs for the resources Skein
// reads.
func TestDeployCRDs(t *testing.T) {
	want := map[string]string{"configuration.yaml": "Configuration", "resiliency.yaml": "Resiliency", "httpendpoints.yaml": "HTTPEndpoint"}
	for file, kind := range want {
		src, err := os.ReadFile(filepath.Join("../deploy/crds", file))
		if err != nil {
			t.Fatal(err)
		}
		var crd struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Spec       struct {
				Group string `json:"group"`
				Names struct {
					Kind string `json:"kind"`
				} `json:"names"`
				Scope    string `json:"scope"`
				Versions []struct {
					Name   string `json:"name"`
					Served bool   `json:"served"`
				} `json:"versions"`
			} `json:"spec"`
		}
		var body []byte
		for _, d := range splitDocuments(src) {
			if len(bytes.TrimSpace(d.body)) > 0 && !bytes.HasPrefix(bytes.TrimSpace(d.body), []byte("#")) {
				body = d.body
			}
		}
		if err := yaml.Unmarshal(body, &crd); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		if crd.APIVersion != "apiextensions.k8s.io/v1" || crd.Kind != "CustomResourceDefinition" || crd.Spec.Group != "dapr.io" ||
			crd.Spec.Names.Kind != kind || crd.Spec.Scope != "Namespaced" || len(crd.Spec.Versions) == 0 || !crd.Spec.Versions[0].Served {
			t.Errorf("%s: %+v: want a served, namespaced dapr.io %s CRD", file, crd, kind)
		}
	}
}
