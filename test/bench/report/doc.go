// Command report turns the raw results of Skein's benchmark
// (test/bench/run.sh; JSON lines of package result) into a markdown report
// and SVG charts:
//
//	go run ./test/bench/report -in bench-results/raw.jsonl -out bench-results [-header header.md]
//
// writes report.md, latency.svg, cpu-get.svg, cpu-post.svg, throughput.svg
// and rss.svg into -out (a chart whose phase is missing from the input is
// left out). Every figure is the median over the runs of a scenario (RUNS
// in run.sh); the per-run values stay in the input. The targets table
// compares -subject (skein-mtls) with -baseline (direct, no proxy) and
// -reference (haproxy, two HAProxy hops); docs/performance.md says what
// each figure means. Standard library only; the SVG is written by hand.
//
//	go run ./test/bench/report -overload -in overload.jsonl -out dir [-header header.md]
//
// writes the overload benchmark's report instead (test/bench/overload.sh):
// overload.md, overload-latency.svg (the admitted calls' p50 and p99
// second by second, limit on against off) and overload-outcomes.svg.
package main
