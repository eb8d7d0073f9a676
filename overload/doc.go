// Package overload is Skein's overload protection: adaptive concurrency
// limits that refuse, at once, the calls a target cannot serve in time,
// instead of queueing them without bound (PRODUCT.md, Overload).
//
// Its parts:
//   - Limiter: one adaptive limit. Acquire admits a call while fewer than
//     the limit are in flight, else fails with ErrOverloaded; Release ends
//     it with or without a latency sample. The limit follows latency by
//     Envoy's gradient controller (Limiter documents the algorithm and how
//     it differs): within MinLimit and MaxLimit it grows while latency
//     stays near the no-load latency and comes down as soon as calls queue.
//   - Config: the limits and the algorithm's tuning, with defaults
//     (DefaultConfig: limit 100 to 1000, starting at 1000) and Validate.
//   - Registry: the caller side's limiters, one per target, created only
//     for targets that answered and bounded in number (LRU), so unknown
//     or hostile names cannot grow it.
//   - Limiter.Layer and Registry.Layer: client-side layers,
//     func(http.RoundTripper) http.RoundTripper, holding a slot until the
//     response headers arrive. proxy puts the per-target one outside the
//     retry layer, so that a refusal is never retried, and the app
//     channel's before the --app-max-concurrency queue.
//   - ErrOverloaded, IsOverloaded: a refusal states Overloaded() true, the
//     behaviour by which resiliency (no retry, no breaker count) and
//     discovery (no outlier verdict) recognise it without importing this
//     package.
//   - Metrics: skein_overload_refused_total{app_id,side,dst_app_id} and
//     skein_overload_limit{app_id,side,dst_app_id}.
//
// Usage:
//
//	m, err := overload.NewMetrics(reg, "checkout")
//	targets := overload.NewRegistry(overload.DefaultConfig, 0, m)
//	app := overload.NewAppLimiter(overload.DefaultConfig, m, "orders")
//	out := targets.Layer(targetOf)(peerTransport)
//	toApp := app.Layer()(appTransport)
//
// Why not a library: github.com/platinummonkey/go-concurrency-limits, the
// Go port of Netflix's concurrency-limits, is not served by the module
// proxy this project builds from; the controller here is small and tested
// on its own (limiter_test.go feeds it latencies on a fake clock).
package overload
