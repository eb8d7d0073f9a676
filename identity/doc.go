// Package identity gives every sidecar a SPIFFE identity and the TLS
// configurations that prove and check it.
//
// The embedded trust domain (CA) lives under $SKEIN_HOME/ca: a root, an
// issuing CA signed by it, and the roots peers trust (a replaced root stays
// trusted for RootOverlap). Keys are files of mode 0600 in a 0700
// directory, so the embedded mode trusts whoever can read $SKEIN_HOME: the
// local user. Sidecars mint their own X.509-SVIDs
// (spiffe://<trust-domain>/ns/<namespace>/<app-id>) with keys held in memory
// only, and renew them at half their lifetime.
//
// A CA may also live in memory only (NewCA, FromFiles) with its owner
// storing its Files elsewhere: the control plane's replicas on Kubernetes
// share one through a Secret, and SetFiles swaps in what another replica
// stored.
//
// Sources of SVIDs and bundles are go-spiffe's x509svid.Source and
// x509bundle.Source, so the SPIFFE Workload API (SPIRE) slots in beside the
// embedded CA.
package identity
