package proxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/skeinmesh/skein/apphealth"
	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/identity/access"
	"github.com/skeinmesh/skein/overload"
	"github.com/skeinmesh/skein/proxy/daprgrpc"
	"github.com/skeinmesh/skein/recovery"
	"github.com/skeinmesh/skein/resiliency"
)

// Reasons carried in the google.rpc.ErrorInfo detail of every error Skein
// generates (PRODUCT.md difference 4). Clients branch on these, not on text.
const (
	ReasonNoAppID         = "NO_APP_ID"
	ReasonInvalidAppID    = "INVALID_APP_ID"
	ReasonAppNotFound     = "APP_NOT_FOUND"
	ReasonAppUnreachable  = "APP_UNREACHABLE"
	ReasonAppChannel      = "APP_CHANNEL_ERROR"
	ReasonNoAppChannel    = "APP_CHANNEL_NOT_INITIALIZED"
	ReasonInvalidMethod   = "INVALID_METHOD"
	ReasonBodyTooLarge    = "BODY_TOO_LARGE"
	ReasonTimeout         = "TIMEOUT"
	ReasonMisdirected     = "MISDIRECTED"
	ReasonNotReady        = "NOT_READY"
	ReasonUnauthenticated = "UNAUTHENTICATED"
	ReasonAccessDenied    = "ACCESS_DENIED"
	ReasonRateLimited     = "RATE_LIMITED" // 429 from a rate limit: httpPipeline, appHttpPipeline, callerRateLimits (ratelimit.go)
	ReasonCircuitOpen     = "CIRCUIT_OPEN"
	ReasonInvalidBaggage  = "INVALID_BAGGAGE"
	ReasonInvalidBody     = "INVALID_REQUEST_BODY"
	ReasonInternal        = "INTERNAL"      // a recovered panic (proxy/recover.go)
	ReasonAppUnhealthy    = "APP_UNHEALTHY" // the app fails its health checks (--enable-app-health-check)
	ReasonOverloaded      = "OVERLOADED"    // refused at once by an adaptive concurrency limit (package overload)
)

// Dapr error codes (contract §1.10).
const (
	codeDirectInvoke  = "ERR_DIRECT_INVOKE"
	codeNotReady      = "ERR_HEALTH_NOT_READY"
	codeOutboundReady = "ERR_OUTBOUND_HEALTH_NOT_READY"
	codeAppIDMismatch = "ERR_HEALTH_APPID_NOT_MATCH"
)

// errBodyTooLarge is returned by the body limiter when a request body
// exceeds --max-body-size. The text is Dapr's. Like a malformed body it is
// the client's fault, so no instance is blamed for it (ClientFault).
var errBodyTooLarge error = bodyTooLargeError{}

type bodyTooLargeError struct{}

func (bodyTooLargeError) Error() string     { return "stream too large" }
func (bodyTooLargeError) ClientFault() bool { return true }

// errNoAppChannel is returned when the sidecar has no --app-port.
var errNoAppChannel = errors.New("app channel is not initialized")

// appChannelError wraps a transport error talking to the local app.
type appChannelError struct{ err error }

func (e *appChannelError) Error() string { return "error invoking app channel: " + e.err.Error() }
func (e *appChannelError) Unwrap() error { return e.err }

// errorInfo is google.rpc.ErrorInfo as JSON.
type errorInfo struct {
	Type     string            `json:"@type"`
	Reason   string            `json:"reason"`
	Domain   string            `json:"domain"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

type errorBody struct {
	ErrorCode string      `json:"errorCode"`
	Message   string      `json:"message"`
	Details   []errorInfo `json:"details,omitempty"`
}

// classify maps an invocation error to Dapr's HTTP status and Skein's reason.
// It is the one place that decides what a failure looks like to a client.
func classify(err error) (status int, reason string) {
	var badID *InvalidAppIDError
	var appErr *appChannelError
	var badBody *clientBodyError
	var denied *access.DeniedError
	var limited *rateLimitedError
	switch {
	case errors.Is(err, recovery.ErrPanic):
		return http.StatusInternalServerError, ReasonInternal
	case errors.As(err, &denied):
		return http.StatusForbidden, ReasonAccessDenied
	case errors.As(err, &limited):
		return http.StatusTooManyRequests, ReasonRateLimited
	case overload.IsOverloaded(err):
		// 503, as Envoy's adaptive concurrency filter answers: the
		// status RFC 9110 §15.6.4 gives temporary overload.
		return http.StatusServiceUnavailable, ReasonOverloaded
	case errors.Is(err, errOverflow):
		return http.StatusServiceUnavailable, ReasonCircuitOpen
	case errors.Is(err, resiliency.ErrCircuitOpen), errors.Is(err, resiliency.ErrTooManyRequests):
		return http.StatusInternalServerError, ReasonCircuitOpen
	case errors.Is(err, ErrNoAppID):
		return http.StatusNotFound, ReasonNoAppID
	case errors.As(err, &badID):
		return http.StatusInternalServerError, ReasonInvalidAppID
	case errors.Is(err, ErrInvalidMethod):
		return http.StatusInternalServerError, ReasonInvalidMethod
	case errors.Is(err, discovery.ErrNotFound):
		return http.StatusInternalServerError, ReasonAppNotFound
	case errors.Is(err, discovery.ErrUnreachable):
		return http.StatusInternalServerError, ReasonAppUnreachable
	case errors.Is(err, errBodyTooLarge):
		return http.StatusInternalServerError, ReasonBodyTooLarge
	case errors.As(err, &badBody):
		// Before the app-channel case: on the callee a body the caller's
		// sidecar failed to send surfaces through the app transport.
		return http.StatusBadRequest, ReasonInvalidBody
	case errors.Is(err, errNoAppChannel):
		return http.StatusInternalServerError, ReasonNoAppChannel
	case errors.Is(err, apphealth.ErrUnhealthy):
		return http.StatusInternalServerError, ReasonAppUnhealthy
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusInternalServerError, ReasonTimeout
	case errors.As(err, &appErr):
		return http.StatusInternalServerError, ReasonAppChannel
	}
	return http.StatusInternalServerError, ReasonAppUnreachable
}

// writeInvokeError writes a failed invocation of target as Dapr does:
// {"errorCode":"ERR_DIRECT_INVOKE","message":"failed to invoke, id: <id>, err: <cause>"}
// plus the ErrorInfo detail.
func writeInvokeError(w http.ResponseWriter, target string, err error) {
	status, reason := classify(err)
	msg := err.Error()
	md, denied := deniedDetail(err)
	if !denied {
		md = limitedDetail(err)
	}
	if denied {
		// Dapr's callee answers gRPC PermissionDenied; HTTP callers see its text.
		msg = "rpc error: code = PermissionDenied desc = " + msg
	}
	if errors.Is(err, apphealth.ErrUnhealthy) {
		// Dapr's app channel refuses with gRPC Internal, on the callee and
		// for self-invocation alike; callers see its text.
		msg = "rpc error: code = Internal desc = " + msg
	}
	if status != http.StatusNotFound {
		msg = "failed to invoke, id: " + target + ", err: " + msg
	}
	if target != "" {
		if md == nil {
			md = map[string]string{}
		}
		md["appID"] = target
	}
	if reason == ReasonOverloaded {
		var refused *overload.RefusedError
		if errors.As(err, &refused) && refused.Side != "" {
			if md == nil {
				md = map[string]string{}
			}
			md["limit"] = refused.Side // whose limit refused: outbound (this sidecar's, per target) or app (the callee's app channel)
		}
		h := w.Header()
		h.Set("Retry-After", overloadRetryAfter)
		h.Set(HeaderOverloaded, "true")
	}
	writeError(w, status, codeDirectInvoke, msg, reason, md)
}

// writeError writes Dapr's JSON error envelope with Skein's ErrorInfo detail.
func writeError(w http.ResponseWriter, status int, code, msg, reason string, md map[string]string) {
	if sink := errorSinkOf(w); sink != nil {
		// The gRPC API's InvokeService: the failure becomes its status.
		sink.SidecarError(daprgrpc.SidecarError{HTTPStatus: status, ErrorCode: code, Message: msg, Reason: reason, Domain: "skein", Metadata: md})
	}
	b, _ := json.Marshal(errorBody{
		ErrorCode: code,
		Message:   msg,
		Details: []errorInfo{{
			Type:     "type.googleapis.com/google.rpc.ErrorInfo",
			Reason:   reason,
			Domain:   "skein",
			Metadata: md,
		}},
	})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Del("Content-Length")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// errorSinkOf finds a daprgrpc.ErrorSink under the layers' ResponseWriters.
func errorSinkOf(w http.ResponseWriter) daprgrpc.ErrorSink {
	for w != nil {
		if s, ok := w.(daprgrpc.ErrorSink); ok {
			return s
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}
