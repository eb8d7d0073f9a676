package daprgrpc

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// headerHTTPStatus carries the app's HTTP status on InvokeService's
// response headers, as in Dapr.
const headerHTTPStatus = "dapr-http-status"

// invoke serves InvokeService as the HTTP invocation Dapr makes of it.
func (s *Server) invoke(ctx context.Context, in *runtimev1.InvokeServiceRequest) (*commonv1.InvokeResponse, error) {
	id, msg := in.GetId(), in.GetMessage()
	req, err := s.httpRequest(ctx, id, msg)
	if err != nil {
		return nil, err
	}
	rec := &recorder{header: http.Header{}, limit: s.opts.MaxMessageBytes}
	s.opts.Invoke.ServeHTTP(rec, req)
	if rec.sidecarErr != nil {
		return nil, sidecarStatus(*rec.sidecarErr, false)
	}
	if st := rec.appStatus; st != nil {
		// A gRPC app's own status, unchanged, with the app's headers.
		_ = grpc.SetHeader(ctx, headerMetadata(rec.header))
		return nil, status.ErrorProto(st)
	}
	if rec.tooLarge {
		return nil, status.Errorf(codes.ResourceExhausted, "failed to invoke, id: %s, err: answer larger than %d bytes", id, s.opts.MaxMessageBytes)
	}
	code := rec.code
	if code == 0 {
		code = http.StatusOK
	}
	if e, ok := calleeSidecarError(code, rec.header, rec.body.Bytes()); ok {
		// A failure of the callee's sidecar (access control, its app
		// channel): Dapr's code and the same reason as over HTTP.
		return nil, sidecarStatus(e, false)
	}
	md := headerMetadata(rec.header)
	md.Set(headerHTTPStatus, strconv.Itoa(code))
	_ = grpc.SetHeader(ctx, md)
	if err := httpStatusError(code, rec.body.String()); err != nil {
		return nil, err
	}
	return &commonv1.InvokeResponse{
		Data:        &anypb.Any{Value: rec.body.Bytes()},
		ContentType: rec.header.Get("Content-Type"),
	}, nil
}

// httpRequest builds the HTTP invocation of an InvokeService call: verb,
// /v1.0/invoke/<id>/method/<method>?<querystring>, the data as body, the
// content type, and the call's metadata as headers (contract §1.6).
func (s *Server) httpRequest(ctx context.Context, id string, msg *commonv1.InvokeRequest) (*http.Request, error) {
	ext := msg.GetHttpExtension()
	if ext == nil {
		return nil, invokeError(id, codes.InvalidArgument, "missing HTTP extension field")
	}
	verb := ext.GetVerb()
	if verb == commonv1.HTTPExtension_NONE || verb == commonv1.HTTPExtension_CONNECT {
		// Go's HTTP client cannot send CONNECT; NONE names no verb.
		return nil, invokeError(id, codes.InvalidArgument, "invalid HTTP verb")
	}
	if _, ok := commonv1.HTTPExtension_Verb_name[int32(verb)]; !ok {
		return nil, invokeError(id, codes.InvalidArgument, "invalid HTTP verb")
	}
	method := strings.TrimPrefix(msg.GetMethod(), "/")
	u := &url.URL{Path: "/v1.0/invoke/" + id + "/method/" + method, RawQuery: ext.GetQuerystring()}
	var body []byte
	if d := msg.GetData(); d != nil {
		body = d.GetValue()
	}
	req, err := http.NewRequestWithContext(ctx, verb.String(), "http://127.0.0.1"+u.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, invokeError(id, codes.InvalidArgument, err.Error())
	}
	req.RequestURI = u.RequestURI()
	req.Host = ""
	req.RemoteAddr = "127.0.0.1:0"
	if p, ok := peerAddr(ctx); ok {
		req.RemoteAddr = p
	}
	md, _ := metadata.FromIncomingContext(ctx)
	requestHeaders(req.Header, md)
	if ct := msg.GetContentType(); ct != "" {
		req.Header.Set("Content-Type", ct)
	} else if msg.GetData().GetTypeUrl() != "" {
		req.Header.Set("Content-Type", "application/x-protobuf")
	}
	if len(body) == 0 {
		req.Body = http.NoBody
	}
	return req, nil
}

// invokeError is the error Dapr's caller sidecar returns when the callee
// refused the call: Internal, wrapping the callee's status text.
func invokeError(id string, c codes.Code, msg string) error {
	return status.Errorf(codes.Internal, "failed to invoke, id: %s, err: %v", id, status.Error(c, msg))
}

// requestHeaders turns gRPC metadata into the HTTP invocation's headers
// (contract §1.6, gRPC caller → HTTP app): pseudo-headers become dapr-*,
// grpc-* keys dapr-grpc-*, binary keys and the gRPC content type are
// dropped; the API token is kept for the HTTP pipeline's own check, which
// removes it.
func requestHeaders(h http.Header, md metadata.MD) {
	for k, vs := range md {
		switch {
		case k == "content-type", strings.HasSuffix(k, "-bin"):
			continue
		case strings.HasPrefix(k, ":"):
			k = "dapr-" + k[1:]
		case strings.HasPrefix(k, "grpc-"):
			k = "dapr-" + k
		case k == "dapr-app-id", k == "content-length", k == "te", k == "connection", k == "host":
			// The target is the request's id; framing is the pipeline's.
			continue
		}
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

// headerMetadata turns HTTP headers into gRPC metadata as Dapr does, the
// same both ways (InternalMetadataToGrpcMetadata): an app's response
// headers for an InvokeService caller, an HTTP invocation's headers for a
// gRPC app's OnInvoke. Names lower-cased, HTTP's permanent headers renamed
// dapr-<name>, hop-by-hop and framing headers left out, *-bin values
// base64-decoded.
func headerMetadata(h http.Header) metadata.MD {
	md := metadata.MD{}
	for k, vs := range h {
		if hopByHop(k) || k == "Content-Length" {
			continue
		}
		key := strings.ToLower(k)
		if permanentHeader(k) {
			key = "dapr-" + key
		}
		if strings.HasSuffix(key, "-bin") {
			for _, v := range vs {
				if b, err := base64.StdEncoding.DecodeString(v); err == nil {
					md.Append(key, string(b))
				}
			}
			continue
		}
		md.Append(key, vs...)
	}
	return md
}

func hopByHop(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade",
		"Http2-Settings", "Te", "Trailer", "Proxy-Authorization", "Proxy-Authenticate":
		return true
	}
	return false
}

// permanentHeader is Dapr's isPermanentHTTPHeader: the HTTP headers a gRPC
// caller receives under a dapr- prefix.
func permanentHeader(k string) bool {
	switch k {
	case "Accept", "Accept-Charset", "Accept-Language", "Accept-Ranges", "Connection", "Keep-Alive",
		"Proxy-Connection", "Transfer-Encoding", "Upgrade", "Cache-Control", "Content-Type",
		"Content-Length", "Cookie", "Date", "Expect", "From", "Host", "If-Match",
		"If-Modified-Since", "If-None-Match", "If-Schedule-Tag-Match", "If-Unmodified-Since",
		"Max-Forwards", "Origin", "Pragma", "Referer", "Via", "Warning":
		return true
	}
	return false
}

// recorder is the ResponseWriter an InvokeService call's HTTP invocation
// writes to: the answer is one gRPC message, so it is kept whole, up to
// the message limit.
type recorder struct {
	header     http.Header
	code       int
	body       bytes.Buffer
	limit      int
	tooLarge   bool
	sidecarErr *SidecarError
	appStatus  *spb.Status
}

// AppStatus records a gRPC app's status (AppStatusSink).
func (r *recorder) AppStatus(encoded string) {
	b, err := base64.RawStdEncoding.DecodeString(encoded)
	if err != nil {
		return
	}
	st := &spb.Status{}
	if proto.Unmarshal(b, st) == nil && st.GetCode() != 0 {
		r.appStatus = st
	}
}

func (r *recorder) Header() http.Header { return r.header }

func (r *recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 {
		r.code = code
	}
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.code = http.StatusOK
	}
	if r.body.Len()+len(b) > r.limit {
		r.tooLarge = true
		return 0, errAnswerTooLarge
	}
	return r.body.Write(b)
}

// Flush is a no-op: the answer goes out whole.
func (r *recorder) Flush() {}

// SidecarError records a failure of the sidecar (ErrorSink).
func (r *recorder) SidecarError(e SidecarError) { r.sidecarErr = &e }

var errAnswerTooLarge = status.Error(codes.ResourceExhausted, "answer larger than the gRPC message limit")

// peerAddr is the calling app's address, for the HTTP request's RemoteAddr.
func peerAddr(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return "", false
	}
	return p.Addr.String(), true
}

// calleeSidecarError recognises an answer written by the callee's sidecar
// rather than its app: a 4xx or 5xx carrying Skein's error envelope (Dapr's
// errorCode, and an ErrorInfo of domain "skein"). The caller's own
// failures reach InvokeService through ErrorSink; the callee's come back
// as an HTTP answer, which only this buffered path reads.
func calleeSidecarError(code int, h http.Header, body []byte) (SidecarError, bool) {
	if code < 400 || !strings.HasPrefix(h.Get("Content-Type"), "application/json") || len(body) > 64<<10 {
		return SidecarError{}, false
	}
	var env struct {
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
		Details   []struct {
			Type     string            `json:"@type"`
			Reason   string            `json:"reason"`
			Domain   string            `json:"domain"`
			Metadata map[string]string `json:"metadata"`
		} `json:"details"`
	}
	if json.Unmarshal(body, &env) != nil || env.ErrorCode == "" || len(env.Details) != 1 ||
		env.Details[0].Domain != "skein" || env.Details[0].Type != "type.googleapis.com/google.rpc.ErrorInfo" {
		return SidecarError{}, false
	}
	d := env.Details[0]
	return SidecarError{HTTPStatus: code, ErrorCode: env.ErrorCode, Message: env.Message, Reason: d.Reason, Domain: d.Domain, Metadata: d.Metadata}, true
}
