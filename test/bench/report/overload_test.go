package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestOverloadReport writes the report of testdata/overload.jsonl (one
// run of queue and adaptive, 5 s at 3× a 200 req/s app) and checks the
// figures in its table, that it links both charts, and that each chart is
// well-formed SVG with its series and labels.
func TestOverloadReport(t *testing.T) {
	dir := t.TempDir()
	if code := run([]string{"-overload", "-in", "testdata/overload.jsonl", "-out", dir}, io.Discard); code != 0 {
		t.Fatalf("run exited %d", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "overload.md"))
	if err != nil {
		t.Fatal(err)
	}
	md := string(b)
	for _, want := range []string{
		"| queue | 1 | 600 req/s (3.0×) | 3000 | 2739 |",
		"| adaptive | 1 | 600 req/s (3.0×) | 3000 | 988 |",
		"a outbound: 1616, b app: 396",
		"![Latency of admitted calls, second by second](overload-latency.svg)",
		"![Outcome of every request](overload-outcomes.svg)",
		"### adaptive, second by second (run 1)",
		"| 4 | 199 | 401 | 0 | 136.1 | 189.5 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("overload.md lacks %q:\n%s", want, md)
		}
	}
	for file, texts := range map[string][]string{
		"overload-latency.svg":  {"Latency of admitted calls, second by second", "queue p50", "queue p99", "adaptive p50", "adaptive p99", "the app's own time, 100 ms", "seconds into the load"},
		"overload-outcomes.svg": {"Outcome of every request", "admitted (200)", "refused (503 OVERLOADED)", "2739", "2012", "988"},
	} {
		f, err := os.Open(filepath.Join(dir, file))
		if err != nil {
			t.Fatal(err)
		}
		got := svgTexts(t, f)
		f.Close()
		for _, want := range texts {
			if !slices.Contains(got, want) {
				t.Errorf("%s: no text %q; texts: %q", file, want, got)
			}
		}
	}
}

func TestOverloadReportNeedsInput(t *testing.T) {
	if code := run([]string{"-overload", "-in", filepath.Join(t.TempDir(), "missing.jsonl"), "-out", t.TempDir()}, io.Discard); code == 0 {
		t.Error("exit 0 for a missing input, want an error")
	}
}
