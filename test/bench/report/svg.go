package main

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// barChart is a grouped bar chart: one group of bars per category on the
// x axis, one bar per series in each group, the value written above each
// bar, and optional dashed horizontal lines (limits).
type barChart struct {
	title  string
	note   string // a line under the title: what the figures are
	yLabel string
	groups []string // x-axis categories; "\n" breaks a label into lines
	series []series
	lines  []refLine
	// logY puts the y axis on a log scale, for figures that span decades
	// (p50 against p99); bars then start at the decade below the smallest.
	logY bool
}

type series struct {
	name   string
	values []float64 // one per group; NaN: no bar
}

type refLine struct {
	value float64
	label string
}

// Layout, in SVG user units (pixels).
const (
	barWidth   = 40
	barGap     = 4
	groupGap   = 36
	plotHeight = 300
	marginLeft = 80
	marginTop  = 92 // title, note, legend
	marginBot  = 64 // category labels
	marginRt   = 24 // more when limit lines have labels
	fontFamily = "DejaVu Sans, Helvetica, Arial, sans-serif"
)

// palette is Paul Tol's bright scheme, told apart by colour-blind readers.
var palette = []string{"#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377"}

// svg renders the chart as a standalone SVG document.
func (c *barChart) svg(w io.Writer) error {
	var b bytes.Buffer
	ns := max(len(c.series), 1)
	groupW := ns*barWidth + (ns-1)*barGap + groupGap
	plotW := max(len(c.groups)*groupW, 360)
	right := marginRt
	for _, l := range c.lines {
		right = max(right, 12+textWidth(l.label, 11))
	}
	legend := 0
	for _, s := range c.series {
		legend += 16 + textWidth(s.name, 12) + 20
	}
	width := max(marginLeft+plotW+right, marginLeft+legend, marginLeft+textWidth(c.title, 16), marginLeft+textWidth(c.note, 12)) + 8
	height := marginTop + plotHeight + marginBot
	top, low := 0.0, math.Inf(1)
	for _, s := range c.series {
		for _, v := range s.values {
			if !math.IsNaN(v) {
				top = max(top, v)
				if v > 0 {
					low = min(low, v)
				}
			}
		}
	}
	for _, l := range c.lines {
		top = max(top, l.value)
	}
	var y func(float64) float64
	var ticks []tickMark
	if c.logY {
		lo, hi := logAxis(low, top)
		y = func(v float64) float64 {
			v = max(v, lo)
			return marginTop + plotHeight - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotHeight
		}
		ticks = logTicks(lo, hi)
	} else {
		step, yMax := axis(top)
		y = func(v float64) float64 { return marginTop + plotHeight - v/yMax*plotHeight }
		for v := 0.0; v <= yMax*(1+1e-9); v += step {
			ticks = append(ticks, tickMark{v, tick(v, step)})
		}
	}
	bottom := float64(marginTop + plotHeight)

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s" font-family="%s">`+"\n",
		width, height, width, height, esc(c.title), fontFamily)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.title))
	if c.note != "" {
		fmt.Fprintf(&b, `<text x="%d" y="44" font-size="12" fill="#444444">%s</text>`+"\n", marginLeft, esc(c.note))
	}
	// Legend, one row above the plot.
	lx := marginLeft
	for i, s := range c.series {
		fmt.Fprintf(&b, `<rect x="%d" y="58" width="12" height="12" fill="%s"/>`+"\n", lx, palette[i%len(palette)])
		fmt.Fprintf(&b, `<text x="%d" y="69" font-size="12">%s</text>`+"\n", lx+16, esc(s.name))
		lx += 16 + textWidth(s.name, 12) + 20
	}
	// Grid and y axis.
	for _, t := range ticks {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", marginLeft, y(t.v), marginLeft+plotW, y(t.v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", marginLeft-6, y(t.v)+4, t.label)
	}
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" font-size="12" text-anchor="middle">%s</text>`+"\n",
		marginTop+plotHeight/2, esc(c.yLabel))
	// Bars with their values, then category labels.
	for g, name := range c.groups {
		x0 := marginLeft + g*groupW + groupGap/2
		for i, s := range c.series {
			v := s.values[g]
			if math.IsNaN(v) || c.logY && v <= 0 {
				continue
			}
			x := x0 + i*(barWidth+barGap)
			fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%d" height="%.1f" fill="%s"><title>%s, %s: %s</title></rect>`+"\n",
				x, y(v), barWidth, bottom-y(v), palette[i%len(palette)], esc(strings.ReplaceAll(name, "\n", " ")), esc(s.name), label(v))
			fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="10" text-anchor="middle">%s</text>`+"\n", x+barWidth/2, y(v)-4, label(v))
		}
		cx := x0 + (ns*barWidth+(ns-1)*barGap)/2
		for j, line := range strings.Split(name, "\n") {
			fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12" text-anchor="middle">%s</text>`+"\n",
				cx, marginTop+plotHeight+18+j*15, esc(line))
		}
	}
	for _, l := range c.lines {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cc3311" stroke-width="1.5" stroke-dasharray="6 4"/>`+"\n",
			marginLeft, y(l.value), marginLeft+plotW, y(l.value))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" fill="#cc3311">%s</text>`+"\n", marginLeft+plotW+6, y(l.value)+4, esc(l.label))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", marginLeft, marginTop, marginLeft, marginTop+plotHeight)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", marginLeft, marginTop+plotHeight, marginLeft+plotW, marginTop+plotHeight)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

// axis picks a tick step of 1, 2 or 5 times a power of ten giving about
// five ticks up to a little above top, and the axis maximum (a multiple of
// the step).
func axis(top float64) (step, yMax float64) {
	if top <= 0 || math.IsNaN(top) || math.IsInf(top, 0) {
		return 1, 5
	}
	top *= 1.1 // room for the value above the tallest bar
	raw := top / 5
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if step = m * pow; step >= raw {
			break
		}
	}
	return step, math.Ceil(top/step-1e-9) * step
}

// tickMark is a labelled grid line.
type tickMark struct {
	v     float64
	label string
}

// logAxis returns the decades around low and top (top with room for the
// values above the bars).
func logAxis(low, top float64) (lo, hi float64) {
	if top <= 0 || math.IsInf(low, 0) {
		return 0.1, 10
	}
	lo = math.Pow(10, math.Floor(math.Log10(low)))
	hi = math.Pow(10, math.Ceil(math.Log10(top*1.3)))
	return lo, hi
}

// logTicks marks 1, 2 and 5 times each power of ten from lo to hi.
func logTicks(lo, hi float64) []tickMark {
	var ts []tickMark
	for e := int(math.Round(math.Log10(lo))); e <= int(math.Round(math.Log10(hi))); e++ {
		pow := math.Pow(10, float64(e))
		for _, m := range []float64{1, 2, 5} {
			if v := m * pow; v <= hi*(1+1e-9) {
				ts = append(ts, tickMark{v, tick(v, pow)})
			}
		}
	}
	return ts
}

// tick writes an axis value with as many decimals as the step needs.
func tick(v, step float64) string {
	dec := max(0, -int(math.Floor(math.Log10(step)+1e-9)))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// label writes a bar's value with three significant digits (all of them
// from 100 up), never in exponent form.
func label(v float64) string {
	if v == 0 {
		return "0"
	}
	if math.Abs(v) >= 100 {
		return strconv.FormatFloat(v, 'f', 0, 64)
	}
	dec := max(0, 2-int(math.Floor(math.Log10(math.Abs(v)))))
	return strconv.FormatFloat(v, 'f', dec, 64)
}

// textWidth estimates the width of s at a font size: about 0.6 em a
// character in a sans-serif font.
func textWidth(s string, size int) int {
	return len([]rune(s)) * size * 6 / 10
}

// esc escapes text for an SVG element or attribute.
func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}
