package kube

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/skeinmesh/skein/xds/controlplane"
)

// fromYAML decodes a manifest the way the dynamic client hands objects
// to the informers: unstructured.
func fromYAML(t *testing.T, doc string) *unstructured.Unstructured {
	t.Helper()
	var obj map[string]any
	if err := yaml.Unmarshal([]byte(doc), &obj); err != nil {
		t.Fatal(err)
	}
	return &unstructured.Unstructured{Object: obj}
}

func pod(t *testing.T, doc string) *corev1.Pod {
	t.Helper()
	o, err := transformPod(fromYAML(t, doc))
	if err != nil {
		t.Fatal(err)
	}
	return o.(*corev1.Pod)
}

const injectedPod = `
apiVersion: v1
kind: Pod
metadata:
  name: orders-7d9f-x2
  namespace: shop
  annotations:
    dapr.io/enabled: "true"
    dapr.io/config: guard
    dapr.io/app-port: "8080"
    kubectl.kubernetes.io/last-applied-configuration: "{...}"
  managedFields: [{manager: kubectl}]
spec:
  containers:
  - name: app
    image: orders:1
  - name: daprd
    image: skein:1
    args: [sidecar, --app-id, orders, --dapr-internal-grpc-port, "50002"]
    ports:
    - {name: dapr-http, containerPort: 3500}
    - {name: dapr-internal, containerPort: 50012}
status:
  phase: Running
  podIP: 10.1.2.3
  conditions:
  - {type: PodScheduled, status: "True"}
  - {type: Ready, status: "True"}
`

func TestPodInstance(t *testing.T) {
	p := pod(t, injectedPod)
	if len(p.Annotations) != 2 || p.ManagedFields != nil || len(p.Spec.Containers) != 1 || len(p.Status.Conditions) != 1 {
		t.Errorf("the cached pod keeps more than it needs: %+v", p)
	}
	got, ok := podInstance(p, nil)
	want := controlplane.ClusterInstance{
		AppID: "orders", Namespace: "shop", Address: netip.MustParseAddrPort("10.1.2.3:50012"),
		ID: "orders-7d9f-x2", Health: controlplane.Ready, Config: "guard",
	}
	if d := cmp.Diff(want, got, addrs); !ok || d != "" {
		t.Errorf("instance (-want +got):\n%s", d)
	}

	cases := []struct {
		name   string
		edit   func(*corev1.Pod)
		sliced map[string]controlplane.Health
		want   func(*controlplane.ClusterInstance) // nil: no instance
	}{
		{"not ready", func(p *corev1.Pod) { p.Status.Conditions[0].Status = corev1.ConditionFalse },
			nil, func(in *controlplane.ClusterInstance) { in.Health = controlplane.NotReady }},
		{"terminating", func(p *corev1.Pod) { p.DeletionTimestamp = &metaNow },
			nil, func(in *controlplane.ClusterInstance) { in.Health = controlplane.Terminating }},
		{"the slice's view wins", func(*corev1.Pod) {},
			map[string]controlplane.Health{"shop/orders-7d9f-x2": controlplane.NotReady},
			func(in *controlplane.ClusterInstance) { in.Health = controlplane.NotReady }},
		{"app id annotation", func(p *corev1.Pod) { p.Annotations["dapr.io/app-id"] = "billing" },
			nil, func(in *controlplane.ClusterInstance) { in.AppID = "billing" }},
		{"no sidecar container: the pod's name, the injector's port", func(p *corev1.Pod) { p.Spec.Containers = nil },
			nil, func(in *controlplane.ClusterInstance) {
				in.AppID, in.Address = "orders-7d9f-x2", netip.MustParseAddrPort("10.1.2.3:50002")
			}},
		{"a config file path is no Configuration", func(p *corev1.Pod) { p.Annotations["dapr.io/config"] = "/etc/dapr/config.yaml" },
			nil, func(in *controlplane.ClusterInstance) { in.Config = "" }},
		{"no IP yet", func(p *corev1.Pod) { p.Status.PodIP = "" }, nil, nil},
		{"finished: its IP may be reused", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }, nil, nil},
		{"not a Dapr pod", func(p *corev1.Pod) { delete(p.Annotations, "dapr.io/enabled") }, nil, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := pod(t, injectedPod)
			c.edit(p)
			got, ok := podInstance(p, c.sliced)
			if c.want == nil {
				if ok {
					t.Errorf("instance %+v, want none", got)
				}
				return
			}
			w := want
			c.want(&w)
			if d := cmp.Diff(w, got, addrs); !ok || d != "" {
				t.Errorf("instance (-want +got):\n%s", d)
			}
		})
	}
}

func TestEndpointHealth(t *testing.T) {
	yes, no := true, false
	cases := []struct {
		name string
		c    discoveryv1.EndpointConditions
		want controlplane.Health
	}{
		{"unknown is ready", discoveryv1.EndpointConditions{}, controlplane.Ready},
		{"serving", discoveryv1.EndpointConditions{Ready: &yes, Serving: &yes}, controlplane.Ready},
		// publishNotReadyAddresses forces ready; serving is the pod's own.
		{"ready forced, not serving", discoveryv1.EndpointConditions{Ready: &yes, Serving: &no}, controlplane.NotReady},
		{"not ready, serving unset", discoveryv1.EndpointConditions{Ready: &no}, controlplane.NotReady},
		{"terminating, still serving", discoveryv1.EndpointConditions{Ready: &no, Serving: &yes, Terminating: &yes}, controlplane.Terminating},
		{"terminating, done", discoveryv1.EndpointConditions{Ready: &no, Serving: &no, Terminating: &yes}, controlplane.NotReady},
	}
	for _, c := range cases {
		if got := endpointHealth(c.c); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func TestTransformSliceAndDapr(t *testing.T) {
	o, err := transformSlice(fromYAML(t, `
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: orders-dapr-abc, namespace: shop}
addressType: IPv4
endpoints:
- addresses: [10.1.2.3]
  conditions: {ready: true}
  targetRef: {kind: Pod, name: orders-0}
- addresses: [10.9.9.9]
  conditions: {ready: true}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := o.(*discoveryv1.EndpointSlice)
	if len(s.Endpoints) != 1 || s.Endpoints[0].TargetRef.Namespace != "shop" || s.Endpoints[0].TargetRef.Name != "orders-0" {
		t.Errorf("slice endpoints %+v: want the pod's only, in the slice's namespace", s.Endpoints)
	}

	o, err = transformDapr(fromYAML(t, `
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: retry
  namespace: shop
  annotations: {kubectl.kubernetes.io/last-applied-configuration: "{...}"}
scopes: [caller]
spec: {policies: {retries: {r: {maxRetries: 1}}}}
`))
	if err != nil {
		t.Fatal(err)
	}
	r, err := daprResource(o.(*unstructured.Unstructured))
	want := controlplane.Resource{Namespace: "shop", Name: "retry", Scopes: []string{"caller"}, Spec: []byte(`{"policies":{"retries":{"r":{"maxRetries":1}}}}`)}
	if d := cmp.Diff(want, r); err != nil || d != "" {
		t.Errorf("resource (-want +got), err %v:\n%s", err, d)
	}
}

var metaNow = metav1.Now()

// addrs compares netip values by value (their fields are unexported).
var addrs = cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })
