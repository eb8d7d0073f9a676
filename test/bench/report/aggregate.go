package main

import (
	"math"
	"slices"

	"github.com/skeinmesh/skein/test/bench/result"
)

// appProc is the watched backend: in the tables for reference, never a hop.
const appProc = "app"

// data is the input grouped by scenario and mode. Figures are medians over
// runs; missing values are NaN.
type data struct {
	scenarios []string // in the order they first appear
	runs      int      // the most runs any scenario has
	by        map[key][]result.Phase
}

type key struct{ scenario, mode string }

func group(ps []result.Phase) *data {
	d := &data{by: map[key][]result.Phase{}}
	runs := map[string]map[int]bool{}
	for _, p := range ps {
		if runs[p.Scenario] == nil {
			runs[p.Scenario] = map[int]bool{}
			d.scenarios = append(d.scenarios, p.Scenario)
		}
		runs[p.Scenario][p.Run] = true
		d.runs = max(d.runs, len(runs[p.Scenario]))
		k := key{p.Scenario, p.Mode}
		d.by[k] = append(d.by[k], p)
	}
	for k := range d.by {
		slices.SortStableFunc(d.by[k], func(a, b result.Phase) int { return a.Run - b.Run })
	}
	return d
}

// phases returns the runs of scenario s in mode m, in run order.
func (d *data) phases(s, m string) []result.Phase { return d.by[key{s, m}] }

// has reports whether scenario s ran mode m at least once.
func (d *data) has(s, m string) bool { return len(d.by[key{s, m}]) > 0 }

// with returns the scenarios that ran mode m, in order.
func (d *data) with(m string) []string {
	var out []string
	for _, s := range d.scenarios {
		if d.has(s, m) {
			out = append(out, s)
		}
	}
	return out
}

// med is the median of f over the runs of s in mode m.
func (d *data) med(s, m string, f func(*result.Phase) float64) float64 {
	return median(d.perRun(s, m, f))
}

// perRun is f of each run of s in mode m, in run order.
func (d *data) perRun(s, m string, f func(*result.Phase) float64) []float64 {
	ps := d.phases(s, m)
	out := make([]float64, len(ps))
	for i := range ps {
		out[i] = f(&ps[i])
	}
	return out
}

// byRun is f of each run of s in mode m, keyed by run number, to pair runs
// of different scenarios.
func (d *data) byRun(s, m string, f func(*result.Phase) float64) map[int]float64 {
	ps := d.phases(s, m)
	out := make(map[int]float64, len(ps))
	for i := range ps {
		out[ps[i].Run] = f(&ps[i])
	}
	return out
}

// procMed is the median of f over the runs of s in mode m in which
// process name was watched.
func (d *data) procMed(s, m, name string, f func(*result.Proc) float64) float64 {
	return median(d.perRun(s, m, procOf(name, f)))
}

// procOf adapts f to a phase: f of the process called name, NaN if the
// phase did not watch it.
func procOf(name string, f func(*result.Proc) float64) func(*result.Phase) float64 {
	return func(p *result.Phase) float64 {
		for i := range p.Procs {
			if p.Procs[i].Name == name {
				return f(&p.Procs[i])
			}
		}
		return math.NaN()
	}
}

// hops returns the proxy processes watched in scenario s's mode m: every
// process but the app, in the order run.sh watched them (the caller's
// proxy first).
func (d *data) hops(s, m string) []string {
	var out []string
	for _, p := range d.phases(s, m) {
		for _, u := range p.Procs {
			if u.Name != appProc && !slices.Contains(out, u.Name) {
				out = append(out, u.Name)
			}
		}
	}
	return out
}

// procs returns every process watched in scenario s, in the order they
// first appear (idle, rate, max, post).
func (d *data) procs(s string) []string {
	var out []string
	for _, m := range modes {
		for _, p := range d.phases(s, m) {
			for _, u := range p.Procs {
				if !slices.Contains(out, u.Name) {
					out = append(out, u.Name)
				}
			}
		}
	}
	return out
}

// peakMB is the median over the runs of s of process name's largest VmHWM
// in any phase of the run: its peak RSS over the whole run.
func (d *data) peakMB(s, name string) float64 {
	peak := map[int]float64{}
	for _, m := range modes {
		for _, p := range d.phases(s, m) {
			if v := procOf(name, hwmMB)(&p); !math.IsNaN(v) {
				peak[p.Run] = max(peak[p.Run], v)
			}
		}
	}
	vs := make([]float64, 0, len(peak))
	for _, v := range peak {
		vs = append(vs, v)
	}
	return median(vs)
}

// modes in the order run.sh runs them.
var modes = []string{result.ModeIdle, result.ModeRate, result.ModeMax, result.ModePost}

// meanHop is the mean over the hops of s of their median f in mode m: "one
// HAProxy hop".
func (d *data) meanHop(s, m string, f func(*result.Proc) float64) float64 {
	hs := d.hops(s, m)
	if len(hs) == 0 {
		return math.NaN()
	}
	var sum float64
	for _, h := range hs {
		sum += d.procMed(s, m, h, f)
	}
	return sum / float64(len(hs))
}

// meanHopOf is meanHop for a single phase.
func meanHopOf(p *result.Phase, f func(*result.Proc) float64) float64 {
	var sum float64
	n := 0
	for i := range p.Procs {
		if p.Procs[i].Name != appProc {
			sum += f(&p.Procs[i])
			n++
		}
	}
	if n == 0 {
		return math.NaN()
	}
	return sum / float64(n)
}

// median of the values that are not NaN; NaN when there are none. With an
// even count it is the mean of the two middle values.
func median(xs []float64) float64 {
	var v []float64
	for _, x := range xs {
		if !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return math.NaN()
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
}

// Figures of a phase and of a process, for med, perRun and procMed.
func p50(p *result.Phase) float64 { return p.Latency.P50 }
func p90(p *result.Phase) float64 { return p.Latency.P90 }
func p99(p *result.Phase) float64 { return p.Latency.P99 }
func rps(p *result.Phase) float64 { return p.RPS }

func cpuPer1k(u *result.Proc) float64 { return u.CPUPer1k }
func rssMB(u *result.Proc) float64    { return float64(u.RSSKiB) * kib / mb }
func hwmMB(u *result.Proc) float64    { return float64(u.HWMKiB) * kib / mb }

const (
	kib = 1024
	mb  = 1e6 // the RSS targets are in MB of 10^6 bytes
)
