package discovery

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
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

// prefer is a balancer that picks addr first, then any other candidate.
type prefer string

func (p prefer) Pick(eps []*Endpoint, tried []*Endpoint, now int64) *Endpoint {
	cands := candidates(eps, tried, now)
	for _, e := range cands {
		if e.Addr == string(p) {
			return e
		}
	}
	if len(cands) == 0 {
		return nil
	}
	return cands[0]
}

func newPicker(src Source, bal Balancer) http.RoundTripper {
	res := NewResolver(src, slog.New(slog.DiscardHandler))
	return Pick(res, bal, nil)(http.DefaultTransport)
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
	rt := newPicker(src, prefer(dead))

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

// TestPickReplaysOnlyIdempotentCallsAfterConnectionLoss: an instance that
// drops the connection mid-call gets a GET sent again to another instance,
// never a POST.
func TestPickReplaysOnlyIdempotentCallsAfterConnectionLoss(t *testing.T) {
	var dropped, served atomic.Int32
	drop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		dropped.Add(1)
		c, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			c.Close() // the instance dies after reading the request
		}
	}))
	defer drop.Close()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { served.Add(1) }))
	defer ok.Close()
	src := staticSource{"orders.default": {
		{Address: strings.TrimPrefix(drop.URL, "http://"), Hostname: "x"},
		{Address: strings.TrimPrefix(ok.URL, "http://"), Hostname: "x"},
	}}
	tests := []struct {
		method    string
		body      io.Reader
		wantOK    bool
		wantServe int
	}{
		{http.MethodGet, nil, true, 1},
		{http.MethodHead, nil, true, 1},
		{http.MethodPost, strings.NewReader("x"), false, 0},
		{http.MethodPost, nil, false, 0},
	}
	for _, tt := range tests {
		t.Run(tt.method, func(t *testing.T) {
			dropped.Store(0)
			served.Store(0)
			rt := newPicker(src, prefer(strings.TrimPrefix(drop.URL, "http://")))
			req, _ := http.NewRequest(tt.method, "http://orders.default/x", tt.body)
			req.Header.Set("Connection", "close") // a fresh connection per call
			resp, err := rt.RoundTrip(req)
			if err == nil {
				resp.Body.Close()
			}
			if (err == nil) != tt.wantOK || int(served.Load()) != tt.wantServe || dropped.Load() != 1 {
				t.Errorf("err = %v, served %d, dropped %d; want ok %v, served %d, dropped 1",
					err, served.Load(), dropped.Load(), tt.wantOK, tt.wantServe)
			}
		})
	}
}

// TestPickUsesTheCallsTarget: the picker resolves the target its caller
// decided (targetOf), not one parsed back from the request's Host; the Host
// is only a fallback, and is sent as it was, as the :authority.
func TestPickUsesTheCallsTarget(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Host", r.Host)
	}))
	defer srv.Close()
	src := staticSource{"orders.default": {{Address: strings.TrimPrefix(srv.URL, "http://"), Hostname: "x"}}}
	orders := Target{AppID: "orders", Namespace: "default"}
	tests := []struct {
		name     string
		host     string
		targetOf func(*http.Request) (Target, bool)
		wantErr  bool
	}{
		{name: "call's target, Host not a target", host: "not-a-target",
			targetOf: func(*http.Request) (Target, bool) { return orders, true }},
		{name: "call's target wins over Host", host: "ghost.default",
			targetOf: func(*http.Request) (Target, bool) { return orders, true }},
		{name: "no call target: Host parsed", host: "orders.default",
			targetOf: func(*http.Request) (Target, bool) { return Target{}, false }},
		{name: "nil targetOf: Host parsed", host: "orders.default"},
		{name: "no call target, Host not a target", host: "not-a-target", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := NewResolver(src, slog.New(slog.DiscardHandler))
			rt := Pick(res, P2C{}, tt.targetOf)(http.DefaultTransport)
			req, _ := http.NewRequest(http.MethodGet, "http://"+tt.host+"/x", nil)
			resp, err := rt.RoundTrip(req)
			if tt.wantErr {
				if err == nil {
					resp.Body.Close()
					t.Fatal("RoundTrip succeeded, want an error: the request names no target")
				}
				return
			}
			if err != nil {
				t.Fatalf("RoundTrip: %v", err)
			}
			resp.Body.Close()
			if h := resp.Header.Get("X-Host"); h != tt.host {
				t.Errorf("authority = %q, want the request's Host %q unchanged", h, tt.host)
			}
		})
	}
}
