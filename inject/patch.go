package inject

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Operation is one JSON Patch (RFC 6902) operation. Value is a
// Kubernetes API value (a container, a volume, an environment variable, a
// label's string), marshalled as it is.
type Operation struct {
	Op    string `json:"op"`
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// Patch returns the plan as JSON Patch operations on the JSON document
// holding the pod, whose metadata and spec sit under prefix ("" for a Pod,
// "/spec/template" for a Deployment's pod template). meta and spec are
// the ones the plan was made from: the operations only add (labels,
// volumes, environment variables, the sidecar), so fields this package's
// Kubernetes types do not know are kept, and pointers refer to what is
// there. A skipping plan has no operations.
func (p *Plan) Patch(prefix string, meta *metav1.ObjectMeta, spec *corev1.PodSpec) []Operation {
	if !p.Injected() {
		return nil
	}
	var ops []Operation
	add := func(path string, v any) {
		ops = append(ops, Operation{Op: "add", Path: prefix + path, Value: v})
	}
	// RFC 6902 §4.1: "add" needs the parent to exist; on an object member
	// it replaces the value, so an existing label is overwritten as Apply
	// does.
	if len(meta.Labels) == 0 {
		add("/metadata/labels", map[string]string{})
	}
	for _, l := range p.labels {
		add("/metadata/labels/"+escape(l[0]), l[1])
	}
	if len(spec.Volumes) == 0 {
		add("/spec/volumes", p.volumes)
	} else {
		for _, v := range p.volumes {
			add("/spec/volumes/-", v)
		}
	}
	for _, i := range p.appEnvOrder() {
		base := "/spec/containers/" + strconv.Itoa(i) + "/env"
		if len(spec.Containers[i].Env) == 0 {
			add(base, p.appEnv[i])
			continue
		}
		for _, e := range p.appEnv[i] {
			add(base+"/-", e)
		}
	}
	if len(spec.Containers) == 0 {
		add("/spec/containers", []corev1.Container{p.sidecar})
	} else {
		add("/spec/containers/-", p.sidecar)
	}
	return ops
}

// escape makes s one JSON Pointer reference token (RFC 6901 §3).
func escape(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}
