//go:build race

package h1

// allocBudget under the race detector, which allocates on its own account.
const allocBudget = 40
