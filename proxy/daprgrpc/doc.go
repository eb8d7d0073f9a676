// Package daprgrpc serves Dapr's gRPC API (service dapr.proto.runtime.v1.Dapr,
// on --dapr-grpc-port) for the methods service invocation needs:
// InvokeService, which the official Dapr SDKs' InvokeMethod* calls use, and
// GetMetadata.
//
// InvokeService is not a second invocation path. Each call becomes the HTTP
// invocation Dapr would make of it (verb, /v1.0/invoke/<id>/method/<method>,
// query string, content type, metadata as headers) and runs through the
// sidecar's own app-facing HTTP pipeline, handed in as an http.Handler: the
// same discovery, resiliency, mTLS, access control, metrics and spans as an
// HTTP call. The answer comes back as Dapr gives it (contract §2.2): 2xx as an
// InvokeResponse with the app's headers as gRPC headers and dapr-http-status;
// another status as a gRPC error with the code CodeFromHTTPStatus gives and
// an ErrorInfo detail; a failure of the sidecar itself (reported through
// ErrorSink, not parsed from a body) as the gRPC code Dapr uses for it, with
// the same ErrorInfo reason the HTTP API gives.
//
// DAPR_API_TOKEN is enforced on every method as daprd does: metadata
// dapr-api-token, Unauthenticated with Dapr's messages otherwise.
package daprgrpc
