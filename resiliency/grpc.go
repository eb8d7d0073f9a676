package resiliency

import (
	"net/http"
	"strconv"
	"strings"
)

// grpcStatus is the gRPC status of a response that ended before any
// message (a trailers-only response, grpc-status in its headers), as a
// proxied gRPC call's failure usually does. ok is false for any other
// response, a gRPC one whose status only its trailers will carry
// included: that call is streaming and counts as a success here.
func grpcStatus(resp *http.Response) (code int, isGRPC, ok bool) {
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") {
		return 0, false, false
	}
	v := resp.Header.Get("Grpc-Status")
	if v == "" {
		return 0, true, false
	}
	code, err := strconv.Atoi(v)
	return code, true, err == nil
}

// grpcServerFailure reports whether a gRPC status is the server's failure,
// the gRPC side of an HTTP 5xx (the codes Dapr maps to 500-504): Unknown,
// DeadlineExceeded, Unimplemented, Internal, Unavailable, DataLoss.
func grpcServerFailure(code int) bool {
	switch code {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// grpcFailed reports whether resp is a gRPC call that failed on the
// server's side before any message.
func grpcFailed(resp *http.Response) bool {
	code, _, ok := grpcStatus(resp)
	return ok && grpcServerFailure(code)
}
