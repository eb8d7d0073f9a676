package result

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Modes of a Phase.
const (
	ModeIdle = "idle" // a few calls after start-up, then memory only
	ModeRate = "rate" // open loop at a constant rate, GET
	ModeMax  = "max"  // closed loop: maximum throughput, GET
	ModePost = "post" // open loop at a constant rate, POST with a large body
)

// Phase is one measured phase of one scenario in one run: one JSON line.
type Phase struct {
	Scenario string `json:"scenario"`
	// Run is the 1-based repetition (run.sh's RUNS); 0 in files written
	// before runs were repeated, which the report reads as run 1.
	Run  int    `json:"run,omitempty"`
	Mode string `json:"mode"` // ModeIdle, ModeRate, ModeMax or ModePost
	URL  string `json:"url"`
	// Method is the request method; empty in older files, meaning GET.
	Method string `json:"method,omitempty"`
	// RequestBytes is the size of each request body (0: none).
	RequestBytes int64 `json:"requestBytes,omitempty"`
	// ResponseBytes is the answer size every request was checked against
	// (0: not checked).
	ResponseBytes int64   `json:"responseBytes,omitempty"`
	TargetRate    float64 `json:"targetRate,omitempty"`
	Conns         int     `json:"conns"`
	Client        string  `json:"client"` // raw or std
	// Seconds is the measured phase's wall time, from its first scheduled
	// request to its last answer.
	Seconds    float64 `json:"seconds"`
	Requests   int     `json:"requests"` // completed, errors included
	Errors     int     `json:"errors"`
	FirstError string  `json:"firstError,omitempty"`
	RPS        float64 `json:"rps"`
	// Latency is from the scheduled start (rate, post) or the actual start
	// (max, idle) to the last body byte.
	Latency Percentiles `json:"latencyMs"`
	// Lag is how late requests were sent against their schedule (open
	// loop only): the generator's own delay, already included in Latency.
	Lag   *Percentiles `json:"lagMs,omitempty"`
	Procs []Proc       `json:"procs,omitempty"`
	// Machine is what the whole machine did during the measured phase, to
	// judge how much other work disturbed it.
	Machine Machine `json:"machine"`
}

// Machine is CPU in cores (CPU seconds per second) over a phase.
type Machine struct {
	Busy      float64 `json:"busyCores"`      // all CPUs less their idle time
	IRQ       float64 `json:"irqCores"`       // irq and softirq, much of it the loopback traffic
	Steal     float64 `json:"stealCores"`     // taken by the hypervisor, if it says
	Generator float64 `json:"generatorCores"` // the load generator
	// Other is Busy less irq, steal, the generator and the watched
	// processes: work that is not part of the benchmark.
	Other float64 `json:"otherCores"`
}

// Percentiles of a latency distribution, in milliseconds.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
	Max  float64 `json:"max"`
}

// Proc is a watched process's CPU over the measured phase and its memory
// after it.
type Proc struct {
	Name       string  `json:"name"`
	PID        int     `json:"pid"`
	CPUSeconds float64 `json:"cpuSeconds"`
	CPUPer1k   float64 `json:"cpuSecondsPer1kReq"`
	HWMKiB     int64   `json:"vmHWMKiB"` // peak RSS since the process started
	RSSKiB     int64   `json:"vmRSSKiB"` // RSS when the phase ended
	// CtxSwitchesPerReq counts the context switches of all its threads
	// per request: how often it slept and woke (or was preempted).
	CtxSwitchesPerReq float64 `json:"ctxSwitchesPerReq"`
}

// Read decodes JSON lines, skipping blank ones. A file with no phase is an
// error: a report of nothing is a mistake upstream.
func Read(r io.Reader) ([]Phase, error) {
	var ps []Phase
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var p Phase
		if err := json.Unmarshal(sc.Bytes(), &p); err != nil {
			return nil, fmt.Errorf("line %d: %w", line, err)
		}
		if p.Run == 0 {
			p.Run = 1
		}
		ps = append(ps, p)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(ps) == 0 {
		return nil, errors.New("no results")
	}
	return ps, nil
}

// ReadFile is Read of a file.
func ReadFile(name string) ([]Phase, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ps, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return ps, nil
}

// Append writes p as one JSON line at the end of the file name, creating
// it if needed.
func Append(name string, p Phase) error { return appendJSON(name, p) }

// appendJSON writes v as one JSON line at the end of the file name,
// creating it if needed.
func appendJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
