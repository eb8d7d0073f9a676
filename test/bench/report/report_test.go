package main

import (
	"encoding/xml"
	"errors"
	"flag"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/test/bench/result"
)

var update = flag.Bool("update", false, "rewrite testdata/report.md.golden")

var defaults = options{base: "direct", ref: "haproxy", subj: "skein-mtls"}

// TestReport writes the report of testdata/raw.jsonl (three runs of direct,
// haproxy and skein-mtls, every phase) and checks report.md against its
// golden file, that it links every chart, and that each chart is
// well-formed SVG showing the medians.
func TestReport(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"-in", "testdata/raw.jsonl", "-out", dir}, io.Discard); code != 0 {
		t.Fatalf("run exited %d", code)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "report.md.golden")
	if *update {
		if err := os.WriteFile(golden, md, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(md)); diff != "" {
		t.Errorf("report.md (-want +got), run with -update if intended:\n%s", diff)
	}

	charts := []struct {
		file  string
		texts []string // text elements the chart must have, among others
	}{
		{"latency.svg", []string{"Latency by path, GET, 1 KiB answer, at 1000 req/s", "latency, ms (log scale)", "p50", "p90", "p99",
			"direct", "haproxy", "skein-mtls", "0.120", "0.500", "0.200", "0.320", "1.70"}},
		{"cpu-get.svg", []string{"CPU seconds per 1,000 requests", "hop 1: HAProxy 1, caller sidecar",
			"0.0400", "0.0600", "0.0700", "0.0800", "target: 1.5× one haproxy hop"}},
		{"cpu-post.svg", []string{"CPU per 1,000 requests by proxy, POST of 1 MiB, 1 KiB answer, at 100 req/s",
			"0.500", "0.700", "1.00", "1.50", "target: 2× one haproxy hop"}},
		{"throughput.svg", []string{"requests per second", "50000", "20000", "11000", "target: 0.5× haproxy"}},
		{"rss.svg", []string{"MB (10^6 bytes)", "idle (VmRSS)", "peak under load (VmHWM)", "caller sidecar", "hop 2",
			"15.0", "19.5", "25.0", "31.0", "8.00", "sidecar idle target: < 20 MB", "sidecar load target: < 30 MB"}},
	}
	for _, c := range charts {
		t.Run(c.file, func(t *testing.T) {
			if !strings.Contains(string(md), "]("+c.file+")") {
				t.Errorf("report.md does not link %s", c.file)
			}
			f, err := os.Open(filepath.Join(dir, c.file))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			texts := svgTexts(t, f)
			for _, want := range c.texts {
				if !slices.Contains(texts, want) {
					t.Errorf("no text %q in %s; texts: %q", want, c.file, texts)
				}
			}
		})
	}
}

// svgTexts decodes an SVG document as XML, fails the test if it is not
// well-formed or its root is not svg, and returns the content of its text
// elements.
func svgTexts(t *testing.T, r io.Reader) []string {
	t.Helper()
	dec := xml.NewDecoder(r)
	var texts []string
	var stack []string
	root := ""
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v", err)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if root == "" {
				root = tok.Name.Local
				if tok.Name.Space != "http://www.w3.org/2000/svg" {
					t.Errorf("root namespace %q, want SVG's", tok.Name.Space)
				}
			}
			stack = append(stack, tok.Name.Local)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) > 0 && stack[len(stack)-1] == "text" {
				texts = append(texts, string(tok))
			}
		}
	}
	if root != "svg" {
		t.Errorf("root element %q, want svg", root)
	}
	return texts
}

func TestTargetVerdicts(t *testing.T) {
	ps, err := result.ReadFile("testdata/raw.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	type row struct {
		Name    string
		Ratio   string
		Verdict string
	}
	tests := []struct {
		name string
		drop string // scenario removed from the fixture
		want []row
	}{
		{"all scenarios", "", []row{
			{"CPU per request, caller sidecar (skein-a), GET, 1 KiB answer, at 1000 req/s", "1.40×", "PASS"},
			{"CPU per request, callee sidecar (skein-b), GET, 1 KiB answer, at 1000 req/s", "1.60×", "MISS"},
			{"added latency over direct, p50, GET, 1 KiB answer, at 1000 req/s", "80% of limit", "PASS"},
			{"added latency over direct, p99, GET, 1 KiB answer, at 1000 req/s", "120% of limit", "MISS"},
			{"closed-loop throughput, GET, 1 KiB answer, 32 connections", "0.55×", "PASS"},
			{"peak RSS (VmHWM) after the constant rate, caller sidecar (skein-a)", "83% of limit", "PASS"},
			{"peak RSS (VmHWM) after the constant rate, callee sidecar (skein-b)", "103% of limit", "MISS"},
			{"idle RSS (VmRSS) after start-up and a few calls, caller sidecar (skein-a)", "75% of limit", "PASS"},
			{"idle RSS (VmRSS) after start-up and a few calls, callee sidecar (skein-b)", "98% of limit", "PASS"},
			{"CPU per request, caller sidecar (skein-a), POST of 1 MiB, 1 KiB answer, at 100 req/s", "1.67×", "PASS"},
			{"CPU per request, callee sidecar (skein-b), POST of 1 MiB, 1 KiB answer, at 100 req/s", "2.50×", "MISS"},
		}},
		{"no haproxy", "haproxy", []row{
			{"CPU per request, caller sidecar (skein-a), GET, 1 KiB answer, at 1000 req/s", "", "haproxy not run"},
			{"CPU per request, callee sidecar (skein-b), GET, 1 KiB answer, at 1000 req/s", "", "haproxy not run"},
			{"added latency over direct, p50, GET, 1 KiB answer, at 1000 req/s", "80% of limit", "PASS"},
			{"added latency over direct, p99, GET, 1 KiB answer, at 1000 req/s", "120% of limit", "MISS"},
			{"closed-loop throughput, GET, 1 KiB answer, 32 connections", "", "haproxy not run"},
			{"peak RSS (VmHWM) after the constant rate, caller sidecar (skein-a)", "83% of limit", "PASS"},
			{"peak RSS (VmHWM) after the constant rate, callee sidecar (skein-b)", "103% of limit", "MISS"},
			{"idle RSS (VmRSS) after start-up and a few calls, caller sidecar (skein-a)", "75% of limit", "PASS"},
			{"idle RSS (VmRSS) after start-up and a few calls, callee sidecar (skein-b)", "98% of limit", "PASS"},
			{"CPU per request, caller sidecar (skein-a), POST of 1 MiB, 1 KiB answer, at 100 req/s", "", "haproxy not run"},
			{"CPU per request, callee sidecar (skein-b), POST of 1 MiB, 1 KiB answer, at 100 req/s", "", "haproxy not run"},
		}},
		{"no subject", "skein-mtls", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			kept := slices.DeleteFunc(slices.Clone(ps), func(p result.Phase) bool { return p.Scenario == tt.drop })
			var got []row
			for _, tg := range targets(group(kept), defaults.base, defaults.ref, defaults.subj) {
				if tg.missing != "" {
					got = append(got, row{tg.name, "", tg.missing})
					continue
				}
				got = append(got, row{tg.name, ratioText(&tg), verdict(tg.pass())})
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("targets (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMedian(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd", []float64{3, 1, 2}, 2},
		{"even: mean of the middle two", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
		{"missing runs skipped", []float64{nan, 5, 1, nan, 3}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := median(tt.in); got != tt.want {
				t.Errorf("median(%v) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
	if got := median([]float64{nan}); !math.IsNaN(got) {
		t.Errorf("median of nothing = %v, want NaN", got)
	}
}

func TestAxisAndLabels(t *testing.T) {
	tests := []struct {
		top             float64
		wantStep, wantY float64
	}{
		{1.7, 0.5, 2},
		{0.08, 0.02, 0.1},
		{50000, 20000, 60000},
		{0, 1, 5},
	}
	for _, tt := range tests {
		step, yMax := axis(tt.top)
		if math.Abs(step-tt.wantStep) > 1e-12 || math.Abs(yMax-tt.wantY) > 1e-12 {
			t.Errorf("axis(%v) = %v, %v; want %v, %v", tt.top, step, yMax, tt.wantStep, tt.wantY)
		}
	}
	lo, hi := logAxis(0.12, 1.7)
	var logLabels []string
	for _, tm := range logTicks(lo, hi) {
		logLabels = append(logLabels, tm.label)
	}
	if diff := cmp.Diff([]string{"0.1", "0.2", "0.5", "1", "2", "5", "10"}, logLabels); lo != 0.1 || hi != 10 || diff != "" {
		t.Errorf("logAxis(0.12, 1.7) = %v, %v; ticks (-want +got):\n%s", lo, hi, diff)
	}
	labels := map[float64]string{0: "0", 0.0451: "0.0451", 1.234: "1.23", 12.34: "12.3", 11000: "11000", 8: "8.00"}
	for v, want := range labels {
		if got := label(v); got != want {
			t.Errorf("label(%v) = %q, want %q", v, got, want)
		}
	}
}
