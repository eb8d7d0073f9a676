//go:build !race

package h1

// allocBudget is the most allocations a pooled GET may make, set from the
// measurement (Go 1.26: 10) with a little room.
const allocBudget = 12
