package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// The layer samples before starting a span: a new trace is recorded
// exactly when its own trace id passes the ratio test, as the SDK's
// TraceIDRatioBased decides, so the rate is not applied twice.
func TestSampledOnTheRecordedTraceID(t *testing.T) {
	tr, rec, _ := newTestTracing(t, "a", "0.5", env())
	var out http.Header
	h := tr.Caller(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out = http.Header{}
		Inject(r.Context(), out)
	}))
	bound := uint64(0.5 * (1 << 63))
	recorded := map[string]bool{}
	sampled := 0
	for range 200 {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/v1.0/invoke/b/method/x", nil))
		sm := traceparentRE.FindStringSubmatch(out.Get("Traceparent"))
		if sm == nil {
			t.Fatalf("traceparent %q is not valid", out.Get("Traceparent"))
		}
		tid, _ := hex.DecodeString(sm[1])
		want := binary.BigEndian.Uint64(tid[8:])>>1 < bound
		if got := sm[3] == "01"; got != want {
			t.Fatalf("trace %s: sampled %v, want %v (ratio test on the propagated trace id)", sm[1], got, want)
		}
		if want {
			sampled++
			recorded[sm[1]] = true
		}
	}
	spans := rec.Ended()
	if len(spans) != sampled || sampled == 0 || sampled == 200 {
		t.Fatalf("%d spans recorded, %d sampled of 200", len(spans), sampled)
	}
	for _, s := range spans {
		if !recorded[s.SpanContext().TraceID().String()] {
			t.Errorf("recorded span of trace %s was not propagated as sampled", s.SpanContext().TraceID())
		}
	}
}

// A dropped request under an unsampled parent keeps the parent's trace and
// tracestate and gets a span id of its own.
func TestDroppedChildKeepsTraceState(t *testing.T) {
	tr, rec, _ := newTestTracing(t, "b", "1", env())
	var out http.Header
	h := tr.Callee(reject)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out = http.Header{}
		Inject(r.Context(), out)
	}))
	r := httptest.NewRequest(http.MethodPost, "/x", nil)
	r.Header.Set("Traceparent", "00-"+sentTrace+"-"+sentSpan+"-00")
	r.Header.Set("Tracestate", "k=v")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	sm := traceparentRE.FindStringSubmatch(out.Get("Traceparent"))
	if sm == nil || sm[1] != sentTrace || sm[2] == sentSpan || sm[3] != "00" {
		t.Errorf("outbound traceparent %q, want trace %s, a new span id, flags 00", out.Get("Traceparent"), sentTrace)
	}
	if got := out.Get("Tracestate"); got != "k=v" {
		t.Errorf("outbound tracestate %q, want k=v", got)
	}
	if n := len(rec.Ended()); n != 0 {
		t.Errorf("%d spans recorded for an unsampled parent", n)
	}
}

// injectSpan writes what OTel's TraceContext propagator writes.
func TestInjectMatchesOTel(t *testing.T) {
	tid, _ := trace.TraceIDFromHex(sentTrace)
	sid, _ := trace.SpanIDFromHex(sentSpan)
	ts, _ := trace.ParseTraceState("a=1,b=2")
	long, _ := trace.ParseTraceState("k=" + strings.Repeat("v", maxTracestate))
	for _, sc := range []trace.SpanContext{
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid}),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled, TraceState: ts}),
		trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: 0xff, TraceState: long}),
		{},
	} {
		for _, span := range []trace.Span{&dropSpan{sc: sc}, trace.SpanFromContext(trace.ContextWithSpanContext(context.Background(), sc))} {
			got := http.Header{"Traceparent": {"old"}, "Tracestate": {"old=1"}}
			injectSpan(span, got)
			want := http.Header{"Traceparent": {"old"}, "Tracestate": {"old=1"}}
			if sc.IsValid() {
				want = http.Header{}
				propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), propagation.HeaderCarrier(want))
				if v := want.Get("Tracestate"); len(v) > maxTracestate {
					want.Del("Tracestate")
				}
			}
			for _, k := range []string{"Traceparent", "Tracestate"} {
				if g, w := strings.Join(got[k], ","), strings.Join(want[k], ","); g != w {
					t.Errorf("%T %v: %s %q, want %q", span, sc, k, g, w)
				}
			}
		}
	}
}

// Formatting a traceparent allocates only its string.
func TestTraceparentAllocs(t *testing.T) {
	sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}})
	if n := testing.AllocsPerRun(100, func() { _ = traceparent(sc) }); n != 1 {
		t.Errorf("traceparent: %v allocations, want 1", n)
	}
}
