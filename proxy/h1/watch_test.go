package h1

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// relay is a Server handler that forwards each request's path to upstream
// through tr under the request's context (as the sidecar's forwarder does),
// with wrap applied to that context, and reports each call's error.
func relay(tr *Transport, upstream string, wrap func(context.Context) (context.Context, context.CancelFunc), errs chan<- error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := wrap(r.Context())
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, upstream+r.URL.Path, nil)
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_, err = io.Copy(w, resp.Body)
			_ = resp.Body.Close()
		}
		errs <- err
	})
}

// plain leaves the request's context as it is, but for a value.
func plain(ctx context.Context) (context.Context, context.CancelFunc) {
	type key struct{}
	return context.WithValue(ctx, key{}, 1), func() {}
}

// TestServerWatchesTransportCall: a Transport call made under a Server's
// request context is watched by the serving connection, not by
// context.AfterFunc (no allocation): a call that ends normally leaves its
// upstream connection pooled for the next request's call, and a client that
// goes away interrupts the call at once. A context with its own deadline
// is watched by context.AfterFunc, as before.
func TestServerWatchesTransportCall(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			select {
			case <-r.Context().Done(): // the call's connection went
			case <-release: // the test failed: end, so that the servers can close
			}
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	t.Cleanup(func() { close(release) }) // before the servers' Close (cleanups run last first)
	tr := newTransport()
	defer tr.CloseIdleConnections()
	errs := make(chan error, 8)
	s := serveH1(t, &Server{Handler: relay(tr, up.URL, plain, errs)})

	c := dialH1(t, s.addr)
	for i := range 3 {
		c.send(t, getReq("/fast"))
		if _, body := c.answer(t, http.MethodGet); body != "ok" {
			t.Fatalf("call %d: answer %q", i, body)
		}
		if err := <-errs; err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	if n := up.conns.Load(); n != 1 {
		t.Errorf("three calls used %d upstream connections, want 1 (a watch left behind would interrupt the pooled one)", n)
	}
	// The client goes away while the call waits: the request's context
	// ends (the Server's watch, after WatchDelay), and with it the call.
	c.send(t, getReq("/slow"))
	<-entered
	_ = c.Close()
	select {
	case err := <-errs:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("the call ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second): // a hang guard, not a timed assertion
		t.Fatal("the call still waits after its client left")
	}
}

// TestTransportCallOwnDeadline: a context with a deadline of its own (a
// retry policy's timeout) is not the request's; context.AfterFunc watches
// it and the deadline ends the call.
func TestTransportCallOwnDeadline(t *testing.T) {
	release := make(chan struct{})
	up := newServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) })
	tr := newTransport()
	defer tr.CloseIdleConnections()
	errs := make(chan error, 1)
	short := func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, 50*time.Millisecond)
	}
	s := serveH1(t, &Server{Handler: relay(tr, up.URL, short, errs)})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/slow"))
	if err := <-errs; !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("the call ended with %v, want context.DeadlineExceeded", err)
	}
	if n := len(tr.idle); n != 0 {
		t.Errorf("%d addresses have idle connections after a call its deadline ended", n)
	}
}

// TestWatchKinds: which watch a call gets, by its context.
func TestWatchKinds(t *testing.T) {
	type kinds struct{ request, valued, ownDeadline, second, ended bool }
	got := make(chan kinds, 1)
	s := serveH1(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var k kinds
		a, b := &conn{nc: nopConn{}}, &conn{nc: nopConn{}}
		wa := a.watch(r.Context())
		k.request = wa.sc != nil
		wb := b.watch(r.Context()) // a second call at once: the connection watches one
		k.second = wb.sc == nil && wb.stop != nil
		k.ended = wa.end() && wb.end() && !wa.end() // once only: the second end reports nothing to stop
		vctx, _ := plain(r.Context())
		wv := a.watch(vctx)
		k.valued = wv.sc != nil
		wv.end()
		dctx, cancel := context.WithTimeout(r.Context(), time.Hour)
		defer cancel()
		wd := a.watch(dctx)
		k.ownDeadline = wd.sc == nil && wd.stop != nil
		wd.end()
		got <- k
	})})
	c := dialH1(t, s.addr)
	c.send(t, getReq("/"))
	_, _ = c.answer(t, http.MethodGet)
	want := kinds{request: true, valued: true, ownDeadline: true, second: true, ended: true}
	if k := <-got; k != want {
		t.Errorf("watches %+v, want %+v", k, want)
	}
}

// nopConn is a net.Conn whose deadlines do nothing (a conn to watch).
type nopConn struct{ net.Conn }

func (nopConn) SetDeadline(time.Time) error { return nil }
