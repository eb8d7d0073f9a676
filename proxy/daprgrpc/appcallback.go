package daprgrpc

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	commonv1 "github.com/dapr/dapr/pkg/proto/common/v1"
	runtimev1 "github.com/dapr/dapr/pkg/proto/runtime/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// HeaderAppStatus carries a gRPC app's non-OK status (google.rpc.Status,
// base64 protobuf) from the callee's sidecar, beside the HTTP answer made
// of it, so that an InvokeService caller gets the status unchanged. Between
// sidecars only: the caller's sidecar removes it.
const HeaderAppStatus = "Skein-Grpc-App-Status"

// AppStatusSink is implemented by the ResponseWriter of an InvokeService
// call: the sidecar hands it a gRPC app's status (HeaderAppStatus).
type AppStatusSink interface {
	AppStatus(encoded string)
}

// AppTransport is the app channel to an app whose server speaks gRPC
// (--app-protocol grpc or grpcs), as Dapr has it (contract §2.4): a gRPC
// call (proxy mode) goes to the app as it is, over HTTP/2 (Native); any
// other call, an HTTP invocation, becomes the app's
// dapr.proto.runtime.v1.AppCallback/OnInvoke, and its answer an HTTP
// response (contract §1.7).
type AppTransport struct {
	// Native carries gRPC calls to the app: h2c, or HTTP/2 over TLS.
	Native interface {
		http.RoundTripper
		CloseIdleConnections()
	}
	// Creds secure OnInvoke's connections (insecure for grpc, TLS without
	// verification for grpcs, as Dapr does toward its own app).
	Creds credentials.TransportCredentials
	// MaxMessageBytes bounds an OnInvoke request and answer; 0: 4 MiB.
	MaxMessageBytes int
	// Metrics records Dapr's gRPC client metrics of OnInvoke; nil: none.
	Metrics *Metrics

	mu    sync.Mutex
	conns map[string]*grpc.ClientConn // by app address
}

// RoundTrip sends r to the app.
func (t *AppTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if IsGRPC(r.Header) {
		return t.Native.RoundTrip(r)
	}
	return t.onInvoke(r)
}

// CloseIdleConnections closes the native transport's idle connections and
// every OnInvoke connection (a new call dials again).
func (t *AppTransport) CloseIdleConnections() {
	t.Native.CloseIdleConnections()
	t.mu.Lock()
	conns := t.conns
	t.conns = nil
	t.mu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
}

// IsGRPC reports whether a request is a gRPC call: content type
// application/grpc, or application/grpc+<codec> or ;<parameters>.
func IsGRPC(h http.Header) bool {
	ct := h.Get("Content-Type")
	const g = "application/grpc"
	return strings.HasPrefix(ct, g) && (len(ct) == len(g) || ct[len(g)] == '+' || ct[len(g)] == ';')
}

func (t *AppTransport) conn(addr string) (*grpc.ClientConn, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if c, ok := t.conns[addr]; ok {
		return c, nil
	}
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(t.Creds))
	if err != nil {
		return nil, err
	}
	if t.conns == nil {
		t.conns = map[string]*grpc.ClientConn{}
	}
	t.conns[addr] = c
	return c, nil
}

func (t *AppTransport) maxBytes() int {
	if t.MaxMessageBytes > 0 {
		return t.MaxMessageBytes
	}
	return 4 << 20
}

// errRequestTooLarge is an HTTP invocation whose body exceeds a gRPC
// app's message limit.
var errRequestTooLarge = errors.New("request body larger than the gRPC app's message limit")

// onInvoke makes the HTTP invocation r an OnInvoke call of the app.
func (t *AppTransport) onInvoke(r *http.Request) (*http.Response, error) {
	c, err := t.conn(r.URL.Host)
	if err != nil {
		return nil, err
	}
	var body []byte
	if r.Body != nil && r.Body != http.NoBody {
		body, err = io.ReadAll(io.LimitReader(r.Body, int64(t.maxBytes())+1))
		_ = r.Body.Close()
		if err != nil {
			return nil, err
		}
		if len(body) > t.maxBytes() {
			return nil, errRequestTooLarge
		}
	}
	verb := commonv1.HTTPExtension_Verb(commonv1.HTTPExtension_Verb_value[r.Method]) // unknown: NONE
	in := &commonv1.InvokeRequest{
		Method:        strings.TrimPrefix(r.URL.Path, "/"),
		Data:          &anypb.Any{Value: body},
		ContentType:   r.Header.Get("Content-Type"),
		HttpExtension: &commonv1.HTTPExtension{Verb: verb, Querystring: r.URL.RawQuery},
	}
	ctx := metadata.NewOutgoingContext(r.Context(), headerMetadata(r.Header))
	var hdr metadata.MD
	start := time.Now()
	out, err := runtimev1.NewAppCallbackClient(c).OnInvoke(ctx, in, grpc.Header(&hdr),
		grpc.MaxCallRecvMsgSize(t.maxBytes()), grpc.MaxCallSendMsgSize(t.maxBytes()+1<<10))
	t.Metrics.client("/dapr.proto.runtime.v1.AppCallback/OnInvoke", status.Code(err), time.Since(start))
	if err != nil {
		if cerr := r.Context().Err(); cerr != nil {
			return nil, cerr
		}
		st := status.Convert(err)
		if st.Code() == codes.Unavailable && len(st.Details()) == 0 && strings.HasPrefix(st.Message(), "connection error") {
			return nil, fmt.Errorf("gRPC app: %s", st.Message()) // the app is not there: an app-channel failure
		}
		// The app's own status: Dapr's HTTP status for its code, and the
		// status as JSON.
		b, merr := protojson.Marshal(st.Proto())
		if merr != nil {
			b = []byte(`{"code":` + strconv.Itoa(int(st.Code())) + `}`)
		}
		h := responseHeaders(hdr)
		h.Set("Content-Type", "application/json")
		if pb, err := proto.Marshal(st.Proto()); err == nil {
			// For a gRPC caller (InvokeService) the app's status itself.
			h.Set(HeaderAppStatus, base64.RawStdEncoding.EncodeToString(pb))
		}
		return response(r, HTTPStatusFromCode(st.Code()), h, b), nil
	}
	h := responseHeaders(hdr)
	if ct := out.GetContentType(); ct != "" {
		h.Set("Content-Type", ct)
	}
	return response(r, http.StatusOK, h, out.GetData().GetValue()), nil
}

func response(r *http.Request, code int, h http.Header, body []byte) *http.Response {
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{
		Status: strconv.Itoa(code) + " " + http.StatusText(code), StatusCode: code,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: h, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body)),
		Request: r,
	}
}

// responseHeaders is OnInvoke's header metadata as HTTP headers: gRPC's own
// keys left out, binary values base64-encoded.
func responseHeaders(md metadata.MD) http.Header {
	h := http.Header{}
	for k, vs := range md {
		if k == "content-type" || k == "content-length" || strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":") {
			continue
		}
		for _, v := range vs {
			if strings.HasSuffix(k, "-bin") {
				v = base64.StdEncoding.EncodeToString([]byte(v))
			}
			h.Add(k, v)
		}
	}
	return h
}

// HTTPStatusFromCode is Dapr's gRPC → HTTP status mapping (contract §2.2).
func HTTPStatusFromCode(c codes.Code) int {
	switch c {
	case codes.OK:
		return http.StatusOK
	case codes.Canceled:
		return http.StatusRequestTimeout
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return http.StatusBadRequest
	case codes.DeadlineExceeded:
		return http.StatusGatewayTimeout
	case codes.NotFound:
		return http.StatusNotFound
	case codes.AlreadyExists, codes.Aborted:
		return http.StatusConflict
	case codes.PermissionDenied:
		return http.StatusForbidden
	case codes.Unauthenticated:
		return http.StatusUnauthorized
	case codes.ResourceExhausted:
		return http.StatusTooManyRequests
	case codes.Unimplemented:
		return http.StatusNotImplemented
	case codes.Unavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}
