//go:build race

package bench

// sidecarAllocBudget under the race detector, which allocates on its own
// account.
const sidecarAllocBudget = 3000
