package apphealth

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var quiet = slog.New(slog.DiscardHandler)

// scripted answers probes from a list of verdicts, then with the last one
// forever. A verdict "hang" blocks until the probe's context ends.
type scripted struct {
	mu       sync.Mutex
	verdicts []string
	calls    int
}

func (s *scripted) Probe(ctx context.Context) bool {
	s.mu.Lock()
	v := s.verdicts[min(s.calls, len(s.verdicts)-1)]
	s.calls++
	s.mu.Unlock()
	if v == "hang" {
		<-ctx.Done()
		return false
	}
	return v == "ok"
}

// TestCheckerVerdicts runs a checker over scripted probe answers, in a
// synctest bubble so the interval passes instantly, and samples Healthy
// after each probe: Dapr's semantics, start unhealthy, Threshold failures
// in a row to turn unhealthy, one success to recover, a probe past the
// timeout is a failure.
func TestCheckerVerdicts(t *testing.T) {
	tests := []struct {
		name      string
		threshold int
		verdicts  []string
		want      []bool // Healthy after each probe
	}{
		{"starts unhealthy until a success", 3, []string{"fail", "fail", "ok"}, []bool{false, false, true}},
		{"threshold failures in a row", 3, []string{"ok", "fail", "fail", "fail", "fail"}, []bool{true, true, true, false, false}},
		{"one success recovers", 2, []string{"ok", "fail", "fail", "ok", "ok"}, []bool{true, true, false, true, true}},
		{"a success resets the count", 3, []string{"ok", "fail", "fail", "ok", "fail", "fail", "fail"}, []bool{true, true, true, true, true, true, false}},
		{"threshold 1", 1, []string{"ok", "fail", "ok"}, []bool{true, false, true}},
		{"timeout is a failure", 2, []string{"ok", "hang", "hang", "ok"}, []bool{true, true, false, true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				const interval = time.Second
				p := &scripted{verdicts: tt.verdicts}
				c := New(Config{Interval: interval, Timeout: interval / 4, Threshold: tt.threshold}, p, nil, quiet)
				if c.Healthy() {
					t.Fatal("healthy before the first probe")
				}
				ctx, cancel := context.WithCancel(t.Context())
				var wg sync.WaitGroup
				wg.Go(func() { c.Run(ctx) })
				var got []bool
				// Probes start at 0, 1s, 2s... and end within the timeout, 250ms:
				// sample in between.
				time.Sleep(interval / 2)
				for range tt.want {
					synctest.Wait()
					got = append(got, c.Healthy())
					time.Sleep(interval)
				}
				cancel()
				wg.Wait()
				if diff := cmp.Diff(tt.want, got); diff != "" {
					t.Errorf("Healthy after each probe (-want +got):\n%s", diff)
				}
			})
		})
	}
}

// TestCheckerSignals checks Checked (closed after the first verdict),
// Changed (one signal per change, coalesced) and the metrics of changes.
func TestCheckerSignals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		reg := prometheus.NewRegistry()
		m, err := NewMetrics(reg, "app-a")
		if err != nil {
			t.Fatal(err)
		}
		p := &scripted{verdicts: []string{"fail", "ok", "fail", "ok"}}
		c := New(Config{Interval: time.Second, Timeout: time.Second, Threshold: 1}, p, m, quiet)
		if got := testutil.ToFloat64(m.healthy); got != 0 {
			t.Errorf("skein_app_healthy before probing = %v, want 0", got)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		<-c.Checked()
		synctest.Wait()
		select {
		case <-c.Changed():
			t.Fatal("Changed signalled without a change (unhealthy at start, first probe failed)")
		default:
		}
		time.Sleep(time.Second) // second probe: ok
		synctest.Wait()
		<-c.Changed()
		if !c.Healthy() || testutil.ToFloat64(m.healthy) != 1 {
			t.Fatalf("after a success: Healthy %v, gauge %v; want true, 1", c.Healthy(), testutil.ToFloat64(m.healthy))
		}
		time.Sleep(2 * time.Second) // fail, then ok: two changes, one pending signal
		synctest.Wait()
		<-c.Changed()
		select {
		case <-c.Changed():
			t.Error("two signals pending; want them coalesced into one")
		default:
		}
		if !c.Healthy() {
			t.Error("unhealthy after the last probe succeeded")
		}
		want := map[string]float64{"healthy": 2, "unhealthy": 1}
		got := map[string]float64{}
		for s := range want {
			got[s] = testutil.ToFloat64(m.transitions.WithLabelValues("app-a", s))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("skein_app_health_transitions_total (-want +got):\n%s", diff)
		}
	})
}

// TestCheckerStopsOnCancel: Run returns when ctx ends, even during a
// probe, closes a closable prober, and a probe cut short by shutdown is
// not counted as a failure.
func TestCheckerStopsOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &closable{scripted: scripted{verdicts: []string{"ok", "hang"}}}
		c := New(Config{Interval: time.Second, Timeout: time.Second, Threshold: 1}, p, nil, quiet)
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() { c.Run(ctx); close(done) }()
		time.Sleep(1500 * time.Millisecond) // inside the second, hanging probe
		cancel()
		<-done
		if !c.Healthy() {
			t.Error("a probe cut short by shutdown made the app unhealthy")
		}
		if !p.closed {
			t.Error("prober not closed")
		}
	})
}

type closable struct {
	scripted
	closed bool
}

func (c *closable) Close() error { c.closed = true; return nil }

// TestRequire: the layer refuses calls with ErrUnhealthy while the app is
// unhealthy, closing the body and never calling the app; a nil checker
// passes everything.
func TestRequire(t *testing.T) {
	var reached int
	app := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reached++
		return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody}, nil
	})
	synctest.Test(t, func(t *testing.T) {
		p := &scripted{verdicts: []string{"ok", "fail"}}
		c := New(Config{Interval: time.Second, Timeout: time.Second, Threshold: 1}, p, nil, quiet)
		rt := Require(c)(app)
		call := func() error {
			body := &trackedBody{Reader: strings.NewReader("x")}
			req, _ := http.NewRequest(http.MethodPost, "http://app/m", body)
			resp, err := rt.RoundTrip(req)
			if err != nil {
				if !body.closed {
					t.Error("refused call's body not closed")
				}
				return err
			}
			resp.Body.Close()
			return nil
		}
		if err := call(); !errors.Is(err, ErrUnhealthy) {
			t.Errorf("before any probe: %v, want ErrUnhealthy", err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go c.Run(ctx)
		synctest.Wait()
		if err := call(); err != nil {
			t.Errorf("healthy: %v", err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if err := call(); !errors.Is(err, ErrUnhealthy) || err.Error() != "app is not in a healthy state" {
			t.Errorf("unhealthy: %v, want ErrUnhealthy with Dapr's text", err)
		}
	})
	if reached != 1 {
		t.Errorf("the app was called %d times, want 1 (only while healthy)", reached)
	}
	var nilChecker *Checker
	reached = 0
	req, _ := http.NewRequest(http.MethodGet, "http://app/m", nil)
	if _, err := Require(nilChecker)(app).RoundTrip(req); err != nil || reached != 1 || !nilChecker.Healthy() {
		t.Errorf("nil checker: err %v, reached %d, healthy %v; want a pass-through", err, reached, nilChecker.Healthy())
	}
}

type trackedBody struct {
	io.Reader
	closed bool
}

func (b *trackedBody) Close() error { b.closed = true; return nil }

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want []string // substrings of the error, none: valid
	}{
		{"zero is the defaults", Config{}, nil},
		{"explicit", Config{Path: "ready", Interval: 200 * time.Millisecond, Timeout: 200 * time.Millisecond, Threshold: 1}, nil},
		{"negative interval", Config{Interval: -time.Second}, []string{"interval: -1s is not positive"}},
		{"negative timeout", Config{Timeout: -time.Second}, []string{"timeout: -1s is not positive"}},
		{"timeout past interval", Config{Interval: time.Second, Timeout: 2 * time.Second}, []string{"timeout: 2s is longer than the interval 1s"}},
		{"threshold below 1", Config{Threshold: -1}, []string{"threshold: -1 is below 1"}},
		{"every problem", Config{Interval: -1, Threshold: -2, Path: "/a b%zz"}, []string{"interval", "threshold", "path"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if (err != nil) != (len(tt.want) > 0) {
				t.Fatalf("Validate() = %v, want errors %q", err, tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %v, want it to mention %q", err, w)
				}
			}
		})
	}
	got := Config{Path: "ready"}.WithDefaults()
	want := Config{Path: "/ready", Interval: 5 * time.Second, Timeout: 500 * time.Millisecond, Threshold: 3}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("WithDefaults (-want +got):\n%s", diff)
	}
}
