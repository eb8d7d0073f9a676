// Command loadgen is the load generator and the backend of Skein's
// benchmark (test/bench/run.sh). It uses the standard library only, so the
// benchmark needs no load tool beyond Go.
//
//	loadgen backend -addr 127.0.0.1:PORT [-size 1024] [-delay D -workers N]
//	    an HTTP/1.1 server that reads every request's whole body and
//	    answers -size bytes; with -delay and -workers a slow app serving N
//	    requests at a time, each taking D, the rest queueing
//	loadgen ports [-n N]
//	    prints N free loopback TCP ports, one a line
//	loadgen wait -url URL [-timeout 20s] [-expect-bytes N]
//	    polls URL until it answers 200 (with N body bytes)
//	loadgen idle -scenario S -url URL [-calls 10] [-watch name=pid ...] -out FILE
//	    a few calls one after the other, then the watched processes'
//	    VmRSS and VmHWM: their memory before any load
//	loadgen rate -scenario S -url URL -rate R -duration D [-warmup W] [-conns C] [-body-bytes B] [-mode M] [-watch name=pid ...] -out FILE
//	    open loop: R requests per second for D, scheduled by start time;
//	    with -body-bytes, each request POSTs a body of B bytes
//	loadgen max -scenario S -url URL -conns C -duration D [-warmup W] [-watch name=pid ...] -out FILE
//	    closed loop: C connections, each sending its next request as soon as
//	    the previous one is answered
//	loadgen overload -scenario S -url URL -rate R -duration D [-warmup W -warmup-rate WR] [-conns C] [-metrics name=URL ...] -out FILE
//	    open loop past a slow app's capacity (test/bench/overload.sh): each
//	    answer counted as admitted (200), refused (503) or an error, the
//	    admitted calls' latency second by second, then each sidecar's
//	    skein_overload_refused_total; one result.Overload line
//
// idle, rate and max append one JSON line per measured phase to -out
// (package result, tagged with -run), which test/bench/report turns into
// the markdown report and charts. -watch samples /proc/<pid>/stat
// (utime+stime) just before and just after the measured phase, and
// /proc/<pid>/status VmHWM and VmRSS after it.
package main

import (
	"fmt"
	"io"
	"os"
)

const usage = `usage: loadgen backend|ports|wait|idle|rate|max|overload [flags]
run "loadgen <command> -h" for a command's flags
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "backend":
		err = cmdBackend(args[1:])
	case "ports":
		err = cmdPorts(args[1:], stdout)
	case "wait":
		err = cmdWait(args[1:])
	case "rate":
		err = cmdLoad(args[1:], modeRate, stdout)
	case "max":
		err = cmdLoad(args[1:], modeMax, stdout)
	case "idle":
		err = cmdIdle(args[1:], stdout)
	case "overload":
		err = cmdOverload(args[1:], stdout)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "loadgen %s: %v\n", args[0], err)
		return 1
	}
	return 0
}
