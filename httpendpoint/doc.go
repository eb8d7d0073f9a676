// Package httpendpoint reads Dapr's HTTPEndpoint resource
// (dapr.io/v1alpha1): a service without a sidecar that apps invoke by the
// resource's name (external service invocation, contract §1.2).
//
// Spec is the resource's spec as written. Decode reads it strictly from
// YAML (a file, or a Kubernetes object's spec as JSON) with field paths;
// Validate reports every problem at once. Both the sidecar (files, and
// what the control plane pushes) and the control plane (the config
// directory, the cluster's CRs) read HTTPEndpoints through this package,
// so the two never disagree on what is valid.
//
// Values (a header's, a TLS document's) are given inline, or name an
// environment variable: envRef, or secretKeyRef, since Skein's secret
// store is the sidecar's environment (as Dapr's secretstores.local.env:
// the secret is the variable Name). Source.Resolve reads them with the
// lookup it is given; only the sidecar resolves, in its own environment.
//
//	sp, err := httpendpoint.Decode(&res.Spec)
//	if err == nil {
//		err = sp.Validate()
//	}
//	v, err := sp.Headers[0].Resolve(os.LookupEnv)
package httpendpoint
