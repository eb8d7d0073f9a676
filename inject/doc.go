// Package inject adds the Skein sidecar to Kubernetes pods that carry
// Dapr's annotations, as Dapr's sidecar injector adds daprd
// (dapr/dapr v1.14 pkg/injector), so an existing Dapr manifest runs on
// Skein unchanged. docs/kubernetes.md describes the result and the
// annotation table (Annotations lists the same).
//
// Its parts:
//   - Injector (New, Options): the image, pull policy, control plane
//     address and join token Secret that no annotation gives. Plan looks
//     at one pod (its metadata and spec, and the name of its workload) and
//     decides: no sidecar without dapr.io/enabled (Dapr's truthy values)
//     or when a daprd container is already there (so injecting twice
//     changes nothing); otherwise the annotations are parsed, every bad
//     value reported (*AnnotationError), and the Plan holds the daprd
//     container running `skein sidecar` with the flags they map to, its
//     emptyDir $SKEIN_HOME, with a control plane address the projected
//     service-account token (audience TokenAudience, at TokenPath) that
//     proves the pod to the control plane's CA, the dapr.io labels and the
//     DAPR_HTTP_PORT / DAPR_GRPC_PORT / APP_PROTOCOL variables for the app
//     containers.
//     Annotations Skein ignores, or does not know, become Plan.Warnings,
//     never silently dropped.
//   - Plan.Apply changes a typed pod; Plan.Patch says the same change as
//     JSON Patch operations that only add, so fields newer than this
//     package's Kubernetes types survive.
//   - Injector.Manifest: `skein inject`. Multi-document YAML in, the pods
//     and pod templates of Pods, Deployments, StatefulSets, DaemonSets,
//     ReplicaSets, ReplicationControllers, Jobs, CronJobs and v1 Lists
//     injected, every other document written back byte for byte. Errors
//     name the document and the field (*FieldError).
//   - Webhook: the mutating admission webhook, an http.Handler serving
//     AdmissionReview v1; a Pod CREATE gets the JSON Patch, anything else
//     is allowed unchanged. deploy/helm/skein registers it.
//
// Usage:
//
//	in, err := inject.New(inject.Options{Image: inject.ImageRepository + ":" + version,
//		ControlPlaneAddress: inject.DefaultControlPlaneAddress, JoinTokenSecret: inject.DefaultJoinTokenSecret})
//	docs, err := in.Manifest(os.Stdout, os.Stdin)          // skein inject -f -
//	http.Handle("/mutate", inject.NewWebhook(in, log))      // skein control-plane --webhook-listen
//
// The package does no I/O beyond its arguments and depends on no other
// Skein package.
package inject
