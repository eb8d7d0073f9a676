package recovery

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/proxy/h1"
)

// reply500 stands in for the sidecar's Dapr error envelope.
func reply500(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusInternalServerError)
	_, _ = io.WriteString(w, `{"errorCode":"ERR_DIRECT_INVOKE","message":"internal error"}`)
}

func newTestMetrics(t *testing.T) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	return NewMetrics(reg), reg
}

func panics(m *Metrics, layer string) float64 {
	return testutil.ToFloat64(m.panics.WithLabelValues(layer))
}

func TestHandler(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		wantStatus int
		wantBody   string
		wantAbort  bool // ServeHTTP panics with http.ErrAbortHandler
		wantCount  float64
	}{{
		name:       "no panic passes through",
		handler:    func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusTeapot) },
		wantStatus: http.StatusTeapot,
	}, {
		name: "panic before the response answers 500 without the half-built headers",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Set-Cookie", "leaked=1")
			panic("boom")
		},
		wantStatus: http.StatusInternalServerError,
		wantBody:   `{"errorCode":"ERR_DIRECT_INVOKE","message":"internal error"}`,
		wantCount:  1,
	}, {
		name: "an invalid status code panics before the response starts: 500",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(1000) // net/http: panics before writing anything
		},
		wantStatus: http.StatusInternalServerError,
		wantBody:   `{"errorCode":"ERR_DIRECT_INVOKE","message":"internal error"}`,
		wantCount:  1,
	}, {
		name:      "panic after the status aborts",
		handler:   func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK); panic("boom") },
		wantAbort: true,
		wantCount: 1,
	}, {
		name: "panic after a body byte aborts",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte("x"))
			panic(errors.New("boom"))
		},
		wantAbort: true,
		wantCount: 1,
	}, {
		name: "panic after a flush aborts",
		handler: func(w http.ResponseWriter, _ *http.Request) {
			_ = http.NewResponseController(w).Flush()
			panic("boom")
		},
		wantAbort: true,
		wantCount: 1,
	}, {
		name:      "http.ErrAbortHandler passes through uncounted",
		handler:   func(http.ResponseWriter, *http.Request) { panic(http.ErrAbortHandler) },
		wantAbort: true,
	}, {
		name:       "panic(nil) is a panic too",
		handler:    func(http.ResponseWriter, *http.Request) { panic(nil) },
		wantStatus: http.StatusInternalServerError,
		wantBody:   `{"errorCode":"ERR_DIRECT_INVOKE","message":"internal error"}`,
		wantCount:  1,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, _ := newTestMetrics(t)
			var logs bytes.Buffer
			h := Handler("api", m, slog.New(slog.NewTextHandler(&logs, nil)), reply500)(tc.handler)
			w := httptest.NewRecorder()
			aborted := func() (aborted bool) {
				defer func() {
					if v := recover(); v != nil {
						if v != http.ErrAbortHandler {
							t.Fatalf("ServeHTTP panicked with %v, want http.ErrAbortHandler", v)
						}
						aborted = true
					}
				}()
				h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/x?token=secret", nil))
				return false
			}()
			if aborted != tc.wantAbort {
				t.Errorf("aborted = %v, want %v", aborted, tc.wantAbort)
			}
			if !tc.wantAbort {
				if w.Code != tc.wantStatus {
					t.Errorf("status = %d, want %d", w.Code, tc.wantStatus)
				}
				if tc.wantBody != "" && w.Body.String() != tc.wantBody {
					t.Errorf("body = %s, want %s", w.Body, tc.wantBody)
				}
				if c := w.Header().Get("Set-Cookie"); c != "" {
					t.Errorf("the error reply carries Set-Cookie %q from the panicked response", c)
				}
			}
			if got := panics(m, "api"); got != tc.wantCount {
				t.Errorf("skein_panics_total{layer=api} = %v, want %v", got, tc.wantCount)
			}
			if tc.wantCount > 0 {
				l := logs.String()
				for _, want := range []string{"level=ERROR", "panic recovered", "layer=api", "stack=", "recovery_test.go"} {
					if !strings.Contains(l, want) {
						t.Errorf("log lacks %q:\n%s", want, l)
					}
				}
				if strings.Contains(l, "secret") {
					t.Errorf("log carries the query string:\n%s", l)
				}
			}
		})
	}
}

func TestTrackingWriterInterim(t *testing.T) {
	w := &trackingWriter{ResponseWriter: httptest.NewRecorder()}
	w.WriteHeader(http.StatusEarlyHints)
	if w.sent {
		t.Error("a 103 counts as a started response, want interim")
	}
	w.WriteHeader(http.StatusOK)
	if !w.sent {
		t.Error("a 200 does not count as a started response")
	}
}

func TestHandlerReplyPanics(t *testing.T) {
	m, _ := newTestMetrics(t)
	h := Handler("api", m, slog.New(slog.DiscardHandler), func(http.ResponseWriter, *http.Request) { panic("reply") })(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("ServeHTTP panicked with %v, want http.ErrAbortHandler", v)
		}
		if got := panics(m, "api"); got != 2 {
			t.Errorf("skein_panics_total = %v, want 2 (the handler's and the reply's)", got)
		}
	}()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil))
}

// TestHandlerOverHTTP checks the layer on a real server: a panic before
// the response is a 500 the client reads, one after it a broken response
// the client cannot take for a whole one, and the server goes on serving.
// TestHandlerOverHTTP runs the layer on both servers the sidecar uses:
// net/http's, whose writer it wraps to track, and proxy/h1's, which tells
// by itself whether its response has started (Started).
func TestHandlerOverHTTP(t *testing.T) {
	for _, server := range []string{"net/http", "proxy/h1"} {
		t.Run(server, func(t *testing.T) { testHandlerOverHTTP(t, server) })
	}
}

func testHandlerOverHTTP(t *testing.T, server string) {
	m, _ := newTestMetrics(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/early", func(http.ResponseWriter, *http.Request) { panic("early") })
	mux.HandleFunc("/late", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = w.Write([]byte("hello"))
		panic("late")
	})
	mux.HandleFunc("/late-head", func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusOK) // taken, not yet sent
		panic("late head")
	})
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(Handler("api", m, slog.New(slog.DiscardHandler), reply500)(mux))
	srv.Config.ErrorLog = nil
	if server == "proxy/h1" {
		h := &h1.Server{Handler: srv.Config.Handler, Log: slog.New(slog.DiscardHandler)}
		go func() { _ = h.Serve(srv.Listener) }()
		defer func() { _ = h.Close() }()
		srv.URL = "http://" + srv.Listener.Addr().String()
	} else {
		srv.Start()
		defer srv.Close()
	}
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	resp, err := client.Get(srv.URL + "/early")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError || !strings.Contains(string(b), "ERR_DIRECT_INVOKE") {
		t.Errorf("/early: %d %s, want 500 with the error envelope", resp.StatusCode, b)
	}
	// POST: the client must not retry it on a fresh connection.
	resp, err = client.Post(srv.URL+"/late", "text/plain", nil)
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if err == nil {
		t.Error("/late: the client read a whole response, want an error (aborted)")
	}
	// A status taken counts as started: a 500 cannot follow a 200.
	resp, err = client.Get(srv.URL + "/late-head")
	if err == nil {
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			t.Errorf("/late-head: the client read a whole %d response, want an error (aborted)", resp.StatusCode)
		}
	}
	resp, err = client.Get(srv.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/ok after two panics: %d", resp.StatusCode)
	}
	if got := panics(m, "api"); got != 3 {
		t.Errorf("skein_panics_total = %v, want 3", got)
	}
}

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestRoundTripper(t *testing.T) {
	m, _ := newTestMetrics(t)
	rt := RoundTripper("app_channel", m, slog.New(slog.DiscardHandler))(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Path == "/ok" {
			return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
		}
		panic("boom")
	}))
	body := &closeCounter{Reader: strings.NewReader("x")}
	r := httptest.NewRequest(http.MethodPost, "http://app/x", body)
	resp, err := rt.RoundTrip(r)
	if resp != nil || !errors.Is(err, ErrPanic) {
		t.Fatalf("RoundTrip = %v, %v; want nil, an error wrapping ErrPanic", resp, err)
	}
	if got, want := err.Error(), "recovered panic in app_channel"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	if body.closed != 1 {
		t.Errorf("request body closed %d times, want 1", body.closed)
	}
	if got := panics(m, "app_channel"); got != 1 {
		t.Errorf("skein_panics_total{layer=app_channel} = %v, want 1", got)
	}
	if resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://app/ok", nil)); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("RoundTrip after a panic = %v, %v", resp, err)
	}

	abort := RoundTripper("x", m, slog.New(slog.DiscardHandler))(roundTripFunc(func(*http.Request) (*http.Response, error) {
		panic(http.ErrAbortHandler)
	}))
	func() {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler to pass through", v)
			}
		}()
		_, _ = abort.RoundTrip(httptest.NewRequest(http.MethodGet, "http://app/", nil))
	}()
	if got := panics(m, "x"); got != 0 {
		t.Errorf("http.ErrAbortHandler counted: %v", got)
	}
}

// TestLogRateLimit checks that a storm of panics logs one stack per
// second per layer, counts every one, and says how many it did not log.
func TestLogRateLimit(t *testing.T) {
	m, _ := newTestMetrics(t)
	var logs bytes.Buffer
	g := newGuard("api", m, slog.New(slog.NewTextHandler(&logs, nil)))
	now := time.Unix(1000, 0)
	g.now = func() time.Time { return now }
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for range 5 {
		g.report(r, "boom")
	}
	now = now.Add(logEvery)
	g.report(r, "boom")
	if n := strings.Count(logs.String(), "panic recovered"); n != 2 {
		t.Errorf("%d lines logged, want 2:\n%s", n, logs.String())
	}
	if !strings.Contains(logs.String(), "suppressed=4") {
		t.Errorf("second line does not report 4 suppressed:\n%s", logs.String())
	}
	if got := panics(m, "api"); got != 6 {
		t.Errorf("skein_panics_total = %v, want 6", got)
	}
}

// TestSeriesAtZero checks a layer's series exists before its first panic,
// so increase() alerts work from the start.
func TestSeriesAtZero(t *testing.T) {
	m, reg := newTestMetrics(t)
	Handler("peer", m, slog.New(slog.DiscardHandler), reply500)
	if n := testutil.CollectAndCount(reg, "skein_panics_total"); n != 1 {
		t.Errorf("%d series, want 1 at 0", n)
	}
}

// BenchmarkHandler is the cost of the layer on a request that does not
// panic: one small writer per request and a deferred recover.
func BenchmarkHandler(b *testing.B) {
	reg := prometheus.NewRegistry()
	h := Handler("api", NewMetrics(reg), slog.New(slog.DiscardHandler), reply500)(
		http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
}

// BenchmarkRoundTripper is the same for the client layer.
func BenchmarkRoundTripper(b *testing.B) {
	reg := prometheus.NewRegistry()
	resp := &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}
	rt := RoundTripper("app_channel", NewMetrics(reg), slog.New(slog.DiscardHandler))(
		roundTripFunc(func(*http.Request) (*http.Response, error) { return resp, nil }))
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	b.ReportAllocs()
	for b.Loop() {
		_, _ = rt.RoundTrip(r)
	}
}
