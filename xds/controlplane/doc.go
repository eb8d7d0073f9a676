// Package controlplane is Skein's reference xDS control plane, `skein
// control-plane`: go-control-plane's snapshot cache and ADS server (state
// of the world and incremental) serving every sidecar node the resources
// of Skein's xDS profile (docs/xds.md), built from two sources of truth:
//
//   - instances that sidecars register over HTTPS with a join token and
//     keep alive with a heartbeat (Registrar is the sidecar's side), and
//   - a config directory of Dapr YAML: a Configuration's accessControl
//     becomes the RBAC filter of its app's Listener, Resiliency resources
//     become route timeouts and retry policies and cluster outlier
//     detection; Skein's Endpoints resources list static instances and
//     cluster settings; .json files are raw xDS resources served as given.
//
// Every change (registration, expiry, file change) builds new snapshots at
// once; a node whose resources did not change keeps its version. An
// invalid config directory is refused with its errors logged and the last
// good one keeps serving.
//
// The control plane is also the trust domain's CA, as istiod is: a sidecar
// with a join token sends a CSR to identity.SignPath and gets its SVID and
// the bundle (identity.ControlPlaneSource is the sidecar's side). With an
// Attester (Options.Attester; on Kubernetes, package kube's TokenReview of
// the pod's projected service-account token), the token in the request
// decides instead: only the SPIFFE ID of the app its pod runs is signed,
// and a join token alone gets nothing unless Options.JoinTokenSVIDs.
//
// One listener serves everything: a connection that opens with a TLS
// handshake gets HTTPS (ADS over gRPC by content type, the registry, the
// CA), any other cleartext gRPC with ADS only.
package controlplane
