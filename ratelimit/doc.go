// Package ratelimit decides which requests a sidecar admits by rate: Dapr's
// middleware.http.ratelimit component (a bucket per client address) and
// Skein's per-caller limits on the callee side (Configuration
// spec.callerRateLimits, a bucket per calling app). It decides only; the
// sidecar's layers (proxy/ratelimit.go) refuse with 429 and count.
//
// Its types:
//   - Limit: a token bucket's rate and burst. Bucket applies one with
//     golang.org/x/time/rate (chosen over a hand-rolled bucket: it is the
//     Go team's, exact with fractional rates, and lock-light); Take says
//     whether a request may go and, if not, when a token will be there.
//   - MiddlewareLimit: a middleware.http.ratelimit component's metadata
//     (maxRequestsPerSecond, default 100) → its Limit, with Dapr's burst
//     (the rate's whole part, at least 1).
//   - Clients: a Bucket per client address, as Dapr keys by remote IP
//     (IPv6 by /64), in an LRU bounded to MaxClients addresses
//     (hashicorp/golang-lru), so a scan of addresses cannot grow memory.
//   - Config, Policy, Rate: spec.callerRateLimits as written. Decode reads
//     it strictly from YAML; Validate reports every problem with its field
//     path. Compile makes Callers: one Bucket per caller a policy names plus
//     one shared default, nothing per unnamed caller. Inherit carries the
//     buckets of unchanged limits across a reload.
//
// The package is pure: no network, no logging, no clock of its own (callers
// pass now), so decisions are tested with counts.
//
// Usage:
//
//	cfg, err := ratelimit.Decode(node) // spec.callerRateLimits
//	cs, err := ratelimit.Compile(cfg)
//	cs.Inherit(previous)
//	if b, name := cs.For(caller, verified); b != nil {
//		if ok, wait := b.Take(time.Now()); !ok { /* 429, Retry-After: wait */ }
//	}
package ratelimit
