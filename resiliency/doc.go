// Package resiliency applies Dapr's Resiliency policies (timeouts, retries,
// circuit breakers; reference/dapr-contract.md §5) to outbound service
// invocation, plus Skein's retry budget (PRODUCT.md difference 7).
//
// Its parts:
//   - Spec, RetrySpec, CircuitBreakerSpec, AppTarget: a Resiliency
//     resource's spec as written. Decode reads it strictly from YAML with
//     field paths; Validate reports every problem (durations, status code
//     lists, trip expressions, unknown policy names); Merge joins several
//     resources, the later winning per name.
//   - Compiled: a validated Spec, immutable, swapped in atomically on
//     change. ForApp returns the Policy of a call to a target (§5.6):
//     a named app target's own policies, else the Default*Policy chain.
//   - RetryPolicy: back-off (NewBackoff: constant, or exponential from
//     500ms ×1.5 ±50% capped at maxInterval) and status matching
//     (RetryHTTP, RetryGRPC).
//   - Registry, CircuitBreaker: gobreaker breakers keyed by
//     "<target>:<method>" in an LRU per target; they outlive Compiled
//     snapshots and keep their state while their settings do not change.
//     Refused calls fail with ErrCircuitOpen or ErrTooManyRequests.
//   - Budget, Budgets: a token bucket per target allowing retries up to
//     20% of requests plus 10 a second.
//   - Retry, Breaker, Timeout: client-side layers,
//     func(http.RoundTripper) http.RoundTripper, composed
//     retry(breaker(timeout(attempt))) so that every attempt is counted by
//     the breaker and has its own deadline.
//   - Metrics: dapr_resiliency_count, dapr_resiliency_activations_total,
//     dapr_resiliency_cb_state (contract §6.2) and
//     skein_resiliency_retry_budget_refused_total.
//
// Usage:
//
//	spec, err := resiliency.Decode(node) // the resource's spec
//	c, err := resiliency.Compile(resiliency.Merge(specs...))
//	policyOf := func(r *http.Request) resiliency.Policy { return snap().ForApp(targetOf(r)) }
//	rt := resiliency.Retry(policyOf, resiliency.WithBudgets(budgets), resiliency.WithMetrics(m))(
//		resiliency.Breaker(registry, policyOf, nil)(
//			resiliency.Timeout(policyOf, m)(transport)))
//
// Not covered here: the built-in service retries of §5.7 (Policy only
// reports whether they stay on) and actor and component targets, which
// are decoded but not checked.
package resiliency
