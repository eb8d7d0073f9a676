package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/skeinmesh/skein/test/bench/result"
)

// options name the scenarios the targets compare.
type options struct {
	base, ref, subj string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	fs.SetOutput(stderr)
	in := fs.String("in", "", "JSON lines written by loadgen (run.sh's raw.jsonl)")
	out := fs.String("out", "", "directory to write report.md and the SVG charts into (created if needed)")
	header := fs.String("header", "", "markdown file inserted under the title (machine, versions, settings)")
	var o options
	fs.StringVar(&o.base, "baseline", "direct", "scenario without proxies")
	fs.StringVar(&o.ref, "reference", "haproxy", "scenario the targets compare CPU and throughput with")
	fs.StringVar(&o.subj, "subject", "skein-mtls", "scenario the targets are about")
	overloadRun := fs.Bool("overload", false, "-in holds the overload benchmark's lines (test/bench/overload.sh): write overload.md and its charts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	write := write
	if *overloadRun {
		write = func(in, out, header string, _ options) error {
			if in == "" || out == "" {
				return errors.New("-in and -out are required")
			}
			return writeOverload(in, out, header)
		}
	}
	if err := write(*in, *out, *header, o); err != nil {
		fmt.Fprintf(stderr, "report: %v\n", err)
		return 1
	}
	return 0
}

// write reads in and writes report.md and the charts into dir.
func write(in, dir, headerFile string, o options) error {
	if in == "" || dir == "" {
		return errors.New("-in and -out are required")
	}
	ps, err := result.ReadFile(in)
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
	d := group(ps)
	cs := charts(d, o)
	for _, c := range cs {
		var b bytes.Buffer
		if err := c.chart.svg(&b); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, c.file), b.Bytes(), 0o644); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	writeReport(&b, d, o, header, cs)
	return os.WriteFile(filepath.Join(dir, "report.md"), b.Bytes(), 0o644)
}
