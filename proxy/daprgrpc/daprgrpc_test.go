package daprgrpc

import (
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// TestCodeFromHTTPStatus is Dapr's table (contract §2.2), 400 → Internal
// included.
func TestCodeFromHTTPStatus(t *testing.T) {
	for code, want := range map[int]codes.Code{
		200: codes.OK, 201: codes.OK, 204: codes.OK, 299: codes.OK,
		307: codes.Unknown, 400: codes.Internal, 401: codes.Unauthenticated, 403: codes.PermissionDenied,
		404: codes.NotFound, 408: codes.Canceled, 409: codes.AlreadyExists, 418: codes.Unknown,
		429: codes.ResourceExhausted, 500: codes.Unknown, 501: codes.Unimplemented, 502: codes.Unknown,
		503: codes.Unavailable, 504: codes.DeadlineExceeded,
	} {
		if got := CodeFromHTTPStatus(code); got != want {
			t.Errorf("CodeFromHTTPStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func infoOf(t *testing.T, err error) (*status.Status, *errdetails.ErrorInfo) {
	t.Helper()
	st := status.Convert(err)
	for _, d := range st.Details() {
		if i, ok := d.(*errdetails.ErrorInfo); ok {
			return st, i
		}
	}
	t.Fatalf("%v: no ErrorInfo", err)
	return nil, nil
}

func TestHTTPStatusError(t *testing.T) {
	if err := httpStatusError(204, "x"); err != nil {
		t.Fatalf("2xx: %v, want nil", err)
	}
	body := strings.Repeat("é", 40) // 80 bytes
	st, info := infoOf(t, httpStatusError(404, body))
	if st.Code() != codes.NotFound || st.Message() != "Not Found" {
		t.Errorf("404: %v", st)
	}
	if m := info.Metadata["http.error_message"]; info.Reason != "Not Found" || info.Domain != "dapr.io" || info.Metadata["http.code"] != "404" ||
		len(m) != 62 || !utf8.ValidString(m) {
		t.Errorf("404 ErrorInfo %v, want Dapr's with the body cut to 63 bytes at a rune boundary", info)
	}
	// A binary body: the detail keeps only its valid UTF-8.
	_, info = infoOf(t, httpStatusError(500, "\xff\xfeok"))
	if m := info.Metadata["http.error_message"]; m != "ok" {
		t.Errorf("binary body: detail %q, want \"ok\"", m)
	}
}

func TestSidecarStatus(t *testing.T) {
	for _, tc := range []struct {
		e    SidecarError
		code codes.Code
		msg  string
	}{
		{SidecarError{HTTPStatus: 500, Reason: "TIMEOUT", Message: "failed to invoke, id: b, err: context deadline exceeded"}, codes.DeadlineExceeded, "context deadline exceeded"},
		{SidecarError{HTTPStatus: 500, Reason: "CIRCUIT_OPEN", Message: "failed to invoke, id: b, err: circuit breaker is open"}, codes.Unknown, "circuit breaker is open"},
		{SidecarError{HTTPStatus: 503, Reason: "CIRCUIT_OPEN", Message: "failed to invoke, id: b, err: too many calls"}, codes.Internal, "failed to invoke, id: b, err: too many calls"},
		{SidecarError{HTTPStatus: 404, Reason: "NO_APP_ID", Message: "failed getting app id"}, codes.NotFound, "failed getting app id"},
		{SidecarError{HTTPStatus: 500, Reason: "APP_NOT_FOUND", Message: "failed to invoke, id: x, err: no instance"}, codes.Internal, "failed to invoke, id: x, err: no instance"},
		{SidecarError{HTTPStatus: 403, Reason: "ACCESS_DENIED", Message: "failed to invoke, id: b, err: denied"}, codes.Internal, "failed to invoke, id: b, err: denied"},
		{SidecarError{HTTPStatus: 429, Reason: "RATE_LIMITED", Message: "failed to invoke, id: b, err: rate limited"}, codes.ResourceExhausted, "failed to invoke, id: b, err: rate limited"},
	} {
		tc.e.Domain = "skein"
		st, info := infoOf(t, sidecarStatus(tc.e, false))
		if st.Code() != tc.code || st.Message() != tc.msg || info.Reason != tc.e.Reason || info.Domain != "skein" {
			t.Errorf("%+v: %v %q (%v), want %v %q with its reason", tc.e, st.Code(), st.Message(), info, tc.code, tc.msg)
		}
	}
}

func TestHeaderConversions(t *testing.T) {
	h := http.Header{}
	requestHeaders(h, metadata.MD{
		":authority": {"127.0.0.1:50001"}, "grpc-accept-encoding": {"gzip"}, "content-type": {"application/grpc"},
		"x-bin": {"AAE="}, "dapr-app-id": {"b"}, "x-multi": {"1", "2"}, "user-agent": {"sdk"},
	})
	want := http.Header{
		"Dapr-Authority": {"127.0.0.1:50001"}, "Dapr-Grpc-Accept-Encoding": {"gzip"},
		"X-Multi": {"1", "2"}, "User-Agent": {"sdk"},
	}
	if len(h) != len(want) {
		t.Errorf("request headers %v, want %v", h, want)
	}
	for k, v := range want {
		if got := h.Values(k); strings.Join(got, ",") != strings.Join(v, ",") {
			t.Errorf("request header %s = %q, want %q", k, got, v)
		}
	}
	md := headerMetadata(http.Header{
		"Content-Type": {"application/json"}, "Content-Length": {"12"}, "Date": {"now"},
		"Connection": {"close"}, "X-Custom": {"a", "b"}, "Trace-Bin": {"aGk="},
	})
	for k, v := range map[string]string{"dapr-content-type": "application/json", "dapr-date": "now", "x-custom": "a,b", "trace-bin": "hi"} {
		if got := strings.Join(md.Get(k), ","); got != v {
			t.Errorf("response metadata %s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"content-length", "dapr-content-length", "connection", "dapr-connection"} {
		if got := md.Get(k); len(got) != 0 {
			t.Errorf("response metadata %s = %q, want none", k, got)
		}
	}
}

// TestCalleeSidecarError: only Skein's own error envelope is taken for a
// callee sidecar's failure; an app's JSON error is the app's answer.
func TestCalleeSidecarError(t *testing.T) {
	h := http.Header{"Content-Type": {"application/json"}}
	skein := `{"errorCode":"ERR_DIRECT_INVOKE","message":"failed to invoke, id: b, err: x","details":[{"@type":"type.googleapis.com/google.rpc.ErrorInfo","reason":"ACCESS_DENIED","domain":"skein","metadata":{"appID":"b"}}]}`
	e, ok := calleeSidecarError(403, h, []byte(skein))
	if !ok || e.Reason != "ACCESS_DENIED" || e.HTTPStatus != 403 || e.Metadata["appID"] != "b" {
		t.Errorf("Skein's envelope: %+v, %v", e, ok)
	}
	for name, tc := range map[string]struct {
		code int
		ct   string
		body string
	}{
		"app JSON":       {500, "application/json", `{"errorCode":"E","message":"m"}`},
		"other domain":   {500, "application/json", strings.Replace(skein, `"skein"`, `"dapr.io"`, 1)},
		"2xx":            {200, "application/json", skein},
		"not JSON":       {500, "text/plain", skein},
		"malformed JSON": {500, "application/json", skein[:40]},
		"two ErrorInfos": {500, "application/json", strings.Replace(skein, `}]}`, `},{"@type":"type.googleapis.com/google.rpc.ErrorInfo","domain":"skein"}]}`, 1)},
	} {
		if _, ok := calleeSidecarError(tc.code, http.Header{"Content-Type": {tc.ct}}, []byte(tc.body)); ok {
			t.Errorf("%s: taken for a sidecar's error", name)
		}
	}
}
