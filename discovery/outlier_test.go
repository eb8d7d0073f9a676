package discovery

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestEjectionDoublesUpToTheCap(t *testing.T) {
	od := OutlierDetection{Consecutive: 5, BaseEjection: 30 * time.Second, MaxEjection: 5 * time.Minute}
	e := &Endpoint{Addr: "a"}
	now := time.Now().UnixNano()
	var got []time.Duration
	for range 6 {
		var d time.Duration
		for i := range 5 {
			d = e.outcome(now, true, &od)
			if i < 4 && d != 0 {
				t.Fatalf("ejected after %d failures", i+1)
			}
		}
		if !e.ejected(now) || e.ejected(now+int64(d)) {
			t.Fatalf("ejected for %s: out at once %v, back after it %v", d, e.ejected(now), !e.ejected(now+int64(d)))
		}
		got = append(got, d)
		now += int64(d) + int64(time.Second) // back, and failing again soon
	}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 5 * time.Minute, 5 * time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("ejections %v, want %v", got, want)
	}
	// Healthy for longer than the cap: the next ejection starts from the base.
	now += int64(6 * time.Minute)
	for range 4 {
		e.outcome(now, true, &od)
	}
	if d := e.outcome(now, true, &od); d != 30*time.Second {
		t.Errorf("after a long healthy spell ejected for %s, want 30s", d)
	}
}

func TestSuccessResetsTheRun(t *testing.T) {
	od := DefaultOutlierDetection
	e := &Endpoint{Addr: "a"}
	now := time.Now().UnixNano()
	for range 20 {
		for range 4 {
			e.outcome(now, true, &od)
		}
		e.outcome(now, false, &od)
	}
	if e.ejected(now) {
		t.Error("ejected although no 5 failures were consecutive")
	}
	off := OutlierDetection{}
	for range 50 {
		if e.outcome(now, true, &off) != 0 {
			t.Fatal("ejected with outlier detection off")
		}
	}
}

func TestOutlierDetectionValidate(t *testing.T) {
	for _, od := range []OutlierDetection{
		{Consecutive: -1},
		{Consecutive: 5},
		{Consecutive: 5, BaseEjection: time.Minute, MaxEjection: time.Second},
	} {
		if od.Validate() == nil {
			t.Errorf("%+v accepted", od)
		}
	}
	for _, od := range []OutlierDetection{{}, DefaultOutlierDetection} {
		if err := od.Validate(); err != nil {
			t.Errorf("%+v: %v", od, err)
		}
	}
}

// TestPickerEjectsFailingInstance: one of two instances answers 500; after
// five consecutive failures it gets no calls while the other serves, and
// when both fail every call still goes somewhere.
func TestPickerEjectsFailingInstance(t *testing.T) {
	var badCalls, goodCalls int
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badCalls++
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer bad.Close()
	goodStatus := http.StatusOK
	good := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		goodCalls++
		w.WriteHeader(goodStatus)
	}))
	defer good.Close()
	src := staticSource{"b.default": {
		{AppID: "b", Namespace: "default", Address: strings.TrimPrefix(bad.URL, "http://")},
		{AppID: "b", Namespace: "default", Address: strings.TrimPrefix(good.URL, "http://")},
	}}
	reg := prometheus.NewRegistry()
	res := NewResolver(src, slog.New(slog.DiscardHandler), WithMetrics(reg, "a"))
	rt := Pick(res, prefer(strings.TrimPrefix(bad.URL, "http://")), nil)(http.DefaultTransport)
	call := func() int {
		req, _ := http.NewRequest(http.MethodGet, "http://b.default/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for range 20 {
		call()
	}
	if badCalls != 5 || goodCalls != 15 {
		t.Errorf("bad instance got %d calls, good %d; want 5 and 15", badCalls, goodCalls)
	}
	if n := testutil.ToFloat64(res.metrics.total.WithLabelValues("a", "b")); n != 1 {
		t.Errorf("ejections counted %v, want 1", n)
	}
	if err := testutil.CollectAndCompare(res.metrics, strings.NewReader(`
# HELP skein_discovery_ejected_endpoints Instances of the target app id currently ejected by outlier detection.
# TYPE skein_discovery_ejected_endpoints gauge
skein_discovery_ejected_endpoints{app_id="a",dst_app_id="b"} 1
`), "skein_discovery_ejected_endpoints"); err != nil {
		t.Error(err)
	}
	// Now the other fails too: after its five failures both are out, and
	// calls go to the least bad (the one ejected first) rather than nowhere.
	goodStatus = http.StatusServiceUnavailable
	badCalls, goodCalls = 0, 0
	for range 5 {
		call()
	}
	if goodCalls != 5 {
		t.Fatalf("second instance got %d of 5 calls", goodCalls)
	}
	for range 3 {
		if code := call(); code != http.StatusInternalServerError {
			t.Errorf("all ejected: got %d, want the least bad instance's 500", code)
		}
	}
	if badCalls != 3 {
		t.Errorf("all ejected: least bad instance got %d of 3 calls", badCalls)
	}
}

// TestPickerDoesNotEjectRateLimitingInstance: an instance answering 429
// (its rate limit refusing this caller's excess) is not failing; outlier
// detection counts only 5xx, so it keeps its share (proxy/ratelimit.go).
func TestPickerDoesNotEjectRateLimitingInstance(t *testing.T) {
	var calls int
	limiting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer limiting.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer other.Close()
	src := staticSource{"b.default": {
		{AppID: "b", Namespace: "default", Address: strings.TrimPrefix(limiting.URL, "http://")},
		{AppID: "b", Namespace: "default", Address: strings.TrimPrefix(other.URL, "http://")},
	}}
	reg := prometheus.NewRegistry()
	res := NewResolver(src, slog.New(slog.DiscardHandler), WithMetrics(reg, "a"))
	rt := Pick(res, prefer(strings.TrimPrefix(limiting.URL, "http://")), nil)(http.DefaultTransport)
	for range 20 {
		req, _ := http.NewRequest(http.MethodGet, "http://b.default/x", nil)
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if calls != 20 {
		t.Errorf("the rate-limiting instance got %d of 20 calls, want all (not ejected)", calls)
	}
	if n := testutil.ToFloat64(res.metrics.total.WithLabelValues("a", "b")); n != 0 {
		t.Errorf("ejections counted %v, want 0", n)
	}
}
