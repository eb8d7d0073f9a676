package harness

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// LoadSpec is a steady load: Workers loops, each calling Target through
// Caller one call at a time until stopped.
type LoadSpec struct {
	Caller  *Sidecar
	Target  string
	Workers int    // default 2
	Method  string // path of the GETs; default "echo"
	// Posts makes every other call a POST with a small body and a
	// X-Count-Key of its own, so the apps can tell how often it reached
	// them (Duplicates).
	Posts bool
	// Pause is the wait between two calls of a worker; default 2 ms.
	Pause time.Duration
}

// LoadResult is what a load's calls got, by count.
type LoadResult struct {
	GETs, GETFailed   int
	POSTs, POSTFailed int
	Failures          []string       // the first ten failures, described
	Sent              []string       // the count key of every POST
	Answered          []string       // the count keys of POSTs answered 200
	ByInstance        map[string]int // successful calls by the X-Instance that answered
}

// Failed is how many calls failed.
func (r LoadResult) Failed() int { return r.GETFailed + r.POSTFailed }

// String summarises the result for a log line.
func (r LoadResult) String() string {
	return fmt.Sprintf("%d GETs (%d failed), %d POSTs (%d failed), by instance %v", r.GETs, r.GETFailed, r.POSTs, r.POSTFailed, r.ByInstance)
}

// Load is a running steady load.
type Load struct {
	spec  LoadSpec
	stop  context.CancelFunc
	wg    sync.WaitGroup
	calls atomic.Int64
	seq   atomic.Int64
	mu    sync.Mutex
	res   LoadResult
}

// loadKeys makes POST count keys unique across the loads of a test process.
var loadKeys atomic.Int64

// StartLoad starts spec's workers.
func StartLoad(spec LoadSpec) *Load {
	if spec.Workers <= 0 {
		spec.Workers = 2
	}
	if spec.Method == "" {
		spec.Method = "echo"
	}
	if spec.Pause <= 0 {
		spec.Pause = 2 * time.Millisecond
	}
	ctx, stop := context.WithCancel(context.Background())
	l := &Load{spec: spec, stop: stop, res: LoadResult{ByInstance: map[string]int{}}}
	prefix := "load" + strconv.FormatInt(loadKeys.Add(1), 10)
	for w := range spec.Workers {
		l.wg.Go(func() {
			cl := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
			defer cl.CloseIdleConnections()
			for i := 0; ctx.Err() == nil; i++ {
				post := spec.Posts && i%2 == 1
				key := ""
				if post {
					key = fmt.Sprintf("%s-%d-%d", prefix, w, i)
				}
				l.call(cl, post, key)
				t := time.NewTimer(spec.Pause)
				select {
				case <-ctx.Done():
				case <-t.C:
				}
				t.Stop()
			}
		})
	}
	return l
}

// call makes one call; it is not cancelled by Stop, so every call started
// has an outcome.
func (l *Load) call(cl *http.Client, post bool, key string) {
	var req *http.Request
	if post {
		req, _ = http.NewRequest(http.MethodPost, l.spec.Caller.InvokeURL(l.spec.Target, "orders"), strings.NewReader("order "+key))
		req.Header.Set("X-Count-Key", key)
		req.Header.Set("Content-Type", "text/plain")
	} else {
		req, _ = http.NewRequest(http.MethodGet, l.spec.Caller.InvokeURL(l.spec.Target, l.spec.Method), nil)
	}
	resp, err := cl.Do(req)
	failure := ""
	instance := ""
	switch {
	case err != nil:
		failure = err.Error()
	default:
		b, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		instance = resp.Header.Get("X-Instance")
		switch {
		case rerr != nil:
			failure = fmt.Sprintf("%d, body: %v", resp.StatusCode, rerr)
		case resp.StatusCode != http.StatusOK:
			failure = fmt.Sprintf("%d: %.300s", resp.StatusCode, b)
		}
	}
	l.calls.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if post {
		l.res.POSTs++
		l.res.Sent = append(l.res.Sent, key)
	} else {
		l.res.GETs++
	}
	if failure != "" {
		if post {
			l.res.POSTFailed++
		} else {
			l.res.GETFailed++
		}
		if len(l.res.Failures) < 10 {
			l.res.Failures = append(l.res.Failures, req.Method+" "+time.Now().Format("15:04:05.000")+": "+failure)
		}
		return
	}
	l.res.ByInstance[instance]++
	if post {
		l.res.Answered = append(l.res.Answered, key)
	}
}

// Calls is how many calls have ended so far.
func (l *Load) Calls() int64 { return l.calls.Load() }

// Progress waits until n more calls than now have ended (at most d).
func (l *Load) Progress(t testing.TB, n int64, d time.Duration) {
	t.Helper()
	want := l.calls.Load() + n
	WaitFor(t, d, fmt.Sprintf("%d more calls", n), func() bool { return l.calls.Load() >= want })
}

// Stop ends the load, waits for the calls in progress and returns the
// outcomes.
func (l *Load) Stop() LoadResult {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.res
}

// AppCounts returns the X-Count-Key counts of the test app on port.
func AppCounts(t testing.TB, port int) map[string]int {
	t.Helper()
	return GetJSON[map[string]int](t, http.DefaultClient, "http://127.0.0.1:"+strconv.Itoa(port)+"/counts")
}

// Duplicates checks, with the apps' counts (AppCounts of each app that
// served the load), that no POST of res reached an app more than once and
// that every POST answered 200 reached one exactly once. It returns how
// many POSTs reached an app.
func Duplicates(t testing.TB, res LoadResult, counts ...map[string]int) int {
	t.Helper()
	total := map[string]int{}
	for _, c := range counts {
		for k, n := range c {
			total[k] += n
		}
	}
	reached, twice := 0, 0
	for _, k := range res.Sent {
		switch n := total[k]; {
		case n > 1:
			twice++
			if twice <= 5 {
				t.Errorf("POST %s reached the apps %d times", k, n)
			}
			reached++
		case n == 1:
			reached++
		}
	}
	if twice > 0 {
		t.Errorf("%d of %d POSTs reached an app more than once", twice, len(res.Sent))
	}
	for _, k := range res.Answered {
		if total[k] != 1 {
			t.Errorf("POST %s was answered 200 but reached the apps %d times", k, total[k])
		}
	}
	return reached
}
