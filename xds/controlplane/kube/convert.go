package kube

import (
	"encoding/json"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/skeinmesh/skein/inject"
	"github.com/skeinmesh/skein/xds/controlplane"
)

// peerPortName is the name the injector gives the sidecar's peer port.
const peerPortName = "dapr-internal"

// keptAnnotations are the pod annotations read here; the rest is dropped
// as the pod enters the cache.
var keptAnnotations = []string{inject.AnnotationEnabled, inject.AnnotationAppID, inject.AnnotationConfig}

// transformPod turns a listed or watched pod into a *corev1.Pod holding
// only what podInstance and the Attester read: a pod without Dapr keeps
// its name and UID alone.
func transformPod(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil // a tombstone (cache.DeletedFinalStateUnknown) or already done
	}
	var p corev1.Pod
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &p); err != nil {
		return nil, err
	}
	out := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{
		Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
	}}
	if p.Annotations[inject.AnnotationEnabled] != "true" {
		return out, nil
	}
	out.DeletionTimestamp = p.DeletionTimestamp
	// The Attester checks that a sidecar's token is of the pod's account.
	out.Spec.ServiceAccountName = p.Spec.ServiceAccountName
	out.Annotations = map[string]string{}
	for _, k := range keptAnnotations {
		if v, ok := p.Annotations[k]; ok {
			out.Annotations[k] = v
		}
	}
	for _, c := range p.Spec.Containers {
		if c.Name == inject.ContainerName {
			out.Spec.Containers = []corev1.Container{{Name: c.Name, Args: c.Args, Ports: c.Ports}}
		}
	}
	out.Status = corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			out.Status.Conditions = []corev1.PodCondition{{Type: c.Type, Status: c.Status}}
		}
	}
	return out, nil
}

// transformSlice keeps a slice's endpoints that name a pod: their
// conditions and that pod.
func transformSlice(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	var s discoveryv1.EndpointSlice
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(u.Object, &s); err != nil {
		return nil, err
	}
	out := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{
		Name: s.Name, Namespace: s.Namespace, UID: s.UID, ResourceVersion: s.ResourceVersion,
	}}
	for _, e := range s.Endpoints {
		if r := e.TargetRef; r != nil && r.Kind == "Pod" && r.Name != "" {
			ns := r.Namespace
			if ns == "" {
				ns = s.Namespace
			}
			out.Endpoints = append(out.Endpoints, discoveryv1.Endpoint{
				Conditions: e.Conditions,
				TargetRef:  &corev1.ObjectReference{Kind: r.Kind, Namespace: ns, Name: r.Name},
			})
		}
	}
	return out, nil
}

// transformDapr keeps a Dapr resource's name, namespace, scopes and spec.
func transformDapr(obj any) (any, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return obj, nil
	}
	out := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": u.GetAPIVersion(), "kind": u.GetKind(),
		"metadata": map[string]any{
			"name": u.GetName(), "namespace": u.GetNamespace(), "uid": string(u.GetUID()), "resourceVersion": u.GetResourceVersion(),
		},
	}}
	if v, ok := u.Object["spec"]; ok {
		out.Object["spec"] = v
	}
	if v, ok := u.Object["scopes"]; ok {
		out.Object["scopes"] = v
	}
	return out, nil
}

// podInstance is the instance a cached pod is, if it is a running Dapr
// pod with an IP; sliced is its readiness from EndpointSlices, if any
// lists it.
func podInstance(p *corev1.Pod, sliced map[string]controlplane.Health) (controlplane.ClusterInstance, bool) {
	if p.Annotations[inject.AnnotationEnabled] != "true" || p.Status.PodIP == "" {
		return controlplane.ClusterInstance{}, false
	}
	if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		// Its IP may already be another pod's.
		return controlplane.ClusterInstance{}, false
	}
	ip, err := netip.ParseAddr(p.Status.PodIP)
	if err != nil {
		return controlplane.ClusterInstance{}, false
	}
	var daprd *corev1.Container
	if len(p.Spec.Containers) == 1 {
		daprd = &p.Spec.Containers[0]
	}
	in := controlplane.ClusterInstance{
		AppID:     appID(p, daprd),
		Namespace: p.Namespace,
		Address:   netip.AddrPortFrom(ip.Unmap(), peerPort(daprd)),
		ID:        p.Name,
		Config:    p.Annotations[inject.AnnotationConfig],
	}
	if h, ok := sliced[p.Namespace+"/"+p.Name]; ok {
		in.Health = h
	} else {
		in.Health = podHealth(p)
	}
	if in.AppID == "" || strings.HasPrefix(in.Config, "/") {
		// A file path (mounted into the pod) is the sidecar's own config,
		// not a Configuration resource.
		in.Config = ""
	}
	return in, in.AppID != ""
}

// appID is dapr.io/app-id, else the sidecar's --app-id (the injector's
// default: the workload's name), else the pod's name (Dapr's default).
func appID(p *corev1.Pod, daprd *corev1.Container) string {
	if v := p.Annotations[inject.AnnotationAppID]; v != "" {
		return v
	}
	if v := flagValue(daprd, "--app-id"); v != "" {
		return v
	}
	return p.Name
}

// peerPort is the sidecar's port named dapr-internal, else its
// --dapr-internal-grpc-port, else the injector's default.
func peerPort(daprd *corev1.Container) uint16 {
	if daprd != nil {
		for _, cp := range daprd.Ports {
			if cp.Name == peerPortName && cp.ContainerPort > 0 && cp.ContainerPort < 65536 {
				return uint16(cp.ContainerPort)
			}
		}
	}
	if n, err := strconv.ParseUint(flagValue(daprd, "--dapr-internal-grpc-port"), 10, 16); err == nil && n > 0 {
		return uint16(n)
	}
	return inject.InternalPort
}

// flagValue reads "--name value" or "--name=value" from the container's
// args.
func flagValue(c *corev1.Container, name string) string {
	if c == nil {
		return ""
	}
	for i, a := range c.Args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(c.Args) {
			return c.Args[i+1]
		}
	}
	return ""
}

// podHealth is a pod's readiness without an EndpointSlice: its Ready
// condition, and its deletion timestamp (terminating).
func podHealth(p *corev1.Pod) controlplane.Health {
	ready := slices.ContainsFunc(p.Status.Conditions, func(c corev1.PodCondition) bool {
		return c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue
	})
	switch {
	case !ready:
		return controlplane.NotReady
	case p.DeletionTimestamp != nil:
		return controlplane.Terminating
	}
	return controlplane.Ready
}

// endpointHealth is an EndpointSlice endpoint's readiness. serving, not
// ready, is the pod's own readiness: ready is forced true for a Service
// that publishes not-ready addresses. A nil condition means unknown, to be
// taken as ready (discovery.k8s.io/v1).
func endpointHealth(c discoveryv1.EndpointConditions) controlplane.Health {
	serving := c.Serving == nil || *c.Serving
	if c.Serving == nil && c.Ready != nil {
		serving = *c.Ready
	}
	switch {
	case !serving:
		return controlplane.NotReady
	case c.Terminating != nil && *c.Terminating:
		return controlplane.Terminating
	}
	return controlplane.Ready
}

// better orders healths: a pod several slices list is as ready as the
// readiest says (each slice's view lags the pod by its own delay).
func better(a, b controlplane.Health) bool {
	rank := func(h controlplane.Health) int {
		switch h {
		case controlplane.Ready:
			return 0
		case controlplane.Terminating:
			return 1
		}
		return 2
	}
	return rank(a) < rank(b)
}

// daprResource reads a cached Dapr resource.
func daprResource(u *unstructured.Unstructured) (controlplane.Resource, error) {
	r := controlplane.Resource{Namespace: u.GetNamespace(), Name: u.GetName()}
	scopes, _, err := unstructured.NestedStringSlice(u.Object, "scopes")
	if err != nil {
		return r, err
	}
	r.Scopes = scopes
	spec, ok := u.Object["spec"]
	if !ok {
		spec = map[string]any{}
	}
	r.Spec, err = json.Marshal(spec)
	return r, err
}

// state reads the caches into a Cluster.
func (w *Watcher) state() controlplane.Cluster {
	sliced := map[string]controlplane.Health{}
	for _, o := range w.slices.GetStore().List() {
		s, ok := o.(*discoveryv1.EndpointSlice)
		if !ok {
			continue
		}
		for _, e := range s.Endpoints {
			k := e.TargetRef.Namespace + "/" + e.TargetRef.Name
			h := endpointHealth(e.Conditions)
			if old, ok := sliced[k]; !ok || better(h, old) {
				sliced[k] = h
			}
		}
	}
	var c controlplane.Cluster
	for _, o := range w.pods.GetStore().List() {
		if p, ok := o.(*corev1.Pod); ok {
			if in, ok := podInstance(p, sliced); ok {
				c.Instances = append(c.Instances, in)
			}
		}
	}
	for _, pair := range []struct {
		list *[]controlplane.Resource
		objs []any
		kind string
	}{
		{&c.Configurations, w.configs.GetStore().List(), "Configuration"},
		{&c.Resiliencies, w.resils.GetStore().List(), "Resiliency"},
		{&c.HTTPEndpoints, w.endpoints.GetStore().List(), "HTTPEndpoint"},
	} {
		for _, o := range pair.objs {
			u, ok := o.(*unstructured.Unstructured)
			if !ok {
				continue
			}
			r, err := daprResource(u)
			if err != nil {
				w.log.Error("resource unreadable: skipped", "kind", pair.kind, "namespace", u.GetNamespace(), "name", u.GetName(), "err", err)
				continue
			}
			*pair.list = append(*pair.list, r)
		}
	}
	return c
}
