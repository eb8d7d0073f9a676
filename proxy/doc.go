// Package proxy is Skein's L7 data path: the app-facing invoke API, the
// peer-facing listener, the request pipelines between them, and the
// transports to peers and to the local app.
//
// A call crosses two sidecars:
//
//	app A ──HTTP──▶ [API listener] ─ invoke ─▶ outbound chain ─h2c/mTLS─▶
//	        [peer listener] ─▶ inbound chain ─▶ app channel ──HTTP──▶ app B
//
// The order of the layers on each path is written down once, in chain.go.
// Target and method extraction (target.go) and header rules (header.go) are
// pure functions with table and fuzz tests. Every error a client sees is
// produced by writeError (errors.go) in Dapr's JSON shape plus Skein's
// machine-readable reason.
//
// Configuration reaches the data path as an immutable *Snapshot loaded once
// per request (Sidecar.Apply swaps it atomically); state that must outlive a
// snapshot (connection pools, endpoint statistics) lives outside it.
//
// Metrics (metrics*.go): layers in chain.go record Dapr's dapr_http_* and
// dapr_runtime_service_invocation_* metrics and Skein's per-edge
// skein_invocation_* ones, labelled by the snapshot's spec.metrics; each
// snapshot caches its label-value children, so a request costs map lookups
// and atomic adds, not label hashing.
package proxy
