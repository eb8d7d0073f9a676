package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
)

// TestClientBodyErrors: a request body that fails on the client's side is
// the client's fault, answered 400 (BODY_TOO_LARGE keeps Dapr's 500), on
// the callee too where it comes back through the app transport, and it
// ends the call's context with itself as the cause; a read failing after
// the transport closed the body is nobody's fault of that kind.
func TestClientBodyErrors(t *testing.T) {
	bad := errors.New("chunked line ends with bare LF")
	tests := []struct {
		name       string
		body       io.ReadCloser
		closeFirst bool
		wantFault  bool
		wantStatus int
		wantReason string
	}{
		{name: "malformed body", body: io.NopCloser(iotest.ErrReader(bad)),
			wantFault: true, wantStatus: http.StatusBadRequest, wantReason: ReasonInvalidBody},
		{name: "body cut off", body: io.NopCloser(iotest.ErrReader(io.ErrUnexpectedEOF)),
			wantFault: true, wantStatus: http.StatusBadRequest, wantReason: ReasonInvalidBody},
		{name: "body too large", body: &limitedBody{rc: io.NopCloser(strings.NewReader("xx")), left: 1},
			wantFault: true, wantStatus: http.StatusInternalServerError, wantReason: ReasonBodyTooLarge},
		{name: "read after the transport closed it", body: io.NopCloser(iotest.ErrReader(bad)), closeFirst: true,
			wantStatus: http.StatusInternalServerError, wantReason: ReasonAppUnreachable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/x", nil)
			r.Body = tt.body
			ctx, abort := withClientBody(r)
			defer abort(nil)
			if tt.closeFirst {
				_ = r.Body.Close()
			}
			_, err := io.ReadAll(r.Body)
			if err == nil {
				t.Fatal("read succeeded")
			}
			if got := isClientFault(err); got != tt.wantFault {
				t.Errorf("client fault = %v, want %v (%v)", got, tt.wantFault, err)
			}
			if cause := context.Cause(ctx); tt.wantFault != (cause == err) {
				t.Errorf("call context cause = %v, want the fault %v: %v", cause, tt.wantFault, err)
			}
			if st, reason := classify(err); st != tt.wantStatus || reason != tt.wantReason {
				t.Errorf("classify(%v) = %d %s, want %d %s", err, st, reason, tt.wantStatus, tt.wantReason)
			}
			if tt.wantFault {
				// On the callee it comes back through the app transport.
				if st, reason := classify(&appChannelError{err: err}); st != tt.wantStatus || reason != tt.wantReason {
					t.Errorf("via the app channel: %d %s, want %d %s", st, reason, tt.wantStatus, tt.wantReason)
				}
			}
		})
	}
	r := httptest.NewRequest(http.MethodGet, "/x", nil)
	if ctx, _ := withClientBody(r); ctx != r.Context() || r.Body != http.NoBody {
		t.Error("a request without body got a context or a wrapper")
	}
}

func BenchmarkWithClientBody(b *testing.B) {
	r := httptest.NewRequest(http.MethodPost, "/x", nil)
	parent, cancel := context.WithCancel(context.Background())
	defer cancel()
	r = r.WithContext(parent)
	body := io.NopCloser(strings.NewReader(""))
	b.ReportAllocs()
	for b.Loop() {
		r.Body = body
		_, abort := withClientBody(r)
		abort(nil)
	}
}
