package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
)

// Targets of issue acceptance point 13, at this stage.
const (
	targetAddedP50Ms  = 0.3 // Skein's two hops over direct, p50
	targetAddedP99Ms  = 1.5 // and p99
	targetCPURatio    = 2.0 // one sidecar's CPU per request / one HAProxy hop's
	targetRSSMB       = 30  // peak RSS of one sidecar under the constant load, 10^6 bytes
	appProcName       = "app"
	mb                = 1e6
	kib               = 1024
	missingValueShown = "–"
)

func cmdReport(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	in := fs.String("in", "", "JSON lines written by rate and max")
	base := fs.String("baseline", "direct", "scenario without proxies")
	ref := fs.String("reference", "haproxy", "scenario the subject is compared with")
	subj := fs.String("subject", "skein", "scenario under test")
	ratiosOnly := fs.Bool("ratios-only", false, "print only the subject-to-reference ratios")
	cpuTarget := fs.Float64("cpu-target", targetCPURatio, "largest CPU-per-request ratio of a subject hop to a reference hop that passes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	rs, err := readResults(*in)
	if err != nil {
		return err
	}
	if *ratiosOnly {
		writeRatios(stdout, index(rs), *base, *ref, *subj, *cpuTarget)
		return nil
	}
	writeReport(stdout, rs, *base, *ref, *subj)
	return nil
}

func readResults(file string) ([]Result, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rs) == 0 {
		return nil, errors.New(file + ": no results")
	}
	return rs, nil
}

// results indexes runs by mode and scenario, keeping scenario order.
type results struct {
	order []string
	by    map[string]map[string]*Result // mode → scenario → result
}

func index(rs []Result) results {
	x := results{by: map[string]map[string]*Result{"rate": {}, "max": {}}}
	seen := map[string]bool{}
	for i := range rs {
		r := &rs[i]
		if !seen[r.Scenario] {
			seen[r.Scenario] = true
			x.order = append(x.order, r.Scenario)
		}
		if x.by[r.Mode] == nil {
			x.by[r.Mode] = map[string]*Result{}
		}
		x.by[r.Mode][r.Scenario] = r
	}
	return x
}

func writeReport(w io.Writer, rs []Result, base, ref, subj string) {
	x := index(rs)
	if len(x.by["rate"]) > 0 {
		var first *Result
		for _, r := range x.by["rate"] {
			first = r
			break
		}
		fmt.Fprintf(w, "### Constant rate: %.0f req/s open loop, %.0f s measured\n\n", first.TargetRate, first.Seconds)
		fmt.Fprintln(w, "Latency from each request's scheduled start to its last body byte (no coordinated omission);")
		fmt.Fprintln(w, "send lag is how late the generator sent (included in the latency); other work is the CPU, in cores,")
		fmt.Fprintln(w, "that processes other than the benchmark's used meanwhile, and steal what the hypervisor took.")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| scenario | requests | errors | achieved req/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | send lag p99 ms | other work + steal, cores |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, s := range x.order {
			r := x.by["rate"][s]
			if r == nil {
				continue
			}
			lag := missingValueShown
			if r.Lag != nil {
				lag = fmt.Sprintf("%.3f", r.Lag.P99)
			}
			fmt.Fprintf(w, "| %s | %d | %d | %.1f | %.3f | %.3f | %.3f | %.3f | %.3f | %s | %.2f + %.2f |\n",
				s, r.Requests, r.Errors, r.RPS, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.P999, r.Latency.Max, lag,
				r.Machine.Other, r.Machine.Steal)
		}
		fmt.Fprintln(w)
	}
	if len(x.by["max"]) > 0 {
		var first *Result
		for _, r := range x.by["max"] {
			first = r
			break
		}
		fmt.Fprintf(w, "### Closed loop: maximum throughput, %d connections, %.0f s measured\n\n", first.Conns, first.Seconds)
		fmt.Fprintln(w, "| scenario | requests | errors | req/s | p50 ms | p90 ms | p99 ms | max ms | generator cores | other work + steal, cores |")
		fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
		for _, s := range x.order {
			r := x.by["max"][s]
			if r == nil {
				continue
			}
			fmt.Fprintf(w, "| %s | %d | %d | %.0f | %.3f | %.3f | %.3f | %.3f | %.2f | %.2f + %.2f |\n",
				s, r.Requests, r.Errors, r.RPS, r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max,
				r.Machine.Generator, r.Machine.Other, r.Machine.Steal)
		}
		fmt.Fprintln(w)
	}
	writeProcs(w, x)
	writeRatios(w, x, base, ref, subj, targetCPURatio)
	for _, m := range []string{"rate", "max"} {
		for _, s := range x.order {
			if r := x.by[m][s]; r != nil && r.Errors > 0 {
				fmt.Fprintf(w, "\nWARNING: %s %s had %d errors; first: %s\n", s, m, r.Errors, r.FirstError)
			}
		}
	}
}

// writeProcs tabulates every watched process: CPU per 1,000 requests in
// both phases, peak RSS after the constant-rate phase (the load the RSS
// target is about) and after the closed-loop one.
func writeProcs(w io.Writer, x results) {
	fmt.Fprintln(w, "### Processes")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "CPU is utime+stime from /proc/<pid>/stat over the measured phase; peak RSS is VmHWM (MB = 10^6 bytes);")
	fmt.Fprintln(w, "context switches are those of all the process's threads per request, at the constant rate.")
	fmt.Fprintln(w, "`app` is the shared backend, for reference.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | process | CPU s / 1k req (rate) | CPU s / 1k req (max) | peak RSS MB after rate | peak RSS MB after max | ctx switches / req |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|")
	for _, s := range x.order {
		rate, max := x.by["rate"][s], x.by["max"][s]
		var names []string
		seen := map[string]bool{}
		for _, r := range []*Result{rate, max} {
			if r == nil {
				continue
			}
			for _, p := range r.Procs {
				if !seen[p.Name] {
					seen[p.Name] = true
					names = append(names, p.Name)
				}
			}
		}
		for _, n := range names {
			pr, pm := findProc(rate, n), findProc(max, n)
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", s, n,
				orDash(pr, func(p *ProcUsage) string { return fmt.Sprintf("%.4f", p.CPUPer1k) }),
				orDash(pm, func(p *ProcUsage) string { return fmt.Sprintf("%.4f", p.CPUPer1k) }),
				orDash(pr, func(p *ProcUsage) string { return fmt.Sprintf("%.1f", hwmMB(p)) }),
				orDash(pm, func(p *ProcUsage) string { return fmt.Sprintf("%.1f", hwmMB(p)) }),
				orDash(pr, func(p *ProcUsage) string { return fmt.Sprintf("%.1f", p.CtxSwitchesPerReq) }))
		}
	}
	fmt.Fprintln(w)
}

func findProc(r *Result, name string) *ProcUsage {
	if r == nil {
		return nil
	}
	for i := range r.Procs {
		if r.Procs[i].Name == name {
			return &r.Procs[i]
		}
	}
	return nil
}

func orDash(p *ProcUsage, f func(*ProcUsage) string) string {
	if p == nil {
		return missingValueShown
	}
	return f(p)
}

func hwmMB(p *ProcUsage) float64 { return float64(p.HWMKiB) * kib / mb }

// hops returns the proxy processes of a run: every watched one but the app.
func hops(r *Result) []ProcUsage {
	if r == nil {
		return nil
	}
	var out []ProcUsage
	for _, p := range r.Procs {
		if p.Name != appProcName {
			out = append(out, p)
		}
	}
	return out
}

func verdict(ok bool) string {
	if ok {
		return "PASS"
	}
	return "MISS"
}

func writeRatios(w io.Writer, x results, base, ref, subj string, cpuTarget float64) {
	b, r, s := x.by["rate"][base], x.by["rate"][ref], x.by["rate"][subj]
	fmt.Fprintln(w, "### Ratios and targets")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| measure | value | target | verdict |")
	fmt.Fprintln(w, "|---|--:|--:|---|")
	if b != nil && s != nil {
		d50, d99 := s.Latency.P50-b.Latency.P50, s.Latency.P99-b.Latency.P99
		fmt.Fprintf(w, "| %s added latency over %s, p50 (2 hops) | %.3f ms | ≤ %.1f ms | %s |\n", subj, base, d50, targetAddedP50Ms, verdict(d50 <= targetAddedP50Ms))
		fmt.Fprintf(w, "| %s added latency over %s, p99 (2 hops) | %.3f ms | ≤ %.1f ms | %s |\n", subj, base, d99, targetAddedP99Ms, verdict(d99 <= targetAddedP99Ms))
	}
	if b != nil && r != nil {
		fmt.Fprintf(w, "| %s added latency over %s, p50 / p99 (2 hops, reference) | %.3f / %.3f ms | | |\n", ref, base,
			r.Latency.P50-b.Latency.P50, r.Latency.P99-b.Latency.P99)
	}
	rh, sh := hops(r), hops(s)
	if len(rh) > 0 && len(sh) > 0 {
		var refSum, subjSum, worst float64
		for _, p := range rh {
			refSum += p.CPUPer1k
		}
		refHop := refSum / float64(len(rh))
		for _, p := range sh {
			subjSum += p.CPUPer1k
			ratio := p.CPUPer1k / refHop
			worst = max(worst, ratio)
			fmt.Fprintf(w, "| CPU per request, %s / mean %s hop | %.2fx | ≤ %.2fx | %s |\n", p.Name, ref, ratio, cpuTarget, verdict(ratio <= cpuTarget))
		}
		fmt.Fprintf(w, "| CPU per request, both %s hops / both %s hops | %.2fx | | |\n", subj, ref, subjSum/refSum)
		var peak float64
		name := ""
		for _, p := range sh {
			if v := hwmMB(&p); v > peak {
				peak, name = v, p.Name
			}
		}
		fmt.Fprintf(w, "| peak RSS of a %s hop under the constant load (%s) | %.1f MB | < %d MB | %s |\n", subj, name, peak, targetRSSMB, verdict(peak < targetRSSMB))
	}
	mxBase, mxRef, mxSubj := x.by["max"][base], x.by["max"][ref], x.by["max"][subj]
	if mxRef != nil && mxSubj != nil && mxRef.RPS > 0 {
		fmt.Fprintf(w, "| max throughput, %s / %s | %.2fx (%.0f / %.0f req/s) | | |\n", subj, ref, mxSubj.RPS/mxRef.RPS, mxSubj.RPS, mxRef.RPS)
	}
	if mxBase != nil && mxSubj != nil && mxBase.RPS > 0 {
		fmt.Fprintf(w, "| max throughput, %s / %s | %.2fx | | |\n", subj, base, mxSubj.RPS/mxBase.RPS)
	}
	fmt.Fprintln(w)
}
