//go:build !race

package bench

// sidecarAllocBudget is the most allocations both sidecar hops together
// may make for a 1 KiB GET (TestAllocationBudget): measured 147 (Go 1.26,
// h1 peer transport, metrics on, tracing unsampled), plus room for pools
// and map growth. It was 218 before the lean forwarder and transport.
const sidecarAllocBudget = 170
