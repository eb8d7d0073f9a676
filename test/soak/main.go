package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/skeinmesh/skein/test/bench/result"
	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "soak:", err)
		os.Exit(1)
	}
}

// options are the flags.
type options struct {
	skein, loadgen, out string
	duration, interval  time.Duration
	warmup              time.Duration
	rate                float64
	conns               int
	failEvery           int
}

func parseFlags() (options, error) {
	var o options
	dur := 30 * time.Minute
	if v := os.Getenv("SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return o, fmt.Errorf("SOAK_DURATION: %w", err)
		}
		dur = d
	}
	flag.StringVar(&o.skein, "skein", "bin/skein", "the skein binary")
	flag.StringVar(&o.loadgen, "loadgen", "bin/loadgen", "test/bench/loadgen, built")
	flag.StringVar(&o.out, "out", "soak-results", "directory for report.md, samples.csv and soak.svg")
	flag.DurationVar(&o.duration, "duration", dur, "how long the load runs (env SOAK_DURATION)")
	flag.DurationVar(&o.interval, "interval", 10*time.Second, "sampling interval")
	flag.DurationVar(&o.warmup, "warmup", 0, "samples before this are not judged (0: a quarter of -duration, at most 5m)")
	flag.Float64Var(&o.rate, "rate", 1000, "requests per second")
	flag.IntVar(&o.conns, "conns", 32, "most requests in flight (loadgen's connections)")
	flag.IntVar(&o.failEvery, "fail-every", 200, "the app answers 503 to every n-th request, which the caller retries (0: never)")
	flag.Parse()
	if o.warmup == 0 {
		o.warmup = min(o.duration/4, 5*time.Minute)
	}
	if o.duration < 4*o.interval || o.warmup >= o.duration {
		return o, fmt.Errorf("-duration %s leaves too few samples after a -warmup of %s at -interval %s", o.duration, o.warmup, o.interval)
	}
	return o, nil
}

func run() error {
	o, err := parseFlags()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "skein-soak-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	app, err := startApp(o.failEvery)
	if err != nil {
		return err
	}
	defer app.srv.Close()
	sink, err := startSink()
	if err != nil {
		return err
	}
	defer sink.srv.Close()

	files := map[string]string{
		"config.yaml":         fmt.Sprintf(configYAML, sink.addr),
		"res/resiliency.yaml": resiliencyYAML,
	}
	for name, body := range files {
		p := filepath.Join(work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			return err
		}
	}
	home := filepath.Join(work, "home")
	b, err := startSidecar(ctx, o.skein, home, work, "soak-b", app.port)
	if err != nil {
		return err
	}
	defer b.stop()
	a, err := startSidecar(ctx, o.skein, home, work, "soak-a", 0)
	if err != nil {
		return err
	}
	defer a.stop()
	url := fmt.Sprintf("http://127.0.0.1:%d/v1.0/invoke/soak-b/method/soak", a.http)
	if err := waitOK(url, 20*time.Second); err != nil {
		return fmt.Errorf("first call: %w\n%s\n%s", err, a.out, b.out)
	}

	fmt.Printf("soak: %.0f req/s for %s through soak-a → soak-b, sampling every %s (warm-up %s)\n", o.rate, o.duration, o.interval, o.warmup)
	raw := filepath.Join(work, "raw.jsonl")
	load := exec.CommandContext(ctx, o.loadgen, "rate", "-scenario", "soak", "-url", url,
		"-rate", strconv.FormatFloat(o.rate, 'f', -1, 64), "-duration", o.duration.String(), "-warmup", "0",
		"-conns", strconv.Itoa(o.conns), "-expect-bytes", strconv.Itoa(appBodyBytes), "-out", raw)
	load.Stdout, load.Stderr = os.Stdout, os.Stderr
	start := time.Now()
	if err := load.Start(); err != nil {
		return err
	}
	loadDone := make(chan error, 1)
	go func() { loadDone <- load.Wait() }()

	var samples []sample
	sampleAll := func() error {
		s := sample{at: time.Since(start)}
		for i, sc := range []*sidecar{a, b} {
			v, err := sc.scrape()
			if err != nil {
				return fmt.Errorf("%s: %w", sc.appID, err)
			}
			s.v[i] = v
		}
		samples = append(samples, s)
		fmt.Printf("  %6s  %s\n", s.at.Round(time.Second), s)
		return nil
	}
	if err := sampleAll(); err != nil {
		return err
	}
	tick := time.NewTicker(o.interval)
	var loadErr error
loop:
	for {
		select {
		case <-tick.C:
			if err := sampleAll(); err != nil {
				return err
			}
		case loadErr = <-loadDone:
			break loop
		}
	}
	tick.Stop()
	if loadErr != nil {
		return fmt.Errorf("loadgen: %w", loadErr)
	}
	phases, err := result.ReadFile(raw)
	if err != nil || len(phases) != 1 {
		return fmt.Errorf("loadgen result: %v (%d phases)", err, len(phases))
	}
	rep := report{opts: o, samples: samples, load: phases[0], appRequests: app.requests.Load(),
		appFailed: app.failed.Load(), spans: sink.spans.Load(), exports: sink.exports.Load()}
	rep.judge()
	if err := rep.write(o.out); err != nil {
		return err
	}
	fmt.Printf("soak: report in %s\n", filepath.Join(o.out, "report.md"))
	if len(rep.failures) > 0 {
		// What the sidecars logged (warnings and errors) says why.
		for _, sc := range []*sidecar{a, b} {
			fmt.Printf("--- %s logged:\n%s\n", sc.appID, lastLines(sc.out.String(), 40))
		}
		return errors.New("failed:\n  " + strings.Join(rep.failures, "\n  "))
	}
	return nil
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// configYAML is both sidecars' Configuration: tracing of every call to the
// sink over OTLP/HTTP.
const configYAML = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata: {name: soak}
spec:
  tracing:
    samplingRate: "1"
    otel: {endpointAddress: "%s", protocol: http, isSecure: false}
`

// resiliencyYAML is the caller's retries, breaker and timeout for soak-b.
// The breaker trips on 5 failures in a row, which the app's isolated
// 503s never make.
const resiliencyYAML = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: soak}
spec:
  policies:
    timeouts:
      call: 5s
    retries:
      retry503:
        policy: constant
        duration: 1ms
        maxRetries: 2
        matching: {httpStatusCodes: "503"}
    circuitBreakers:
      cb: {maxRequests: 1, interval: 30s, timeout: 5s, trip: consecutiveFailures >= 5}
  targets:
    apps:
      soak-b: {timeout: call, retry: retry503, circuitBreaker: cb}
`

// appBodyBytes is the size of the app's answer.
const appBodyBytes = 1024

type app struct {
	srv              *http.Server
	port             int
	requests, failed atomic.Int64
}

// startApp serves appBodyBytes to every request, and a 503 to every
// failEvery-th.
func startApp(failEvery int) (*app, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	a := &app{port: ln.Addr().(*net.TCPAddr).Port}
	body := bytes.Repeat([]byte("s"), appBodyBytes)
	a.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := a.requests.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		if failEvery > 0 && n%int64(failEvery) == 0 {
			a.failed.Add(1)
			http.Error(w, "soak: planned failure", http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	})}
	go func() { _ = a.srv.Serve(ln) }()
	return a, nil
}

// sink is an OTLP/HTTP trace receiver that counts spans and keeps none.
type sink struct {
	srv            *http.Server
	addr           string
	spans, exports atomic.Int64
}

func startSink() (*sink, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &sink{addr: ln.Addr().String()}
	s.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		n := 0
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				n += len(ss.GetSpans())
			}
		}
		s.spans.Add(int64(n))
		s.exports.Add(1)
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	})}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// sidecar is a running `skein sidecar`.
type sidecar struct {
	appID         string
	http, metrics int
	cmd           *exec.Cmd
	out           *syncBuffer
	done          chan struct{}
}

// startSidecar starts skein sidecar for appID (in front of appPort, 0:
// none) with the soak's configuration and waits until it is ready.
func startSidecar(ctx context.Context, bin, home, work, appID string, appPort int) (*sidecar, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	s := &sidecar{appID: appID, http: ports[0], metrics: ports[2], out: &syncBuffer{}, done: make(chan struct{})}
	args := []string{"sidecar", "--app-id", appID, "--dapr-http-port", strconv.Itoa(ports[0]),
		"--dapr-grpc-port", strconv.Itoa(ports[1]), "--metrics-port", strconv.Itoa(ports[2]),
		"--config", filepath.Join(work, "config.yaml"), "--resources-path", filepath.Join(work, "res"), "--log-level", "warn"}
	if appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(appPort))
	}
	s.cmd = exec.CommandContext(ctx, bin, args...)
	s.cmd.Env = append(os.Environ(), "SKEIN_HOME="+home)
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		close(s.done)
	}()
	health := fmt.Sprintf("http://127.0.0.1:%d/v1.0/healthz", s.http)
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-s.done:
			return nil, fmt.Errorf("%s exited: %s", appID, s.out)
		default:
		}
		if resp, err := http.Get(health); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusNoContent {
				return s, nil
			}
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s not ready after 20s: %s", appID, s.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the sidecar as an orchestrator does: SIGTERM, then waits.
func (s *sidecar) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// Figures sampled from each sidecar, in the order of figureNames.
const (
	figRSS = iota
	figHeap
	figGoroutines
	figFDs
	nFigures
)

// figure is what is sampled and judged, and the margin its growth after
// the warm-up may have: the larger of rel × the first third's median and
// abs.
type figure struct {
	name, unit, metric string
	scale              float64 // metric value → unit
	rel, abs           float64
}

// figures and their margins (docs/performance.md, "Soak"). RSS and heap
// get room for the GC's sawtooth (the heap in use swings by up to the live
// heap between collections), goroutines and fds for the connections the
// load generator opens when requests bunch up (up to -conns).
var figures = [nFigures]figure{
	figRSS:        {"RSS", "MB", "process_resident_memory_bytes", 1e-6, 0.25, 8},
	figHeap:       {"heap in use", "MB", "go_memstats_heap_inuse_bytes", 1e-6, 0.50, 8},
	figGoroutines: {"goroutines", "", "go_goroutines", 1, 0.25, 40},
	figFDs:        {"open fds", "", "process_open_fds", 1, 0.25, 40},
}

// sample is one reading of both sidecars.
type sample struct {
	at time.Duration // since the load started
	v  [2][nFigures]float64
}

func (s sample) String() string {
	var b strings.Builder
	for i, name := range []string{"a", "b"} {
		fmt.Fprintf(&b, "%s: RSS %5.1f MB heap %5.1f MB goroutines %4.0f fds %4.0f   ", name,
			s.v[i][figRSS], s.v[i][figHeap], s.v[i][figGoroutines], s.v[i][figFDs])
	}
	return b.String()
}

// scrape reads the sampled figures from the sidecar's /metrics.
func (s *sidecar) scrape() ([nFigures]float64, error) {
	var v [nFigures]float64
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", s.metrics))
	if err != nil {
		return v, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return v, err
	}
	found := 0
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		for i, f := range figures {
			if name == f.metric {
				x, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil {
					return v, fmt.Errorf("%s: %w", f.metric, err)
				}
				v[i] = x * f.scale
				found++
			}
		}
	}
	if found != nFigures {
		return v, fmt.Errorf("/metrics has %d of the %d sampled figures", found, nFigures)
	}
	return v, nil
}

// waitOK calls url until it answers 200 or d passes.
func waitOK(url string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// freePorts returns n loopback ports free now.
func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // a bound: the last words are in the first MiB too
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
