package proxy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/discovery"
	"github.com/skeinmesh/skein/proxy/h1"
	"github.com/skeinmesh/skein/telemetry"
)

// fixedSource resolves every app id but "ghost" to one instance at addr.
type fixedSource struct{ addr string }

func (f fixedSource) Lookup(appID, ns string) ([]discovery.Instance, error) {
	if appID == "ghost" {
		return nil, nil
	}
	return []discovery.Instance{{AppID: appID, Namespace: ns, Address: f.addr, PID: 1}}, nil
}

// panickyBalancer stands in for a bug below the peer-attempt recovery.
type panickyBalancer struct{}

func (panickyBalancer) Pick([]*discovery.Endpoint, []*discovery.Endpoint, int64) *discovery.Endpoint {
	panic("balancer bug")
}

// newPanicSidecar builds sidecar "a" (not listening) in front of app, with
// opts' other fields.
func newPanicSidecar(t *testing.T, app *httptest.Server, opts Options) *Sidecar {
	t.Helper()
	reg, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(app.URL)
	opts.AppID = "a"
	opts.AppPort, _ = strconv.Atoi(u.Port())
	s, err := New(opts, reg, fixedSource{addr: "127.0.0.1:1"}, telemetry.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// reasonOf returns the status and ErrorInfo reason of an error reply.
func reasonOf(t *testing.T, w *httptest.ResponseRecorder) (int, string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || len(e.Details) == 0 {
		return w.Code, "(not an error envelope: " + w.Body.String() + ")"
	}
	return w.Code, e.Details[0].Reason
}

func panicCount(t *testing.T, s *Sidecar, layer string) string {
	t.Helper()
	for _, l := range seriesOf(scrape(t, s, ""), "skein_panics_total") {
		if strings.Contains(l, `layer="`+layer+`"`) {
			return l[strings.LastIndexByte(l, ' ')+1:]
		}
	}
	return "(no series)"
}

// TestRecoverAppChannel injects a panic into the app transport (its Dial
// func runs on the caller's goroutine) below --app-max-concurrency 1: each
// call from a peer gets a 500 INTERNAL, the panic is counted, and the one
// slot is free again, so a normal call afterwards reaches the app.
func TestRecoverAppChannel(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	defer app.Close()
	s := newPanicSidecar(t, app, Options{AppMaxConcurrency: 1})
	tr := s.appTransport.(*h1.Transport)
	dial := tr.Dial
	tr.Dial = func(context.Context, string) (net.Conn, error) { panic("transport bug") }

	call := func() *httptest.ResponseRecorder {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/orders", nil)
		r.Host = "a.default"
		w := httptest.NewRecorder()
		s.peerHandler.ServeHTTP(w, r)
		return w
	}
	for i := range 3 {
		w := call()
		if code, reason := reasonOf(t, w); code != http.StatusInternalServerError || reason != ReasonInternal {
			t.Fatalf("call %d: %d %s, want 500 %s", i, code, reason, ReasonInternal)
		}
	}
	if got := panicCount(t, s, panicLayerAppChannel); got != "3" {
		t.Errorf("skein_panics_total{layer=%q} = %s, want 3", panicLayerAppChannel, got)
	}
	tr.Dial = dial
	if w := call(); w.Code != http.StatusOK || w.Body.String() != "hi" {
		t.Errorf("normal call after the panics: %d %s, want 200 hi (the slot was not freed)", w.Code, w.Body)
	}
}

// TestRecoverPeerAttempt injects a panic below the breaker (in the
// balancer): the app's call gets a 500 INTERNAL, counted in its layer.
func TestRecoverPeerAttempt(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s := newPanicSidecar(t, app, Options{Balancer: panickyBalancer{}})
	w := httptest.NewRecorder()
	s.apiHandler.ServeHTTP(w, httptest.NewRequest(http.MethodPost, "/v1.0/invoke/b/method/orders", strings.NewReader("x")))
	if code, reason := reasonOf(t, w); code != http.StatusInternalServerError || reason != ReasonInternal {
		t.Fatalf("%d %s, want 500 %s", code, reason, ReasonInternal)
	}
	var e errorBody
	_ = json.Unmarshal(w.Body.Bytes(), &e)
	if want := "failed to invoke, id: b, err: recovered panic in peer_attempt"; e.Message != want {
		t.Errorf("message = %q, want %q", e.Message, want)
	}
	if got := panicCount(t, s, panicLayerPeerAttempt); got != "1" {
		t.Errorf("skein_panics_total{layer=%q} = %s, want 1", panicLayerPeerAttempt, got)
	}
}

// failingWriter panics on its first WriteHeader, before anything is sent,
// as net/http does for an invalid status code.
type failingWriter struct {
	*httptest.ResponseRecorder
	failed bool
}

func (w *failingWriter) WriteHeader(code int) {
	if !w.failed {
		w.failed = true
		panic("write header bug")
	}
	w.ResponseRecorder.WriteHeader(code)
}

// TestRecoverServerChains checks both server chains end in a recovery
// layer that answers Dapr's envelope with reason INTERNAL and counts the
// panic under its own layer.
func TestRecoverServerChains(t *testing.T) {
	app := httptest.NewServer(http.NotFoundHandler())
	defer app.Close()
	s := newPanicSidecar(t, app, Options{})
	tests := []struct {
		name    string
		handler http.Handler
		req     *http.Request
		layer   string
		wantMsg string
	}{{
		name:    "api",
		handler: s.apiHandler,
		req:     httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/a%23b", nil), // 500 INVALID_METHOD, never written
		layer:   panicLayerAPI,
		wantMsg: "failed to invoke, id: b, err: recovered panic",
	}, {
		name:    "api, not an invocation",
		handler: s.apiHandler,
		req:     httptest.NewRequest(http.MethodGet, "/v1.0/healthz", nil),
		layer:   panicLayerAPI,
		wantMsg: "internal error: recovered panic",
	}, {
		name:    "peer",
		handler: s.peerHandler,
		req:     httptest.NewRequest(http.MethodGet, "/orders", nil), // misdirected: 421, never written
		layer:   panicLayerPeer,
		wantMsg: "failed to invoke, id: a, err: recovered panic",
	}}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := &failingWriter{ResponseRecorder: httptest.NewRecorder()}
			tc.handler.ServeHTTP(w, tc.req)
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || len(e.Details) != 1 {
				t.Fatalf("body %s is not an error envelope", w.Body)
			}
			got := []string{strconv.Itoa(w.Code), e.ErrorCode, e.Message, e.Details[0].Reason}
			want := []string{"500", codeDirectInvoke, tc.wantMsg, ReasonInternal}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			wantCount := "1"
			if tc.layer == panicLayerAPI {
				wantCount = strconv.Itoa(i + 1) // the two api cases share the series
			}
			if got := panicCount(t, s, tc.layer); got != wantCount {
				t.Errorf("skein_panics_total{layer=%q} = %s, want %s", tc.layer, got, wantCount)
			}
		})
	}
}

// TestLimitConcurrencyReleasesOnPanic: a panic below the limiter frees
// its slot, so the next call does not queue forever.
func TestLimitConcurrencyReleasesOnPanic(t *testing.T) {
	boom := true
	rt := limitConcurrency(1)(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if boom {
			panic("bug below the limiter")
		}
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
	}))
	func() {
		defer func() { _ = recover() }()
		_, _ = rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://app/", nil))
	}()
	boom = false
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := rt.RoundTrip(httptest.NewRequestWithContext(ctx, http.MethodGet, "http://app/", nil))
	if err != nil {
		t.Fatalf("call after a panic: %v (slot not freed)", err)
	}
	resp.Body.Close()
}
