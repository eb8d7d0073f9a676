package main

import (
	"fmt"
	"math"

	"github.com/skeinmesh/skein/test/bench/result"
)

// chartFile is a chart written next to the report.
type chartFile struct {
	file, title string
	chart       *barChart
}

// charts builds the report's charts from what d holds, in the order the
// report shows them; a chart with no data is left out.
func charts(d *data, o options) []chartFile {
	var out []chartFile
	add := func(file string, c *barChart) {
		if c != nil && len(c.groups) > 0 {
			out = append(out, chartFile{file: file, title: c.title, chart: c})
		}
	}
	add("latency.svg", latencyChart(d))
	add("cpu-get.svg", cpuChart(d, o, result.ModeRate, limitCPURatio))
	add("cpu-post.svg", cpuChart(d, o, result.ModePost, limitPostCPURatio))
	add("throughput.svg", throughputChart(d, o))
	add("rss.svg", rssChart(d))
	return out
}

func runsNote(d *data) string {
	return fmt.Sprintf("median of %d runs", d.runs)
}

// latencyChart: p50, p90 and p99 of each path at the constant rate.
func latencyChart(d *data) *barChart {
	ss := d.with(result.ModeRate)
	if len(ss) == 0 {
		return nil
	}
	c := &barChart{title: "Latency by path, " + phaseNote(d, ss[0], result.ModeRate), yLabel: "latency, ms (log scale)", logY: true,
		note: runsNote(d) + "; from each request's scheduled start to its last answer byte", groups: ss}
	for _, q := range []struct {
		name string
		f    func(*result.Phase) float64
	}{{"p50", p50}, {"p90", p90}, {"p99", p99}} {
		s := series{name: q.name}
		for _, sc := range ss {
			s.values = append(s.values, d.med(sc, result.ModeRate, q.f))
		}
		c.series = append(c.series, s)
	}
	return c
}

// cpuChart: CPU per 1,000 requests of each proxy process in mode m, one
// group per path with proxies, the caller-side proxy first; the dashed
// line is the target, limit times one reference hop.
func cpuChart(d *data, o options, m string, limit float64) *barChart {
	var ss []string
	most := 0
	for _, s := range d.with(m) {
		if n := len(d.hops(s, m)); n > 0 {
			ss = append(ss, s)
			most = max(most, n)
		}
	}
	if len(ss) == 0 {
		return nil
	}
	c := &barChart{title: "CPU per 1,000 requests by proxy, " + phaseNote(d, ss[0], m),
		yLabel: "CPU seconds per 1,000 requests", note: runsNote(d) + "; utime+stime of each proxy process", groups: ss}
	names := []string{"hop 1: HAProxy 1, caller sidecar", "hop 2: HAProxy 2, callee sidecar"}
	for i := range most {
		name := fmt.Sprintf("hop %d", i+1)
		if i < len(names) {
			name = names[i]
		}
		s := series{name: name}
		for _, sc := range ss {
			v := math.NaN()
			if hs := d.hops(sc, m); i < len(hs) {
				v = d.procMed(sc, m, hs[i], cpuPer1k)
			}
			s.values = append(s.values, v)
		}
		c.series = append(c.series, s)
	}
	if ref := d.meanHop(o.ref, m, cpuPer1k); !math.IsNaN(ref) {
		c.lines = append(c.lines, refLine{limit * ref, fmt.Sprintf("target: %g× one %s hop", limit, o.ref)})
	}
	return c
}

// throughputChart: closed-loop requests per second of each path; the
// dashed line is the target, limitThroughput times the reference's.
func throughputChart(d *data, o options) *barChart {
	ss := d.with(result.ModeMax)
	if len(ss) == 0 {
		return nil
	}
	c := &barChart{title: "Closed-loop throughput by path, " + phaseNote(d, ss[0], result.ModeMax),
		yLabel: "requests per second", note: runsNote(d) + "; client, app and proxies share the machine", groups: ss}
	s := series{name: "req/s"}
	for _, sc := range ss {
		s.values = append(s.values, d.med(sc, result.ModeMax, rps))
	}
	c.series = append(c.series, s)
	if d.has(o.ref, result.ModeMax) {
		c.lines = append(c.lines, refLine{limitThroughput * d.med(o.ref, result.ModeMax, rps),
			fmt.Sprintf("target: %g× %s", limitThroughput, o.ref)})
	}
	return c
}

// rssChart: each proxy process's RSS idle and its peak under the constant
// rate, with the two limits.
func rssChart(d *data) *barChart {
	c := &barChart{title: "Memory by proxy process", yLabel: "MB (10^6 bytes)",
		note: runsNote(d) + "; idle: VmRSS after start-up and a few calls; under load: VmHWM after the constant rate"}
	idle, load := series{name: "idle (VmRSS)"}, series{name: "peak under load (VmHWM)"}
	for _, s := range d.scenarios {
		hs := d.hops(s, result.ModeRate)
		if len(hs) == 0 {
			hs = d.hops(s, result.ModeIdle)
		}
		for _, h := range hs {
			c.groups = append(c.groups, s+"\n"+shortRole(h))
			idle.values = append(idle.values, d.procMed(s, result.ModeIdle, h, rssMB))
			load.values = append(load.values, d.procMed(s, result.ModeRate, h, hwmMB))
		}
	}
	c.series = []series{idle, load}
	c.lines = []refLine{
		{limitRSSIdleMB, fmt.Sprintf("sidecar idle target: < %d MB", limitRSSIdleMB)},
		{limitRSSLoadMB, fmt.Sprintf("sidecar load target: < %d MB", limitRSSLoadMB)},
	}
	return c
}

// shortRole names a proxy process by its place on the path, for a chart's
// axis under the scenario's name.
func shortRole(proc string) string {
	switch proc {
	case "skein-a":
		return "caller sidecar"
	case "skein-b":
		return "callee sidecar"
	case "haproxy1":
		return "hop 1"
	case "haproxy2":
		return "hop 2"
	}
	return proc
}
