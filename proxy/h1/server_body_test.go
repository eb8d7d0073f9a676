package h1

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestServerBodyAfterHandler: a goroutine still reading the request body
// once its handler has returned (a transport whose upstream answered
// before the body was sent) gets http.ErrBodyReadAfterClose, and the
// connection's next request is read whole: the body does not race the
// server for the connection (run with -race).
func TestServerBodyAfterHandler(t *testing.T) {
	release := make(chan struct{})
	late := make(chan error, 1)
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/early" {
			body := r.Body
			go func() {
				<-release
				_, err := io.Copy(io.Discard, body)
				late <- err
			}()
			_, _ = io.WriteString(w, "early")
			return
		}
		b, _ := io.ReadAll(r.Body)
		_, _ = io.WriteString(w, "next "+string(b))
	})})
	c := dialH1(t, s.addr)
	c.send(t, "POST /early HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
	if _, body := c.answer(t, http.MethodPost); body != "early" {
		t.Fatalf("first answer %q", body)
	}
	close(release)
	if err := <-late; !errors.Is(err, http.ErrBodyReadAfterClose) {
		t.Errorf("reading the body after the handler returned: %v, want http.ErrBodyReadAfterClose", err)
	}
	c.send(t, "POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc")
	if _, body := c.answer(t, http.MethodPost); body != "next abc" {
		t.Errorf("next answer %q, want %q", body, "next abc")
	}
	if !strings.Contains(body100(t, s.addr), "100 Continue") {
		t.Error("no 100 Continue for a handler reading an Expect body")
	}
}

// body100 sends an Expect: 100-continue request whose handler reads the
// body, and returns what came before the body was sent.
func body100(t *testing.T, addr string) string {
	t.Helper()
	c := dialH1(t, addr)
	c.send(t, "POST /next HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n")
	line, err := c.br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	return line
}
