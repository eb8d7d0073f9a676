package main

import (
	"bytes"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/skeinmesh/skein/test/bench/result"
)

// writeOverload reads the overload benchmark's lines (loadgen overload,
// test/bench/overload.sh) from in and writes overload.md, the latency
// chart overload-latency.svg and the outcome chart overload-outcomes.svg
// into dir. With several runs of a scenario the report shows each run's
// figures, the chart the first run's series.
func writeOverload(in, dir, headerFile string) error {
	rs, err := result.ReadOverload(in)
	if err != nil {
		return err
	}
	header := ""
	if headerFile != "" {
		b, err := os.ReadFile(headerFile)
		if err != nil {
			return err
		}
		header = string(b)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	charts := []struct {
		file string
		svg  func(io.Writer) error
	}{
		{"overload-latency.svg", overloadLatencyChart(rs).svg},
		{"overload-outcomes.svg", overloadOutcomeChart(rs).svg},
	}
	for _, c := range charts {
		var b bytes.Buffer
		if err := c.svg(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	writeOverloadReport(&b, rs, header)
	return os.WriteFile(filepath.Join(dir, "overload.md"), b.Bytes(), 0o644)
}

// firstRuns is each scenario's first run, in the order they first appear.
func firstRuns(rs []result.Overload) []result.Overload {
	var out []result.Overload
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.Scenario] {
			seen[r.Scenario] = true
			out = append(out, r)
		}
	}
	return out
}

func loadNote(r result.Overload) string {
	if r.Capacity > 0 {
		return fmt.Sprintf("%.0f req/s offered, %.1f× what the app serves (%.0f req/s)", r.TargetRate, r.TargetRate/r.Capacity, r.Capacity)
	}
	return fmt.Sprintf("%.0f req/s offered", r.TargetRate)
}

// overloadLatencyChart: p50 and p99 of the admitted calls, second by
// second, one pair of lines per scenario, with the app's own time dashed.
func overloadLatencyChart(rs []result.Overload) *lineChart {
	runs := firstRuns(rs)
	c := &lineChart{
		title:  "Latency of admitted calls, second by second",
		note:   loadNote(runs[0]) + "; from each request's scheduled start, by the second it was scheduled in",
		xLabel: "seconds into the load",
		yLabel: "latency, ms (log scale)",
	}
	for i, r := range runs {
		for _, q := range []struct {
			name string
			f    func(result.Second) float64
			dash bool
		}{{"p50", func(s result.Second) float64 { return s.P50 }, false}, {"p99", func(s result.Second) float64 { return s.P99 }, true}} {
			l := line{name: r.Scenario + " " + q.name, color: i, dashed: q.dash}
			for _, s := range r.Series {
				v := q.f(s)
				if s.Admitted == 0 {
					v = math.NaN()
				}
				l.points = append(l.points, point{float64(s.T) + 0.5, v})
			}
			c.lines = append(c.lines, l)
		}
	}
	if app := runs[0].AppMs; app > 0 {
		c.refs = append(c.refs, refLine{app, fmt.Sprintf("the app's own time, %.0f ms", app)})
	}
	return c
}

// overloadOutcomeChart: what became of the requests of each scenario.
func overloadOutcomeChart(rs []result.Overload) *barChart {
	runs := firstRuns(rs)
	c := &barChart{title: "Outcome of every request", yLabel: "requests",
		note: loadNote(runs[0]) + fmt.Sprintf(" for %.0f s", math.Round(float64(len(runs[0].Series))))}
	adm, ref, errs := series{name: "admitted (200)"}, series{name: "refused (503 OVERLOADED)"}, series{name: "errors (timeouts, other)"}
	for _, r := range runs {
		c.groups = append(c.groups, r.Scenario)
		adm.values = append(adm.values, float64(r.Admitted))
		ref.values = append(ref.values, float64(r.Refused))
		errs.values = append(errs.values, float64(r.Errors))
	}
	c.series = []series{adm, ref, errs}
	return c
}

func writeOverloadReport(w io.Writer, rs []result.Overload, header string) {
	fmt.Fprintln(w, "# Skein overload benchmark")
	fmt.Fprintln(w)
	if header = strings.TrimSpace(header); header != "" {
		fmt.Fprintln(w, header)
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "Latency runs from each request's scheduled start to its last answer byte (no coordinated omission).")
	fmt.Fprintln(w, "Admitted: answered 200; refused: answered 503 (Skein's OVERLOADED); errors: anything else, timeouts included;")
	fmt.Fprintln(w, "goodput: admitted calls a second of the phase's wall time, from its first scheduled request to its last answer.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| scenario | run | offered | sent | admitted | goodput req/s | refused | errors | admitted p50 ms | p90 ms | p99 ms | max ms | refusal p99 ms | skein_overload_refused_total |")
	fmt.Fprintln(w, "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|")
	for _, r := range rs {
		refusal := dash
		if r.Refusal != nil {
			refusal = fmt.Sprintf("%.1f", r.Refusal.P99)
		}
		var ms []string
		for _, k := range slices.Sorted(maps.Keys(r.Metrics)) {
			ms = append(ms, fmt.Sprintf("%s: %.0f", k, r.Metrics[k]))
		}
		metrics := dash
		if len(ms) > 0 {
			metrics = strings.Join(ms, ", ")
		}
		offered := fmt.Sprintf("%.0f req/s", r.TargetRate)
		if r.Capacity > 0 {
			offered += fmt.Sprintf(" (%.1f×)", r.TargetRate/r.Capacity)
		}
		fmt.Fprintf(w, "| %s | %d | %s | %d | %d | %.1f | %d | %d | %.1f | %.1f | %.1f | %.1f | %s | %s |\n",
			r.Scenario, r.Run, offered, r.Sent, r.Admitted, float64(r.Admitted)/max(r.Seconds, 1e-9), r.Refused, r.Errors,
			r.Latency.P50, r.Latency.P90, r.Latency.P99, r.Latency.Max, refusal, metrics)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "![Latency of admitted calls, second by second](overload-latency.svg)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "![Outcome of every request](overload-outcomes.svg)")
	fmt.Fprintln(w)
	for _, r := range firstRuns(rs) {
		fmt.Fprintf(w, "### %s, second by second (run %d)\n\n", r.Scenario, r.Run)
		fmt.Fprintln(w, "| second | admitted | refused | errors | admitted p50 ms | p99 ms |")
		fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|")
		for _, s := range r.Series {
			fmt.Fprintf(w, "| %d | %d | %d | %d | %.1f | %.1f |\n", s.T, s.Admitted, s.Refused, s.Errors, s.P50, s.P99)
		}
		fmt.Fprintln(w)
	}
}
