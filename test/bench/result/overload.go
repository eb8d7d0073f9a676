package result

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// Overload is one run of the overload benchmark (test/bench/overload.sh):
// an open-loop load at a multiple of what a slow app can serve, through
// two sidecars with the adaptive concurrency limit on or off. One JSON
// line.
type Overload struct {
	Scenario string `json:"scenario"`
	Run      int    `json:"run"`
	URL      string `json:"url"`
	// TargetRate is the offered load, requests per second; Capacity what
	// the app can serve (workers / delay), for the report's ratio.
	TargetRate float64 `json:"targetRate"`
	Capacity   float64 `json:"capacity"`
	// AppMs is the app's own time per request, ms: the latency an admitted
	// call would have with no queue.
	AppMs   float64 `json:"appMs"`
	Conns   int     `json:"conns"`
	Seconds float64 `json:"seconds"`
	// Sent counts every request of the measured phase; each is Admitted
	// (200), Refused (503) or an error (any other answer, a timeout).
	Sent       int    `json:"sent"`
	Admitted   int    `json:"admitted"`
	Refused    int    `json:"refused"`
	Errors     int    `json:"errors"`
	FirstError string `json:"firstError,omitempty"`
	// Latency of the admitted calls and of the refusals, from each
	// request's scheduled start to its last answer byte.
	Latency Percentiles  `json:"latencyMs"`
	Refusal *Percentiles `json:"refusalMs,omitempty"`
	// Series is the measured phase second by second, by scheduled start.
	Series []Second `json:"series"`
	// Metrics are the sidecars' skein_overload_refused_total after the
	// phase, by "<sidecar> <side>".
	Metrics map[string]float64 `json:"metrics,omitempty"`
}

// Second is one second of an Overload run: the requests scheduled in it.
type Second struct {
	T        int     `json:"t"` // seconds since the measured phase began
	Admitted int     `json:"admitted"`
	Refused  int     `json:"refused"`
	Errors   int     `json:"errors"`
	P50      float64 `json:"p50Ms"` // admitted calls' latency; 0 with none
	P99      float64 `json:"p99Ms"`
}

// ReadOverload reads the JSON lines of Overload runs from a file, skipping
// blank lines. A file with none is an error.
func ReadOverload(name string) ([]Overload, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []Overload
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		var o Overload
		if err := json.Unmarshal(sc.Bytes(), &o); err != nil {
			return nil, fmt.Errorf("%s: line %d: %w", name, line, err)
		}
		out = append(out, o)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: %w", name, errors.New("no results"))
	}
	return out, nil
}

// AppendOverload writes o as one JSON line at the end of the file name.
func AppendOverload(name string, o Overload) error { return appendJSON(name, o) }
