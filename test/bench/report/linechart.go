package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"strings"
)

// lineChart is a time series chart: lines over a linear x axis and a log
// y axis (latencies that span decades), a legend, and optional dashed
// horizontal reference lines. It shares barChart's layout, palette, axes
// and text helpers.
type lineChart struct {
	title, note    string
	xLabel, yLabel string
	lines          []line
	refs           []refLine
}

type line struct {
	name   string
	color  int // index into palette: lines of one scenario share it
	dashed bool
	points []point // y NaN: no value, the line breaks
}

type point struct{ x, y float64 }

const lineWidth = 640 // plot width

func (c *lineChart) svg(w io.Writer) error {
	var b bytes.Buffer
	xMax, low, top := 0.0, math.Inf(1), 0.0
	for _, l := range c.lines {
		for _, p := range l.points {
			xMax = max(xMax, p.x)
			if !math.IsNaN(p.y) && p.y > 0 {
				low, top = min(low, p.y), max(top, p.y)
			}
		}
	}
	for _, r := range c.refs {
		low, top = min(low, r.value), max(top, r.value)
	}
	xStep, xTop := axis(xMax / 1.1) // axis adds 10% room; the x axis needs none
	lo, hi := logAxis(low, top)
	right := marginRt
	for _, r := range c.refs {
		right = max(right, 12+textWidth(r.label, 11))
	}
	legend := 0
	for _, l := range c.lines {
		legend += 28 + textWidth(l.name, 12) + 16
	}
	legendRows := 1 + legend/(lineWidth+right)
	top0 := marginTop + 18*(legendRows-1)
	width := max(marginLeft+lineWidth+right, marginLeft+textWidth(c.title, 16), marginLeft+textWidth(c.note, 12)) + 8
	height := top0 + plotHeight + marginBot
	x := func(v float64) float64 { return marginLeft + v/xTop*lineWidth }
	y := func(v float64) float64 {
		v = min(max(v, lo), hi)
		return float64(top0) + plotHeight - (math.Log10(v)-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo))*plotHeight
	}
	bottom := float64(top0 + plotHeight)

	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img" aria-label="%s" font-family="%s">`+"\n",
		width, height, width, height, esc(c.title), fontFamily)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="#ffffff"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft, esc(c.title))
	if c.note != "" {
		fmt.Fprintf(&b, `<text x="%d" y="44" font-size="12" fill="#444444">%s</text>`+"\n", marginLeft, esc(c.note))
	}
	lx, ly := marginLeft, 64
	for _, l := range c.lines {
		wdt := 28 + textWidth(l.name, 12) + 16
		if lx+wdt > marginLeft+lineWidth+right && lx > marginLeft {
			lx, ly = marginLeft, ly+18
		}
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="2"%s/>`+"\n",
			lx, ly, lx+22, ly, palette[l.color%len(palette)], dashAttr(l.dashed))
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="12">%s</text>`+"\n", lx+28, ly+4, esc(l.name))
		lx += wdt
	}
	for _, t := range logTicks(lo, hi) {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#dddddd"/>`+"\n", marginLeft, y(t.v), marginLeft+lineWidth, y(t.v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" text-anchor="end">%s</text>`+"\n", marginLeft-6, y(t.v)+4, t.label)
	}
	for v := 0.0; v <= xTop*(1+1e-9); v += xStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="11" text-anchor="middle">%s</text>`+"\n", x(v), bottom+16, tick(v, xStep))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="12" text-anchor="middle">%s</text>`+"\n", marginLeft+lineWidth/2, bottom+36, esc(c.xLabel))
	fmt.Fprintf(&b, `<text transform="translate(18 %d) rotate(-90)" font-size="12" text-anchor="middle">%s</text>`+"\n",
		top0+plotHeight/2, esc(c.yLabel))
	for _, r := range c.refs {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#cc3311" stroke-width="1.5" stroke-dasharray="2 3"/>`+"\n",
			marginLeft, y(r.value), marginLeft+lineWidth, y(r.value))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" font-size="11" fill="#cc3311">%s</text>`+"\n", marginLeft+lineWidth+6, y(r.value)+4, esc(r.label))
	}
	for _, l := range c.lines {
		var segs []string
		var cur []string
		flush := func() {
			if len(cur) > 0 {
				segs = append(segs, "M"+strings.Join(cur, " L"))
				cur = nil
			}
		}
		for _, p := range l.points {
			if math.IsNaN(p.y) || p.y <= 0 {
				flush()
				continue
			}
			cur = append(cur, fmt.Sprintf("%.1f %.1f", x(p.x), y(p.y)))
		}
		flush()
		if len(segs) == 0 {
			continue
		}
		fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"%s><title>%s</title></path>`+"\n",
			strings.Join(segs, " "), palette[l.color%len(palette)], dashAttr(l.dashed), esc(l.name))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", marginLeft, top0, marginLeft, top0+plotHeight)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#000000"/>`+"\n", marginLeft, top0+plotHeight, marginLeft+lineWidth, top0+plotHeight)
	b.WriteString("</svg>\n")
	_, err := w.Write(b.Bytes())
	return err
}

func dashAttr(dashed bool) string {
	if dashed {
		return ` stroke-dasharray="6 4"`
	}
	return ""
}
