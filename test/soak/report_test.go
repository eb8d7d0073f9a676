package main

import (
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/bench/result"
)

// TestJudge pins the soak's verdicts: flat figures with noise pass, a
// figure that grows past its margin after the warm-up fails, and so do a
// failed call, a short count and no spans.
func TestJudge(t *testing.T) {
	o := options{duration: 2 * time.Minute, interval: 10 * time.Second, warmup: 30 * time.Second, rate: 10}
	samples := func(grow func(i int) float64) []sample {
		var ss []sample
		for i := range 13 {
			var s sample
			s.at = time.Duration(i) * o.interval
			for sc := range 2 {
				s.v[sc] = [nFigures]float64{20 + float64(i%2), 12 + float64(i%3), 60, 30}
			}
			s.v[0][figGoroutines] += grow(i)
			ss = append(ss, s)
		}
		return ss
	}
	ok := result.Phase{Requests: 1200}
	for _, tc := range []struct {
		name    string
		r       report
		failing string // "" : passes
	}{
		{"flat", report{opts: o, samples: samples(func(int) float64 { return 0 }), load: ok, spans: 1}, ""},
		{"growth within the margin", report{opts: o, samples: samples(func(i int) float64 { return float64(i) }), load: ok, spans: 1}, ""},
		{"a leak", report{opts: o, samples: samples(func(i int) float64 { return 10 * float64(i) }), load: ok, spans: 1}, "soak-a: goroutines grew"},
		{"growth in the warm-up only", report{opts: o, samples: samples(func(i int) float64 { return 500 * float64(min(i, 3)) }), load: ok, spans: 1}, ""},
		{"a failed call", report{opts: o, samples: samples(func(int) float64 { return 0 }), load: result.Phase{Requests: 1200, Errors: 1, FirstError: "status 500"}, spans: 1}, "1 of 1200 calls failed"},
		{"calls missing", report{opts: o, samples: samples(func(int) float64 { return 0 }), load: result.Phase{Requests: 1100}, spans: 1}, "1100 calls made, want 1200"},
		{"no spans", report{opts: o, samples: samples(func(int) float64 { return 0 }), load: ok}, "no span"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.judge()
			got := strings.Join(tc.r.failures, "; ")
			if tc.failing == "" && got != "" || tc.failing != "" && !strings.Contains(got, tc.failing) {
				t.Errorf("failures %q, want %q", got, tc.failing)
			}
		})
	}
}
