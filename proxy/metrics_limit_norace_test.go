//go:build !race

package proxy

// boundCalls is how many calls of each kind TestMetricsCardinalityBound
// makes: the 100,000.
const boundCalls = 100_000
