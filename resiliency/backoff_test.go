package resiliency

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustCodes(t *testing.T, s string, lo, hi int) Codes {
	t.Helper()
	c, err := ParseCodes(s, lo, hi)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestRetryHTTP lists every matching case of contract §5.4.
func TestRetryHTTP(t *testing.T) {
	const daprList = "100,101,102,200,304,403,505,501-503,509,546,547"
	tests := []struct {
		list    string
		retried []int
		final   []int // not retried: the first response is final
	}{
		// resiliency/apps/retry/http.go
		{"", []int{500, 400, 404, 101, 199}, []int{200, 201, 301, 399}},
		{"200", nil, []int{200}},
		{"500", []int{500}, []int{404, 501}},
		{"400,500", []int{400, 500}, []int{404}},
		{"200-320", nil, []int{201, 301}},
		{"400-550", []int{404, 501}, []int{551}},
		{"200,400-500,501", []int{400, 401, 420, 500, 501}, []int{200, 301, 399, 502}},
		// resiliency/apps/retrymatchinghttp.go (100 and 102 reach the caller as 200)
		{daprList, []int{101, 403, 501, 502, 503, 505, 509, 546, 547}, []int{200, 204, 304, 404, 504, 548}},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			p := &RetryPolicy{HTTPCodes: mustCodes(t, tt.list, 100, 599)}
			var gotRetried, gotFinal []int
			for _, c := range append(append([]int{}, tt.retried...), tt.final...) {
				if p.RetryHTTP(c) {
					gotRetried = append(gotRetried, c)
				} else {
					gotFinal = append(gotFinal, c)
				}
			}
			if diff := cmp.Diff(tt.retried, gotRetried); diff != "" {
				t.Errorf("retried (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.final, gotFinal); diff != "" {
				t.Errorf("not retried (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRetryGRPC(t *testing.T) {
	tests := []struct {
		list           string
		retried, final []int
	}{
		{"", []int{1, 2, 14, 16}, []int{0}},
		// resiliency/apps/retrymatchinggrpc.go
		{"1,2,5-7", []int{1, 2, 5, 6, 7}, []int{0, 14, 20}},
	}
	for _, tt := range tests {
		t.Run(tt.list, func(t *testing.T) {
			p := &RetryPolicy{GRPCCodes: mustCodes(t, tt.list, 0, 16)}
			for _, c := range tt.retried {
				if !p.RetryGRPC(c) {
					t.Errorf("%d not retried", c)
				}
			}
			for _, c := range tt.final {
				if p.RetryGRPC(c) {
					t.Errorf("%d retried", c)
				}
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name string
		p    RetryPolicy
		rnd  float64
		want []time.Duration
	}{
		{"constant", RetryPolicy{Duration: 100 * ms}, 0.9, []time.Duration{100 * ms, 100 * ms, 100 * ms}},
		{"exponential middle", RetryPolicy{Exponential: true, MaxInterval: 60 * time.Second}, 0.5,
			[]time.Duration{500 * ms, 750 * ms, 1125 * ms, 1687500 * time.Microsecond}},
		{"exponential low", RetryPolicy{Exponential: true, MaxInterval: 60 * time.Second}, 0,
			[]time.Duration{250 * ms, 375 * ms, 562500 * time.Microsecond}},
		{"exponential capped", RetryPolicy{Exponential: true, MaxInterval: time.Second}, 0.5,
			[]time.Duration{500 * ms, 750 * ms, 1000 * ms, 1000 * ms}},
		{"exponential high capped", RetryPolicy{Exponential: true, MaxInterval: time.Second}, 0.75,
			[]time.Duration{625 * ms, 937500 * time.Microsecond, time.Second}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(0, 0)
			b := tt.p.NewBackoff(func() float64 { return tt.rnd }, func() time.Time { return now })
			var got []time.Duration
			for range tt.want {
				d, ok := b.Next()
				if !ok {
					t.Fatal("stopped early")
				}
				got = append(got, d.Round(time.Microsecond/4))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("delays (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBackoffMaxElapsed(t *testing.T) {
	now := time.Unix(0, 0)
	b := (&RetryPolicy{Exponential: true, MaxInterval: time.Second}).NewBackoff(nil, func() time.Time { return now })
	if _, ok := b.Next(); !ok {
		t.Fatal("stopped at once")
	}
	now = now.Add(ExponentialMaxElapsedTime + time.Second)
	if _, ok := b.Next(); ok {
		t.Error("exponential back-off went on after 15 minutes")
	}
	c := (&RetryPolicy{Duration: time.Second}).NewBackoff(nil, func() time.Time { return now })
	now = now.Add(time.Hour)
	if _, ok := c.Next(); !ok {
		t.Error("constant back-off stopped")
	}
}
