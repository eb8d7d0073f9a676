//go:build !race

package bench

// sidecarAllocBudget is the most allocations both sidecar hops together
// may make for a 1 KiB GET (TestAllocationBudget): measured 111 (Go 1.26,
// h1 peer transport and proxy/h1's server with its fast head parsing,
// metrics on, tracing unsampled), plus room for pools and map growth. It
// was 218 before the lean forwarder and transport, 147 before the server.
const sidecarAllocBudget = 122
