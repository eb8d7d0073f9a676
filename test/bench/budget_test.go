//go:build !race

package bench

// sidecarAllocBudget is the most allocations both sidecar hops together
// may make for a 1 KiB GET (TestAllocationBudget): measured 82 (Go 1.26,
// h1 peer transport and proxy/h1's server with its fast head parsing,
// per-connection reuse and call watch, metrics on, tracing unsampled), plus
// room for pools and map growth. It was 218 before the lean forwarder and
// transport, 147 before the server, 111 before the per-connection reuse.
const sidecarAllocBudget = 90
