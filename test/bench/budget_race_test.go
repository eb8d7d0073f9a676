//go:build race

package bench

// sidecarAllocBudget under the race detector, which allocates a little on
// its own account (measured 83).
const sidecarAllocBudget = 92
