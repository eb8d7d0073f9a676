// Package kube feeds `skein control-plane --kubernetes` from a Kubernetes
// API server: client-go informers (list, then watch) on Pods,
// EndpointSlices and Dapr's Configuration, Resiliency and HTTPEndpoint
// resources, whose
// caches are turned into a controlplane.Cluster after every change.
//
// The mapping, as Dapr's own control plane and injector make it:
//
//   - a Pod annotated dapr.io/enabled: "true", with an IP and not finished,
//     is an instance of the app dapr.io/app-id names (else its sidecar's
//     --app-id, which the injector defaults from the workload's name, else
//     the pod's name) in the pod's namespace, at the pod's IP and its
//     sidecar's peer port (the daprd container's port dapr-internal, else
//     50002 as injected);
//   - its readiness is what the EndpointSlices that list it (targetRef)
//     say: serving, and terminating; without one (no Service selects
//     it: Skein needs none), its Ready condition and deletion timestamp;
//   - its dapr.io/config names the Configuration in its namespace whose
//     accessControl guards calls to its app;
//   - Resiliency resources apply to the callers their scopes name, in
//     their namespace;
//   - HTTPEndpoint resources are served to the sidecars of their
//     namespace that their scopes name (all of them without scopes).
//
// Replicas (docs/kubernetes.md, High availability): Elector runs leader
// election on a coordination.k8s.io Lease with client-go's rules, and
// CAStore keeps the CA every replica signs with in a Secret of the control
// plane's namespace, which each replica watches and the leader alone
// rotates (asked by the annotation skein.io/rotate, or when due).
//
// Attester proves a sidecar's pod for the control plane's CA: a TokenReview
// of its projected service-account token (audience inject.TokenAudience)
// names the pod the token is bound to, and that pod, from the pod cache,
// must be the same pod (UID), of that service account, a Dapr pod, and
// run the app asked for in the namespace asked for (attest.go).
//
// Informers run over client-go's dynamic client and tools/cache rather
// than the typed clientset and its informer factory: those register every
// API group's types in a scheme at package init, a cost every sidecar
// (the same binary) would pay in idle memory. Objects are converted into
// k8s.io/api's types (already linked for the injector) and stripped to
// the fields read here as they enter the cache.
package kube
