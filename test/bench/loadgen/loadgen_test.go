package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/test/bench/result"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name string
		stat string
		want uint64
	}{
		{"plain", "42 (skein) S 1 42 42 0 -1 4194560 100 0 0 0 250 31 0 0 20 0 9 0 100 1000 200", 281},
		{"name with spaces and parens", "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 5 6 0 0 20 0 1 0 1 1 1", 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStatTicks([]byte(tt.stat))
			if err != nil || got != tt.want {
				t.Errorf("parseStatTicks = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
	if _, err := parseStatTicks([]byte("1 (x) S 1")); err == nil {
		t.Error("short stat: no error")
	}
}

func TestParseStatusMem(t *testing.T) {
	hwm, rss, err := parseStatusMem([]byte("Name:\tskein\nVmPeak:\t 1000 kB\nVmHWM:\t   20480 kB\nVmRSS:\t   18000 kB\n"))
	if err != nil || hwm != 20480 || rss != 18000 {
		t.Errorf("parseStatusMem = %d, %d, %v; want 20480, 18000, nil", hwm, rss, err)
	}
	if _, _, err := parseStatusMem([]byte("Name:\tx\n")); err == nil {
		t.Error("missing fields: no error")
	}
}

func TestPercentiles(t *testing.T) {
	ds := make([]time.Duration, 1000)
	for i := range ds {
		ds[len(ds)-1-i] = time.Duration(i+1) * time.Millisecond // 1..1000 ms, reversed
	}
	got := percentiles(ds)
	want := result.Percentiles{P50: 500, P90: 900, P99: 990, P999: 999, Max: 1000}
	if got != want {
		t.Errorf("percentiles = %+v, want %+v", got, want)
	}
	if got := percentiles(nil); got != (result.Percentiles{}) {
		t.Errorf("percentiles(nil) = %+v", got)
	}
}

func TestOwnProcess(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	if _, err := cpuTicks(os.Getpid()); err != nil {
		t.Error(err)
	}
	if hwm, _, err := memKiB(os.Getpid()); err != nil || hwm <= 0 {
		t.Errorf("memKiB: %d, %v", hwm, err)
	}
}

// TestOpenLoop checks the generator keeps its schedule against a fast
// server and counts errors, with both clients.
func TestOpenLoop(t *testing.T) {
	srv := httptest.NewServer(fixedBody(1024))
	defer srv.Close()
	for _, client := range []string{"raw", "std"} {
		t.Run(client, func(t *testing.T) {
			l := &loader{r: newRequester(t, client, srv.URL, nil, 8), expect: 1024}
			p := l.openLoop(500, 400*time.Millisecond, 8)
			if p.requests() != 200 || p.errors != 0 {
				t.Fatalf("requests %d errors %d (%s), want 200 and 0", p.requests(), p.errors, p.firstErr)
			}
			if p.elapsed < 390*time.Millisecond || p.elapsed > 2*time.Second {
				t.Errorf("elapsed %v for 400 ms of schedule", p.elapsed)
			}
			bad := &loader{r: newRequester(t, client, srv.URL, nil, 2), expect: 10}
			if p := bad.closedLoop(50*time.Millisecond, 2); p.errors == 0 || p.errors != p.requests() {
				t.Errorf("wrong size: %d errors of %d", p.errors, p.requests())
			}
		})
	}
}

func newRequester(t *testing.T, client, url string, body []byte, conns int) requester {
	t.Helper()
	if client == "std" {
		return newStdClient(url, body, conns, 5*time.Second)
	}
	g, err := newRawClient(url, body, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// TestRawClient checks the minimal client against net/http's server: fixed
// length, chunked, no content, Connection: close, and reuse.
func TestRawClient(t *testing.T) {
	var conns atomic.Int32
	mux := http.NewServeMux()
	mux.Handle("/fixed", fixedBody(1024))
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 3 {
			_, _ = w.Write(make([]byte, 700))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/empty", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	mux.HandleFunc("/close", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = w.Write([]byte("bye"))
	})
	mux.HandleFunc("/missing", http.NotFound)
	srv := httptest.NewUnstartedServer(mux)
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	tests := []struct {
		path       string
		wantStatus int
		wantBytes  int64
		wantConns  int32 // connections opened by the three calls
	}{
		{"/fixed?x=1", 200, 1024, 1},
		{"/chunked", 200, 2100, 1},
		{"/empty", 204, 0, 1},
		{"/close", 200, 3, 3},
		{"/missing", 404, 19, 1},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			g, err := newRawClient(srv.URL+tt.path, nil, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			before := conns.Load()
			for range 3 {
				status, n, err := g.do()
				if err != nil || status != tt.wantStatus || n != tt.wantBytes {
					t.Fatalf("get = %d, %d bytes, %v; want %d, %d bytes", status, n, err, tt.wantStatus, tt.wantBytes)
				}
			}
			if got := conns.Load() - before; got != tt.wantConns {
				t.Errorf("%d connections opened, want %d", got, tt.wantConns)
			}
		})
	}
}

func TestParseCtxSwitches(t *testing.T) {
	b := []byte("Name:\tskein\nvoluntary_ctxt_switches:\t120\nnonvoluntary_ctxt_switches:\t7\n")
	if got := parseCtxSwitches(b); got != 127 {
		t.Errorf("parseCtxSwitches = %d, want 127", got)
	}
	if _, err := ctxSwitches(os.Getpid()); err != nil {
		t.Error(err)
	}
}

func TestParseMachineTicks(t *testing.T) {
	idle, irq, steal, ncpu, err := parseMachineTicks([]byte("cpu  100 5 50 1000 20 3 2 7 0 0\ncpu0 1 2 3 4 5 6 7 8 9 10\ncpu1 1 2 3 4 5 6 7 8 9 10\nintr 5\n"))
	if err != nil || idle != 1020 || irq != 5 || steal != 7 || ncpu != 2 {
		t.Errorf("parseMachineTicks = %d, %d, %d, %d, %v; want 1020, 5, 7, 2, nil", idle, irq, steal, ncpu, err)
	}
}

// TestPostBody checks that both clients send the whole body with every
// request and that the backend reads it all: three 1 MiB POSTs reuse one
// connection.
func TestPostBody(t *testing.T) {
	const size = 1 << 20
	var got atomic.Int64
	var conns atomic.Int32
	app := fixedBody(1024)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.ContentLength != size {
			http.Error(w, "want a POST of 1 MiB", http.StatusBadRequest)
			return
		}
		r.Body = countingBody{r.Body, &got}
		app.ServeHTTP(w, r)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	for _, client := range []string{"raw", "std"} {
		t.Run(client, func(t *testing.T) {
			got.Store(0)
			before := conns.Load()
			l := &loader{r: newRequester(t, client, srv.URL+"/bench", requestBody(size), 1), expect: 1024}
			for range 3 {
				if err := l.once(); err != nil {
					t.Fatal(err)
				}
			}
			if n := got.Load(); n != 3*size {
				t.Errorf("backend read %d body bytes, want %d", n, 3*size)
			}
			if n := conns.Load() - before; n != 1 {
				t.Errorf("%d connections for 3 POSTs, want 1", n)
			}
		})
	}
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// TestCommandsWriteResults runs idle and a short POST rate phase against a
// backend, watching this process, and reads the JSON lines back.
func TestCommandsWriteResults(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("no /proc")
	}
	srv := httptest.NewServer(fixedBody(100))
	defer srv.Close()
	out := filepath.Join(t.TempDir(), "raw.jsonl")
	self := "me=" + strconv.Itoa(os.Getpid())
	common := []string{"-scenario", "direct", "-run", "2", "-url", srv.URL + "/bench", "-expect-bytes", "100", "-watch", self, "-out", out}
	if err := cmdIdle(append([]string{"-calls", "3"}, common...), io.Discard); err != nil {
		t.Fatal(err)
	}
	rate := append([]string{"-rate", "100", "-duration", "100ms", "-warmup", "0", "-conns", "4", "-body-bytes", "4096", "-mode", "post"}, common...)
	if err := cmdLoad(rate, modeRate, io.Discard); err != nil {
		t.Fatal(err)
	}
	ps, err := result.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Scenario, Mode, Method string
		Run, Requests, Errors  int
		RequestBytes           int64
		Procs                  int
		MemoryRead             bool
	}
	var got []summary
	for _, p := range ps {
		got = append(got, summary{p.Scenario, p.Mode, p.Method, p.Run, p.Requests, p.Errors, p.RequestBytes,
			len(p.Procs), len(p.Procs) == 1 && p.Procs[0].RSSKiB > 0 && p.Procs[0].HWMKiB >= p.Procs[0].RSSKiB})
	}
	want := []summary{
		{"direct", result.ModeIdle, "GET", 2, 3, 0, 0, 1, true},
		{"direct", result.ModePost, "POST", 2, 10, 0, 4096, 1, true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("results (-want +got):\n%s", diff)
	}
}
