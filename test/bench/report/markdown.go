package main

import (
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/skeinmesh/skein/test/bench/result"
)

// comparisons are the extra scenario pairs the report compares when both
// ran: the cost of one transport choice against another. cpuLimit 0: no
// target.
var comparisons = []struct {
	ref, subj, title string
	cpuLimit         float64
}{
	{"skein", "skein-mtls", "mTLS against cleartext", 1.15},
	{"skein-mtls", "skein-h3", "--peer-transport h3 against the default transport, both over mTLS", 1.15},
	{"skein-mtls", "skein-mtls-h1", "--peer-transport h1 against the default transport, both over mTLS", 0},
}

const dash = "–"

// num formats v with format, or a dash when v is NaN.
func num(format string, v float64) string {
	if math.IsNaN(v) {
		return dash
	}
	return fmt.Sprintf(format, v)
}

// writeReport writes the markdown report; charts are the SVG files written
// beside it, linked in order.
func writeReport(w io.Writer, d *data, o options, header string, charts []chartFile) {
	fmt.Fprintln(w, "# Skein data-path benchmark")
	fmt.Fprintln(w)
	if header = strings.TrimSpace(header); header != "" {
		fmt.Fprintln(w, header)
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "Every figure is the median over the runs of its scenario (%d runs, interleaved: run 1 of every scenario, then run 2, ...); "+
		"the raw JSON lines keep each run's values. MB are 10^6 bytes; CPU is utime+stime of the process per 1,000 requests.\n\n", d.runs)
	writeTargets(w, d, o)
	if len(charts) > 0 {
		fmt.Fprintln(w, "## Charts")
		fmt.Fprintln(w)
		for _, c := range charts {
			fmt.Fprintf(w, "![%s](%s)\n\n", c.title, c.file)
		}
	}
	writeRate(w, d, result.ModeRate, "Constant rate")
	writeRate(w, d, result.ModePost, "Large request bodies")
	writeMax(w, d)
	writeProcs(w, d)
	writeComparisons(w, d)
	writeWarnings(w, d)
}

func writeTargets(w io.Writer, d *data, o options) {
	fmt.Fprintf(w, "## Targets: %s against %s and %s\n\n", o.subj, o.base, o.ref)
	ts := targets(d, o.base, o.ref, o.subj)
	if ts == nil {
		fmt.Fprintf(w, "Scenario %s was not run: no targets.\n\n", o.subj)
		return
	}
	fmt.Fprintln(w, "Ratio is measured ÷ reference for a target relative to HAProxy, measured ÷ limit for an absolute one;")
	fmt.Fprintln(w, "per run gives that ratio (relative) or the measured value (absolute) of each run.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| target | measured | reference | ratio | limit | per run | verdict |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|---|")
	for i := range ts {
		t := &ts[i]
		if t.missing != "" {
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | not measured: %s |\n", t.name, dash, dash, dash, limitText(t), dash, t.missing)
			continue
		}
		ref := dash
		if !math.IsNaN(t.ref) {
			ref = t.refNote + ": " + t.format(t.ref)
		}
		runs := make([]string, len(t.perRun))
		for j, v := range t.perRun {
			runs[j] = runText(t, v)
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", t.name, t.format(t.value), ref,
			ratioText(t), limitText(t), strings.Join(runs, ", "), verdict(t.pass()))
	}
	fmt.Fprintln(w)
}

// ratioText writes a relative target's ratio as "1.23×", an absolute
// one's as "72% of limit".
func ratioText(t *target) string {
	if t.relative {
		return fmt.Sprintf("%.2f×", t.ratio())
	}
	return fmt.Sprintf("%.0f%% of limit", 100*t.ratio())
}

// runText writes one run's ratio (relative) or value without its unit
// (absolute).
func runText(t *target, v float64) string {
	switch {
	case math.IsNaN(v):
		return dash
	case t.relative:
		return fmt.Sprintf("%.2f×", v)
	}
	s, _, _ := strings.Cut(t.format(v), " ")
	return s
}

func limitText(t *target) string {
	if t.relative {
		return fmt.Sprintf("%s %g×", t.op, t.limit)
	}
	return fmt.Sprintf("%s %s", t.op, t.format(t.limit))
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

// writeRate tabulates an open-loop mode: the GET constant rate or the POST
// phase.
func writeRate(w io.Writer, d *data, m, title string) {
	ss := d.with(m)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "## %s: %s, open loop\n\n", title, phaseNote(d, ss[0], m))
	fmt.Fprintln(w, "Latency from each request's scheduled start to its last answer byte (no coordinated omission);")
	fmt.Fprintln(w, "send lag is how late the generator sent (included in the latency); other work is the CPU, in cores,")
	fmt.Fprintln(w, "that processes other than the benchmark's used meanwhile, and steal what the hypervisor took.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | runs | requests | errors (all runs) | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | send lag p99 ms | other work + steal, cores |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range ss {
		med := func(f func(*result.Phase) float64) float64 { return d.med(s, m, f) }
		fmt.Fprintf(w, "| %s | %d | %.0f | %d | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.2f + %.2f |\n",
			s, len(d.phases(s, m)), med(requests), errorsOf(d, s, m), med(rps), med(p50), med(p90), med(p99),
			med(func(p *result.Phase) float64 { return p.Latency.P999 }), med(func(p *result.Phase) float64 { return p.Latency.Max }),
			num("%.3f", med(lagP99)), med(otherCores), med(func(p *result.Phase) float64 { return p.Machine.Steal }))
	}
	fmt.Fprintln(w)
}

func writeMax(w io.Writer, d *data) {
	ss := d.with(result.ModeMax)
	if len(ss) == 0 {
		return
	}
	fmt.Fprintf(w, "## Closed loop: maximum throughput, %s\n\n", phaseNote(d, ss[0], result.ModeMax))
	fmt.Fprintln(w, "Each connection sends its next request when the previous one is answered; latency from the actual send.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | runs | errors (all runs) | req/s | p50 ms | p90 ms | p99 ms | max ms | generator cores | other work + steal, cores |")
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range ss {
		med := func(f func(*result.Phase) float64) float64 { return d.med(s, result.ModeMax, f) }
		fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f + %.2f |\n",
			s, len(d.phases(s, result.ModeMax)), errorsOf(d, s, result.ModeMax), med(rps), med(p50), med(p90), med(p99),
			med(func(p *result.Phase) float64 { return p.Latency.Max }),
			med(func(p *result.Phase) float64 { return p.Machine.Generator }), med(otherCores),
			med(func(p *result.Phase) float64 { return p.Machine.Steal }))
	}
	fmt.Fprintln(w)
}

// writeProcs tabulates every watched process: memory idle and under load,
// CPU per 1,000 requests in each phase.
func writeProcs(w io.Writer, d *data) {
	fmt.Fprintln(w, "## Processes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Idle RSS is VmRSS after start-up and a few calls; peak RSS is VmHWM (after the constant-rate phase, and")
	fmt.Fprintln(w, "after the last phase of the run); context switches are those of all the process's threads per request")
	fmt.Fprintln(w, "at the constant rate. `app` is the shared backend, for reference.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | process | idle RSS MB | peak RSS MB after rate | peak RSS MB, whole run | CPU s / 1k GET (rate) | CPU s / 1k GET (max) | CPU s / 1k POST | ctx switches / req |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range d.scenarios {
		for _, n := range d.procs(s) {
			pm := func(m string, f func(*result.Proc) float64) float64 { return d.procMed(s, m, n, f) }
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", s, n,
				num("%.1f", pm(result.ModeIdle, rssMB)), num("%.1f", pm(result.ModeRate, hwmMB)),
				num("%.1f", d.peakMB(s, n)), num("%.4f", pm(result.ModeRate, cpuPer1k)),
				num("%.4f", pm(result.ModeMax, cpuPer1k)), num("%.4f", pm(result.ModePost, cpuPer1k)),
				num("%.1f", pm(result.ModeRate, func(u *result.Proc) float64 { return u.CtxSwitchesPerReq })))
		}
	}
	fmt.Fprintln(w)
}

func writeComparisons(w io.Writer, d *data) {
	for _, c := range comparisons {
		if !d.has(c.ref, result.ModeRate) || !d.has(c.subj, result.ModeRate) {
			continue
		}
		fmt.Fprintf(w, "## %s: %s against %s\n\n", c.title, c.subj, c.ref)
		fmt.Fprintln(w, "| measure | value | target | verdict |")
		fmt.Fprintln(w, "|---|--:|--:|---|")
		for _, m := range []string{result.ModeRate, result.ModePost} {
			for _, h := range d.hops(c.subj, m) {
				r := d.procMed(c.subj, m, h, cpuPer1k) / d.procMed(c.ref, m, h, cpuPer1k)
				target, v := dash, dash
				if c.cpuLimit > 0 && m == result.ModeRate {
					target, v = fmt.Sprintf("≤ %.2f×", c.cpuLimit), verdict(r <= c.cpuLimit)
				}
				fmt.Fprintf(w, "| CPU per request, %s, %s | %s | %s | %s |\n", role(h), phaseNote(d, c.subj, m), num("%.2f×", r), target, v)
			}
		}
		for _, q := range []struct {
			name string
			f    func(*result.Phase) float64
		}{{"p50", p50}, {"p99", p99}} {
			diff := d.med(c.subj, result.ModeRate, q.f) - d.med(c.ref, result.ModeRate, q.f)
			fmt.Fprintf(w, "| latency %s, %s − %s | %s | %s | %s |\n", q.name, c.subj, c.ref, num("%+.3f ms", diff), dash, dash)
		}
		if d.has(c.subj, result.ModeMax) && d.has(c.ref, result.ModeMax) {
			r := d.med(c.subj, result.ModeMax, rps) / d.med(c.ref, result.ModeMax, rps)
			fmt.Fprintf(w, "| closed-loop throughput, %s / %s | %s | %s | %s |\n", c.subj, c.ref, num("%.2f×", r), dash, dash)
		}
		fmt.Fprintln(w)
	}
}

func writeWarnings(w io.Writer, d *data) {
	var lines []string
	for _, s := range d.scenarios {
		for _, m := range []string{result.ModeIdle, result.ModeRate, result.ModePost, result.ModeMax} {
			for _, p := range d.phases(s, m) {
				if p.Errors > 0 {
					lines = append(lines, fmt.Sprintf("- %s %s, run %d: %d errors of %d requests; first: %s",
						s, m, p.Run, p.Errors, p.Requests, p.FirstError))
				}
			}
		}
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w, "## Warnings")
	fmt.Fprintln(w)
	fmt.Fprintln(w, strings.Join(lines, "\n"))
	fmt.Fprintln(w)
}

func requests(p *result.Phase) float64   { return float64(p.Requests) }
func otherCores(p *result.Phase) float64 { return p.Machine.Other }
func lagP99(p *result.Phase) float64 {
	if p.Lag == nil {
		return math.NaN()
	}
	return p.Lag.P99
}

// errorsOf is the errors of all runs of s in mode m.
func errorsOf(d *data, s, m string) int {
	n := 0
	for _, p := range d.phases(s, m) {
		n += p.Errors
	}
	return n
}
