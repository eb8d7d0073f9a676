package faults

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
	"github.com/skeinmesh/skein/test/pattern"
)

// TestClientDisconnects is issue 14 point 4, clients going away: clients
// of the caller's API close their connection halfway through sending a
// request body (fixed-length and chunked) or halfway through reading a
// large answer. Each cut upload reaches the app at most once, and once
// they are all gone both sidecars are back to their baselines.
func TestClientDisconnects(t *testing.T) {
	p := newPair(t)
	const n = 20
	addr := "127.0.0.1:" + strconv.Itoa(p.a.HTTP)
	// raw sends head, then body bytes of it, then (after reading up to
	// read bytes of the answer) closes the connection.
	raw := func(head string, body io.Reader, read int64) error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, head); err != nil {
			return err
		}
		if body != nil {
			if _, err := io.Copy(c, body); err != nil {
				return err
			}
		}
		if read > 0 {
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("download: %s", resp.Status)
			}
			if _, err := io.CopyN(io.Discard, resp.Body, read); err != nil {
				return fmt.Errorf("download: %w", err)
			}
		}
		return nil
	}
	upload := func(key string) string {
		return "POST /v1.0/invoke/app-b/method/upload HTTP/1.1\r\nHost: a\r\nX-Count-Key: " + key + "\r\n"
	}
	tests := []struct {
		name string
		do   func(i int) error
	}{
		{"mid-upload, fixed length", func(i int) error {
			return raw(upload("fixed-"+strconv.Itoa(i))+"Content-Length: 1048576\r\n\r\n", pattern.NewReader(256<<10), 0)
		}},
		{"mid-upload, chunked", func(i int) error {
			chunk := fmt.Sprintf("%x\r\n", 64<<10)
			return raw(upload("chunked-"+strconv.Itoa(i))+"Transfer-Encoding: chunked\r\n\r\n"+chunk, pattern.NewReader(64<<10), 0)
		}},
		{"mid-download", func(int) error {
			return raw("GET /v1.0/invoke/app-b/method/download?size=268435456 HTTP/1.1\r\nHost: a\r\n\r\n", nil, 256<<10)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for i := range n {
				wg.Go(func() {
					if err := tt.do(i); err != nil {
						errs <- err
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("client: %v", err)
			}
		})
	}
	// A cut upload is never sent to the app again; the cuts happen while
	// the calls are in progress, so most reach the app.
	for _, kind := range []string{"fixed", "chunked"} {
		reached := 0
		for i := range n {
			got := harness.AppNumber(t, p.appPort, "/count?key="+kind+"-"+strconv.Itoa(i))
			if got > 1 {
				t.Errorf("cut upload %s-%d reached the app %d times", kind, i, got)
			}
			reached += got
		}
		if reached == 0 {
			t.Errorf("no %s upload reached the app: nothing was cut in flight", kind)
		}
	}
	p.settles(t)
}
