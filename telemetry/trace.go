package telemetry

import (
	"context"
	"encoding/hex"
	"math/rand/v2"
	"net/http"
)

// SpanContext is a W3C trace context (https://www.w3.org/TR/trace-context/).
type SpanContext struct {
	TraceID [16]byte
	SpanID  [8]byte
	Flags   byte
}

// Traceparent formats the context as a traceparent header value.
func (sc SpanContext) Traceparent() string {
	var b [55]byte
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], sc.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], sc.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{sc.Flags})
	return string(b[:])
}

// ParseTraceparent parses a version-00 traceparent (or a later version's
// first four fields, as the spec asks). All-zero ids are invalid.
func ParseTraceparent(s string) (SpanContext, bool) {
	var sc SpanContext
	if len(s) < 55 || s[2] != '-' || s[35] != '-' || s[52] != '-' || (len(s) > 55 && s[55] != '-') {
		return sc, false
	}
	var ver [1]byte
	if _, err := hex.Decode(ver[:], []byte(s[0:2])); err != nil || ver[0] == 0xff || (ver[0] == 0 && len(s) != 55) {
		return sc, false
	}
	if !decodeLower(sc.TraceID[:], s[3:35]) || !decodeLower(sc.SpanID[:], s[36:52]) {
		return sc, false
	}
	var fl [1]byte
	if !decodeLower(fl[:], s[53:55]) {
		return sc, false
	}
	sc.Flags = fl[0]
	if sc.TraceID == ([16]byte{}) || sc.SpanID == ([8]byte{}) {
		return sc, false
	}
	return sc, true
}

// decodeLower decodes lower-case hex only, as the spec requires.
func decodeLower(dst []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

func newSpanID() (id [8]byte) {
	for id == ([8]byte{}) {
		v := rand.Uint64()
		for i := range id {
			id[i] = byte(v >> (8 * i))
		}
	}
	return id
}

func newTraceID() (id [16]byte) {
	for id == ([16]byte{}) {
		a, b := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i] = byte(a >> (8 * i))
			id[8+i] = byte(b >> (8 * i))
		}
	}
	return id
}

type spanKey struct{}

// SpanFrom returns the span context TraceContext put in ctx.
func SpanFrom(ctx context.Context) (SpanContext, bool) {
	sc, ok := ctx.Value(spanKey{}).(SpanContext)
	return sc, ok
}

// TraceContext is the server layer that gives each hop its own span: it
// keeps the trace id and flags of a valid inbound traceparent and draws a
// new span id, or starts a new sampled trace. Later layers read it with
// SpanFrom and write it on the outbound request; the inbound request is not
// modified.
func TraceContext() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			sc, ok := ParseTraceparent(r.Header.Get("Traceparent"))
			if !ok {
				sc = SpanContext{TraceID: newTraceID(), Flags: 1}
			}
			sc.SpanID = newSpanID()
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), spanKey{}, sc)))
		})
	}
}
