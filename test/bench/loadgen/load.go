package main

import (
	"encoding/json"
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

// Result is one measured run, written as one JSON line.
type Result struct {
	Scenario   string  `json:"scenario"`
	Mode       string  `json:"mode"` // rate or max
	URL        string  `json:"url"`
	TargetRate float64 `json:"targetRate,omitempty"`
	Conns      int     `json:"conns"`
	Client     string  `json:"client"` // raw or std
	// Seconds is the measured phase's wall time, from its first scheduled
	// request to its last answer.
	Seconds    float64 `json:"seconds"`
	Requests   int     `json:"requests"` // completed, errors included
	Errors     int     `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	RPS        float64 `json:"rps"`
	// Latency is from the scheduled start (rate) or the actual start (max)
	// to the last body byte.
	Latency Percentiles `json:"latencyMs"`
	// Lag is how late requests were sent against their schedule (rate
	// only): the generator's own delay, already included in Latency.
	Lag   *Percentiles `json:"lagMs,omitempty"`
	Procs []ProcUsage  `json:"procs,omitempty"`
	// Machine is what the whole machine did during the measured phase, to
	// judge how much other work disturbed it.
	Machine MachineUsage `json:"machine"`
}

// MachineUsage is CPU in cores (CPU seconds per second) over a phase.
type MachineUsage struct {
	Busy      float64 `json:"busyCores"`      // all CPUs less their idle time
	IRQ       float64 `json:"irqCores"`       // irq and softirq, much of it the loopback traffic
	Steal     float64 `json:"stealCores"`     // taken by the hypervisor, if it says
	Generator float64 `json:"generatorCores"` // this load generator
	// Other is Busy less irq, steal, the generator and the watched
	// processes: work that is not part of the benchmark.
	Other float64 `json:"otherCores"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// ProcUsage is a watched process's CPU over the measured phase and its
// memory after it.
type ProcUsage struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	CPUPer1k   float64 `json:"cpuSecondsPer1kReq"`
	HWMKiB     int64   `json:"vmHWMKiB"` // peak RSS since the process started
	RSSKiB     int64   `json:"vmRSSKiB"`
	// CtxSwitchesPerReq counts the context switches of all its threads
	// per request: how often it slept and woke (or was preempted).
	CtxSwitchesPerReq float64 `json:"ctxSwitchesPerReq"`
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

func cmdLoad(args []string, m mode, stdout io.Writer) error {
	fs := flag.NewFlagSet(m.String(), flag.ContinueOnError)
	scenario := fs.String("scenario", "", "scenario name for the report")
	url := fs.String("url", "", "URL to GET")
	rate := fs.Float64("rate", 1000, "requests per second (rate only)")
	duration := fs.Duration("duration", 20*time.Second, "measured phase")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured phase before it, same load")
	conns := fs.Int("conns", 0, "connections (rate: most in flight, default 64; max: default 32)")
	timeout := fs.Duration("timeout", 10*time.Second, "per-request timeout")
	expect := fs.Int64("expect-bytes", -1, "body size a successful answer has (-1: any)")
	clkTck := fs.Int("clk-tck", 100, "clock ticks per second (getconf CLK_TCK)")
	out := fs.String("out", "", "append the result as a JSON line to this file")
	client := fs.String("client", "raw", "raw (a minimal HTTP/1.1 client, less generator CPU) or std (net/http)")
	var watch watchList
	fs.Var(&watch, "watch", "name=pid of a process to measure (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *url == "" || *scenario == "" {
		return errors.New("-url and -scenario are required")
	}
	if *conns <= 0 {
		*conns = map[mode]int{modeRate: 64, modeMax: 32}[m]
	}
	if m == modeRate && *rate <= 0 {
		return errors.New("-rate must be positive")
	}
	l := &loader{expect: *expect}
	switch *client {
	case "raw":
		g, err := newRawGetter(*url, *timeout)
		if err != nil {
			return err
		}
		l.g = g
	case "std":
		l.g = newStdGetter(*url, *conns, *timeout)
	default:
		return fmt.Errorf("-client %q: want raw or std", *client)
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
	before := make([]uint64, len(watch))
	csBefore := make([]uint64, len(watch))
	for i, w := range watch {
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
	res := Result{
		Scenario: *scenario, Mode: m.String(), URL: *url, Conns: *conns, Client: *client,
		Seconds: p.elapsed.Seconds(), Requests: p.requests(), Errors: p.errors, FirstError: p.firstErr,
		Latency: percentiles(p.lat),
	}
	res.RPS = float64(res.Requests) / res.Seconds
	if m == modeRate {
		res.TargetRate = *rate
		lag := percentiles(p.lag)
		res.Lag = &lag
	}
	cores := func(ticks uint64) float64 { return float64(ticks) / float64(*clkTck) / p.elapsed.Seconds() }
	res.Machine = MachineUsage{Busy: float64(ncpu) - cores(mIdle1-mIdle0), IRQ: cores(mIRQ1 - mIRQ0),
		Steal: cores(mSteal1 - mSteal0), Generator: cores(self1 - self0)}
	res.Machine.Other = res.Machine.Busy - res.Machine.IRQ - res.Machine.Steal - res.Machine.Generator
	for i, w := range watch {
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
		u := ProcUsage{Name: w.name, PID: w.pid, CPUSeconds: float64(t-before[i]) / float64(*clkTck), HWMKiB: hwm, RSSKiB: rss}
		if res.Requests > 0 {
			u.CPUPer1k = u.CPUSeconds / (float64(res.Requests) / 1000)
			u.CtxSwitchesPerReq = float64(cs-csBefore[i]) / float64(res.Requests)
		}
		res.Procs = append(res.Procs, u)
	}
	fmt.Fprintf(stdout, "%-8s %-4s %7d req %5d err %9.1f rps  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms",
		res.Scenario, res.Mode, res.Requests, res.Errors, res.RPS, res.Latency.P50, res.Latency.P90, res.Latency.P99, res.Latency.Max)
	if res.Lag != nil {
		fmt.Fprintf(stdout, "  (send lag p99 %.3f ms)", res.Lag.P99)
	}
	fmt.Fprintf(stdout, "\n         machine, in cores: busy %.2f = generator %.2f + watched + other work %.2f + irq %.2f + steal %.2f\n",
		res.Machine.Busy, res.Machine.Generator, res.Machine.Other, res.Machine.IRQ, res.Machine.Steal)
	for _, u := range res.Procs {
		fmt.Fprintf(stdout, "         %-9s cpu %.3f s (%.4f s/1k req)  VmHWM %.1f MB  %.1f ctx switches/req\n",
			u.Name, u.CPUSeconds, u.CPUPer1k, float64(u.HWMKiB)*1024/1e6, u.CtxSwitchesPerReq)
	}
	if res.FirstError != "" {
		fmt.Fprintf(stdout, "         first error: %s\n", res.FirstError)
	}
	if *out == "" {
		return nil
	}
	return appendJSON(*out, res)
}

func appendJSON(file string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

type loader struct {
	g      getter
	expect int64
}

// once sends one GET and checks the answer: 200 and, with expect, its size.
func (l *loader) once() error {
	status, n, err := l.g.get()
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
func percentiles(ds []time.Duration) Percentiles {
	if len(ds) == 0 {
		return Percentiles{}
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := int(math.Ceil(q*float64(len(ds)))) - 1
		i = max(0, min(i, len(ds)-1))
		return ms(ds[i])
	}
	return Percentiles{P50: at(0.50), P90: at(0.90), P99: at(0.99), P999: at(0.999), Max: ms(ds[len(ds)-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
