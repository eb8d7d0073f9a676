package proxy

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

// TestStartupDoneOnce: Options.StartupDone runs once, after the first call
// that was answered; calls that got no answer (an app id with no
// instance) do not end start-up.
func TestStartupDoneOnce(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "hi") }))
	defer app.Close()
	var calls atomic.Int32
	done := make(chan struct{}, 8)
	s := newPanicSidecar(t, app, Options{StartupDone: func() {
		calls.Add(1)
		done <- struct{}{}
	}})
	serve := func(h http.Handler, target, host string) int {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		r := httptest.NewRequestWithContext(ctx, http.MethodGet, target, nil)
		r.Host = host
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	if code := serve(s.apiHandler, "/v1.0/invoke/ghost/method/x", "127.0.0.1"); code == http.StatusOK {
		t.Fatalf("a call to an app with no instance answered %d", code)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("StartupDone ran %d times before any call was answered", n)
	}
	for i := range 3 {
		if code := serve(s.peerHandler, "/orders", "a.default"); code != http.StatusOK {
			t.Fatalf("call %d from a peer: %d", i, code)
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Second): // a hang guard, not a timed assertion
		t.Fatal("StartupDone not called after the first answered call")
	}
	if code := serve(s.peerHandler, "/orders", "a.default"); code != http.StatusOK {
		t.Fatalf("a later call: %d", code)
	}
	if n := calls.Load(); n != 1 {
		t.Errorf("StartupDone ran %d times, want once", n)
	}
}
