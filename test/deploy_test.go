package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// TestDeployManifests decodes every manifest under deploy/ strictly into
// Kubernetes' own types (an unknown or misspelt field fails), and checks
// what the pieces expect of each other: the control plane's Deployment
// serves the ports the Service and the webhook name, with the flags the
// binary has.
func TestDeployManifests(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("..", "deploy", "*.yaml"))
	if len(files) < 2 {
		t.Fatalf("deploy/: %v, want control-plane.yaml and webhook.yaml", files)
	}
	var dep *appsv1.Deployment
	var svc *corev1.Service
	var hook *admissionregistrationv1.MutatingWebhookConfiguration
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(b, []byte("\n---\n")) {
			var head struct{ APIVersion, Kind string }
			if err := yaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s document %d: %v", f, i+1, err)
			}
			var obj any
			switch head.APIVersion + " " + head.Kind {
			case "v1 Namespace":
				obj = &corev1.Namespace{}
			case "v1 ServiceAccount":
				obj = &corev1.ServiceAccount{}
			case "v1 Service":
				svc = &corev1.Service{}
				obj = svc
			case "apps/v1 Deployment":
				dep = &appsv1.Deployment{}
				obj = dep
			case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
				hook = &admissionregistrationv1.MutatingWebhookConfiguration{}
				obj = hook
			default:
				t.Fatalf("%s document %d: unexpected %s %s", f, i+1, head.APIVersion, head.Kind)
			}
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s document %d (%s): %v", f, i+1, head.Kind, err)
			}
		}
	}
	if dep == nil || svc == nil || hook == nil {
		t.Fatalf("want a Deployment, a Service and a MutatingWebhookConfiguration; got %v %v %v", dep != nil, svc != nil, hook != nil)
	}
	c := dep.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range svc.Spec.Ports {
		if ports[p.Name] != p.TargetPort.IntVal {
			t.Errorf("Service port %s targets %d; the Deployment serves %d", p.Name, p.TargetPort.IntVal, ports[p.Name])
		}
	}
	if want := hook.Webhooks[0].ClientConfig.Service; want.Name != svc.Name || want.Namespace != svc.Namespace {
		t.Errorf("webhook calls %s/%s, the Service is %s/%s", want.Namespace, want.Name, svc.Namespace, svc.Name)
	}
	for k, v := range svc.Spec.Selector {
		if dep.Spec.Template.Labels[k] != v {
			t.Errorf("the Service selects %s=%s; the pods are labelled %q", k, v, dep.Spec.Template.Labels[k])
		}
	}
	// Every flag in the args is one `skein control-plane` has: its usage
	// (-h) lists them.
	if c.Args[0] != "control-plane" {
		t.Fatalf("args %v: want the control-plane subcommand first", c.Args)
	}
	usage, _ := exec.Command(bin.skein, "control-plane", "-h").CombinedOutput()
	for _, a := range c.Args[1:] {
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !bytes.Contains(usage, []byte("-"+name+" ")) && !bytes.Contains(usage, []byte("-"+name+"\n")) {
			t.Errorf("arg %q: not a flag of skein control-plane:\n%s", a, usage)
		}
	}
}
