package proxy

import (
	"log/slog"
	"net"
	"net/http"
	"testing"
)

// TestIdleConnsClosesTheOneIdleLongest pins idleConns: past the cap the
// connection idle longest is closed; a connection that became active again
// is no longer a candidate.
func TestIdleConnsClosesTheOneIdleLongest(t *testing.T) {
	ic := newIdleConns(2, slog.New(slog.DiscardHandler))
	conns := make([]net.Conn, 4)
	peers := make([]net.Conn, 4)
	for i := range conns {
		conns[i], peers[i] = net.Pipe()
		defer conns[i].Close()
		defer peers[i].Close()
	}
	closed := func(c net.Conn) bool {
		_, err := c.Write([]byte{0}) // a pipe write fails at once once its end is closed
		return err != nil
	}
	ic.track(conns[0], http.StateIdle)
	ic.track(conns[1], http.StateIdle)
	ic.track(conns[0], http.StateActive) // reused: not idle any more
	ic.track(conns[2], http.StateIdle)
	if got := ic.idle(); got != 2 {
		t.Fatalf("%d idle, want 2", got)
	}
	ic.track(conns[3], http.StateIdle) // one too many: conns[1] has idled longest
	if !closed(conns[1]) {
		t.Error("the connection idle longest is open")
	}
	if got := ic.idle(); got != 2 {
		t.Errorf("%d idle after the eviction, want 2", got)
	}
	ic.track(conns[2], http.StateClosed)
	if got := ic.idle(); got != 1 {
		t.Errorf("%d idle after a close, want 1", got)
	}
}
