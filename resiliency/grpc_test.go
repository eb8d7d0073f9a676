package resiliency

import (
	"net/http"
	"testing"
)

// grpcApp answers every call as a gRPC server does when it fails before
// any message: HTTP 200, grpc-status in the headers (trailers-only).
func grpcApp(t *testing.T, status string, okAfter int64) *app {
	return newApp(t, func(n int64, w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/grpc")
		if n > okAfter {
			w.Header().Set("Grpc-Status", "0")
		} else {
			w.Header().Set("Grpc-Status", status)
		}
		w.WriteHeader(http.StatusOK)
	})
}

// TestRetryGRPCStatus: a proxied gRPC call that failed before any message
// is retried on its grpc-status, matched against gRPCStatusCodes.
func TestRetryGRPCStatus(t *testing.T) {
	const doc = `
policies:
  retries:
    g:
      policy: constant
      duration: 5ms
      maxRetries: 3
      matching:
        gRPCStatusCodes: "14"
targets:
  apps:
    server: {retry: g}
`
	for _, tc := range []struct {
		status string
		calls  int64
	}{
		{"14", 3}, // Unavailable: listed, retried until the third call succeeds
		{"3", 1},  // InvalidArgument: not listed, answered at once
	} {
		a := grpcApp(t, tc.status, 2)
		s := newStack(t, doc, nil)
		code, h, _, err := s.do(t, get(t, a.URL))
		if err != nil || code != http.StatusOK {
			t.Fatalf("grpc-status %s: %d %v", tc.status, code, err)
		}
		if got := a.calls.Load(); got != tc.calls {
			t.Errorf("grpc-status %s: %d calls, want %d (final grpc-status %s)", tc.status, got, tc.calls, h.Get("Grpc-Status"))
		}
	}
}

// TestBreakerCountsGRPCFailures: trailers-only gRPC failures of the
// server's kind open the breaker like 5xx answers; a client's error
// (InvalidArgument) does not.
func TestBreakerCountsGRPCFailures(t *testing.T) {
	const doc = `
policies:
  circuitBreakers:
    cb: {maxRequests: 1, interval: 0, timeout: 1m, trip: consecutiveFailures >= 2}
targets:
  apps:
    server: {circuitBreaker: cb}
`
	for _, tc := range []struct {
		status string
		open   bool
	}{{"14", true}, {"13", true}, {"3", false}, {"5", false}} {
		a := grpcApp(t, tc.status, 100)
		s := newStack(t, doc, nil)
		for range 2 {
			if _, _, _, err := s.do(t, get(t, a.URL)); err != nil {
				t.Fatalf("grpc-status %s: %v", tc.status, err)
			}
		}
		_, _, _, err := s.do(t, get(t, a.URL))
		if opened := err != nil; opened != tc.open {
			t.Errorf("grpc-status %s: after two failures the breaker is open: %v, want %v", tc.status, opened, tc.open)
		}
	}
}
