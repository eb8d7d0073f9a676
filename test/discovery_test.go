package test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestPeerHopIsPooled is acceptance point 6, sidecar to sidecar: calls
// reuse a few kept-alive connections. With the default transport
// (keep-alive HTTP/1.1) a connection carries one call at a time, so
// overlapping calls open up to as many connections as calls overlap, and
// the pool keeps them: a second wave opens none. With --peer-transport h2
// calls are multiplexed on a handful of connections. The count is
// cumulative over the subtests of a transport.
func TestPeerHopIsPooled(t *testing.T) {
	for _, tr := range []struct {
		name  string
		flags []string
		// most connections after each wave
		maxConns func(concurrency int) float64
		// calls overlapping at the app prove multiplexing
		multiplexed bool
	}{
		{"h1", nil, func(c int) float64 { return float64(c) }, false},
		{"h2", []string{"--peer-transport", "h2"}, func(int) float64 { return 4 }, true},
	} {
		t.Run(tr.name, func(t *testing.T) {
			m := newMesh(t)
			bPort, _ := m.app("b")
			b := m.sidecar("app-b", bPort)
			a := m.sidecar("app-a", 0, tr.flags...)
			tests := []struct {
				name        string
				calls       int
				concurrency int
				method      string
			}{
				{"1000 sequential calls", 1000, 1, "echo"},
				{"200 overlapping calls", 200, 50, "slow?ms=50"},
				{"200 more overlapping calls", 200, 50, "slow?ms=50"},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					// Watch how many calls the app holds at once: more than
					// there are connections means they were multiplexed.
					var peak atomic.Int64
					done := make(chan struct{})
					var watch sync.WaitGroup
					watch.Go(func() {
						for {
							select {
							case <-done:
								return
							case <-time.After(5 * time.Millisecond):
							}
							if n := appInflight(t, bPort); n > peak.Load() {
								peak.Store(n)
							}
						}
					})
					failures := callMany(t, tt.calls, tt.concurrency, a.invokeURL("app-b", tt.method), nil)
					close(done)
					watch.Wait()
					if len(failures) > 0 {
						t.Fatalf("%d of %d calls failed, first: %s", len(failures), tt.calls, failures[0])
					}
					opened := b.metric(t, "skein_peer_connections_opened_total")
					t.Logf("callee accepted %v peer connections so far; up to %d calls at once", opened, peak.Load())
					max := tr.maxConns(tt.concurrency)
					if tr.multiplexed && tt.concurrency > 1 && float64(peak.Load()) <= max {
						t.Errorf("at most %d calls overlapped at the app, want more than %v to show multiplexing", peak.Load(), max)
					}
					if opened < 1 || opened > max {
						t.Errorf("skein_peer_connections_opened_total = %v, want 1..%v", opened, max)
					}
				})
			}
		})
	}
}

// TestAppHopIsPooled is acceptance point 6, sidecar to app: calls reach the
// app over a few kept-alive connections, HTTP/1.1 by default and HTTP/2
// with --app-protocol h2c. One app sits behind two callee sidecars.
func TestAppHopIsPooled(t *testing.T) {
	const calls, maxConns = 200, 4
	m := newMesh(t)
	bPort, _ := m.app("b")
	m.sidecar("b-http", bPort)
	m.sidecar("b-h2c", bPort, "--app-protocol", "h2c")
	a := m.sidecar("app-a", 0)

	tests := []struct {
		target    string
		wantProto string
	}{
		{"b-http", "HTTP/1.1"},
		{"b-h2c", "HTTP/2.0"},
	}
	for _, tt := range tests {
		t.Run(tt.target, func(t *testing.T) {
			_, body := do(t, newRequest(t, http.MethodGet, a.invokeURL(tt.target, "echo"), nil))
			var e struct{ Proto string }
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatalf("not an echo: %v: %s", err, body)
			}
			if e.Proto != tt.wantProto {
				t.Errorf("app got %s, want %s", e.Proto, tt.wantProto)
			}
			remotes := map[string]int{}
			for i := range calls {
				resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL(tt.target, "conn"), nil))
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("call %d: status %d: %s", i, resp.StatusCode, body)
				}
				remotes[string(body)]++
			}
			t.Logf("app saw %d connection(s): %v", len(remotes), remotes)
			if len(remotes) > maxConns {
				t.Errorf("%d calls came over %d connections, want at most %d", calls, len(remotes), maxConns)
			}
		})
	}
}

// TestDiscoveryFindsNewSidecar is acceptance point 7: with nothing but a
// shared $SKEIN_HOME, a sidecar started later is callable from an earlier
// one, and the other way, within 2 seconds of becoming ready.
func TestDiscoveryFindsNewSidecar(t *testing.T) {
	m := newMesh(t)
	aPort, _ := m.app("a")
	a := m.sidecar("app-a", aPort)

	// Before b exists the call fails: a has no configuration to find it by.
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "echo"), nil))
	if got := decodeError(t, resp, body).reason(); resp.StatusCode != http.StatusInternalServerError || got != "APP_NOT_FOUND" {
		t.Fatalf("before b starts: %d %s, want 500 APP_NOT_FOUND", resp.StatusCode, got)
	}

	bPort, _ := m.app("b")
	b := m.sidecarNoWait("app-b", bPort)
	b.waitReady(t)
	ready := time.Now()
	tests := []struct {
		name     string
		from     *sidecar
		to, want string
	}{
		{"earlier calls later", a, "app-b", "b"},
		{"later calls earlier", b, "app-a", "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			left := 2*time.Second - time.Since(ready)
			waitFor(t, left, tt.to+" callable from "+tt.from.appID+" within 2s of b's readiness", func() bool {
				resp, err := http.Get(tt.from.invokeURL(tt.to, "echo"))
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK && resp.Header.Get("X-Instance") == tt.want
			})
			t.Logf("callable %s after b became ready", time.Since(ready).Round(time.Millisecond))
		})
	}
}

// TestDiscoveryLoadSharing is acceptance point 7: two instances of one app
// id each get at least 30% of the calls.
func TestDiscoveryLoadSharing(t *testing.T) {
	const calls = 200
	m := newMesh(t)
	for _, name := range []string{"b1", "b2"} {
		port, _ := m.app(name)
		m.sidecar("app-b", port)
	}
	a := m.sidecar("app-a", 0)

	var mu sync.Mutex
	got := map[string]int{}
	failures := callMany(t, calls, 1, a.invokeURL("app-b", "echo"), func(instance string) {
		mu.Lock()
		got[instance]++
		mu.Unlock()
	})
	if len(failures) > 0 {
		t.Fatalf("%d of %d calls failed, first: %s", len(failures), calls, failures[0])
	}
	t.Logf("calls per instance: %v", got)
	for _, name := range []string{"b1", "b2"} {
		if got[name]*10 < calls*3 {
			t.Errorf("instance %s got %d of %d calls, want at least 30%%", name, got[name], calls)
		}
	}
}

// TestDiscoveryInstanceLeaves is acceptance point 7: an instance whose
// sidecar stops cleanly leaves the callers' rotation at once, a killed one
// within 5 seconds, and calls running all the while never fail.
func TestDiscoveryInstanceLeaves(t *testing.T) {
	tests := []struct {
		name   string
		sig    syscall.Signal
		within time.Duration
	}{
		{"SIGTERM", syscall.SIGTERM, time.Second}, // one resolver refresh (250 ms) plus slack
		{"SIGKILL", syscall.SIGKILL, 5 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newMesh(t)
			p1, _ := m.app("b1")
			m.sidecar("app-b", p1)
			p2, _ := m.app("b2")
			b2 := m.sidecar("app-b", p2)
			a := m.sidecar("app-a", 0)

			var served [2]atomic.Int64 // by b1, b2
			var mu sync.Mutex
			var failures []string
			ctx, stop := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for range 2 {
				wg.Go(func() {
					client := &http.Client{Timeout: 10 * time.Second}
					for ctx.Err() == nil {
						resp, err := client.Get(a.invokeURL("app-b", "echo"))
						if err != nil {
							mu.Lock()
							failures = append(failures, err.Error())
							mu.Unlock()
							continue
						}
						body, _ := io.ReadAll(resp.Body)
						resp.Body.Close()
						switch inst := resp.Header.Get("X-Instance"); {
						case resp.StatusCode != http.StatusOK:
							mu.Lock()
							failures = append(failures, fmt.Sprintf("%d: %s", resp.StatusCode, body))
							mu.Unlock()
						case inst == "b1":
							served[0].Add(1)
						case inst == "b2":
							served[1].Add(1)
						}
					}
				})
			}
			defer func() { stop(); wg.Wait() }()

			waitFor(t, 5*time.Second, "both instances serving", func() bool {
				return served[0].Load() > 10 && served[1].Load() > 10
			})
			if n := len(a.metadata(t)["instances"].(map[string]any)["app-b.default"].([]any)); n != 2 {
				t.Fatalf("a knows %d instances of app-b, want 2", n)
			}
			b2.signal(tt.sig)
			sent := time.Now()
			waitFor(t, tt.within, "b2 leaving a's rotation", func() bool {
				ins, _ := a.metadata(t)["instances"].(map[string]any)["app-b.default"].([]any)
				return len(ins) == 1
			})
			t.Logf("left the rotation %s after %s", time.Since(sent).Round(time.Millisecond), tt.name)
			// Calls picked before a noticed may still be answered; after a
			// few more calls only b1 answers.
			byB1 := served[0].Load()
			waitFor(t, 5*time.Second, "20 more calls served", func() bool { return served[0].Load() > byB1+20 })
			byB2, byB1 := served[1].Load(), served[0].Load()
			waitFor(t, 5*time.Second, "100 more calls served", func() bool { return served[0].Load() > byB1+100 })
			stop()
			wg.Wait()
			if got := served[1].Load(); got != byB2 {
				t.Errorf("b2 served %d calls after leaving the rotation", got-byB2)
			}
			if len(failures) > 0 {
				t.Errorf("%d calls failed while b2 stopped, first: %s", len(failures), failures[0])
			}
			if tt.sig == syscall.SIGTERM {
				if code := b2.exitCode(t, 10*time.Second); code != 0 {
					t.Errorf("b2's sidecar exited %d after SIGTERM, want 0", code)
				}
			}
		})
	}
}

// callMany makes n GET calls to url with the given concurrency and returns
// a description of each failure; seen, if not nil, gets the X-Instance of
// every successful answer.
func callMany(t *testing.T, n, concurrency int, url string, seen func(instance string)) []string {
	t.Helper()
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: concurrency},
	}
	defer client.CloseIdleConnections()
	var next atomic.Int64
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range concurrency {
		wg.Go(func() {
			for next.Add(1) <= int64(n) {
				resp, err := client.Get(url)
				if err != nil {
					mu.Lock()
					failures = append(failures, err.Error())
					mu.Unlock()
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%d: %s", resp.StatusCode, body))
					mu.Unlock()
					continue
				}
				if seen != nil {
					seen(resp.Header.Get("X-Instance"))
				}
			}
		})
	}
	wg.Wait()
	return failures
}

// appInflight asks the test app directly how many /slow calls it holds.
func appInflight(t *testing.T, appPort int) int64 {
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(appPort) + "/inflight")
	if err != nil {
		t.Errorf("inflight: %v", err)
		return 0
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}
