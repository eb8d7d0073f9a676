package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skeinmesh/skein/test/bench/result"
)

type mode int

const (
	modeRate mode = iota // open loop at a constant rate
	modeMax              // closed loop: maximum throughput
)

func (m mode) String() string {
	if m == modeRate {
		return "rate"
	}
	return "max"
}

// watchList is the repeatable -watch name=pid flag.
type watchList []watched

type watched struct {
	name string
	pid  int
}

func (w *watchList) String() string {
	parts := make([]string, len(*w))
	for i, x := range *w {
		parts[i] = x.name + "=" + strconv.Itoa(x.pid)
	}
	return strings.Join(parts, ",")
}

func (w *watchList) Set(v string) error {
	name, p, ok := strings.Cut(v, "=")
	pid, err := strconv.Atoi(p)
	if !ok || name == "" || err != nil || pid <= 0 {
		return fmt.Errorf("want name=pid, got %q", v)
	}
	*w = append(*w, watched{name, pid})
	return nil
}

// loadFlags are the flags rate, max and idle share.
type loadFlags struct {
	scenario  string
	run       int
	url       string
	bodyBytes int
	timeout   time.Duration
	expect    int64
	clkTck    int
	out       string
	client    string
	watch     watchList
}

func (f *loadFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.scenario, "scenario", "", "scenario name for the report")
	fs.IntVar(&f.run, "run", 1, "repetition number recorded with the result (run.sh's RUNS)")
	fs.StringVar(&f.url, "url", "", "URL to call")
	fs.IntVar(&f.bodyBytes, "body-bytes", 0, "POST a body of this many bytes with every request (0: GET)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "per-request timeout")
	fs.Int64Var(&f.expect, "expect-bytes", -1, "body size a successful answer has (-1: any)")
	fs.IntVar(&f.clkTck, "clk-tck", 100, "clock ticks per second (getconf CLK_TCK)")
	fs.StringVar(&f.out, "out", "", "append the result as a JSON line to this file")
	fs.StringVar(&f.client, "client", "raw", "raw (a minimal HTTP/1.1 client, less generator CPU) or std (net/http)")
	fs.Var(&f.watch, "watch", "name=pid of a process to measure (repeatable)")
}

// loader checks the shared flags and returns the loader they describe,
// with at most conns connections.
func (f *loadFlags) loader(conns int) (*loader, error) {
	if f.url == "" || f.scenario == "" {
		return nil, errors.New("-url and -scenario are required")
	}
	if f.bodyBytes < 0 {
		return nil, errors.New("-body-bytes must not be negative")
	}
	body := requestBody(f.bodyBytes)
	l := &loader{expect: f.expect}
	switch f.client {
	case "raw":
		c, err := newRawClient(f.url, body, f.timeout)
		if err != nil {
			return nil, err
		}
		l.r = c
	case "std":
		l.r = newStdClient(f.url, body, conns, f.timeout)
	default:
		return nil, fmt.Errorf("-client %q: want raw or std", f.client)
	}
	return l, nil
}

// phase returns the result's fields that come from the flags.
func (f *loadFlags) phase(mode string, conns int) result.Phase {
	p := result.Phase{Scenario: f.scenario, Run: f.run, Mode: mode, URL: f.url, Method: http.MethodGet, Conns: conns, Client: f.client}
	if f.bodyBytes > 0 {
		p.Method, p.RequestBytes = http.MethodPost, int64(f.bodyBytes)
	}
	if f.expect > 0 {
		p.ResponseBytes = f.expect
	}
	return p
}

// requestBody is n bytes of printable filler (nil for 0).
func requestBody(n int) []byte {
	if n == 0 {
		return nil
	}
	return bytes.Repeat([]byte("skein-bench-body"), n/16+1)[:n]
}

func cmdLoad(args []string, m mode, stdout io.Writer) error {
	fs := flag.NewFlagSet(m.String(), flag.ContinueOnError)
	var f loadFlags
	f.register(fs)
	rate := fs.Float64("rate", 1000, "requests per second (rate only)")
	duration := fs.Duration("duration", 20*time.Second, "measured phase")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured phase before it, same load")
	conns := fs.Int("conns", 0, "connections (rate: most in flight, default 64; max: default 32)")
	name := fs.String("mode", m.String(), "mode recorded with the result (run.sh: post for the large-body phase)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *conns <= 0 {
		*conns = map[mode]int{modeRate: 64, modeMax: 32}[m]
	}
	if m == modeRate && *rate <= 0 {
		return errors.New("-rate must be positive")
	}
	l, err := f.loader(*conns)
	if err != nil {
		return err
	}
	runPhase := func(d time.Duration) phase {
		if m == modeRate {
			return l.openLoop(*rate, d, *conns)
		}
		return l.closedLoop(d, *conns)
	}
	if *warmup > 0 {
		runPhase(*warmup)
	}
	before := make([]uint64, len(f.watch))
	csBefore := make([]uint64, len(f.watch))
	for i, w := range f.watch {
		t, err := cpuTicks(w.pid)
		if err != nil {
			return err
		}
		cs, err := ctxSwitches(w.pid)
		if err != nil {
			return err
		}
		before[i], csBefore[i] = t, cs
	}
	mIdle0, mIRQ0, mSteal0, ncpu, err := machineTicks()
	if err != nil {
		return err
	}
	self0, err := cpuTicks(os.Getpid())
	if err != nil {
		return err
	}
	p := runPhase(*duration)
	mIdle1, mIRQ1, mSteal1, _, err := machineTicks()
	if err != nil {
		return err
	}
	self1, err := cpuTicks(os.Getpid())
	if err != nil {
		return err
	}
	res := f.phase(*name, *conns)
	res.Seconds, res.Requests, res.Errors, res.FirstError = p.elapsed.Seconds(), p.requests(), p.errors, p.firstErr
	res.Latency = percentiles(p.lat)
	res.RPS = float64(res.Requests) / res.Seconds
	if m == modeRate {
		res.TargetRate = *rate
		lag := percentiles(p.lag)
		res.Lag = &lag
	}
	cores := func(ticks uint64) float64 { return float64(ticks) / float64(f.clkTck) / p.elapsed.Seconds() }
	res.Machine = result.Machine{Busy: float64(ncpu) - cores(mIdle1-mIdle0), IRQ: cores(mIRQ1 - mIRQ0),
		Steal: cores(mSteal1 - mSteal0), Generator: cores(self1 - self0)}
	res.Machine.Other = res.Machine.Busy - res.Machine.IRQ - res.Machine.Steal - res.Machine.Generator
	for i, w := range f.watch {
		t, err := cpuTicks(w.pid)
		if err != nil {
			return err
		}
		res.Machine.Other -= cores(t - before[i])
		hwm, rss, err := memKiB(w.pid)
		if err != nil {
			return err
		}
		cs, err := ctxSwitches(w.pid)
		if err != nil {
			return err
		}
		u := result.Proc{Name: w.name, PID: w.pid, CPUSeconds: float64(t-before[i]) / float64(f.clkTck), HWMKiB: hwm, RSSKiB: rss}
		if res.Requests > 0 {
			u.CPUPer1k = u.CPUSeconds / (float64(res.Requests) / 1000)
			u.CtxSwitchesPerReq = float64(cs-csBefore[i]) / float64(res.Requests)
		}
		res.Procs = append(res.Procs, u)
	}
	fmt.Fprintf(stdout, "%-10s %-4s %7d req %5d err %9.1f rps  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms",
		res.Scenario, res.Mode, res.Requests, res.Errors, res.RPS, res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max)
	if res.Lag != nil {
		fmt.Fprintf(stdout, "  (send lag p99 %.3f ms)", res.Lag.P99)
	}
	fmt.Fprintf(stdout, "\n           machine, in cores: busy %.2f = generator %.2f + watched + other work %.2f + irq %.2f + steal %.2f\n",
		res.Machine.Busy, res.Machine.Generator, res.Machine.Other, res.Machine.IRQ, res.Machine.Steal)
	for _, u := range res.Procs {
		fmt.Fprintf(stdout, "           %-9s cpu %.3f s (%.4f s/1k req)  VmHWM %.1f MB  %.1f ctx switches/req\n",
			u.Name, u.CPUSeconds, u.CPUPer1k, float64(u.HWMKiB)*1024/1e6, u.CtxSwitchesPerReq)
	}
	if res.FirstError != "" {
		fmt.Fprintf(stdout, "           first error: %s\n", res.FirstError)
	}
	if f.out == "" {
		return nil
	}
	return result.Append(f.out, res)
}

// cmdIdle sends -calls requests one after the other, to finish the
// processes' start-up (connections, TLS sessions, lazily built state), then
// records each watched process's VmRSS and VmHWM: its memory before any
// load. Every call must succeed.
func cmdIdle(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("idle", flag.ContinueOnError)
	var f loadFlags
	f.register(fs)
	calls := fs.Int("calls", 10, "warm-up calls before memory is read")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *calls < 1 {
		return errors.New("-calls must be at least 1")
	}
	l, err := f.loader(1)
	if err != nil {
		return err
	}
	start := time.Now()
	lat := make([]time.Duration, 0, *calls)
	for range *calls {
		sent := time.Now()
		if err := l.once(); err != nil {
			return fmt.Errorf("warm-up call: %w", err)
		}
		lat = append(lat, time.Since(sent))
	}
	res := f.phase(result.ModeIdle, 1)
	res.Seconds, res.Requests = time.Since(start).Seconds(), len(lat)
	res.RPS = float64(res.Requests) / res.Seconds
	res.Latency = percentiles(lat)
	fmt.Fprintf(stdout, "%-10s idle %d calls, p50 %.3f ms; memory before the load:\n", res.Scenario, res.Requests, res.Latency.P50)
	for _, w := range f.watch {
		hwm, rss, err := memKiB(w.pid)
		if err != nil {
			return err
		}
		res.Procs = append(res.Procs, result.Proc{Name: w.name, PID: w.pid, HWMKiB: hwm, RSSKiB: rss})
		fmt.Fprintf(stdout, "           %-9s VmRSS %.1f MB  VmHWM %.1f MB\n", w.name, float64(rss)*1024/1e6, float64(hwm)*1024/1e6)
	}
	if f.out == "" {
		return nil
	}
	return result.Append(f.out, res)
}

type loader struct {
	r      requester
	expect int64
}

// once sends one request and checks the answer: 200 and, with expect, its
// size.
func (l *loader) once() error {
	status, n, err := l.r.do()
	switch {
	case err != nil:
		return err
	case status != http.StatusOK:
		return fmt.Errorf("status %d", status)
	case l.expect >= 0 && n != l.expect:
		return fmt.Errorf("body %d bytes, want %d", n, l.expect)
	}
	return nil
}

// phase is what one run of a load pattern measured.
type phase struct {
	lat, lag []time.Duration
	errors   int
	firstErr string
	elapsed  time.Duration
}

func (p *phase) requests() int { return len(p.lat) }

// recorder collects one worker's samples; merged after the phase.
type recorder struct {
	lat, lag []time.Duration
	errors   int
	firstErr string
}

func (r *recorder) add(lat, lag time.Duration, err error) {
	r.lat = append(r.lat, lat)
	r.lag = append(r.lag, lag)
	if err != nil {
		r.errors++
		if r.firstErr == "" {
			r.firstErr = err.Error()
		}
	}
}

func merge(rs []recorder, elapsed time.Duration) phase {
	p := phase{elapsed: elapsed}
	for _, r := range rs {
		p.lat = append(p.lat, r.lat...)
		p.lag = append(p.lag, r.lag...)
		p.errors += r.errors
		if p.firstErr == "" {
			p.firstErr = r.firstErr
		}
	}
	return p
}

// openLoop sends rate requests per second for d, each at its scheduled
// time whatever happened to the earlier ones (no coordinated omission). A
// scheduler thread hands the scheduled times to conns workers; when all are
// busy the times queue, and since latency is measured from the scheduled
// time, the wait counts. The scheduler sleeps with nanosleep on a locked OS
// thread because the Go timer wakes up to 1 ms late (epoll_wait has
// millisecond resolution), which would add up to 1 ms to every sample.
func (l *loader) openLoop(rate float64, d time.Duration, conns int) phase {
	total := int(math.Round(rate * d.Seconds()))
	due := make(chan time.Time, total)
	rs := make([]recorder, conns)
	var wg sync.WaitGroup
	for i := range rs {
		r := &rs[i]
		r.lat = make([]time.Duration, 0, total/conns+64)
		r.lag = make([]time.Duration, 0, total/conns+64)
		wg.Go(func() {
			for at := range due {
				sent := time.Now()
				err := l.once()
				r.add(time.Since(at), sent.Sub(at), err)
			}
		})
	}
	start := time.Now().Add(10 * time.Millisecond)
	wg.Go(func() {
		// The thread is not unlocked, so it exits with the goroutine and
		// takes its timer slack setting with it.
		runtime.LockOSThread()
		preciseSleepSetup()
		for i := range total {
			at := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
			sleepUntil(at)
			due <- at
		}
		close(due)
	})
	wg.Wait()
	return merge(rs, time.Since(start))
}

// closedLoop runs conns workers for d, each sending its next request as soon
// as the previous one is answered; latency is from the actual send.
func (l *loader) closedLoop(d time.Duration, conns int) phase {
	rs := make([]recorder, conns)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i := range rs {
		r := &rs[i]
		wg.Go(func() {
			for {
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				err := l.once()
				r.add(time.Since(sent), 0, err)
			}
		})
	}
	wg.Wait()
	return merge(rs, time.Since(start))
}

// percentiles sorts ds and returns nearest-rank percentiles in ms.
func percentiles(ds []time.Duration) result.Percentiles {
	if len(ds) == 0 {
		return result.Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		i = max(0, min(i, len(ds)-1))
		return ms(ds[i])
	}
	return result.Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
