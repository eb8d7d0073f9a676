//go:build race

package proxy

// boundCalls is how many calls of each kind TestMetricsCardinalityBound
// makes under the race detector, which slows the loop down tenfold; the
// caps are full after 8,192, so the bound is still checked over 17,000.
const boundCalls = 25_000
