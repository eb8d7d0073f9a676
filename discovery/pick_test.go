package discovery

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// staticSource serves fixed instances.
type staticSource map[string][]Instance

func (s staticSource) Lookup(appID, namespace string) ([]Instance, error) {
	return s[appID+"."+namespace], nil
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newPicker(src Source, bal Balancer) http.RoundTripper {
	res := NewResolver(src, slog.New(slog.DiscardHandler))
	return Pick(res, bal)(http.DefaultTransport)
}

func TestPickRetriesRefusedConnectionOnAnotherInstance(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = string(b)
		w.Header().Set("X-Host", r.Host)
	}))
	defer srv.Close()
	dead := closedAddr(t)
	live := strings.TrimPrefix(srv.URL, "http://")
	src := staticSource{"orders.default": {{Address: dead, Hostname: "x"}, {Address: live, Hostname: "x"}}}
	// Round robin starting at the dead instance (index 1 after Add → 1%2).
	rr := &RoundRobin{}
	rr.next.Store(1)
	rt := newPicker(src, rr)

	req, _ := http.NewRequest(http.MethodPost, "http://orders.default/x", strings.NewReader("payload"))
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	resp.Body.Close()
	if got != "payload" {
		t.Errorf("instance got body %q, want the unread body replayed", got)
	}
	if h := resp.Header.Get("X-Host"); h != "orders.default" {
		t.Errorf("authority = %q, want the logical name", h)
	}
	if req.URL.Host != "orders.default" {
		t.Errorf("picker modified the caller's request: host %q", req.URL.Host)
	}
}

func TestPickErrors(t *testing.T) {
	dead := closedAddr(t)
	rt := newPicker(staticSource{"down.default": {{Address: dead, Hostname: "x"}}}, P2C{})
	tests := []struct {
		name, url string
		want      error
	}{
		{name: "unknown app", url: "http://ghost.default/x", want: ErrNotFound},
		{name: "nothing listening", url: "http://down.default/x", want: ErrUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodGet, tt.url, nil)
			_, err := rt.RoundTrip(req)
			if !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
		})
	}
}
