package inject

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"sigs.k8s.io/yaml"
)

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
