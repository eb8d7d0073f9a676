package discovery

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
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

// opaqueTransport sends the body like a transport that reports a failed
// body read as an error of its own, losing the cause's type.
type opaqueTransport struct{ next http.RoundTripper }

func (o opaqueTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := o.next.RoundTrip(r)
	if err != nil {
		return nil, fmt.Errorf("h1: write request: %v", err)
	}
	return resp, nil
}

// TestClientBodyFaultIsNotTheInstances: calls whose request body fails on
// the client's side (a malformed chunked body, a client gone mid-body) are
// not failures of the instance: however many there are, it is not ejected,
// the call is not sent to another instance, and the error still says whose
// fault it was, whether the transport keeps the body's error or not.
func TestClientBodyFaultIsNotTheInstances(t *testing.T) {
	for _, tc := range []struct {
		name string
		wrap func(http.RoundTripper) http.RoundTripper
	}{
		{"transport keeps the error", func(rt http.RoundTripper) http.RoundTripper { return rt }},
		{"transport hides the error", func(rt http.RoundTripper) http.RoundTripper { return opaqueTransport{rt} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var calls [2]atomic.Int32
			var addrs [2]string
			for i := range addrs {
				srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					calls[i].Add(1)
					_, _ = io.Copy(io.Discard, r.Body)
				}))
				defer srv.Close()
				addrs[i] = strings.TrimPrefix(srv.URL, "http://")
			}
			src := staticSource{"b.default": {
				{AppID: "b", Namespace: "default", Address: addrs[0]},
				{AppID: "b", Namespace: "default", Address: addrs[1]},
			}}
			res := NewResolver(src, slog.New(slog.DiscardHandler), WithMetrics(prometheus.NewRegistry(), "a"))
			tr := http.DefaultTransport.(*http.Transport).Clone()
			defer tr.CloseIdleConnections()
			rt := Pick(res, prefer(addrs[0]), nil)(tc.wrap(tr))
			for i := range 2 * DefaultOutlierDetection.Consecutive {
				req, _ := http.NewRequest(http.MethodPost, "http://b.default/x", &faultyBody{})
				_, err := rt.RoundTrip(req)
				var cf clientFaultErr
				if !errors.As(err, &cf) {
					t.Fatalf("call %d: err = %v, want the client's fault", i+1, err)
				}
			}
			if n := testutil.ToFloat64(res.metrics.total.WithLabelValues("a", "b")); n != 0 {
				t.Errorf("ejections = %v after client faults, want 0", n)
			}
			if n := calls[1].Load(); n != 0 {
				t.Errorf("the other instance got %d calls: a client fault was sent again", n)
			}
			// The instance still gets calls.
			req, _ := http.NewRequest(http.MethodGet, "http://b.default/x", nil)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if calls[0].Load() == 0 && calls[1].Load() == 0 {
				t.Error("no instance served the good call")
			}
		})
	}
}

// overloadErr is a refusal for overload, as proxy makes of a peer
// sidecar's 503 OVERLOADED answer.
type overloadErr struct{}

func (overloadErr) Error() string    { return "the target's sidecar refused the call: overloaded" }
func (overloadErr) Overloaded() bool { return true }

// TestOverloadRefusalIsNotTheInstances: an instance whose sidecar refuses
// calls for overload is alive: however many refusals, it is not ejected,
// and no refused call is sent to another instance (that would retry into
// an overload).
func TestOverloadRefusalIsNotTheInstances(t *testing.T) {
	var calls [2]atomic.Int32
	var addrs [2]string
	for i := range addrs {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls[i].Add(1)
			w.Header().Set("Refused", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}))
		defer srv.Close()
		addrs[i] = strings.TrimPrefix(srv.URL, "http://")
	}
	src := staticSource{"b.default": {
		{AppID: "b", Namespace: "default", Address: addrs[0]},
		{AppID: "b", Namespace: "default", Address: addrs[1]},
	}}
	res := NewResolver(src, slog.New(slog.DiscardHandler), WithMetrics(prometheus.NewRegistry(), "a"))
	tr := http.DefaultTransport.(*http.Transport).Clone()
	defer tr.CloseIdleConnections()
	refusals := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		resp, err := tr.RoundTrip(r)
		if err == nil && resp.Header.Get("Refused") != "" {
			resp.Body.Close()
			return nil, fmt.Errorf("b: %w", overloadErr{})
		}
		return resp, err
	})
	rt := Pick(res, prefer(addrs[0]), nil)(refusals)
	n := 2 * DefaultOutlierDetection.Consecutive
	for i := range n {
		req, _ := http.NewRequest(http.MethodGet, "http://b.default/x", nil)
		if _, err := rt.RoundTrip(req); !errors.As(err, new(overloadErr)) {
			t.Fatalf("call %d: err = %v, want the refusal", i+1, err)
		}
	}
	if got := testutil.ToFloat64(res.metrics.total.WithLabelValues("a", "b")); got != 0 {
		t.Errorf("ejections = %v after refusals, want 0", got)
	}
	if got := calls[0].Load(); got != int32(n) {
		t.Errorf("the preferred instance got %d calls, want %d", got, n)
	}
	if got := calls[1].Load(); got != 0 {
		t.Errorf("the other instance got %d calls: a refused call was sent again", got)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
