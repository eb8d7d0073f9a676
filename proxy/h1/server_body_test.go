package h1

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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

// TestServerSendsCompleteBodyAtOnce: once a handler has written all of the
// Content-Length it declared, the response is on its way, while the
// handler (its layers' bookkeeping) still runs; an answer of unknown
// length still waits for the handler's end.
func TestServerSendsCompleteBodyAtOnce(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/known" {
			w.Header().Set("Content-Length", "5")
		}
		_, _ = io.WriteString(w, "hel")
		_, _ = w.Write([]byte("lo"))
		<-release
	})})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/known"))
	got := make(chan string, 1)
	go func() {
		resp, body := c.answer(t, http.MethodGet)
		got <- resp.Header.Get("Content-Length") + " " + body
	}()
	select {
	case g := <-got:
		if g != "5 hello" {
			t.Fatalf("answer = %q, want Content-Length 5 and hello", g)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a complete answer waited for its handler to return")
	}

	c2 := dialH1(t, s.addr)
	c2.send(t, getReq("/unknown"))
	_ = c2.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if b, err := c2.br.Peek(1); err == nil {
		t.Fatalf("an answer of unknown length was sent (%q) before its handler returned", b)
	}
}
