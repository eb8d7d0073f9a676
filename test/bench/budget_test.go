//go:build !race

package bench

// sidecarAllocBudget is the most allocations both sidecar hops together
// may make for a 1 KiB GET (TestAllocationBudget).
const sidecarAllocBudget = 1000
