package main

import (
	"fmt"
	"math"
	"slices"

	"github.com/skeinmesh/skein/test/bench/result"
)

// Targets of issue 11 (acceptance point 1) for two sidecars with mTLS,
// metrics on and tracing at Dapr's default rate, against no proxy and
// against two HAProxy hops on the same machine.
const (
	limitCPURatio     = 1.5  // one sidecar's CPU per GET / one HAProxy hop's, at the constant rate
	limitAddedP50Ms   = 0.25 // subject p50 − baseline p50, at the constant rate
	limitAddedP99Ms   = 1.0  // and p99
	limitThroughput   = 0.5  // closed-loop req/s, subject / reference
	limitRSSLoadMB    = 30   // one sidecar's VmHWM after the constant-rate phase
	limitRSSIdleMB    = 20   // one sidecar's VmRSS after start-up and a few calls
	limitPostCPURatio = 2.0  // one sidecar's CPU per 1 MiB POST / one HAProxy hop's
)

// op is how a figure compares with its limit.
type op int

const (
	atMost op = iota
	below
	atLeast
)

func (o op) String() string {
	return [...]string{"≤", "<", "≥"}[o]
}

// ok compares v with limit. A ratio of medians that equals the limit can
// come out a rounding error above it (2.4/1.2 > 2 in float64), so "at
// most" and "at least" allow one part in 10^9.
func (o op) ok(v, limit float64) bool {
	const slack = 1e-9
	switch o {
	case atMost:
		return v <= limit*(1+slack)
	case below:
		return v < limit
	}
	return v >= limit*(1-slack)
}

// target is one row of the targets table. A relative target compares
// value/ref with limit; an absolute one compares value with limit.
type target struct {
	name     string
	value    float64 // the subject's figure, median of its runs
	format   func(float64) string
	ref      float64 // relative: the divisor; absolute: context (NaN: none)
	refNote  string  // what ref is
	relative bool
	op       op
	limit    float64
	perRun   []float64 // value/ref (relative) or value, of each run, paired by run number
	missing  string    // why the target could not be computed; "" when it was
}

// ratio is value/ref for a relative target, value/limit for an absolute one.
func (t *target) ratio() float64 {
	if t.relative {
		return t.value / t.ref
	}
	return t.value / t.limit
}

func (t *target) pass() bool {
	if t.relative {
		return t.op.ok(t.value/t.ref, t.limit)
	}
	return t.op.ok(t.value, t.limit)
}

// targets computes the targets table: subj against base (latency) and ref
// (CPU, throughput). It returns nil when subj did not run.
func targets(d *data, base, ref, subj string) []target {
	if !slices.Contains(d.scenarios, subj) {
		return nil
	}
	var ts []target
	rate := phaseNote(d, subj, result.ModeRate)
	hops := d.hops(subj, result.ModeRate)
	if len(hops) == 0 {
		hops = d.hops(subj, result.ModeIdle)
	}
	for _, h := range hops {
		ts = append(ts, relativeCPU(d, ref, subj, result.ModeRate, h, limitCPURatio,
			fmt.Sprintf("CPU per request, %s, %s", role(h), rate)))
	}
	for _, q := range []struct {
		name  string
		f     func(*result.Phase) float64
		limit float64
	}{{"p50", p50, limitAddedP50Ms}, {"p99", p99, limitAddedP99Ms}} {
		t := target{name: fmt.Sprintf("added latency over %s, %s, %s", base, q.name, rate), format: fmtMs,
			ref: math.NaN(), op: atMost, limit: q.limit}
		switch {
		case !d.has(subj, result.ModeRate):
			t.missing = subj + " has no constant-rate phase"
		case !d.has(base, result.ModeRate):
			t.missing = base + " not run"
		default:
			t.value = d.med(subj, result.ModeRate, q.f) - d.med(base, result.ModeRate, q.f)
			t.perRun = paired(d.byRun(subj, result.ModeRate, q.f), d.byRun(base, result.ModeRate, q.f),
				func(s, b float64) float64 { return s - b })
			if d.has(ref, result.ModeRate) {
				t.ref = d.med(ref, result.ModeRate, q.f) - d.med(base, result.ModeRate, q.f)
				t.refNote = ref + " added"
			}
		}
		ts = append(ts, t)
	}
	tp := target{name: "closed-loop throughput, " + phaseNote(d, subj, result.ModeMax), format: fmtRPS,
		relative: true, op: atLeast, limit: limitThroughput, refNote: ref}
	switch {
	case !d.has(subj, result.ModeMax):
		tp.missing = subj + " has no closed-loop phase"
	case !d.has(ref, result.ModeMax):
		tp.missing = ref + " not run"
	default:
		tp.value, tp.ref = d.med(subj, result.ModeMax, rps), d.med(ref, result.ModeMax, rps)
		tp.perRun = paired(d.byRun(subj, result.ModeMax, rps), d.byRun(ref, result.ModeMax, rps),
			func(s, r float64) float64 { return s / r })
	}
	ts = append(ts, tp)
	for _, m := range []struct {
		mode, what string
		f          func(*result.Proc) float64
		limit      float64
	}{
		{result.ModeRate, "peak RSS (VmHWM) after the constant rate", hwmMB, limitRSSLoadMB},
		{result.ModeIdle, "idle RSS (VmRSS) after start-up and a few calls", rssMB, limitRSSIdleMB},
	} {
		for _, h := range hops {
			t := target{name: fmt.Sprintf("%s, %s", m.what, role(h)), format: fmtMB, ref: math.NaN(), op: below, limit: m.limit}
			if !d.has(subj, m.mode) {
				t.missing = subj + " has no " + m.mode + " phase"
			} else {
				t.value = d.procMed(subj, m.mode, h, m.f)
				t.perRun = d.perRun(subj, m.mode, procOf(h, m.f))
				if d.has(ref, m.mode) {
					t.ref, t.refNote = d.meanHop(ref, m.mode, m.f), "one "+ref+" hop"
				}
			}
			ts = append(ts, t)
		}
	}
	post := phaseNote(d, subj, result.ModePost)
	for _, h := range hops {
		ts = append(ts, relativeCPU(d, ref, subj, result.ModePost, h, limitPostCPURatio,
			fmt.Sprintf("CPU per request, %s, %s", role(h), post)))
	}
	return ts
}

// relativeCPU is the target "hop h of subj costs at most limit times one
// hop of ref" in mode m.
func relativeCPU(d *data, ref, subj, m, h string, limit float64, name string) target {
	t := target{name: name, format: fmtCPU, relative: true, op: atMost, limit: limit, refNote: "one " + ref + " hop"}
	switch {
	case !d.has(subj, m):
		t.missing = subj + " has no " + m + " phase"
	case !d.has(ref, m):
		t.missing = ref + " not run"
	default:
		t.value, t.ref = d.procMed(subj, m, h, cpuPer1k), d.meanHop(ref, m, cpuPer1k)
		t.perRun = paired(d.byRun(subj, m, procOf(h, cpuPer1k)),
			d.byRun(ref, m, func(p *result.Phase) float64 { return meanHopOf(p, cpuPer1k) }),
			func(s, r float64) float64 { return s / r })
	}
	return t
}

// paired applies f to the values of a and b of each run both have, in run
// order.
func paired(a, b map[int]float64, f func(a, b float64) float64) []float64 {
	var runs []int
	for r := range a {
		if _, ok := b[r]; ok {
			runs = append(runs, r)
		}
	}
	slices.Sort(runs)
	out := make([]float64, len(runs))
	for i, r := range runs {
		out[i] = f(a[r], b[r])
	}
	return out
}

// phaseNote describes the load of scenario s's mode m from its first run:
// "GET, 1 KiB answer, at 1000 req/s".
func phaseNote(d *data, s, m string) string {
	ps := d.phases(s, m)
	if len(ps) == 0 {
		return m + " phase"
	}
	p := ps[0]
	req := "GET"
	if p.Method != "" {
		req = p.Method
	}
	if p.RequestBytes > 0 {
		req += " of " + fmtBytes(p.RequestBytes)
	}
	if p.ResponseBytes > 0 {
		req += ", " + fmtBytes(p.ResponseBytes) + " answer"
	}
	switch m {
	case result.ModeRate, result.ModePost:
		return fmt.Sprintf("%s, at %.0f req/s", req, p.TargetRate)
	case result.ModeMax:
		return fmt.Sprintf("%s, %d connections", req, p.Conns)
	}
	return req
}

// role names a proxy process by its place on the path; run.sh names the
// caller's proxy first.
func role(proc string) string {
	switch proc {
	case "skein-a":
		return "caller sidecar (skein-a)"
	case "skein-b":
		return "callee sidecar (skein-b)"
	case "haproxy1":
		return "HAProxy hop 1"
	case "haproxy2":
		return "HAProxy hop 2"
	}
	return proc
}

func fmtMs(v float64) string  { return fmt.Sprintf("%.3f ms", v) }
func fmtMB(v float64) string  { return fmt.Sprintf("%.1f MB", v) }
func fmtCPU(v float64) string { return fmt.Sprintf("%.4f s/1k req", v) }
func fmtRPS(v float64) string { return fmt.Sprintf("%.0f req/s", v) }

// fmtBytes writes 1024 as "1 KiB" and 1048576 as "1 MiB".
func fmtBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	}
	return fmt.Sprintf("%d B", n)
}
