package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestRefusedTotals(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `# HELP skein_overload_refused_total Calls refused.
# TYPE skein_overload_refused_total counter
skein_overload_refused_total{app_id="b",side="outbound"} 7
skein_overload_refused_total{app_id="c",side="outbound"} 3
skein_overload_refused_total{app_id="a",side="app"} 2
skein_overload_limit{app_id="b",side="outbound"} 30
`)
	}))
	defer srv.Close()
	got, err := refusedTotals(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["outbound"] != 10 || got["app"] != 2 {
		t.Errorf("refusedTotals = %v, want outbound 10, app 2", got)
	}
}

// TestSlowServesWorkersAtATime: the slow backend never serves more than
// -workers requests at once; the others wait and are all served.
func TestSlowServesWorkersAtATime(t *testing.T) {
	var now, most atomic.Int64
	h := slow(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := now.Add(1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(time.Millisecond) // overlap with the others, if the bound let them in
		now.Add(-1)
	}), 5*time.Millisecond, 3)
	srv := httptest.NewServer(h)
	defer srv.Close()
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 12 {
		wg.Go(func() {
			resp, err := http.Get(srv.URL)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() != 12 {
		t.Errorf("%d of 12 requests answered 200", ok.Load())
	}
	if m := most.Load(); m > 3 {
		t.Errorf("%d requests served at once, want at most 3", m)
	}
}
