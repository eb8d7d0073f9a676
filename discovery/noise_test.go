package discovery

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestP2CTreatsNoiseAsEqual: latency gaps that are scheduling noise on one
// machine (a cold first call, an idle instance waking up) must not send a
// light load to one instance only; a real gap still does.
func TestP2CTreatsNoiseAsEqual(t *testing.T) {
	tests := []struct {
		name     string
		a, b     time.Duration // peak latencies observed
		wantBoth bool          // both get a fair share; else all go to b
	}{
		{"cold-start peak", 4 * time.Millisecond, 500 * time.Microsecond, true},
		{"idle wake-up", 2 * time.Millisecond, 250 * time.Microsecond, true},
		{"equal", time.Millisecond, time.Millisecond, true},
		{"really slower", 50 * time.Millisecond, time.Millisecond, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Now().UnixNano()
			es := eps("a", "b")
			es[0].observe(now, tt.a)
			es[1].observe(now, tt.b)
			counts := map[string]int{}
			var p P2C
			for range 1000 {
				counts[p.Pick(es, nil, now).Addr]++
			}
			if tt.wantBoth && (counts["a"] < 300 || counts["b"] < 300) {
				t.Errorf("picks %v, want at least 300 each", counts)
			}
			if !tt.wantBoth && counts["b"] != 1000 {
				t.Errorf("picks %v, want all on b", counts)
			}
		})
	}
}

// TestPickDoesNotSampleFirstAnswer: an instance's first answer includes
// connection setup and is not a latency sample; the next one is.
func TestPickDoesNotSampleFirstAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	res := NewResolver(staticSource{"b.default": {{AppID: "b", Namespace: "default", Address: addr}}}, slog.New(slog.DiscardHandler))
	rt := Pick(res, P2C{}, nil)(http.DefaultTransport)
	eps, err := res.Endpoints(context.Background(), Target{AppID: "b", Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	ep := eps[0]
	for i, wantSampled := range []bool{false, true} {
		resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://b.default/x", nil).WithContext(context.Background()))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		resp.Body.Close()
		ep.mu.Lock()
		sampled := ep.ewma > 0
		ep.mu.Unlock()
		if sampled != wantSampled {
			t.Errorf("after call %d: sampled = %v, want %v", i, sampled, wantSampled)
		}
	}
}
