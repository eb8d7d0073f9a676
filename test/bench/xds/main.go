// Command xds is Skein's control-plane scale benchmark (issue 13,
// acceptance point 7; docs/kubernetes.md "Scale"). For each number of
// sidecars and each ADS mode it starts a fresh `skein control-plane` (the
// real binary) on loopback, registers -endpoints instances of -apps app
// ids through its registry, connects that many simulated sidecars (one
// gRPC connection and ADS stream each, subscribing and ACKing as Skein's
// sidecar does; see sidecar.go), waits until every one holds all of it,
// then turns one endpoint unhealthy every 1/-rate seconds, -changes times,
// and measures:
//
//   - push latency: per change, from just before its registry request to
//     the ACK of the first EDS response carrying it, for every sidecar;
//     "push" is the time until every sidecar has ACKed (p50/p99 over the
//     changes), "per sidecar" the distribution over all (change, sidecar)
//     pairs;
//   - the control plane's CPU time per change (utime+stime from
//     /proc/<pid>/stat over the change phase, until every sidecar has the
//     last change) and while the sidecars connect;
//   - its memory per connected sidecar: VmRSS once all are connected and
//     it is idle, less VmRSS before the first connected, over N;
//   - bytes pushed per change: the marshalled size (proto.Size) of every
//     response the sidecars received in the change phase, over the number
//     of changes; and of the initial subscription, per sidecar.
//
// Usage:
//
//	xds -skein bin/skein [-sidecars 1000,5000] [-modes sotw,delta] [-endpoints 10000]
//	    [-apps 1000] [-rate 10] [-changes 300] [-label L] [-out DIR]
//	xds -report [-out DIR]
//
// Each run appends a JSON line to DIR/raw.jsonl; at the end DIR/report.md
// and DIR/push-latency.svg describe every line of raw.jsonl (so runs of
// several invocations, e.g. another binary with -label before, share one
// report).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/skeinmesh/skein/discovery"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

// config is one run.
type config struct {
	skein     string
	label     string
	sidecars  int
	mode      string // sotw or delta
	endpoints int
	apps      int
	rate      float64
	changes   int
	connectHz float64       // sidecars started per second
	settle    time.Duration // longest wait for every sidecar to hold a state
	work      string        // the control plane's home and log
	progress  io.Writer
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("xds", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		c               config
		sidecars, modes string
		out             string
	)
	fs.StringVar(&c.skein, "skein", "", "the skein binary whose control plane is measured (required)")
	fs.StringVar(&c.label, "label", "", "a name for the binary in the report (e.g. a commit)")
	fs.StringVar(&sidecars, "sidecars", "1000,5000", "numbers of simulated sidecars, one run each")
	fs.StringVar(&modes, "modes", "sotw,delta", "ADS modes: sotw (state of the world), delta (incremental)")
	fs.IntVar(&c.endpoints, "endpoints", 10000, "registered endpoints")
	fs.IntVar(&c.apps, "apps", 1000, "app ids the endpoints and sidecars are spread over")
	fs.Float64Var(&c.rate, "rate", 10, "endpoint changes per second")
	fs.IntVar(&c.changes, "changes", 300, "endpoint changes (at most -endpoints)")
	fs.Float64Var(&c.connectHz, "connect-rate", 500, "sidecars connected per second")
	fs.DurationVar(&c.settle, "settle", 90*time.Second, "longest wait for every sidecar to hold the initial state, and the last change")
	fs.StringVar(&out, "out", "xds-bench-results", "directory for raw.jsonl, report.md and the chart")
	reportOnly := fs.Bool("report", false, "only rewrite report.md and the chart from -out's raw.jsonl")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *reportOnly {
		if err := writeReport(out); err != nil {
			fmt.Fprintf(stderr, "xds: report: %v\n", err)
			return 1
		}
		return 0
	}
	var errs []error
	if c.skein == "" {
		errs = append(errs, errors.New("-skein: required"))
	}
	ns, err := intList(sidecars)
	if err != nil {
		errs = append(errs, fmt.Errorf("-sidecars: %w", err))
	}
	ms := strings.Split(modes, ",")
	for _, m := range ms {
		if m != "sotw" && m != "delta" {
			errs = append(errs, fmt.Errorf("-modes: %q: want sotw or delta", m))
		}
	}
	if c.apps < 1 || c.endpoints < c.apps || c.changes < 1 || c.changes > c.endpoints || c.rate <= 0 || c.connectHz <= 0 {
		errs = append(errs, errors.New("want 1 <= -apps <= -endpoints, 1 <= -changes <= -endpoints, -rate and -connect-rate > 0"))
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(stderr, "xds: %v\n", err)
		return 2
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		fmt.Fprintf(stderr, "xds: %v\n", err)
		return 1
	}
	c.progress = stderr
	for _, n := range ns {
		for _, m := range ms {
			rc := c
			rc.sidecars, rc.mode = n, m
			work, err := os.MkdirTemp("", "skein-xds-bench-")
			if err != nil {
				fmt.Fprintf(stderr, "xds: %v\n", err)
				return 1
			}
			rc.work = work
			r, err := runOne(context.Background(), rc)
			if err != nil {
				fmt.Fprintf(stderr, "xds: %d sidecars, %s: %v (control plane log in %s)\n", n, m, err, work)
				return 1
			}
			os.RemoveAll(work)
			if err := appendJSON(filepath.Join(out, "raw.jsonl"), r); err != nil {
				fmt.Fprintf(stderr, "xds: %v\n", err)
				return 1
			}
			fmt.Fprintf(stderr, "==> %s\n", r.summary())
		}
	}
	if err := writeReport(out); err != nil {
		fmt.Fprintf(stderr, "xds: report: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "==> report: %s\n", filepath.Join(out, "report.md"))
	return 0
}

func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out, nil
}

func appendJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(v)
}

// Result is one run's figures (a line of raw.jsonl).
type Result struct {
	Label     string    `json:"label,omitempty"`
	Date      time.Time `json:"date"`
	Sidecars  int       `json:"sidecars"`
	Endpoints int       `json:"endpoints"`
	Apps      int       `json:"apps"`
	Mode      string    `json:"mode"`
	Changes   int       `json:"changes"`
	// RateHz is the rate achieved (changes over the time they took).
	RateHz float64 `json:"rate_hz"`

	// Push latency: until every sidecar ACKed a change (over changes), ms.
	PushP50Ms float64 `json:"push_p50_ms"`
	PushP99Ms float64 `json:"push_p99_ms"`
	PushMaxMs float64 `json:"push_max_ms"`
	// Per (change, sidecar) pair, ms.
	PairP50Ms float64 `json:"pair_p50_ms"`
	PairP99Ms float64 `json:"pair_p99_ms"`
	// Missed counts (change, sidecar) pairs never ACKed within -settle.
	Missed int `json:"missed"`

	// Control plane CPU: ms per change; seconds for the connect phase.
	CPUPerChangeMs float64 `json:"cpu_per_change_ms"`
	CPUConnectS    float64 `json:"cpu_connect_s"`
	SyncS          float64 `json:"sync_s"` // first connect to every sidecar holding it all
	// Control plane memory, KiB: before sidecars, with all connected, peak.
	RSSBaseKiB       int64   `json:"rss_base_kib"`
	RSSKiB           int64   `json:"rss_kib"`
	HWMKiB           int64   `json:"hwm_kib"`
	MemPerSidecarKiB float64 `json:"mem_per_sidecar_kib"`

	// Bytes and responses received per change by all sidecars together;
	// bytes of the initial subscription per sidecar.
	BytesPerChange       float64 `json:"bytes_per_change"`
	ResponsesPerChange   float64 `json:"responses_per_change"`
	InitialBytesPerSide  float64 `json:"initial_bytes_per_sidecar"`
	ClientCPUPerChangeMs float64 `json:"client_cpu_per_change_ms"` // the simulated sidecars' process, for reference
	// LoadAvg is the machine's 1-minute load average at the end of the
	// change phase (/proc/loadavg): on a shared machine, how much else ran.
	LoadAvg float64 `json:"load_avg"`
	// Diverged counts sidecars whose final state is not the registry's
	// (every app's four resources, every endpoint, every change).
	Diverged int `json:"diverged"`
}

func (r Result) summary() string {
	return fmt.Sprintf("%s %d sidecars, %d endpoints, %s: push p50 %.0f ms p99 %.0f ms (pairs p50 %.0f p99 %.0f), cpu %.1f ms/change, %.1f KiB/sidecar, %.0f B/change, missed %d, diverged %d",
		r.Label, r.Sidecars, r.Endpoints, r.Mode, r.PushP50Ms, r.PushP99Ms, r.PairP50Ms, r.PairP99Ms, r.CPUPerChangeMs, r.MemPerSidecarKiB, r.BytesPerChange, r.Missed, r.Diverged)
}

// instance is registered endpoint i: the (i / apps)-th of app i % apps.
func instance(apps, i int) discovery.Instance {
	return discovery.Instance{
		AppID: appName(i % apps), Namespace: "default", PID: 1, Hostname: fmt.Sprintf("pod-%05d", i),
		Address: fmt.Sprintf("10.%d.%d.%d:8080", (i+1)>>16&255, (i+1)>>8&255, (i+1)&255),
	}
}

// runOne measures one size in one mode against a fresh control plane.
func runOne(ctx context.Context, c config) (Result, error) {
	res := Result{Label: c.label, Date: time.Now().UTC(), Sidecars: c.sidecars, Endpoints: c.endpoints, Apps: c.apps, Mode: c.mode, Changes: c.changes}
	say := func(f string, a ...any) {
		fmt.Fprintf(c.progress, "  [%d %s] %s\n", c.sidecars, c.mode, fmt.Sprintf(f, a...))
	}
	if err := raiseNoFile(c.sidecars + 256); err != nil {
		return res, err
	}
	hz := clockTicks()
	cp, err := startPlane(c.skein, c.work)
	if err != nil {
		return res, err
	}
	defer cp.stop()
	pid := cp.pid()

	say("registering %d endpoints of %d apps", c.endpoints, c.apps)
	if err := cp.registerAll(ctx, c.endpoints, func(i int) discovery.Instance { return instance(c.apps, i) }); err != nil {
		return res, err
	}
	if err := waitIdle(pid, hz, 2*c.settle); err != nil {
		return res, err
	}
	rss0, _, err := procMem(pid)
	if err != nil {
		return res, err
	}
	res.RSSBaseKiB = rss0

	w := &world{apps: c.apps, endpoints: c.endpoints, changes: make([]change, c.changes), ackAt: make([]int64, c.sidecars*c.changes)}
	for i := range c.apps {
		w.appNames = append(w.appNames, appName(i))
	}
	sctx, stopSidecars := context.WithCancel(ctx)
	defer stopSidecars()
	var wg sync.WaitGroup
	sides := make([]*sidecar, c.sidecars)
	say("connecting %d sidecars (%s)", c.sidecars, c.mode)
	t0, _ := procTicks(pid)
	start := time.Now()
	every := time.Duration(float64(time.Second) / c.connectHz)
	for n := range sides {
		conn, err := grpc.NewClient(cp.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// As xds.Client: keepalive pings every 30 s.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}))
		if err != nil {
			return res, err
		}
		s := newSidecar(w, n, c.mode == "delta")
		sides[n] = s
		wg.Go(func() {
			defer conn.Close()
			s.run(sctx, conn)
		})
		time.Sleep(time.Until(start.Add(time.Duration(n+1) * every)))
	}
	stop := func() { stopSidecars(); wg.Wait() }
	if err := waitAll(sides, c.settle, func(s *sidecar) bool { return s.synced.Load() }); err != nil {
		stop()
		return res, fmt.Errorf("initial state: %w", err)
	}
	res.SyncS = time.Since(start).Seconds()
	t1, _ := procTicks(pid)
	res.CPUConnectS = float64(t1-t0) / hz
	say("all hold the initial state after %.1f s", res.SyncS)
	if err := waitIdle(pid, hz, c.settle); err != nil {
		stop()
		return res, err
	}
	if res.RSSKiB, res.HWMKiB, err = procMem(pid); err != nil {
		stop()
		return res, err
	}
	res.MemPerSidecarKiB = float64(res.RSSKiB-rss0) / float64(c.sidecars)

	say("%d changes at %g/s", c.changes, c.rate)
	w.phase.Store(int32(phaseChange))
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	t2, _ := procTicks(pid)
	begin := time.Now()
	period := time.Duration(float64(time.Second) / c.rate)
	for k := range c.changes {
		time.Sleep(time.Until(begin.Add(time.Duration(k) * period)))
		in := instance(c.apps, k)
		in.Unhealthy = true
		w.changes[k] = change{inst: k, at: time.Now()}
		w.published.Store(int32(k + 1))
		if err := cp.register(ctx, in); err != nil {
			stop()
			return res, fmt.Errorf("change %d: %w", k, err)
		}
	}
	res.RateHz = float64(c.changes) / time.Since(begin).Seconds()
	waitErr := waitAll(sides, c.settle, func(s *sidecar) bool { return int(s.seenN.Load()) == c.changes })
	t3, _ := procTicks(pid)
	res.LoadAvg = loadAvg()
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	res.CPUPerChangeMs = float64(t3-t2) / hz * 1000 / float64(c.changes)
	res.ClientCPUPerChangeMs = float64(cpuNs(ru1)-cpuNs(ru0)) / 1e6 / float64(c.changes)
	stop()

	var push, pairs []float64
	for k, ch := range w.changes {
		worst, all := 0.0, true
		for n := range sides {
			at := w.ackAt[n*c.changes+k]
			if at == 0 {
				res.Missed++
				all = false
				continue
			}
			ms := float64(at-ch.at.UnixNano()) / 1e6
			pairs = append(pairs, ms)
			worst = max(worst, ms)
		}
		if all {
			push = append(push, worst)
		}
	}
	res.PushP50Ms, res.PushP99Ms, res.PushMaxMs = pct(push, 50), pct(push, 99), pct(push, 100)
	res.PairP50Ms, res.PairP99Ms = pct(pairs, 50), pct(pairs, 99)
	var bytes0, bytes1, resp1 int64
	for _, s := range sides {
		bytes0 += s.bytes[phaseConnect].Load()
		bytes1 += s.bytes[phaseChange].Load()
		resp1 += s.responses[phaseChange].Load()
		if !s.holdsFinal(c.changes) {
			res.Diverged++
		}
	}
	res.BytesPerChange = float64(bytes1) / float64(c.changes)
	res.ResponsesPerChange = float64(resp1) / float64(c.changes)
	res.InitialBytesPerSide = float64(bytes0) / float64(c.sidecars)
	if waitErr != nil {
		say("last change: %v", waitErr)
	}
	return res, nil
}

// holdsFinal reports whether a stopped sidecar holds the registry's
// final state: every app's four resources, every endpoint, and changes
// unhealthy endpoints, all of them seen.
func (s *sidecar) holdsFinal(changes int) bool {
	if s.err.Load() != nil || s.seen != changes {
		return false
	}
	eps, bad := 0, 0
	for k := range s.w.apps {
		for i := range s.have {
			if !s.have[i][k] {
				return false
			}
		}
		eps, bad = eps+int(s.eps[k]), bad+int(s.bad[k])
	}
	return eps == s.w.endpoints && bad == changes
}

// waitAll polls until ok holds for every sidecar, a stream fails, or
// limit passes.
func waitAll(sides []*sidecar, limit time.Duration, ok func(*sidecar) bool) error {
	deadline := time.Now().Add(limit)
	for {
		missing := 0
		for _, s := range sides {
			if e := s.err.Load(); e != nil {
				return fmt.Errorf("sidecar %d: %w", s.n, *e)
			}
			if !ok(s) {
				missing++
			}
		}
		if missing == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d of %d sidecars not there after %s", missing, len(sides), limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// raiseNoFile makes room for one connection per sidecar. Go already
// raises the soft limit to the hard one at start; this says clearly when
// even that is too low.
func raiseNoFile(need int) error {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return err
	}
	if l.Cur < uint64(need) && l.Max >= uint64(need) {
		l.Cur = uint64(need)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return err
		}
	}
	if l.Cur < uint64(need) {
		return fmt.Errorf("open files limit %d (hard %d): %d sidecars need %d (ulimit -n)", l.Cur, l.Max, need-256, need)
	}
	return nil
}

// loadAvg is the 1-minute load average (0 if unknown).
func loadAvg() float64 {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func cpuNs(r syscall.Rusage) int64 { return r.Utime.Nano() + r.Stime.Nano() }

// pct is the nearest-rank percentile p of vs (0 for none); p 100 is the
// maximum.
func pct(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(vs))
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}
