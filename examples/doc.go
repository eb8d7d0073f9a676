// Package examples holds the sample services `skein demo` runs: orders
// (examples/orders) stores orders, checkout (examples/checkout) calls
// orders through its own sidecar. Each is an ordinary HTTP service that
// knows nothing about Skein beyond the DAPR_HTTP_PORT it is given.
package examples
