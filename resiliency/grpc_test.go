package resiliency

import (
	"bytes"
	"io"
	"net/http"
	"sync"
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

// TestRetryGRPCStreamBody: a gRPC call's body of unknown length is
// replayed for the attempts that failed before any answer, whole, and not
// when more than the replay bound went out.
func TestRetryGRPCStreamBody(t *testing.T) {
	const doc = `
policies:
  retries:
    g: {policy: constant, duration: 5ms, maxRetries: 3, matching: {gRPCStatusCodes: "14"}}
targets:
  apps:
    server: {retry: g}
`
	body := bytes.Repeat([]byte("0123456789abcdef"), 640) // 10 KiB
	for _, tc := range []struct {
		name  string
		max   int64
		calls int64
	}{{"within the bound", 64 << 10, 3}, {"over the bound", 4 << 10, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			var got [][]byte
			var mu sync.Mutex
			a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				mu.Lock()
				got = append(got, b)
				mu.Unlock()
				w.Header().Set("Content-Type", "application/grpc")
				if n <= 2 {
					w.Header().Set("Grpc-Status", "14")
				} else {
					w.Header().Set("Grpc-Status", "0")
				}
			})
			c := mustCompile(t, doc)
			policyOf := func(*http.Request) Policy { return c.ForApp("server") }
			tr := http.DefaultTransport.(*http.Transport).Clone()
			t.Cleanup(tr.CloseIdleConnections)
			rt := Retry(policyOf, WithMaxReplayBody(tc.max))(tr)
			pr, pw := io.Pipe()
			go func() {
				for i := 0; i < len(body); i += 1000 { // a stream: several writes
					pw.Write(body[i:min(i+1000, len(body))])
				}
				pw.Close()
			}()
			req, _ := http.NewRequest(http.MethodPost, a.URL+"/pkg.Svc/Call", pr)
			req.Header.Set("Content-Type", "application/grpc")
			req.ContentLength = -1 // unknown, as a proxied gRPC call's
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if n := a.calls.Load(); n != tc.calls {
				t.Fatalf("%d calls, want %d", n, tc.calls)
			}
			mu.Lock()
			defer mu.Unlock()
			for i, b := range got {
				if !bytes.Equal(b, body) {
					t.Errorf("attempt %d got %d bytes, want the whole %d-byte body", i+1, len(b), len(body))
				}
			}
		})
	}
}
