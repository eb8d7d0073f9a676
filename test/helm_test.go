package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// chart is Skein's Helm chart.
var chart = filepath.Join("..", "deploy", "helm", "skein")

// helmTemplate renders the chart with helm (built by make peers) and the
// given --set values.
func helmTemplate(t *testing.T, helm string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(helm, append([]string{"template", "skein", chart, "--namespace", "skein-system"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// TestHelmChart lints and renders deploy/helm/skein with real helm: the
// defaults must be exactly the static install (deploy/skein.yaml, written
// by make manifests), and every variant must decode strictly into
// Kubernetes' types with pieces that agree (checkControlPlane).
func TestHelmChart(t *testing.T) {
	helm := peersBin(t, "helm")
	if out, err := exec.Command(helm, "lint", "--strict", chart).CombinedOutput(); err != nil {
		t.Fatalf("helm lint --strict: %v\n%s", err, out)
	}

	static, err := os.ReadFile(filepath.Join("..", "deploy", "skein.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := helmTemplate(t, helm, "--set", "createNamespace=true", "--skip-crds"); !bytes.HasSuffix(static, got) {
		t.Errorf("deploy/skein.yaml is not the chart's rendering with its defaults: run make manifests\n--- rendered:\n%s", got)
	}

	// The CRDs travel with the chart (crds/ links deploy/crds): helm
	// installs them before the templates.
	withCRDs := string(helmTemplate(t, helm, "--include-crds"))
	for _, crd := range []string{"configurations.dapr.io", "resiliencies.dapr.io", "httpendpoints.dapr.io"} {
		if !strings.Contains(withCRDs, "name: "+crd) {
			t.Errorf("helm template --include-crds has no CRD %s", crd)
		}
	}

	// Without Kubernetes the registry lives in one process: more replicas
	// is refused at render time, with the reason.
	cmd := exec.Command(helm, "template", "skein", chart, "--set", "kubernetes=false", "--set", "replicaCount=2")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "needs kubernetes") {
		t.Errorf("kubernetes=false with two replicas rendered (%v):\n%s", err, out)
	}

	for _, v := range []struct {
		name string
		set  []string
		pdb  bool
		hook bool
		kube bool // --kubernetes, with its RBAC and a token mounted
	}{
		{"defaults", nil, true, true, true},
		{"three replicas", []string{"replicaCount=3"}, true, true, true},
		{"one replica", []string{"replicaCount=1"}, false, true, true},
		{"no webhook", []string{"webhook.enabled=false"}, true, false, true},
		{"cert-manager", []string{"webhook.certManagerCA=skein-system/skein-webhook", "image.tag=dev"}, true, true, true},
		{"registry and config directory", []string{"kubernetes=false"}, false, true, false},
	} {
		t.Run(v.name, func(t *testing.T) {
			var args []string
			for _, s := range v.set {
				args = append(args, "--set", s)
			}
			m := decodeManifests(t, v.name, helmTemplate(t, helm, args...))
			checkControlPlane(t, v.name, m)
			if len(m.namespaces) != 0 {
				t.Errorf("a Namespace without createNamespace: %v", m.kinds)
			}
			if got := len(m.pdbs) == 1; got != v.pdb {
				t.Errorf("PodDisruptionBudget rendered: %v, want %v (%v)", got, v.pdb, m.kinds)
			}
			if got := len(m.hooks) == 1; got != v.hook {
				t.Errorf("webhook rendered: %v, want %v (%v)", got, v.hook, m.kinds)
			}
			dep := m.deploys[0]
			flags := strings.Join(dep.Spec.Template.Spec.Containers[0].Args, " ")
			token := *dep.Spec.Template.Spec.AutomountServiceAccountToken && *m.accounts[0].AutomountServiceAccountToken
			env := map[string]bool{}
			for _, e := range dep.Spec.Template.Spec.Containers[0].Env {
				env[e.Name] = true
			}
			// On Kubernetes the CA is a Secret shared by the replicas, and
			// each replica knows its name and namespace (the Lease's holder,
			// where the Lease and Secret live).
			if v.kube && (strings.Contains(flags, "--ca-dir") || !env["POD_NAME"] || !env["POD_NAMESPACE"]) {
				t.Errorf("Kubernetes mode with args %s and env %v: want no --ca-dir, POD_NAME and POD_NAMESPACE", flags, env)
			}
			if got := strings.Contains(flags, "--kubernetes"); got != v.kube || strings.Contains(flags, "--config-dir") == v.kube ||
				token != v.kube || (len(m.roles) > 0) != v.kube || (m.bindings > 0) != v.kube {
				t.Errorf("--kubernetes %v, token mounted %v, %d RBAC rules and %d bindings; want Kubernetes mode %v (args %s)",
					got, token, len(m.roles), m.bindings, v.kube, flags)
			}
			if n := *dep.Spec.Replicas; (n > 1) != v.pdb || n > 1 && dep.Spec.Strategy.Type == "Recreate" {
				t.Errorf("%d replicas with strategy %q", n, dep.Spec.Strategy.Type)
			}
			if v.name == "cert-manager" {
				if got := m.hooks[0].Annotations["cert-manager.io/inject-ca-from"]; got != "skein-system/skein-webhook" {
					t.Errorf("cert-manager annotation %q", got)
				}
				if img := dep.Spec.Template.Spec.Containers[0].Image; !strings.HasSuffix(img, ":dev") {
					t.Errorf("image %q, want tag dev", img)
				}
			}
		})
	}
}
