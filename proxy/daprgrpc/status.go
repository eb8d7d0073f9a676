package daprgrpc

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Dapr's ErrorInfo for an HTTP status turned into a gRPC error
// (pkg/messaging/v1/util.go).
const (
	errorInfoDomain   = "dapr.io"
	metaHTTPCode      = "http.code"
	metaHTTPError     = "http.error_message"
	maxErrorDetailLen = 63
)

// CodeFromHTTPStatus is Dapr's HTTP → gRPC status mapping (contract §2.2):
// 400 is Internal, not InvalidArgument, as in Dapr.
func CodeFromHTTPStatus(code int) codes.Code {
	switch code {
	case http.StatusRequestTimeout:
		return codes.Canceled
	case http.StatusInternalServerError:
		return codes.Unknown
	case http.StatusBadRequest:
		return codes.Internal
	case http.StatusGatewayTimeout:
		return codes.DeadlineExceeded
	case http.StatusNotFound:
		return codes.NotFound
	case http.StatusConflict:
		return codes.AlreadyExists
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusNotImplemented:
		return codes.Unimplemented
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	}
	if code >= 200 && code < 300 {
		return codes.OK
	}
	return codes.Unknown
}

// httpStatusError is Dapr's ErrorFromHTTPResponseCode: the app (or the
// token check) answered HTTP status code; detail is the body, cut to 63
// bytes. nil for 2xx.
func httpStatusError(code int, detail string) error {
	c := CodeFromHTTPStatus(code)
	if c == codes.OK {
		return nil
	}
	// Protobuf strings must be UTF-8 (an invalid one fails the whole
	// detail): drop what is not, and cut at a rune boundary.
	detail = strings.ToValidUTF8(detail, "")
	if len(detail) > maxErrorDetailLen {
		i := maxErrorDetailLen
		for i > 0 && !utf8.RuneStart(detail[i]) {
			i--
		}
		detail = detail[:i]
	}
	text := http.StatusText(code)
	return withInfo(status.New(c, text), &errdetails.ErrorInfo{
		Reason:   text,
		Domain:   errorInfoDomain,
		Metadata: map[string]string{metaHTTPCode: strconv.Itoa(code), metaHTTPError: detail},
	})
}

func withInfo(st *status.Status, info *errdetails.ErrorInfo) error {
	if d, err := st.WithDetails(info); err == nil {
		return d.Err()
	}
	return st.Err()
}

func errUnimplemented(msg string) error { return status.Error(codes.Unimplemented, msg) }

// SidecarError is a failure of the sidecar itself (not an answer of the
// app), as its HTTP API writes it: status, Dapr error code, message and
// the ErrorInfo reason, domain and metadata.
type SidecarError struct {
	HTTPStatus int
	ErrorCode  string
	Message    string
	Reason     string
	Domain     string
	Metadata   map[string]string
}

// ErrorSink is implemented by the ResponseWriter InvokeService hands to
// the HTTP pipeline. The sidecar's error writer finds it (through the
// layers' Unwrap methods) and reports its failure there, so that it
// becomes the gRPC status Dapr gives rather than an HTTP answer.
type ErrorSink interface {
	SidecarError(SidecarError)
}

// Reasons whose gRPC code is not Internal (they match proxy's ErrorInfo
// reasons).
const (
	reasonTimeout     = "TIMEOUT"
	reasonCircuitOpen = "CIRCUIT_OPEN"
)

// sidecarStatus is the gRPC error Dapr returns for a failure of the
// sidecar. From InvokeService: a resiliency timeout is DeadlineExceeded, an
// open breaker Unknown, a missing app id NotFound, a rate limit's 429
// ResourceExhausted, everything else Internal with the HTTP API's message
// ("failed to invoke, id: ..., err: ..."). For a proxied call (proxied), a
// refusal by access control is PermissionDenied and a client fault
// InvalidArgument, as the callee's own status reaches the client in Dapr's
// proxy mode.
func sidecarStatus(e SidecarError, proxied bool) error {
	c := codes.Internal
	msg := e.Message
	switch {
	case e.Reason == reasonTimeout:
		c, msg = codes.DeadlineExceeded, "context deadline exceeded"
	case e.Reason == reasonCircuitOpen && e.HTTPStatus == http.StatusInternalServerError:
		// Dapr returns the breaker's own error: "circuit breaker is open".
		c = codes.Unknown
		if i := strings.LastIndex(msg, "err: "); i >= 0 {
			msg = msg[i+len("err: "):]
		}
	case e.HTTPStatus == http.StatusNotFound:
		c = codes.NotFound
	case e.HTTPStatus == http.StatusUnauthorized:
		c = codes.Unauthenticated
	case e.HTTPStatus == http.StatusTooManyRequests:
		// A rate limit (RATE_LIMITED): Dapr's code for an HTTP 429, and one
		// that callers' breakers do not count as the instance failing.
		c = codes.ResourceExhausted
	case proxied && e.HTTPStatus == http.StatusForbidden:
		c = codes.PermissionDenied
	case proxied && e.HTTPStatus == http.StatusBadRequest:
		c = codes.InvalidArgument
	}
	return withInfo(status.New(c, msg), &errdetails.ErrorInfo{Reason: e.Reason, Domain: e.Domain, Metadata: e.Metadata})
}
