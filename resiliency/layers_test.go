package resiliency

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// app is a test server counting its calls; handle answers call n (from 1).
type app struct {
	*httptest.Server
	calls atomic.Int64
}

func newApp(t *testing.T, handle func(n int64, w http.ResponseWriter, r *http.Request)) *app {
	t.Helper()
	a := &app{}
	a.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handle(a.calls.Add(1), w, r)
	}))
	t.Cleanup(a.Close)
	return a
}

// stack builds retry(breaker(timeout(transport))) for the policies of doc,
// with target "server" for every request.
type stack struct {
	rt      http.RoundTripper
	reg     *Registry
	metrics *Metrics
	prom    *prometheus.Registry
	budgets *Budgets
}

func newStack(t *testing.T, doc string, budget *BudgetConfig) *stack {
	t.Helper()
	c := mustCompile(t, doc)
	policyOf := func(*http.Request) Policy { return c.ForApp("server") }
	s := &stack{prom: prometheus.NewRegistry()}
	var err error
	if s.metrics, err = NewMetrics(s.prom, "client"); err != nil {
		t.Fatal(err)
	}
	s.reg = NewRegistry(s.metrics)
	opts := []RetryOption{WithMetrics(s.metrics)}
	if budget != nil {
		s.budgets = NewBudgets(*budget, s.metrics)
		opts = append(opts, WithBudgets(s.budgets))
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	s.rt = Retry(policyOf, opts...)(Breaker(s.reg, policyOf, nil)(Timeout(policyOf, s.metrics)(tr)))
	return s
}

// do sends a request through the stack and returns status and body; a
// transport error is returned as err.
func (s *stack) do(t *testing.T, req *http.Request) (int, http.Header, string, error) {
	t.Helper()
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return 0, nil, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return resp.StatusCode, resp.Header, string(b), nil
}

func get(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url+"/method", nil)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

const defaultRetry = `
policies:
  retries:
    DefaultAppRetryPolicy: {policy: constant, duration: 5ms, maxRetries: 3}
`

// contract §5.8 apps/defaultretry.go.
func TestRetryDefaultPolicy(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantCalls int64
	}{
		{"success", 200, 1},
		{"client error retried, last response returned", 400, 4},
		{"redirect not retried", 302, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Attempt", fmt.Sprint(n))
				w.WriteHeader(tt.status)
				fmt.Fprintf(w, "attempt %d", n)
			})
			s := newStack(t, defaultRetry, nil)
			status, h, body, err := s.do(t, get(t, a.URL))
			if err != nil {
				t.Fatal(err)
			}
			want := fmt.Sprintf("%d %s attempt %d", tt.status, fmt.Sprint(tt.wantCalls), tt.wantCalls)
			if got := fmt.Sprintf("%d %s %s", status, h.Get("X-Attempt"), body); got != want {
				t.Errorf("response = %q, want %q", got, want)
			}
			if n := a.calls.Load(); n != tt.wantCalls {
				t.Errorf("calls = %d, want %d", n, tt.wantCalls)
			}
		})
	}
}

// TestRetryNeverAfterSwitchingProtocols: a 101 hands the connection over;
// even the default policy, which retries every status outside 2xx and
// 3xx, returns it as it is, and the per-try timeout does not end it.
func TestRetryNeverAfterSwitchingProtocols(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "Upgrade")
		w.Header().Set("Upgrade", "echo")
		w.WriteHeader(http.StatusSwitchingProtocols)
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		line, _ := brw.ReadString('\n')
		_, _ = brw.WriteString(line)
		_ = brw.Flush()
	})
	c := mustCompile(t, defaultRetry+"  timeouts:\n    DefaultAppTimeoutPolicy: 50ms\n")
	policyOf := func(*http.Request) Policy { return c.ForApp("server") }
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	var conn io.ReadWriter // the connection, as the proxy's innermost layer takes it
	inner := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(r)
		if err == nil && resp.StatusCode == http.StatusSwitchingProtocols {
			conn, _ = resp.Body.(io.ReadWriter)
		}
		return resp, err
	})
	rt := Retry(policyOf)(Breaker(NewRegistry(nil), policyOf, nil)(Timeout(policyOf, nil)(inner)))
	req := get(t, a.URL)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "echo")
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols || a.calls.Load() != 1 || conn == nil {
		t.Fatalf("status %d after %d calls, want 101 after 1 with the connection", resp.StatusCode, a.calls.Load())
	}
	time.Sleep(100 * time.Millisecond) // past the per-try timeout
	if _, err := io.WriteString(conn, "still here\n"); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, len("still here\n"))
	if _, err := io.ReadFull(conn, b); err != nil || string(b) != "still here\n" {
		t.Errorf("read %q, %v", b, err)
	}
}

// contract §5.8 streaming/resiliencyrecovery.go and resiliencynoretry.go.
func TestRetryBodies(t *testing.T) {
	const payload = "hello, replay"
	tests := []struct {
		name      string
		failures  int64 // calls answered 500 before 200
		body      func() io.Reader
		getBody   bool
		length    int64 // ContentLength to set; -1 chunked
		wantCalls int64
		want      int
	}{
		{"recovers after 3 failures, buffered body replayed", 3, func() io.Reader { return io.NopCloser(strings.NewReader(payload)) }, false, int64(len(payload)), 4, 200},
		{"GetBody replayed", 3, func() io.Reader { return strings.NewReader(payload) }, true, int64(len(payload)), 4, 200},
		{"fixed length to failing app: 4 calls", 100, func() io.Reader { return io.NopCloser(strings.NewReader(payload)) }, false, int64(len(payload)), 4, 500},
		{"chunked: 1 call", 100, func() io.Reader { return io.NopCloser(strings.NewReader(payload)) }, false, -1, 1, 500},
		{"larger than the replay bound: 1 call", 100, func() io.Reader { return io.NopCloser(strings.NewReader(payload + strings.Repeat("x", 2000))) }, false, int64(len(payload) + 2000), 1, 500},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				if !strings.HasPrefix(string(b), payload) {
					t.Errorf("call %d got body %q", n, b)
				}
				if n <= tt.failures {
					w.WriteHeader(500)
				}
			})
			// maxRetries 5 for the recovery rows, 3 for the others, as in Dapr's tests.
			maxRetries := 3
			if tt.failures == 3 {
				maxRetries = 5
			}
			rp := &RetryPolicy{Duration: time.Millisecond, MaxRetries: maxRetries}
			policyOf := func(*http.Request) Policy { return Policy{Target: "server", Retry: rp} }
			rt := Retry(policyOf, WithMaxReplayBody(1024))(http.DefaultTransport)
			req, err := http.NewRequest(http.MethodPost, a.URL+"/m", nil)
			if err != nil {
				t.Fatal(err)
			}
			body := tt.body()
			req.Body = io.NopCloser(body)
			req.ContentLength = tt.length
			if tt.getBody {
				req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(payload)), nil }
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d, want %d", resp.StatusCode, tt.want)
			}
			if n := a.calls.Load(); n != tt.wantCalls {
				t.Errorf("calls = %d, want %d", n, tt.wantCalls)
			}
		})
	}
}

// contract §5.8 apps/defaultcircuitbreaker.go and metrics/resiliencycbstate.go,
// with a 200ms breaker timeout.
func TestBreakerTripsAndRecovers(t *testing.T) {
	var healthy atomic.Bool
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(500)
		}
	})
	s := newStack(t, `
policies:
  circuitBreakers:
    DefaultAppCircuitBreakerPolicy: {maxRequests: 1, interval: 0, timeout: 200ms, trip: consecutiveFailures >= 3}
`, nil)
	for i := range 3 {
		if status, _, _, err := s.do(t, get(t, a.URL)); err != nil || status != 500 {
			t.Fatalf("call %d = %d, %v; want 500", i+1, status, err)
		}
	}
	if _, _, _, err := s.do(t, get(t, a.URL)); !errors.Is(err, ErrCircuitOpen) || err.Error() != "circuit breaker is open" {
		t.Fatalf("4th call error = %v, want ErrCircuitOpen", err)
	}
	if n := a.calls.Load(); n != 3 {
		t.Errorf("app calls = %d, want 3 (4th must fail fast)", n)
	}
	if got := cbState(t, s, StateOpen); got != 1 {
		t.Errorf("cb_state{open} = %v, want 1", got)
	}
	time.Sleep(250 * time.Millisecond)
	healthy.Store(true)
	if status, _, _, err := s.do(t, get(t, a.URL)); err != nil || status != 200 {
		t.Fatalf("probe = %d, %v; want 200", status, err)
	}
	if got := s.reg.Get(ptr(policyFor(t, s)), "method").State(); got != StateClosed {
		t.Errorf("state after probe = %s, want closed", got)
	}
	if got := cbState(t, s, StateClosed); got != 1 {
		t.Errorf("cb_state{closed} = %v, want 1", got)
	}
	if got := cbState(t, s, StateOpen); got != 0 {
		t.Errorf("cb_state{open} = %v, want 0", got)
	}
	open := testutil.ToFloat64(s.metrics.activations.WithLabelValues("client", "", policyBreaker, "", "outbound", "app_server", StateOpen))
	if open != 1 {
		t.Errorf("activations_total{open} = %v, want 1", open)
	}
	closed := testutil.ToFloat64(s.metrics.count.WithLabelValues("client", "", policyBreaker, "", "outbound", "app_server", StateClosed))
	if closed != 3 {
		t.Errorf("count{circuitbreaker,closed} = %v, want 3", closed)
	}
}

// TestBreakerIgnoresRateLimitRefusals: a callee's rate limit answers 429
// (a proxied gRPC call RESOURCE_EXHAUSTED); that is the caller's excess,
// not the instance failing, so the breaker counts it as no failure
// (proxy/ratelimit.go relies on it).
func TestBreakerIgnoresRateLimitRefusals(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n%2 == 0 {
			w.Header().Set("Content-Type", "application/grpc")
			w.Header().Set("Grpc-Status", "8") // RESOURCE_EXHAUSTED, trailers-only
			return
		}
		w.WriteHeader(http.StatusTooManyRequests)
	})
	s := newStack(t, `
policies:
  circuitBreakers:
    DefaultAppCircuitBreakerPolicy: {maxRequests: 1, interval: 0, timeout: 200ms, trip: consecutiveFailures >= 3}
`, nil)
	for i := range 10 {
		if _, _, _, err := s.do(t, get(t, a.URL)); err != nil {
			t.Fatalf("call %d: %v (the breaker opened on refusals)", i+1, err)
		}
	}
	if n := a.calls.Load(); n != 10 {
		t.Errorf("app calls = %d, want 10", n)
	}
	if got := cbState(t, s, StateOpen); got != 0 {
		t.Errorf("cb_state{open} = %v, want 0", got)
	}
}

func ptr[T any](v T) *T { return &v }

func policyFor(t *testing.T, s *stack) Policy {
	t.Helper()
	// The registry key is the target and method; settings come from the policy.
	c := mustCompile(t, `
policies:
  circuitBreakers:
    DefaultAppCircuitBreakerPolicy: {maxRequests: 1, interval: 0, timeout: 200ms, trip: consecutiveFailures >= 3}
`)
	return c.ForApp("server")
}

func cbState(t *testing.T, s *stack, status string) float64 {
	t.Helper()
	return testutil.ToFloat64(s.metrics.cbState.WithLabelValues("client", "", policyBreaker, "", "outbound", "app_server", status))
}

// contract §5.6, e2e TestResiliencyCircuitBreakers: trip
// consecutiveFailures > 15 with 5 retries per request: 16 app calls over 3
// requests, the 4th request fails fast.
func TestRetryAroundBreaker(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	s := newStack(t, `
policies:
  retries: {r: {duration: 1ms, maxRetries: 5}}
  circuitBreakers: {cb: {trip: consecutiveFailures > 15, timeout: 1m}}
targets: {apps: {server: {retry: r, circuitBreaker: cb}}}
`, nil)
	var errs []error
	for range 4 {
		_, _, _, err := s.do(t, get(t, a.URL))
		errs = append(errs, err)
	}
	if n := a.calls.Load(); n != 16 {
		t.Errorf("app calls = %d, want 16", n)
	}
	if errs[0] != nil || errs[1] != nil || !errors.Is(errs[2], ErrCircuitOpen) || !errors.Is(errs[3], ErrCircuitOpen) {
		t.Errorf("errors = %v; want nil, nil, open, open", errs)
	}
}

// contract §5.3.
func TestTimeout(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("slow") != "" {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte(strings.Repeat("a", 100000)))
	})
	s := newStack(t, `policies: {timeouts: {DefaultAppTimeoutPolicy: 100ms}}`, nil)
	start := time.Now()
	_, _, _, err := s.do(t, get(t, a.URL+"/x?slow=1"))
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("slow call error = %v, want context deadline exceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("slow call took %v", el)
	}
	// The body stays readable after RoundTrip returns.
	status, _, body, err := s.do(t, get(t, a.URL))
	if err != nil || status != 200 || len(body) != 100000 {
		t.Errorf("fast call = %d, %d bytes, %v", status, len(body), err)
	}
}

// e2e TestServiceInvocationResiliency: timeouts recovered by retries.
func TestTimeoutRecoveredByRetry(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) {
		if n <= 2 {
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		}
	})
	s := newStack(t, `
policies:
  timeouts: {fast: 50ms}
  retries: {r: {duration: 1ms, maxRetries: 5}}
targets: {apps: {server: {timeout: fast, retry: r}}}
`, nil)
	status, _, _, err := s.do(t, get(t, a.URL))
	if err != nil || status != 200 {
		t.Fatalf("got %d, %v; want 200", status, err)
	}
	if n := a.calls.Load(); n != 3 {
		t.Errorf("calls = %d, want 3", n)
	}
}

func TestRetryHonoursContext(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	s := newStack(t, `policies: {retries: {DefaultRetryPolicy: {duration: 10s}}}`, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, _, _, err := s.do(t, get(t, a.URL).WithContext(ctx))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context deadline exceeded", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Errorf("took %v: back-off ignored the context", el)
	}
	if n := a.calls.Load(); n != 1 {
		t.Errorf("calls = %d, want 1", n)
	}
}

// PRODUCT.md difference 7: the budget caps retries when every call fails.
func TestRetryBudget(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	s := newStack(t, `policies: {retries: {DefaultRetryPolicy: {duration: 1ms, maxRetries: 3}}}`,
		&BudgetConfig{Ratio: 0.5, PerSecond: 0})
	var calls []int64
	for range 4 {
		before := a.calls.Load()
		if status, _, _, err := s.do(t, get(t, a.URL)); err != nil || status != 500 {
			t.Fatalf("got %d, %v", status, err)
		}
		calls = append(calls, a.calls.Load()-before)
	}
	// 0.5 token per request: no retry, one retry, no retry, one retry.
	if got := fmt.Sprint(calls); got != "[1 2 1 2]" {
		t.Errorf("calls per request = %s, want [1 2 1 2] (budget ignored?)", got)
	}
	b := s.budgets.For("server")
	if b.Refused() != 4 {
		t.Errorf("refused = %d, want 4", b.Refused())
	}
	if got := testutil.ToFloat64(s.metrics.refused.WithLabelValues("client", "server")); got != 4 {
		t.Errorf("refused metric = %v, want 4", got)
	}
}
