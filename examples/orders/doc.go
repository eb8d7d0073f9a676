// Package orders is a sample service: it creates and returns orders, and
// reports which app called it (the dapr-caller-app-id header the sidecar
// sets).
//
//	POST /orders       body {"item":"...","qty":N} → 201 {"id":N,...}
//	GET  /orders/{id}  → 200 the order, or 404
package orders
