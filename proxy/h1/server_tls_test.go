package h1

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/skeinmesh/skein/internal/inlineio"
)

// TestServerGathersTLSRecords: over TLS (on an internal/inlineio socket,
// as the peer port is), a long read of a request body returns every
// record already at hand, not one record (16 KiB at most) per Read, and
// the body arrives whole.
func TestServerGathersTLSRecords(t *testing.T) {
	type read struct {
		most int
		body []byte
	}
	got := make(chan read, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(100 * time.Millisecond) // the client's records arrive meanwhile
		var rd read
		buf := make([]byte, 64<<10)
		for {
			n, err := r.Body.Read(buf)
			rd.most = max(rd.most, n)
			rd.body = append(rd.body, buf[:n]...)
			if err != nil {
				break
			}
		}
		got <- rd
	})}
	addr := serveTLS(t, s)
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, DynamicRecordSizingDisabled: true}) //nolint:gosec // the test's own certificate
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	body := bytes.Repeat([]byte("0123456789abcdef"), 8<<10) // 128 KiB: 8 records
	req := append([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"), body...)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	rd := <-got
	if !bytes.Equal(rd.body, body) {
		t.Fatalf("the handler read %d bytes, not the %d sent", len(rd.body), len(body))
	}
	if rd.most <= 16<<10 {
		t.Errorf("the longest body Read returned %d bytes: one TLS record at a time, want the records at hand gathered", rd.most)
	}
}

// TestServerLongWritesOverTLS: a handler's long Writes over TLS (corked
// in 64 KiB pieces, each leaving in one write(2)) reach the client whole
// and in order, with a Content-Length and chunked; and the transport,
// reading that body over TLS into a long buffer, gets every record at
// hand per Read.
func TestServerLongWritesOverTLS(t *testing.T) {
	body := make([]byte, 300<<10+7)
	for i := range body {
		body[i] = byte(i % 253)
	}
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/length" {
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		}
		_, _ = w.Write(body[:100])
		_, _ = w.Write(body[100 : 200<<10])
		_, _ = w.Write(body[200<<10:])
	})}
	addr := serveTLS(t, s)
	tr := &Transport{Dial: DialTLS(&net.Dialer{Timeout: time.Second}, &tls.Config{InsecureSkipVerify: true})} //nolint:gosec // the test's own certificate
	defer tr.CloseIdleConnections()
	for _, path := range []string{"/length", "/chunked", "/length"} {
		req, _ := http.NewRequest(http.MethodGet, "https://"+addr+path, nil)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond) // the body's records arrive meanwhile
		var got []byte
		most := 0
		buf := make([]byte, 64<<10)
		for {
			n, err := resp.Body.Read(buf)
			most = max(most, n)
			got = append(got, buf[:n]...)
			if err != nil {
				break
			}
		}
		_ = resp.Body.Close()
		if !bytes.Equal(got, body) {
			t.Fatalf("%s: read %d bytes, not the %d written", path, len(got), len(body))
		}
		if most <= 16<<10 {
			t.Errorf("%s: the longest body Read returned %d bytes: one TLS record at a time", path, most)
		}
	}
}

// serveTLS serves s over TLS 1.3 on an internal/inlineio listener, as the
// peer port does, until the test ends, and returns its address.
func serveTLS(t *testing.T, s *Server) string {
	t.Helper()
	hs := httptest.NewUnstartedServer(nil) // for its certificate
	hs.StartTLS()
	cert := hs.TLS.Certificates[0]
	hs.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	finished := make(chan struct{})
	go func() {
		_ = s.Serve(tls.NewListener(inlineio.Listener{Listener: ln}, cfg))
		close(finished)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		<-finished
	})
	return ln.Addr().String()
}
