// Package access decides which callers may invoke which methods of the local
// app: Dapr's service-invocation access control (Configuration
// spec.accessControl, reference/dapr-contract.md §4), evaluated by the
// callee's sidecar on every call from another app.
//
// The package is pure: no network, no clocks, no logging. Its types:
//   - Config, Policy, Operation: spec.accessControl as written. Decode reads
//     it strictly from YAML (DecodeConfiguration from a whole Configuration),
//     Validate reports every problem with its field path, and Lint warns
//     about what Dapr accepts but rarely means (a "*" mid-name that never
//     matches, shadowed operations, lower-case verbs, ...).
//   - Matcher: a Config compiled once for the app's protocol. It is
//     immutable, so a new config is a new Matcher swapped in atomically.
//   - Request, Caller, Decision: Decide takes the verified caller (from its
//     SPIFFE ID, see CallerFromID), the normalised method and the HTTP verb,
//     and returns what happens and which rule said so. Decide does not
//     allocate for a clean, lower-case method.
//   - DeniedError: what a refused call returns; its text is Dapr's.
//   - Explain: a human account of a Decision, for `skein policy explain`.
//
// Semantics are Dapr's (contract §4.4, §4.5), including its surprises: the
// first of two equal operation names wins, a later policy for the same
// appId and namespace replaces an earlier one, a name without wildcard also
// matches every deeper path and wins over longer names, siblings are tried
// in config order, a "*" segment before the end never matches, verbs compare
// case-sensitively with upper-case names, and an HTTP call without verb gets
// the policy's defaultAction. Two things differ:
//   - PRODUCT.md difference 3: with policies and no global defaultAction,
//     the global default is deny (Dapr's documented rule; its runtime
//     allows). An accessControl with only a trustDomain allows everything.
//   - mode: audit (for the whole accessControl, or per policy for denials by
//     that policy's own rules) lets denied calls through; their Decision has
//     Allowed and Denied both true, for logs and metrics.
//
// Usage:
//
//	cfg, err := access.Decode(node) // spec.accessControl
//	m, err := access.Compile(cfg, appProtocolIsHTTP)
//	...
//	d, err := m.Check(access.Request{Caller: caller, CallerID: id.String(), Operation: method, Verb: r.Method})
//	// err is a *access.DeniedError when the call must be refused.
package access
