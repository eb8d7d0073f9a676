package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/skeinmesh/skein/test/bench/result"
)

// metricsList is the repeatable -metrics name=URL flag.
type metricsList []struct{ name, url string }

func (m *metricsList) String() string {
	parts := make([]string, len(*m))
	for i, x := range *m {
		parts[i] = x.name + "=" + x.url
	}
	return strings.Join(parts, ",")
}

func (m *metricsList) Set(v string) error {
	name, url, ok := strings.Cut(v, "=")
	if !ok || name == "" || !strings.HasPrefix(url, "http://") {
		return fmt.Errorf("want name=http://host:port/metrics, got %q", v)
	}
	*m = append(*m, struct{ name, url string }{name, url})
	return nil
}

// outcome is one request of an overload run.
type outcome struct {
	at     time.Duration // scheduled start, from the phase's start
	lat    time.Duration // scheduled start to the last answer byte
	status int           // 0: no answer
	err    error
}

// cmdOverload is loadgen overload: an open loop at -rate for -duration
// after -warmup at -warmup-rate, counting each answer as admitted (200),
// refused (503) or an error, with the admitted calls' latency second by
// second; then the -metrics endpoints' skein_overload_refused_total.
func cmdOverload(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("overload", flag.ContinueOnError)
	var f loadFlags
	f.register(fs)
	rate := fs.Float64("rate", 600, "requests per second of the measured phase")
	duration := fs.Duration("duration", 20*time.Second, "measured phase")
	warmup := fs.Duration("warmup", 3*time.Second, "unmeasured phase before it")
	warmupRate := fs.Float64("warmup-rate", 100, "requests per second of the warm-up")
	conns := fs.Int("conns", 512, "most requests in flight (more wait in the generator, their wait counted)")
	capacity := fs.Float64("capacity", 0, "the app's requests per second, recorded for the report")
	appMs := fs.Float64("app-ms", 0, "the app's own time per request in ms, recorded for the report")
	var scrape metricsList
	fs.Var(&scrape, "metrics", "name=URL of a sidecar's /metrics to read skein_overload_refused_total from after the phase (repeatable)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *rate <= 0 || *warmupRate <= 0 || *conns <= 0 {
		return errors.New("-rate, -warmup-rate and -conns must be positive")
	}
	l, err := f.loader(*conns)
	if err != nil {
		return err
	}
	if *warmup > 0 {
		l.classified(*warmupRate, *warmup, *conns, f.timeout)
	}
	outs, elapsed := l.classified(*rate, *duration, *conns, f.timeout)
	res := result.Overload{Scenario: f.scenario, Run: f.run, URL: f.url, TargetRate: *rate, Capacity: *capacity, AppMs: *appMs,
		Conns: *conns, Seconds: elapsed.Seconds(), Sent: len(outs)}
	var admitted, refused []time.Duration
	secs := int(math.Ceil(duration.Seconds()))
	perSec := make([][]time.Duration, secs)
	res.Series = make([]result.Second, secs)
	for i := range res.Series {
		res.Series[i].T = i
	}
	for _, o := range outs {
		s := min(int(o.at/time.Second), secs-1)
		switch {
		case o.err == nil && o.status == http.StatusOK:
			res.Admitted++
			res.Series[s].Admitted++
			admitted = append(admitted, o.lat)
			perSec[s] = append(perSec[s], o.lat)
		case o.err == nil && o.status == http.StatusServiceUnavailable:
			res.Refused++
			res.Series[s].Refused++
			refused = append(refused, o.lat)
		default:
			res.Errors++
			res.Series[s].Errors++
			if res.FirstError == "" {
				if o.err != nil {
					res.FirstError = o.err.Error()
				} else {
					res.FirstError = "status " + strconv.Itoa(o.status)
				}
			}
		}
	}
	res.Latency = percentiles(admitted)
	if len(refused) > 0 {
		p := percentiles(refused)
		res.Refusal = &p
	}
	for i, ds := range perSec {
		p := percentiles(ds)
		res.Series[i].P50, res.Series[i].P99 = p.P50, p.P99
	}
	for _, m := range scrape {
		sides, err := refusedTotals(m.url)
		if err != nil {
			return fmt.Errorf("-metrics %s: %w", m.name, err)
		}
		if res.Metrics == nil {
			res.Metrics = map[string]float64{}
		}
		for side, v := range sides {
			res.Metrics[m.name+" "+side] = v
		}
	}
	fmt.Fprintf(stdout, "%-14s %.0f req/s for %v: %d sent, %d admitted (p50 %.1f ms, p99 %.1f ms, max %.1f ms), %d refused, %d errors\n",
		res.Scenario, *rate, *duration, res.Sent, res.Admitted, res.Latency.P50, res.Latency.P99, res.Latency.Max, res.Refused, res.Errors)
	if res.FirstError != "" {
		fmt.Fprintf(stdout, "               first error: %s\n", res.FirstError)
	}
	if len(res.Metrics) > 0 {
		fmt.Fprintf(stdout, "               skein_overload_refused_total: %v\n", res.Metrics)
	}
	if f.out == "" {
		return nil
	}
	return result.AppendOverload(f.out, res)
}

// errGaveUp is the outcome of a request that waited in the generator, for
// a free connection, as long as a request may take: a client with that
// timeout would have given up before sending it.
var errGaveUp = errors.New("gave up: waited -timeout for a free connection")

// classified sends rate requests a second for d, each at its scheduled
// time (openLoop's scheduling), and returns every request's outcome. A
// request still unsent timeout after its scheduled time is not sent
// (errGaveUp), so the phase ends at most timeout after d.
func (l *loader) classified(rate float64, d time.Duration, conns int, timeout time.Duration) ([]outcome, time.Duration) {
	total := int(math.Round(rate * d.Seconds()))
	due := make(chan time.Duration, total)
	outs := make([][]outcome, conns)
	start := time.Now().Add(10 * time.Millisecond)
	var wg sync.WaitGroup
	for i := range outs {
		wg.Go(func() {
			for at := range due {
				if waited := time.Since(start.Add(at)); waited >= timeout {
					outs[i] = append(outs[i], outcome{at: at, lat: waited, err: errGaveUp})
					continue
				}
				status, n, err := l.r.do()
				if err == nil && status == http.StatusOK && l.expect >= 0 && n != l.expect {
					err = fmt.Errorf("body %d bytes, want %d", n, l.expect)
				}
				outs[i] = append(outs[i], outcome{at: at, lat: time.Since(start.Add(at)), status: status, err: err})
			}
		})
	}
	wg.Go(func() {
		runtime.LockOSThread()
		preciseSleepSetup()
		for i := range total {
			at := time.Duration(float64(i) * float64(time.Second) / rate)
			sleepUntil(start.Add(at))
			due <- at
		}
		close(due)
	})
	wg.Wait()
	var all []outcome
	for _, o := range outs {
		all = append(all, o...)
	}
	return all, time.Since(start)
}

// refusedTotals reads skein_overload_refused_total from a Prometheus text
// exposition at url, summed by its side label.
func refusedTotals(url string) (map[string]float64, error) {
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	const name = "skein_overload_refused_total{"
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		labels, value, ok := strings.Cut(line[len(name):], "} ")
		if !ok {
			continue
		}
		side := ""
		for kv := range strings.SplitSeq(labels, ",") {
			if k, v, ok := strings.Cut(kv, "="); ok && k == "side" {
				side = strings.Trim(v, `"`)
			}
		}
		v, err := strconv.ParseFloat(strings.Fields(value)[0], 64)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		out[side] += v
	}
	return out, sc.Err()
}
