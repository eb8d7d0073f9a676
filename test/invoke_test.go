package test

import (
	"net/http"
	"strings"
	"testing"
)

// TestHappyPath is appendix A exchange 1: a POST through two sidecars.
func TestHappyPath(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	aPort, _ := m.app("a")
	a := m.sidecar("app-a", aPort)

	req := newRequest(t, http.MethodPost, a.invokeURL("app-b", "orders/42?x=1"), strings.NewReader(`{"a":1}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Req", "r1")
	req.Header.Set("X-Echo-Status", "201")
	req.Header.Set("X-Echo-Header", "Location: /orders/42")
	resp, b := do(t, req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("status = %d, want 201: %s", resp.StatusCode, b)
	}
	if got := resp.Header.Get("Location"); got != "/orders/42" {
		t.Errorf("Location = %q", got)
	}
	if resp.Header.Get("Traceparent") == "" {
		t.Error("response has no traceparent")
	}
	e := decodeEcho(t, b)
	if e.Method != "POST" || e.Path != "/orders/42" || e.Query != "x=1" || e.BodyLen != 7 {
		t.Errorf("app got %s %s?%s (%d bytes)", e.Method, e.Path, e.Query, e.BodyLen)
	}
	for k, want := range map[string]string{
		"Content-Type": "application/json", "Content-Length": "7", "X-Req": "r1",
		"Dapr-Caller-App-Id": "app-a", "Dapr-Caller-Namespace": "default", "Dapr-Callee-App-Id": "app-b",
	} {
		if got := strings.Join(e.Header[k], ","); got != want {
			t.Errorf("app header %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "Forwarded", "Traceparent"} {
		if len(e.Header[k]) == 0 {
			t.Errorf("app did not get %s", k)
		}
	}
}
