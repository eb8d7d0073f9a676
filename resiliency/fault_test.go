package resiliency

import (
	"errors"
	"io"
	"net/http"
	"testing"
)

// clientFaultErr is a failure the caller's client caused, as proxy's
// request body errors say it.
type clientFaultErr struct{}

func (clientFaultErr) Error() string     { return "read request body: chunked line ends with bare LF" }
func (clientFaultErr) ClientFault() bool { return true }

// faultyBody gives a few bytes, then the client's fault.
type faultyBody struct{ sent bool }

func (b *faultyBody) Read(p []byte) (int, error) {
	if !b.sent {
		b.sent = true
		return copy(p, "hel"), nil
	}
	return 0, clientFaultErr{}
}

func (b *faultyBody) Close() error { return nil }

// TestClientFaultIsNotRetriedNorCounted: a request whose body fails on the
// client's side is tried once, whatever the retry policy, and never trips
// a breaker: the target did nothing wrong.
func TestClientFaultIsNotRetriedNorCounted(t *testing.T) {
	a := newApp(t, func(n int64, w http.ResponseWriter, r *http.Request) { _, _ = io.Copy(io.Discard, r.Body) })
	const doc = `
policies:
  retries: {r: {duration: 1ms, maxRetries: 3}}
  circuitBreakers: {cb: {trip: consecutiveFailures >= 2, timeout: 1m}}
targets: {apps: {server: {retry: r, circuitBreaker: cb}}}
`
	s := newStack(t, doc, nil)
	for i := range 5 {
		req, err := http.NewRequest(http.MethodPost, a.URL+"/method", &faultyBody{})
		if err != nil {
			t.Fatal(err)
		}
		// Replayable as far as Retry knows, so only the fault stops it.
		req.GetBody = func() (io.ReadCloser, error) { return &faultyBody{}, nil }
		_, _, _, err = s.do(t, req)
		var cf clientFaultErr
		if !errors.As(err, &cf) {
			t.Fatalf("call %d: err = %v, want the client's fault", i+1, err)
		}
	}
	if n := a.calls.Load(); n > 5 {
		t.Errorf("app saw %d calls for 5 requests: a client fault was retried", n)
	}
	if got := s.reg.Get(ptr(mustCompile(t, doc).ForApp("server")), "method").State(); got != StateClosed {
		t.Errorf("breaker %s after client faults, want closed", got)
	}
	if status, _, _, err := s.do(t, get(t, a.URL)); err != nil || status != http.StatusOK {
		t.Errorf("a good call after client faults = %d, %v; want 200", status, err)
	}
}
