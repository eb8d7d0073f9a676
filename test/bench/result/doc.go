// Package result is the raw data of Skein's benchmark (test/bench/run.sh):
// one JSON line per measured phase ([Phase]), appended by loadgen with
// [Append] and read by the report program with [ReadFile]. The JSON names
// are the contract between the two and with the raw.jsonl files people
// keep, so fields are only ever added. The overload benchmark
// (test/bench/overload.sh) writes [Overload] lines the same way
// ([AppendOverload], [ReadOverload]).
package result
