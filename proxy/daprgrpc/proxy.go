package daprgrpc

import (
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// daprServicePrefix is the path prefix of the Dapr API's own methods.
const daprServicePrefix = "/dapr.proto.runtime.v1.Dapr/"

// headerAppID names the target app of a proxied call (Dapr's proxy mode).
const headerAppID = "dapr-app-id"

// ServeHTTP serves one gRPC call: the Dapr API's methods, or, for a call
// of any other service carrying dapr-app-id metadata, Dapr's proxy mode:
// the call goes through the sidecar's invocation pipeline unchanged (its
// path is the method, its body the length-prefixed messages, streamed both
// ways; metadata, trailers and status pass through), to the target app's
// own gRPC server behind its sidecar.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rec := &statusRecorder{ResponseWriter: w}
	s.serve(rec, r.WithContext(markGRPC(r.Context())))
	s.opts.Metrics.server(r.URL.Path, statusOf(rec.Header(), rec.status), time.Since(start))
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 2 || strings.HasPrefix(r.URL.Path, daprServicePrefix) || r.Header.Get(headerAppID) == "" {
		s.grpc.ServeHTTP(w, r) // gRPC's own refusal of HTTP/1 and of unknown services included
		return
	}
	if err := s.checkToken(headerContext(r)); err != nil {
		writeStatus(w, status.Convert(err))
		return
	}
	if d, ok := ParseTimeout(r.Header.Get("Grpc-Timeout")); ok {
		// The client's deadline bounds this sidecar's part too; the header
		// goes on and bounds the callee's.
		ctx, cancel := context.WithTimeout(r.Context(), d)
		defer cancel()
		r = r.WithContext(ctx)
	}
	s.opts.Invoke.ServeHTTP(ErrorWriter(w), r)
}

// ErrorWriter wraps the ResponseWriter of a gRPC call that the sidecar
// forwards (proxy mode, on either sidecar): a failure of the sidecar
// reported to it (ErrorSink) becomes a trailers-only gRPC answer with the
// code Dapr gives and the ErrorInfo reason, and the HTTP error body
// written after it is dropped. Everything else passes through.
func ErrorWriter(w http.ResponseWriter) http.ResponseWriter { return &proxyWriter{ResponseWriter: w} }

// headerContext presents r's headers as incoming gRPC metadata, for the
// token check.
func headerContext(r *http.Request) context.Context {
	md := make(metadata.MD, len(r.Header))
	for k, vs := range r.Header {
		md[strings.ToLower(k)] = vs
	}
	return metadata.NewIncomingContext(r.Context(), md)
}

// proxyWriter is ErrorWriter's ResponseWriter.
type proxyWriter struct {
	http.ResponseWriter
	failed  bool
	discard http.Header
}

func (p *proxyWriter) SidecarError(e SidecarError) {
	if p.failed {
		return
	}
	writeStatus(p.ResponseWriter, status.Convert(sidecarStatus(e, true)))
	p.failed = true
}

func (p *proxyWriter) Header() http.Header {
	if p.failed {
		if p.discard == nil {
			p.discard = http.Header{}
		}
		return p.discard
	}
	return p.ResponseWriter.Header()
}

func (p *proxyWriter) WriteHeader(code int) {
	if !p.failed {
		p.ResponseWriter.WriteHeader(code)
	}
}

func (p *proxyWriter) Write(b []byte) (int, error) {
	if p.failed {
		return len(b), nil
	}
	return p.ResponseWriter.Write(b)
}

func (p *proxyWriter) Flush() {
	if f, ok := p.ResponseWriter.(http.Flusher); ok && !p.failed {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController and the sidecar's layers reach w.
func (p *proxyWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// writeStatus writes st as a trailers-only gRPC response: HTTP 200 with
// grpc-status, grpc-message and the status's details in the headers.
func writeStatus(w http.ResponseWriter, st *status.Status) {
	h := w.Header()
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", strconv.Itoa(int(st.Code())))
	if m := st.Message(); m != "" {
		h.Set("Grpc-Message", encodeMessage(m))
	}
	if len(st.Details()) > 0 {
		if b, err := proto.Marshal(st.Proto()); err == nil {
			h.Set("Grpc-Status-Details-Bin", base64.RawStdEncoding.EncodeToString(b))
		}
	}
	w.WriteHeader(http.StatusOK)
}

// encodeMessage percent-encodes a grpc-message value (gRPC's HTTP/2
// protocol: bytes outside printable ASCII, and '%').
func encodeMessage(m string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
			continue
		}
		b.WriteByte('%')
		b.WriteByte(hex[c>>4])
		b.WriteByte(hex[c&15])
	}
	return b.String()
}

// ParseTimeout parses a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n).
func ParseTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	v, err := strconv.ParseInt(s[:len(s)-1], 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	unit := map[byte]time.Duration{'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond}[s[len(s)-1]]
	if unit == 0 {
		return 0, false
	}
	return time.Duration(v) * unit, true
}
