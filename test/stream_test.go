package test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/test/pattern"
)

// TestStreamLargeBodies is acceptance point 5: a 1 GiB upload (with and
// without a declared length) and a 1 GiB download pass byte-exact through
// two sidecars while each sidecar's peak RSS stays under 100 MiB, so
// neither buffers a body.
func TestStreamLargeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 3 GiB through two sidecars")
	}
	const size = 1 << 30
	const maxRSS = 100 << 20
	m := newMesh(t)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0)
	want := pattern.Sum(size)
	client := &http.Client{Transport: &http.Transport{
		DisableCompression: true,
		WriteBufferSize:    1 << 20,
		ReadBufferSize:     1 << 20,
	}}

	// upload sends the pattern to the app's /upload and returns what the app
	// says it read; length -1 sends it chunked.
	upload := func(t *testing.T, length int64) (int64, string) {
		var body io.Reader = pattern.NewReader(size)
		if length < 0 {
			body = struct{ io.Reader }{body} // hide the type: no length known
		}
		req := newRequest(t, http.MethodPost, a.invokeURL("app-b", "upload"), body)
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/octet-stream")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("upload: %v", err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("upload status = %d: %s", resp.StatusCode, b)
		}
		var got struct {
			Bytes  int64  `json:"bytes"`
			SHA256 string `json:"sha256"`
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatalf("upload answer %q: %v", b, err)
		}
		return got.Bytes, got.SHA256
	}
	tests := []struct {
		name     string
		transfer func(t *testing.T) (n int64, sha string)
	}{
		{"upload with Content-Length", func(t *testing.T) (int64, string) { return upload(t, size) }},
		{"upload chunked", func(t *testing.T) (int64, string) { return upload(t, -1) }},
		{"download", func(t *testing.T) (int64, string) {
			resp, err := client.Get(a.invokeURL("app-b", "download?size="+strconv.Itoa(size)))
			if err != nil {
				t.Fatalf("download: %v", err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("download status = %d", resp.StatusCode)
			}
			h := sha256.New()
			n, err := io.CopyBuffer(h, resp.Body, make([]byte, 1<<20))
			if err != nil {
				t.Fatalf("download after %d bytes: %v", n, err)
			}
			return n, hex.EncodeToString(h.Sum(nil))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			n, sha := tt.transfer(t)
			d := time.Since(start)
			if n != size || sha != hex.EncodeToString(want[:]) {
				t.Errorf("app end saw %d bytes with sha256 %s, want %d bytes with %x", n, sha, size, want)
			}
			t.Logf("%d MiB in %s (%.0f MiB/s)", n>>20, d.Round(time.Millisecond), float64(n>>20)/d.Seconds())
			for _, s := range []*sidecar{a, b} {
				hwm := peakRSS(t, s.proc)
				t.Logf("sidecar %s peak RSS %.1f MiB", s.appID, float64(hwm)/(1<<20))
				if hwm >= maxRSS {
					t.Errorf("sidecar %s peak RSS %d MiB, want under %d MiB", s.appID, hwm>>20, maxRSS>>20)
				}
			}
		})
	}
}

// TestStreamRelaysChunksAsTheyCome is acceptance point 5: a chunked response
// and Server-Sent Events reach the client piece by piece through two
// sidecars. The app writes piece i only after gate i is released, and the
// test reads piece i before releasing gate i+1, so any buffering on the way
// stalls the read.
func TestStreamRelaysChunksAsTheyCome(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0)

	tests := []struct {
		name        string
		method      string
		contentType string
		read        func(*bufio.Reader) (string, error)
		want        []string
	}{
		{
			name:   "chunked",
			method: "chunks",
			read:   func(r *bufio.Reader) (string, error) { return r.ReadString('\n') },
			want:   []string{"chunk 0\n", "chunk 1\n", "chunk 2\n"},
		},
		{
			name:        "server-sent events",
			method:      "sse",
			contentType: "text/event-stream",
			read:        readEvent,
			want: []string{
				"id: 0\nevent: tick\ndata: event 0\n\n",
				"id: 1\nevent: tick\ndata: event 1\n\n",
				"id: 2\nevent: tick\ndata: event 2\n\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel() // also ends a read stuck below
			gate := "g-" + tt.method
			req, err := http.NewRequestWithContext(ctx, http.MethodGet,
				a.invokeURL("app-b", tt.method+"?n=3&gate="+gate), nil)
			if err != nil {
				t.Fatal(err)
			}
			// The app sends the headers with piece 0.
			stall := time.AfterFunc(5*time.Second, cancel)
			resp, err := http.DefaultClient.Do(req)
			if !stall.Stop() || err != nil {
				t.Fatalf("GET %s: no response headers within 5s: %v", tt.method, err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("status = %d", resp.StatusCode)
			}
			if resp.ContentLength != -1 {
				t.Errorf("Content-Length = %d, want a streamed response (-1)", resp.ContentLength)
			}
			if tt.contentType != "" {
				if got := resp.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("Content-Type = %q, want %q", got, tt.contentType)
				}
			}
			br := bufio.NewReader(resp.Body)
			var got []string
			for i := range len(tt.want) {
				if i > 0 {
					release(t, bPort, gate+"-"+strconv.Itoa(i))
				}
				got = append(got, readWithin(t, 5*time.Second, fmt.Sprintf("piece %d before gate %d is released", i, i+1),
					func() (string, error) { return tt.read(br) }))
			}
			if rest, err := io.ReadAll(br); err != nil || len(rest) != 0 {
				t.Errorf("after the last piece: %q, %v; want EOF", rest, err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pieces (-want +got):\n%s", diff)
			}
		})
	}
}

// readEvent reads one Server-Sent Event, up to and including its blank line.
func readEvent(r *bufio.Reader) (string, error) {
	var b strings.Builder
	for {
		line, err := r.ReadString('\n')
		b.WriteString(line)
		if err != nil || line == "\n" {
			return b.String(), err
		}
	}
}

// readWithin runs read and fails the test if it does not return within d.
// The caller unblocks a stuck read by cancelling its request.
func readWithin(t *testing.T, d time.Duration, what string, read func() (string, error)) string {
	t.Helper()
	type result struct {
		s   string
		err error
	}
	c := make(chan result, 1)
	go func() {
		s, err := read()
		c <- result{s, err}
	}()
	select {
	case r := <-c:
		if r.err != nil {
			t.Fatalf("reading %s: got %q, %v", what, r.s, r.err)
		}
		return r.s
	case <-time.After(d):
		t.Fatalf("reading %s: nothing within %s (buffered on the way?)", what, d)
		return ""
	}
}

// release opens a gate of the test app, calling the app directly.
func release(t *testing.T, appPort int, gate string) {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(appPort) + "/release?gate=" + gate)
	if err != nil {
		t.Fatalf("release %s: %v", gate, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("release %s: status %d", gate, resp.StatusCode)
	}
}

// peakRSS returns a process's peak resident set size (VmHWM) in bytes.
func peakRSS(t *testing.T, p *proc) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/status")
	if err != nil {
		t.Fatalf("%s: %v", p.name, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("%s: VmHWM %q: %v", p.name, v, err)
			}
			return kb << 10
		}
	}
	t.Fatalf("%s: no VmHWM in /proc status", p.name)
	return 0
}
