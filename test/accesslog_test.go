package test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// accessLine is one line of --access-log.
type accessLine struct {
	Time       string   `json:"time"`
	Direction  string   `json:"direction"`
	Caller     string   `json:"caller"`
	Callee     string   `json:"callee"`
	Verb       string   `json:"verb"`
	Method     string   `json:"method"`
	Status     int      `json:"status"`
	BytesIn    int64    `json:"bytes_in"`
	BytesOut   int64    `json:"bytes_out"`
	Tries      int      `json:"tries"`
	Instance   string   `json:"instance"`
	DurationMS *float64 `json:"duration_ms"`
	QueueMS    *float64 `json:"queue_ms"`
	ConnectMS  *float64 `json:"connect_ms"`
	TLSMS      *float64 `json:"tls_ms"`
	UpstreamMS *float64 `json:"upstream_ms"`
	AppMS      *float64 `json:"app_ms"`
	TraceID    string   `json:"trace_id"`
}

func readAccessLog(t *testing.T, path string) []accessLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []accessLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var l accessLine
		dec := json.NewDecoder(strings.NewReader(sc.Text()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		out = append(out, l)
	}
	return out
}

// TestAccessLog: with --access-log each sidecar writes one JSON line per
// call, the caller's with the callee's queue and app times; the timing
// header never reaches either app; without the flag nothing is logged.
func TestAccessLog(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	dir := t.TempDir()
	pb, _ := m.app("b")
	b := m.sidecar("b", pb, "--access-log", filepath.Join(dir, "b.log"))
	pa, _ := m.app("a")
	a := m.sidecar("a", pa, "--access-log", filepath.Join(dir, "a.log"))
	plain := m.sidecar("c", 0)

	body := strings.Repeat("x", 100)
	resp, out := do(t, newRequest(t, http.MethodPost, a.invokeURL("b", "orders/1"), strings.NewReader(body)))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("call: %d %s", resp.StatusCode, out)
	}
	if resp.Header.Get("Skein-Timing") != "" {
		t.Errorf("the timing header reached the calling app: %q", resp.Header.Get("Skein-Timing"))
	}
	if got := decodeEcho(t, out).Header["Skein-Timing"]; got != nil {
		t.Errorf("the timing header reached the called app: %q", got)
	}
	do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "fail"), nil))
	req := newRequest(t, http.MethodGet, a.invokeURL("b", "fail"), nil)
	req.Header.Set("X-Echo-Status", "503")
	resp, _ = do(t, req)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("failing call: %d", resp.StatusCode)
	}
	// Not logged: control endpoints and sidecars without the flag.
	do(t, newRequest(t, http.MethodGet, a.url("/v1.0/metadata"), nil))
	do(t, newRequest(t, http.MethodGet, plain.invokeURL("b", "hi"), nil))

	// A sidecar writes its line once the call is over on its side, which
	// may be just after the caller has its answer.
	var outLines, inLines []accessLine
	waitFor(t, 5*time.Second, "access lines", func() bool {
		outLines, inLines = readAccessLog(t, filepath.Join(dir, "a.log")), readAccessLog(t, filepath.Join(dir, "b.log"))
		return len(outLines) >= 3 && len(inLines) >= 4
	})
	if len(outLines) != 3 {
		t.Fatalf("caller logged %d lines, want 3: %+v", len(outLines), outLines)
	}
	if len(inLines) != 4 {
		t.Fatalf("callee logged %d lines, want 4 (3 from a, 1 from c): %+v", len(inLines), inLines)
	}
	first := outLines[0]
	if first.Direction != "outbound" || first.Caller != "a.default" || first.Callee != "b.default" ||
		first.Verb != "POST" || first.Method != "orders/1" || first.Status != 200 ||
		first.BytesIn != 100 || first.BytesOut <= 0 || first.Tries != 1 || first.Instance == "" {
		t.Errorf("caller line: %+v", first)
	}
	for name, v := range map[string]*float64{"duration": first.DurationMS, "queue": first.QueueMS, "connect": first.ConnectMS,
		"tls": first.TLSMS, "upstream": first.UpstreamMS, "app": first.AppMS} {
		if v == nil || *v < 0 {
			t.Errorf("caller line: %s_ms = %v", name, v)
		}
	}
	// The first call opened the mTLS connection; its app time came from the callee.
	if *first.ConnectMS <= 0 || *first.TLSMS <= 0 || *first.AppMS <= 0 || *first.UpstreamMS < *first.AppMS {
		t.Errorf("caller timings: connect %v tls %v upstream %v app %v; want a connection set up, and app time within upstream time",
			*first.ConnectMS, *first.TLSMS, *first.UpstreamMS, *first.AppMS)
	}
	if *outLines[1].ConnectMS != 0 || *outLines[1].TLSMS != 0 {
		t.Errorf("second call reused the connection, yet connect %v tls %v", *outLines[1].ConnectMS, *outLines[1].TLSMS)
	}
	if outLines[2].Status != 503 || outLines[2].Method != "fail" {
		t.Errorf("failing call logged as %+v", outLines[2])
	}
	in := inLines[0]
	if in.Direction != "inbound" || in.Caller != "a.default" || in.Callee != "b.default" || in.Method != "orders/1" ||
		in.Status != 200 || in.BytesIn != 100 || in.AppMS == nil || *in.AppMS <= 0 {
		t.Errorf("callee line: %+v", in)
	}
	if len(first.TraceID) != 32 || in.TraceID != first.TraceID {
		t.Errorf("trace ids: caller %q, callee %q; want one trace", first.TraceID, in.TraceID)
	}
	if inLines[3].Caller != "c.default" {
		t.Errorf("callee line for c's call names caller %q", inLines[3].Caller)
	}
	if strings.Contains(plain.out.String(), `"direction"`) || strings.Contains(b.out.String(), `"direction"`) {
		t.Error("access lines written to a sidecar's log output")
	}
}
