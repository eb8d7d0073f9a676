package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// writeReport turns every line of dir/raw.jsonl into dir/report.md and
// dir/push-latency.svg.
func writeReport(dir string) error {
	f, err := os.Open(filepath.Join(dir, "raw.jsonl"))
	if err != nil {
		return err
	}
	defer f.Close()
	var rs []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return fmt.Errorf("raw.jsonl line %d: %w", len(rs)+1, err)
		}
		rs = append(rs, r)
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.md"), []byte(markdown(rs)), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "push-latency.svg"), []byte(latencySVG(rs)), 0o644)
}

func markdown(rs []Result) string {
	var b strings.Builder
	b.WriteString("# Control plane scale (test/bench/xds)\n\n")
	b.WriteString("Push: from a change's registry request until every sidecar has ACKed an EDS response carrying it, over the changes; per sidecar: over every (change, sidecar) pair. ")
	b.WriteString("CPU and memory are the `skein control-plane` process's; bytes are the marshalled size of every response the sidecars received.\n\n")
	b.WriteString("| binary | sidecars | endpoints | mode | changes (rate/s) | push p50 / p99 ms | per sidecar p50 / p99 ms | CPU ms/change | bytes/change | responses/change | memory KiB/sidecar | RSS MiB before → with sidecars (peak) | connect: CPU s, all synced s | initial KiB/sidecar | missed | diverged | load avg |\n")
	b.WriteString("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %s | %d | %d | %s | %d (%.1f) | %s / %s | %s / %s | %.1f | %s | %.0f | %.1f | %.0f → %.0f (%.0f) | %.1f, %.1f | %.0f | %d | %d | %.1f |\n",
			cmpOr(r.Label, "-"), r.Sidecars, r.Endpoints, r.Mode, r.Changes, r.RateHz,
			ms(r.PushP50Ms), ms(r.PushP99Ms), ms(r.PairP50Ms), ms(r.PairP99Ms), r.CPUPerChangeMs,
			size(r.BytesPerChange), r.ResponsesPerChange, r.MemPerSidecarKiB,
			float64(r.RSSBaseKiB)/1024, float64(r.RSSKiB)/1024, float64(r.HWMKiB)/1024,
			r.CPUConnectS, r.SyncS, r.InitialBytesPerSide/1024, r.Missed, r.Diverged, r.LoadAvg)
	}
	b.WriteString("\n![push latency](push-latency.svg)\n")
	return b.String()
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func ms(v float64) string {
	if v >= 100 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

func size(b float64) string {
	switch {
	case b >= 1<<30:
		return fmt.Sprintf("%.2f GiB", b/(1<<30))
	case b >= 1<<20:
		return fmt.Sprintf("%.1f MiB", b/(1<<20))
	case b >= 1<<10:
		return fmt.Sprintf("%.1f KiB", b/(1<<10))
	}
	return fmt.Sprintf("%.0f B", b)
}

// latencySVG draws push p50 and p99 of every run as horizontal bars on a
// logarithmic axis (1 ms to the largest power of ten needed).
func latencySVG(rs []Result) string {
	const left, width, bar, gap = 260, 480, 12, 10
	top := 1.0
	for _, r := range rs {
		top = max(top, r.PushP99Ms)
	}
	decades := math.Max(1, math.Ceil(math.Log10(top)))
	x := func(v float64) float64 { return width * math.Max(0, math.Log10(math.Max(v, 1))) / decades }
	h := 40 + len(rs)*(2*bar+gap) + 30
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", left+width+80, h)
	fmt.Fprintf(&b, `<text x="10" y="18" font-size="13">Push latency to every sidecar, ms (log scale): p50 light, p99 dark</text>`+"\n")
	for d := 0.0; d <= decades; d++ {
		px := left + width*d/decades
		fmt.Fprintf(&b, `<line x1="%.0f" y1="28" x2="%.0f" y2="%d" stroke="#ddd"/><text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", px, px, h-22, px, h-8, ms(math.Pow(10, d)))
	}
	for i, r := range rs {
		y := 34 + i*(2*bar+gap)
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s %d sidecars, %s</text>`+"\n", left-6, y+bar+4, esc(cmpOr(r.Label, "")), r.Sidecars, r.Mode)
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#9ecae1"/><text x="%.1f" y="%d">%s</text>`+"\n", left, y, x(r.PushP50Ms), bar, left+x(r.PushP50Ms)+4, y+bar-2, ms(r.PushP50Ms))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="#3182bd"/><text x="%.1f" y="%d">%s</text>`+"\n", left, y+bar, x(r.PushP99Ms), bar, left+x(r.PushP99Ms)+4, y+2*bar-2, ms(r.PushP99Ms))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
