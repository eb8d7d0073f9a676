package test

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestHTTP3PeerTransport covers identity point 7: with --peer-transport h3
// calls reach the other sidecar over HTTP/3 (QUIC on the UDP port of the
// same number) with the same SPIFFE mTLS and caller identity.
func TestHTTP3PeerTransport(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort)
	a := m.sidecar("app-a", 0, "--peer-transport", "h3")
	for i := range 20 {
		resp, body := do(t, newRequest(t, http.MethodPost, a.invokeURL("app-b", "over-h3"), strings.NewReader("ping")))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("call %d over h3: %d %s", i, resp.StatusCode, body)
		}
		if e := decodeEcho(t, body); e.BodyLen != 4 || strings.Join(e.Header["Dapr-Caller-App-Id"], ",") != "app-a" {
			t.Fatalf("app got %d bytes from %v", e.BodyLen, e.Header["Dapr-Caller-App-Id"])
		}
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h3"`); n < 1 {
		t.Errorf("b accepted %v HTTP/3 connections, want at least 1", n)
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h2"`); n != 0 {
		t.Errorf("b accepted %v HTTP/2 connections, want 0: calls did not use HTTP/3", n)
	}
}

// TestHTTP3FallsBackWhenUDPBlocked: when UDP to the callee is black-holed
// the caller falls back to HTTP/2 within a second and the call succeeds.
func TestHTTP3FallsBackWhenUDPBlocked(t *testing.T) {
	m := newMesh(t)
	// A UDP socket that never answers holds the callee's port: datagrams
	// to it vanish, as behind a firewall that drops UDP.
	port := freePort(t)
	hole, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer hole.Close()
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--dapr-internal-grpc-port", strconv.Itoa(port))
	a := m.sidecar("app-a", 0, "--peer-transport", "h3")

	start := time.Now()
	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "fallback"), nil))
	took := time.Since(start)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("call with UDP blocked: %d %s", resp.StatusCode, body)
	}
	// The issue asks for a fallback within 1 second; this is that bound.
	if took > time.Second {
		t.Errorf("first call took %s with UDP blocked, want the HTTP/2 fallback within 1s", took)
	}
	if !strings.Contains(a.out.String(), "falling back to http/2") {
		t.Error("caller logged no fallback")
	}
	if n := b.metric(t, "skein_peer_connections_opened_total", `transport="h2"`); n < 1 {
		t.Errorf("b accepted %v HTTP/2 connections, want the fallback's", n)
	}
	// Later calls go straight to HTTP/2.
	start = time.Now()
	if resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-b", "again"), nil)); resp.StatusCode != http.StatusOK {
		t.Fatalf("second call: %d %s", resp.StatusCode, body)
	}
	t.Logf("first call %s, second %s", took, time.Since(start))
}
