package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/skeinmesh/skein/test/bench/result"
)

// report is a soak's outcome.
type report struct {
	opts                   options
	samples                []sample
	load                   result.Phase
	appRequests, appFailed int64
	spans, exports         int64
	verdicts               []verdict
	failures               []string
}

// verdict is one figure of one sidecar judged.
type verdict struct {
	sidecar             string
	fig                 figure
	first, last, margin float64
	ok                  bool
}

// judge fills verdicts and failures: every call succeeded, the rate was
// kept, spans arrived, and no figure grew by more than its margin after
// the warm-up.
func (r *report) judge() {
	want := int(math.Round(r.opts.rate * r.opts.duration.Seconds()))
	if r.load.Errors > 0 {
		r.failures = append(r.failures, fmt.Sprintf("%d of %d calls failed; the first: %s", r.load.Errors, r.load.Requests, r.load.FirstError))
	}
	if r.load.Requests != want {
		r.failures = append(r.failures, fmt.Sprintf("%d calls made, want %d", r.load.Requests, want))
	}
	if r.spans == 0 {
		r.failures = append(r.failures, "the trace sink received no span")
	}
	first, last := windows(r.samples, r.opts.warmup)
	if len(first) == 0 || len(last) == 0 {
		r.failures = append(r.failures, fmt.Sprintf("only %d samples after the warm-up", len(r.after())))
		return
	}
	for i, name := range []string{"soak-a", "soak-b"} {
		for f := range nFigures {
			v := verdict{sidecar: name, fig: figures[f],
				first: median(first, i, f), last: median(last, i, f)}
			v.margin = max(v.fig.rel*v.first, v.fig.abs)
			v.ok = v.last-v.first <= v.margin
			if !v.ok {
				r.failures = append(r.failures, fmt.Sprintf("%s: %s grew from %.1f to %.1f after the warm-up, margin %.1f",
					name, v.fig.name, v.first, v.last, v.margin))
			}
			r.verdicts = append(r.verdicts, v)
		}
	}
}

// after is the samples taken after the warm-up.
func (r *report) after() []sample {
	i := slices.IndexFunc(r.samples, func(s sample) bool { return s.at >= r.opts.warmup })
	if i < 0 {
		return nil
	}
	return r.samples[i:]
}

// windows returns the first and the last third of the samples taken
// after warmup (at least one sample each).
func windows(samples []sample, warmup time.Duration) (first, last []sample) {
	i := slices.IndexFunc(samples, func(s sample) bool { return s.at >= warmup })
	if i < 0 || len(samples)-i < 2 {
		return nil, nil
	}
	after := samples[i:]
	n := max(len(after)/3, 1)
	return after[:n], after[len(after)-n:]
}

// median of figure f of sidecar i over ss.
func median(ss []sample, i, f int) float64 {
	vs := make([]float64, len(ss))
	for j, s := range ss {
		vs[j] = s.v[i][f]
	}
	slices.Sort(vs)
	if len(vs)%2 == 1 {
		return vs[len(vs)/2]
	}
	return (vs[len(vs)/2-1] + vs[len(vs)/2]) / 2
}

func (r *report) write(dir string) error {
	var csv bytes.Buffer
	csv.WriteString("seconds,sidecar,rss_mb,heap_inuse_mb,goroutines,open_fds\n")
	for _, s := range r.samples {
		for i, name := range []string{"soak-a", "soak-b"} {
			fmt.Fprintf(&csv, "%.0f,%s,%.2f,%.2f,%.0f,%.0f\n", s.at.Seconds(), name,
				s.v[i][figRSS], s.v[i][figHeap], s.v[i][figGoroutines], s.v[i][figFDs])
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "samples.csv"), csv.Bytes(), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "soak.svg"), r.svg(), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.md"), r.markdown(), 0o644)
}

func (r *report) markdown() []byte {
	var b bytes.Buffer
	verdict := "PASS"
	if len(r.failures) > 0 {
		verdict = "FAIL"
	}
	o := r.opts
	fmt.Fprintf(&b, "# Soak: %s\n\n", verdict)
	fmt.Fprintf(&b, "%.0f req/s of GET (%d-byte answers) for %s through two sidecars (soak-a → soak-b, mTLS), "+
		"retries, a circuit breaker and a timeout on soak-b, every call traced to an OTLP/HTTP sink; "+
		"samples every %s, judged after a warm-up of %s.\n\n", o.rate, appBodyBytes, o.duration, o.interval, o.warmup)
	l := r.load
	fmt.Fprintf(&b, "| calls | failed | achieved rate | p50 | p99 | p99.9 | max | app requests | planned 503s (retried) | spans received | exports |\n")
	fmt.Fprintf(&b, "|---|---|---|---|---|---|---|---|---|---|---|\n")
	fmt.Fprintf(&b, "| %d | %d | %.1f req/s | %.2f ms | %.2f ms | %.2f ms | %.1f ms | %d | %d | %d | %d |\n\n",
		l.Requests, l.Errors, l.RPS, l.Latency.P50, l.Latency.P99, l.Latency.P999, l.Latency.Max, r.appRequests, r.appFailed, r.spans, r.exports)
	if len(r.failures) > 0 {
		b.WriteString("Failures:\n\n")
		for _, f := range r.failures {
			fmt.Fprintf(&b, "- %s\n", f)
		}
		b.WriteString("\n")
	}
	b.WriteString("Growth after the warm-up: the median of the last third of the samples against that of the first third; " +
		"the margin is the larger of a share of the first and a fixed amount.\n\n")
	b.WriteString("| sidecar | figure | first third | last third | growth | margin | |\n|---|---|---|---|---|---|---|\n")
	for _, v := range r.verdicts {
		mark := "ok"
		if !v.ok {
			mark = "**grew**"
		}
		fmt.Fprintf(&b, "| %s | %s | %.1f %s | %.1f %s | %+.1f | %.1f (%.0f%% or %.0f) | %s |\n", v.sidecar, v.fig.name,
			v.first, v.fig.unit, v.last, v.fig.unit, v.last-v.first, v.margin, v.fig.rel*100, v.fig.abs, mark)
	}
	b.WriteString("\n![sampled curves](soak.svg)\n\nRaw samples: samples.csv.\n")
	return b.Bytes()
}

// svg draws one panel per figure, a line per sidecar, the warm-up shaded.
func (r *report) svg() []byte {
	const (
		w, panelH, left, right, top, gap = 760, 150, 70, 20, 40, 50
		plotW                            = w - left - right
	)
	colors := [2]string{"#4477AA", "#EE6677"} // Paul Tol's bright scheme, as test/bench/report
	h := top + nFigures*(panelH+gap)
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`+"\n", w, h, w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="15" font-weight="bold">%s</text>`+"\n", left,
		esc(fmt.Sprintf("Soak: %.0f req/s for %s, sampled every %s", r.opts.rate, r.opts.duration, r.opts.interval)))
	fmt.Fprintf(&b, `<rect x="%d" y="27" width="10" height="10" fill="%s"/><text x="%d" y="36" font-size="11">soak-a (caller)</text>`+"\n", w-250, colors[0], w-236)
	fmt.Fprintf(&b, `<rect x="%d" y="27" width="10" height="10" fill="%s"/><text x="%d" y="36" font-size="11">soak-b (callee)</text>`+"\n", w-130, colors[1], w-116)
	end := r.opts.duration.Seconds()
	if n := len(r.samples); n > 0 {
		end = max(end, r.samples[n-1].at.Seconds())
	}
	x := func(sec float64) float64 { return left + sec/end*plotW }
	for f := range nFigures {
		y0 := float64(top + f*(panelH+gap) + 20)
		hi := 0.0
		for _, s := range r.samples {
			hi = max(hi, s.v[0][f], s.v[1][f])
		}
		step, yMax := axis(hi)
		y := func(v float64) float64 { return y0 + panelH - v/yMax*panelH }
		name := figures[f].name
		if figures[f].unit != "" {
			name += ", " + figures[f].unit
		}
		fmt.Fprintf(&b, `<text x="%d" y="%.0f" font-size="12" font-weight="bold">%s</text>`+"\n", left, y0-8, esc(name))
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%d" fill="#eeeeee"/>`+"\n", x(0), y0, x(r.opts.warmup.Seconds())-x(0), panelH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="#666666">warm-up</text>`+"\n", x(0)+4, y0+12)
		for v := 0.0; v <= yMax*(1+1e-9); v += step {
			fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", left, y(v), left+plotW, y(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="end">%s</text>`+"\n", left-5, y(v)+3, trim(v))
		}
		for i := range 2 {
			var pts []string
			for _, s := range r.samples {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(s.at.Seconds()), y(s.v[i][f])))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", colors[i], strings.Join(pts, " "))
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#000000"/>`+"\n", left, y0+panelH, left+plotW, y0+panelH)
		for _, t := range timeTicks(end) {
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" text-anchor="middle">%s</text>`+"\n", x(t), y0+panelH+13, (time.Duration(t) * time.Second).String())
		}
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// axis picks a tick step of 1, 2 or 5 times a power of ten giving about
// four ticks up to a little above top, and the axis maximum.
func axis(top float64) (step, yMax float64) {
	if top <= 0 {
		return 1, 4
	}
	top *= 1.1
	raw := top / 4
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * pow; step >= raw {
			break
		}
	}
	return step, math.Ceil(top/step-1e-9) * step
}

// timeTicks are about six round times from 0 to end seconds.
func timeTicks(end float64) []float64 {
	step := 10.0
	for _, s := range []float64{10, 20, 30, 60, 120, 300, 600, 900, 1800, 3600} {
		if step = s; end/s <= 8 {
			break
		}
	}
	var ts []float64
	for t := 0.0; t <= end+1e-9; t += step {
		ts = append(ts, t)
	}
	return ts
}

func trim(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
