package proxy

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/skeinmesh/skein/overload"
)

// TestPeerRefusals: only a 503 carrying HeaderOverloaded is a peer's
// refusal; it becomes an error that is a refusal for overload (and closes
// the body); every other answer passes unchanged.
func TestPeerRefusals(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		marked  bool
		refusal bool
	}{
		{"refusal", http.StatusServiceUnavailable, true, true},
		{"app's own 503", http.StatusServiceUnavailable, false, false},
		{"marked but not 503", http.StatusOK, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &closed{Reader: strings.NewReader("{}")}
			rt := peerRefusals(roundTripFunc(func(r *http.Request) (*http.Response, error) {
				h := http.Header{}
				if tc.marked {
					h.Set(HeaderOverloaded, "true")
				}
				return &http.Response{StatusCode: tc.status, Header: h, Body: body}, nil
			}))
			req := httptest.NewRequest(http.MethodGet, "http://app-b.default/x", nil)
			resp, err := rt.RoundTrip(req)
			if got := overload.IsOverloaded(err); got != tc.refusal {
				t.Fatalf("refusal %v (err %v), want %v", got, err, tc.refusal)
			}
			if tc.refusal {
				var pe *peerOverloadedError
				if !errors.As(err, &pe) || !errors.Is(err, overload.ErrOverloaded) || body.n != 1 {
					t.Errorf("err %#v, body closed %d times; want a peerOverloadedError, ErrOverloaded, closed once", err, body.n)
				}
				if status, reason := classify(err); status != http.StatusServiceUnavailable || reason != ReasonOverloaded {
					t.Errorf("classify = %d %s, want 503 OVERLOADED", status, reason)
				}
				return
			}
			if err != nil || resp.StatusCode != tc.status {
				t.Errorf("answer %v %v, want it passed on", resp, err)
			}
		})
	}
}

type closed struct {
	io.Reader
	n int
}

func (c *closed) Close() error { c.n++; return nil }

// TestAppOverloadHeader: an app cannot pass its answer off as the
// sidecar's refusal.
func TestAppOverloadHeader(t *testing.T) {
	rt := appOverloadHeader(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		h := http.Header{}
		h.Set(HeaderOverloaded, "true")
		h.Set("X-Other", "kept")
		return &http.Response{StatusCode: http.StatusServiceUnavailable, Header: h, Body: http.NoBody}, nil
	}))
	resp, err := rt.RoundTrip(httptest.NewRequest(http.MethodGet, "http://app/x", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := resp.Header[HeaderOverloaded]; ok || resp.Header.Get("X-Other") != "kept" {
		t.Errorf("headers %v, want %s gone and the rest kept", resp.Header, HeaderOverloaded)
	}
}

// TestWriteOverloadedError: a refusal is 503 with Retry-After,
// HeaderOverloaded and reason OVERLOADED naming whose limit refused.
func TestWriteOverloadedError(t *testing.T) {
	w := httptest.NewRecorder()
	writeInvokeError(w, "app-b", &overload.RefusedError{Side: overload.SideOutbound, Limit: 30})
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") != "1" || w.Header().Get(HeaderOverloaded) != "true" {
		t.Fatalf("%d %v, want 503 with Retry-After 1 and %s", w.Code, w.Header(), HeaderOverloaded)
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	d := body.Details[0]
	if body.ErrorCode != codeDirectInvoke || d.Reason != ReasonOverloaded || d.Metadata["limit"] != "outbound" || d.Metadata["appID"] != "app-b" {
		t.Errorf("body %+v, want ERR_DIRECT_INVOKE, OVERLOADED, limit outbound, appID app-b", body)
	}
	if !strings.Contains(body.Message, "30 calls in flight") {
		t.Errorf("message %q does not name the limit", body.Message)
	}
}
