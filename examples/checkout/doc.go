// Package checkout is a sample service that places orders with the orders
// service through its sidecar, the way any Dapr app does:
//
//	POST http://127.0.0.1:$DAPR_HTTP_PORT/v1.0/invoke/orders/method/orders
//
// Its one endpoint, POST /checkout?item=X, places an order and returns what
// orders answered together with the trace id of the call.
package checkout
