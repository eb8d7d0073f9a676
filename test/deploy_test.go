package test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"sigs.k8s.io/yaml"
)

// manifests is what a stream of Kubernetes manifests holds, decoded into
// Kubernetes' own types.
type manifests struct {
	namespaces []*corev1.Namespace
	accounts   []*corev1.ServiceAccount
	services   []*corev1.Service
	deploys    []*appsv1.Deployment
	hooks      []*admissionregistrationv1.MutatingWebhookConfiguration
	pdbs       []*policyv1.PodDisruptionBudget
	roles      []rbacv1.PolicyRule // every rule of every Role and ClusterRole
	bindings   int
	kinds      []string // "Kind/name" in order
}

// decodeManifests decodes every document of a manifest stream strictly
// (an unknown or misspelt field fails the test) into the type its
// apiVersion and kind name; a kind Skein does not ship fails too.
func decodeManifests(t *testing.T, name string, b []byte) *manifests {
	t.Helper()
	m := &manifests{}
	for i, doc := range bytes.Split(b, []byte("\n---")) {
		var head struct {
			APIVersion, Kind string
			Metadata         struct{ Name string }
		}
		if err := yaml.Unmarshal(doc, &head); err != nil {
			t.Fatalf("%s document %d: %v", name, i+1, err)
		}
		if head.Kind == "" {
			continue // only comments
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			m.namespaces = append(m.namespaces, &corev1.Namespace{})
			obj = m.namespaces[len(m.namespaces)-1]
		case "v1 ServiceAccount":
			m.accounts = append(m.accounts, &corev1.ServiceAccount{})
			obj = m.accounts[len(m.accounts)-1]
		case "v1 Service":
			m.services = append(m.services, &corev1.Service{})
			obj = m.services[len(m.services)-1]
		case "apps/v1 Deployment":
			m.deploys = append(m.deploys, &appsv1.Deployment{})
			obj = m.deploys[len(m.deploys)-1]
		case "admissionregistration.k8s.io/v1 MutatingWebhookConfiguration":
			m.hooks = append(m.hooks, &admissionregistrationv1.MutatingWebhookConfiguration{})
			obj = m.hooks[len(m.hooks)-1]
		case "policy/v1 PodDisruptionBudget":
			m.pdbs = append(m.pdbs, &policyv1.PodDisruptionBudget{})
			obj = m.pdbs[len(m.pdbs)-1]
		case "rbac.authorization.k8s.io/v1 ClusterRole", "rbac.authorization.k8s.io/v1 Role":
			var r rbacv1.ClusterRole // a Role's fields are a subset
			if err := yaml.UnmarshalStrict(doc, &r); err != nil {
				t.Errorf("%s document %d (%s): %v", name, i+1, head.Kind, err)
			}
			m.roles = append(m.roles, r.Rules...)
		case "rbac.authorization.k8s.io/v1 ClusterRoleBinding", "rbac.authorization.k8s.io/v1 RoleBinding":
			m.bindings++
			obj = &rbacv1.RoleBinding{}
		default:
			t.Fatalf("%s document %d: unexpected %s %s", name, i+1, head.APIVersion, head.Kind)
		}
		m.kinds = append(m.kinds, head.Kind+"/"+head.Metadata.Name)
		if obj != nil {
			if err := yaml.UnmarshalStrict(doc, obj); err != nil {
				t.Errorf("%s document %d (%s): %v", name, i+1, head.Kind, err)
			}
		}
	}
	return m
}

// checkControlPlane checks what the pieces of a control-plane install
// expect of each other: the Deployment serves the ports the Service and
// the webhook name, its pods are the ones the Service and the
// PodDisruptionBudget select, and its args are flags the binary has.
func checkControlPlane(t *testing.T, name string, m *manifests) {
	t.Helper()
	if len(m.deploys) != 1 || len(m.services) != 1 || len(m.accounts) != 1 {
		t.Fatalf("%s: want one Deployment, Service and ServiceAccount; got %v", name, m.kinds)
	}
	dep, svc := m.deploys[0], m.services[0]
	c := dep.Spec.Template.Spec.Containers[0]
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for _, p := range svc.Spec.Ports {
		target := p.TargetPort.IntVal
		if p.TargetPort.StrVal != "" {
			target = ports[p.TargetPort.StrVal]
		}
		if target == 0 || ports[p.Name] != target {
			t.Errorf("%s: Service port %s targets %s; the Deployment serves %d", name, p.Name, p.TargetPort.String(), ports[p.Name])
		}
	}
	for _, h := range m.hooks {
		if want := h.Webhooks[0].ClientConfig.Service; want.Name != svc.Name || want.Namespace != svc.Namespace || want.Port == nil {
			t.Errorf("%s: webhook calls %s/%s, the Service is %s/%s", name, want.Namespace, want.Name, svc.Namespace, svc.Name)
		} else if ports["webhook"] == 0 {
			t.Errorf("%s: a webhook, but the Deployment serves no port named webhook", name)
		}
	}
	if dep.Spec.Template.Spec.ServiceAccountName != m.accounts[0].Name {
		t.Errorf("%s: pods run as %q, the ServiceAccount is %q", name, dep.Spec.Template.Spec.ServiceAccountName, m.accounts[0].Name)
	}
	selects := func(what string, sel map[string]string) {
		for k, v := range sel {
			if dep.Spec.Template.Labels[k] != v {
				t.Errorf("%s: %s selects %s=%s; the pods are labelled %q", name, what, k, v, dep.Spec.Template.Labels[k])
			}
		}
	}
	selects("the Service", svc.Spec.Selector)
	for _, p := range m.pdbs {
		selects("the PodDisruptionBudget", p.Spec.Selector.MatchLabels)
	}
	// Every flag in the args is one `skein control-plane` has: its usage
	// (-h) lists them.
	if c.Args[0] != "control-plane" {
		t.Fatalf("%s: args %v: want the control-plane subcommand first", name, c.Args)
	}
	usage, _ := exec.Command(bin.skein, "control-plane", "-h").CombinedOutput()
	for _, a := range c.Args[1:] {
		flag, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "--") || !bytes.Contains(usage, []byte("-"+flag+" ")) && !bytes.Contains(usage, []byte("-"+flag+"\n")) {
			t.Errorf("%s: arg %q: not a flag of skein control-plane:\n%s", name, a, usage)
		}
	}
	// Least privilege: no wildcard in any rule.
	for _, r := range m.roles {
		for _, s := range append(append(append([]string{}, r.Verbs...), r.Resources...), r.APIGroups...) {
			if s == "*" {
				t.Errorf("%s: RBAC rule %+v has a wildcard", name, r)
			}
		}
	}
}

// TestDeployManifests decodes the static install, deploy/skein.yaml (the
// chart rendered with its defaults: make manifests), strictly into
// Kubernetes' own types and checks that its pieces agree.
func TestDeployManifests(t *testing.T) {
	name := filepath.Join("..", "deploy", "skein.yaml")
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeManifests(t, name, b)
	checkControlPlane(t, name, m)
	if len(m.namespaces) != 1 || len(m.hooks) != 1 {
		t.Fatalf("%s: want its Namespace and the webhook; got %v", name, m.kinds)
	}
	// The webhook is registered as docs/kubernetes.md says: Dapr's chart's
	// settings, and the selectors that keep the system namespaces out.
	if len(m.hooks[0].Webhooks) != 1 {
		t.Fatalf("%d webhooks, want 1", len(m.hooks[0].Webhooks))
	}
	w := m.hooks[0].Webhooks[0]
	if cc := w.ClientConfig.Service; cc.Path == nil || *cc.Path != "/mutate" {
		t.Errorf("clientConfig %+v: want /mutate", cc)
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
	if w.NamespaceSelector == nil || w.ObjectSelector == nil ||
		!slices.Contains(w.NamespaceSelector.MatchExpressions[0].Values, "skein-system") {
		t.Errorf("selectors %v %v: want both, skein-system excluded", w.NamespaceSelector, w.ObjectSelector)
	}
}
