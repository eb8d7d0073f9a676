package overload

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// answer is a transport that answers 200 at once.
var answer = roundTripFunc(func(r *http.Request) (*http.Response, error) {
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: r}, nil
})

// fail is a transport that fails at once, as for a name with no instance.
var fail = roundTripFunc(func(*http.Request) (*http.Response, error) {
	return nil, errors.New("no instance")
})

func targetHeader(r *http.Request) (string, bool) {
	t := r.Header.Get("Target")
	return t, t != ""
}

func call(t *testing.T, rt http.RoundTripper, target string) error {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://x/", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Target", target)
	resp, err := rt.RoundTrip(req)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

func TestRegistryLearnsOnlyTargetsThatAnswer(t *testing.T) {
	r := NewRegistry(Config{}, 0, nil)
	rt := r.Layer(targetHeader)(fail)
	for i := range 10_000 {
		_ = call(t, rt, fmt.Sprintf("nobody-%d", i))
	}
	if n := r.Len(); n != 0 {
		t.Errorf("%d limiters after calls to names nobody answers, want 0", n)
	}
	rt = r.Layer(targetHeader)(answer)
	for range 3 {
		if err := call(t, rt, "orders"); err != nil {
			t.Fatal(err)
		}
	}
	if n := r.Len(); n != 1 || r.Get("orders") == nil {
		t.Errorf("%d limiters (orders: %v) after answered calls, want orders' only", n, r.Get("orders"))
	}
}

func TestRegistryIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "orders")
	if err != nil {
		t.Fatal(err)
	}
	r := NewRegistry(Config{}, 100, m)
	rt := r.Layer(targetHeader)(answer)
	for i := range 1000 {
		if err := call(t, rt, fmt.Sprintf("app-%d", i)); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			_ = call(t, rt, "kept") // used often: never the least recently used
		}
	}
	if n := r.Len(); n != 100 {
		t.Errorf("%d limiters, want the bound, 100", n)
	}
	if r.Get("kept") == nil || r.Get("app-0") != nil || r.Get("app-999") == nil {
		t.Errorf("kept %v, app-0 %v, app-999 %v: want the least recently used gone", r.Get("kept"), r.Get("app-0"), r.Get("app-999"))
	}
	if n := testutil.CollectAndCount(reg, "skein_overload_limit"); n != 100 {
		t.Errorf("%d skein_overload_limit series, want 100 (evicted targets' go)", n)
	}
}

func TestLayerRefusesAndReports(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "orders")
	if err != nil {
		t.Fatal(err)
	}
	l := NewAppLimiter(Config{MinLimit: 2, MaxLimit: 2}, m, "orders")
	release := make(chan struct{})
	entered := make(chan struct{}, 2)
	var called atomic.Int64
	held := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		called.Add(1)
		entered <- struct{}{}
		<-release
		return answer(r)
	})
	rt := l.Layer()(held)
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- call(t, rt, "orders") }()
	}
	<-entered
	<-entered
	body := &closeCounter{Reader: strings.NewReader("payload")}
	req, _ := http.NewRequest(http.MethodPost, "http://x/", body)
	if _, err := rt.RoundTrip(req); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("third call: %v, want ErrOverloaded", err)
	}
	if body.closed != 1 {
		t.Errorf("refused call's body closed %d times, want 1", body.closed)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("admitted call: %v", err)
		}
	}
	if called := called.Load(); called != 2 {
		t.Errorf("transport called %d times, want 2 (the refusal never reaches it)", called)
	}
	want := `
# HELP skein_overload_refused_total Calls refused at once (503 OVERLOADED) because the adaptive concurrency limit was reached, by side (outbound: per target; app: the app channel).
# TYPE skein_overload_refused_total counter
skein_overload_refused_total{app_id="orders",dst_app_id="orders",side="app"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "skein_overload_refused_total"); err != nil {
		t.Error(err)
	}
}

func TestLayerSamplesAnswersNotFastFailures(t *testing.T) {
	for _, tc := range []struct {
		name   string
		next   http.RoundTripper
		sample bool
	}{
		{"answer", answer, true},
		{"a 503 answer", roundTripFunc(func(r *http.Request) (*http.Response, error) {
			return &http.Response{StatusCode: 503, Body: http.NoBody}, nil
		}), true},
		{"deadline", roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("try: %w", contextDeadline)
		}), true},
		{"refused connection", fail, false},
		{"another limiter's refusal", roundTripFunc(func(*http.Request) (*http.Response, error) {
			return nil, fmt.Errorf("peer: %w", ErrOverloaded)
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, c := newTestLimiter(Config{})
			rt := l.Layer()(tc.next)
			for range minWindowSamples {
				c.advance(l.cfg.Window)
				_ = call(t, rt, "x")
			}
			if got := l.MinRTT() != 0 || l.epoch.Load() > 0; got != tc.sample {
				t.Errorf("window closed: %v, want %v", got, tc.sample)
			}
			if l.InFlight() != 0 {
				t.Errorf("%d in flight after every call returned", l.InFlight())
			}
		})
	}
}

var contextDeadline = context.DeadlineExceeded

type closeCounter struct {
	io.Reader
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }

func TestLayerFreesTheSlotOnPanic(t *testing.T) {
	l := NewLimiter(Config{MinLimit: 1, MaxLimit: 1})
	rt := l.Layer()(roundTripFunc(func(*http.Request) (*http.Response, error) { panic("layer bug") }))
	func() {
		defer func() { _ = recover() }()
		_ = call(t, rt, "x")
	}()
	if n := l.InFlight(); n != 0 {
		t.Errorf("%d in flight after a panic below the layer, want 0", n)
	}
}
