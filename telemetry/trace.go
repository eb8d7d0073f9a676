package telemetry

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/baggage"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// TracerName is the instrumentation scope of Skein's spans, Dapr's name so
// queries written for Dapr find them.
const TracerName = "dapr-diagnostics"

// maxTracestate is the longest tracestate Skein emits (contract §6.5).
const maxTracestate = 512

// traceContext is the W3C traceparent/tracestate propagator. Baggage is
// validated but passed through byte for byte, so it has no propagator here.
var traceContext propagation.TraceContext

// TracingOptions configure NewTracing.
type TracingOptions struct {
	// AppID is the service.name of every span (OTEL_SERVICE_NAME and
	// OTEL_RESOURCE_ATTRIBUTES override it).
	AppID string
	// Spec is spec.tracing; nil means none (DefaultSamplingRate, no export).
	Spec *TracingSpec
	// Getenv reads the OTEL_* environment; nil means os.Getenv.
	Getenv func(string) string
	// Registry gets skein_trace_* metrics; required.
	Registry prometheus.Registerer
	// Log gets configuration warnings and export failures; nil discards.
	Log *slog.Logger
	// SpanProcessor, when set, sees every span too (tests use the SDK's
	// tracetest.SpanRecorder).
	SpanProcessor sdktrace.SpanProcessor
}

// Tracing is a sidecar's tracer provider and its HTTP layers. Safe for
// concurrent use. The sampling rate follows Update (hot reload); the
// exporter is fixed when NewTracing builds it and a changed exporter
// configuration is logged as needing a restart.
type Tracing struct {
	tp      *sdktrace.TracerProvider
	tracer  trace.Tracer
	sampler *rateSampler
	on      atomic.Bool // rate != 0: the layers trace at all
	getenv  func(string) string
	log     *slog.Logger

	mu     sync.Mutex // serialises Update
	rate   float64
	export Export // what the running exporter was built with
}

// NewTracing builds the tracer provider from spec.tracing and the OTEL_*
// environment: a parent-based trace-id-ratio sampler, and when an OTLP
// endpoint is configured a batch span processor with a bounded queue in
// front of the exporter (see newPipeline for how drops are counted). It
// never sets the global OTel provider. Call Shutdown to flush.
func NewTracing(ctx context.Context, o TracingOptions) (*Tracing, error) {
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	set := resolve(o.Spec, o.Getenv)
	t := &Tracing{sampler: &rateSampler{}, getenv: o.Getenv, log: o.Log, rate: set.rate, export: set.export}
	t.sampler.set(set.rate)
	t.on.Store(set.rate != 0)
	m := newTraceMetrics(o.Registry)
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithSampler(t.sampler),
		sdktrace.WithIDGenerator(idGenerator{}),
		sdktrace.WithResource(newResource(o.AppID, o.Getenv)),
	}
	if set.export.Protocol != "" {
		exp, err := newExporter(ctx, set.export)
		if err != nil {
			return nil, err
		}
		opts = append(opts, sdktrace.WithSpanProcessor(newPipeline(exp, queueSize(o.Getenv), m, o.Log)))
	}
	if o.SpanProcessor != nil {
		opts = append(opts, sdktrace.WithSpanProcessor(o.SpanProcessor))
	}
	t.tp = sdktrace.NewTracerProvider(opts...)
	t.tracer = t.tp.Tracer(TracerName)
	for _, w := range set.warnings {
		o.Log.Warn("tracing: " + w)
	}
	o.Log.Info("tracing", "sampling_rate", set.rate, "protocol", set.export.Protocol,
		"endpoint", set.export.Endpoint, "insecure", set.export.Insecure)
	return t, nil
}

// Update applies a reloaded spec.tracing: the sampling rate (and turning
// tracing on or off) takes effect for the next request. Exporter settings
// (endpoint, protocol, isSecure, headers, timeout) do not: the exporter
// keeps its connection and queue, and a change is logged as needing a
// restart. Update never fails: DecodeTracing has validated spec.
func (t *Tracing) Update(spec *TracingSpec) {
	set := resolve(spec, t.getenv)
	t.mu.Lock()
	defer t.mu.Unlock()
	if set.rate != t.rate {
		t.log.Info("tracing sampling rate changed", "from", t.rate, "to", set.rate)
		t.rate = set.rate
		t.sampler.set(set.rate)
		t.on.Store(set.rate != 0)
	}
	if !set.export.equal(t.export) {
		t.log.Warn("tracing exporter settings changed: they apply after a restart; spans keep going to the old endpoint",
			"endpoint", t.export.Endpoint, "new_endpoint", set.export.Endpoint,
			"protocol", t.export.Protocol, "new_protocol", set.export.Protocol)
	}
}

// Shutdown ends the provider: queued spans are exported (or counted as
// dropped) until ctx ends.
func (t *Tracing) Shutdown(ctx context.Context) error {
	return t.tp.Shutdown(ctx)
}

// ForceFlush exports queued spans now.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	return t.tp.ForceFlush(ctx)
}

// rateSampler is parent-based trace-id-ratio sampling whose rate can change
// while requests run: one atomic load per span.
type rateSampler struct {
	cur atomic.Pointer[sdktrace.Sampler]
}

func (s *rateSampler) set(rate float64) {
	ps := sdktrace.ParentBased(sdktrace.TraceIDRatioBased(rate))
	s.cur.Store(&ps)
}

func (s *rateSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	return (*s.cur.Load()).ShouldSample(p)
}

func (s *rateSampler) Description() string { return (*s.cur.Load()).Description() }

// newResource names the service after the app id; OTEL_SERVICE_NAME and
// then OTEL_RESOURCE_ATTRIBUTES's service.name override it, as the OTel
// SDKs do.
func newResource(appID string, getenv func(string) string) *resource.Resource {
	attrs := []attribute.KeyValue{attribute.String("service.name", appID)}
	for part := range strings.SplitSeq(getenv("OTEL_RESOURCE_ATTRIBUTES"), ",") {
		k, v, ok := strings.Cut(part, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			continue
		}
		attrs = append(attrs, attribute.String(k, strings.TrimSpace(v)))
	}
	if n := getenv("OTEL_SERVICE_NAME"); n != "" {
		attrs = append(attrs, attribute.String("service.name", n))
	}
	// NewSchemaless keeps the last value of a repeated key.
	return resource.NewSchemaless(attrs...)
}

// queueSize is the batch processor's queue: OTEL_BSP_MAX_QUEUE_SIZE, as the
// SDK reads it, else the SDK's 2048.
func queueSize(getenv func(string) string) int {
	if n, err := strconv.Atoi(getenv("OTEL_BSP_MAX_QUEUE_SIZE")); err == nil && n > 0 {
		return n
	}
	return sdktrace.DefaultMaxQueueSize
}

// ErrInvalidBaggage is wrapped by the error a layer hands its reject
// function when the baggage header is not W3C baggage.
var ErrInvalidBaggage = errors.New("invalid baggage header")

// Caller is the layer for the app-facing API: each request gets a CLIENT
// span (Dapr's caller span, contract §6.4), continuing the app's valid
// traceparent/tracestate or starting a trace. The response gets the span's
// traceparent (and tracestate) when it carries none, and the request's
// baggage echoed (contract §1.7). A malformed baggage header is handed to
// reject (a 400); health paths and a sampling rate of 0 pass untraced.
func (t *Tracing) Caller(reject func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return t.layer(trace.SpanKindClient, reject)
}

// Callee is the layer for the peer-facing port: a SERVER span, child of the
// caller sidecar's span carried in traceparent.
func (t *Tracing) Callee(reject func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	return t.layer(trace.SpanKindServer, reject)
}

func (t *Tracing) layer(kind trace.SpanKind, reject func(http.ResponseWriter, *http.Request, error)) func(http.Handler) http.Handler {
	startOpts := []trace.SpanStartOption{trace.WithSpanKind(kind)}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !t.on.Load() || strings.Contains(r.URL.Path, "/healthz") {
				next.ServeHTTP(w, r)
				return
			}
			bag := r.Header["Baggage"]
			if len(bag) > 0 {
				if _, err := baggage.Parse(strings.Join(bag, ",")); err != nil {
					reject(w, r, fmt.Errorf("%w: %w", ErrInvalidBaggage, err))
					return
				}
			}
			ctx := traceContext.Extract(r.Context(), headerCarrier(r.Header))
			// Sample first, as the SDK would (same sampler, same ids): a
			// dropped request gets a non-recording span carrying a fresh
			// span id for propagation, with no SDK span, attributes or
			// timestamps; only a sampled one starts an SDK span, with the
			// ids the decision was made on.
			st := &layerState{}
			psc := trace.SpanContextFromContext(ctx)
			tid := psc.TraceID()
			if !tid.IsValid() {
				tid = newTraceID()
			}
			sid := newSpanID()
			res := t.sampler.ShouldSample(sdktrace.SamplingParameters{ParentContext: ctx, TraceID: tid, Name: r.URL.Path, Kind: kind})
			var span trace.Span
			if res.Decision == sdktrace.Drop {
				st.drop = dropSpan{tp: t.tp, sc: trace.NewSpanContext(trace.SpanContextConfig{
					TraceID: tid, SpanID: sid, TraceFlags: psc.TraceFlags() &^ trace.FlagsSampled, TraceState: res.Tracestate,
				})}
				span = &st.drop
				ctx = trace.ContextWithSpan(ctx, span)
			} else {
				st.ids = presetIDs{tid: tid, sid: sid}
				ctx, span = t.tracer.Start(context.WithValue(ctx, presetKey{}, &st.ids), r.URL.Path, startOpts...)
				if span.IsRecording() {
					span.SetAttributes(startAttributes(kind, r)...)
				}
			}
			sw := &st.sw
			sw.ResponseWriter, sw.span = w, span
			if kind == trace.SpanKindClient {
				sw.respond, sw.baggage = true, bag
			}
			defer sw.end()
			next.ServeHTTP(sw, r.WithContext(ctx))
		})
	}
}

// startAttributes are Dapr's span attributes known when the request
// arrives (contract §6.4); computed for sampled spans only.
func startAttributes(kind trace.SpanKind, r *http.Request) []attribute.KeyValue {
	if kind == trace.SpanKindServer {
		return []attribute.KeyValue{
			attribute.String("rpc.service", "ServiceInvocation"),
			attribute.String("dapr.protocol", "grpc"), // Dapr's internal hop; Skein's is HTTP/2, gRPC's transport
			attribute.String("dapr.api", "/dapr.proto.internals.v1.ServiceInvocation/CallLocal"),
		}
	}
	attrs := make([]attribute.KeyValue, 0, 12)
	attrs = append(attrs,
		attribute.String("dapr.protocol", "http"),
		attribute.String("dapr.api", r.Method+" "+r.URL.Path),
		attribute.String("http.request.method", r.Method),
		attribute.String("url.full", r.RequestURI),
	)
	if host, port, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		attrs = append(attrs, attribute.String("server.address", host))
		if p, err := strconv.Atoi(port); err == nil {
			attrs = append(attrs, attribute.Int("server.port", p))
		}
	}
	for k, v := range r.Header {
		// Every dapr-* request header, lower-cased, as Dapr; never the token.
		if len(k) > 5 && strings.EqualFold(k[:5], "dapr-") && !strings.EqualFold(k, "dapr-api-token") {
			attrs = append(attrs, attribute.String(strings.ToLower(k), strings.Join(v, ",")))
		}
	}
	return attrs
}

// NameCall names the caller's span once the invocation is parsed:
// CallLocal/<target>/<method>, with rpc.service and net.peer.name.
func NameCall(ctx context.Context, target, method string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetName("CallLocal/" + target + "/" + method)
		span.SetAttributes(
			attribute.String("rpc.service", "ServiceInvocation"),
			attribute.String("net.peer.name", target),
		)
	}
}

// NameGRPC names a proxied gRPC call's span as Dapr does, on both sides:
// the full method, unchanged (/pkg.Service/Method), with dapr.protocol grpc
// and dapr.api the method.
func NameGRPC(ctx context.Context, fullMethod string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetName(fullMethod)
		span.SetAttributes(
			attribute.String("dapr.protocol", "grpc"),
			attribute.String("dapr.api", fullMethod),
			attribute.String("rpc.system", "grpc"),
		)
	}
}

// SetAPI records the Dapr API a call came in by, when it is not the HTTP
// API the span began with (InvokeService: dapr.protocol grpc, dapr.api
// /dapr.proto.runtime.v1.Dapr/InvokeService).
func SetAPI(ctx context.Context, protocol, api string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.String("dapr.protocol", protocol), attribute.String("dapr.api", api))
	}
}

// grpcStatusOf is the grpc-status (and grpc-message) a handler wrote: a
// trailer, or a header in a trailers-only answer.
func grpcStatusOf(h http.Header) (code, msg string, ok bool) {
	if code = h.Get("Grpc-Status"); code != "" {
		return code, h.Get("Grpc-Message"), true
	}
	if code = h.Get(http.TrailerPrefix + "Grpc-Status"); code != "" {
		return code, h.Get(http.TrailerPrefix + "Grpc-Message"), true
	}
	return "", "", false
}

// NameServed names the callee's span once the method is normalised:
// CallLocal/<callee-app-id>/<method>, with dapr.invoke_method.
func NameServed(ctx context.Context, appID, method string) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetName("CallLocal/" + appID + "/" + method)
		span.SetAttributes(attribute.String("dapr.invoke_method", method))
	}
}

// Inject writes the span context of ctx as traceparent (and tracestate)
// on an outbound request's headers, replacing what the inbound request
// carried: the next hop is a child of this hop's span. An unsampled span
// still gets its traceparent (flags 00), as Dapr. Without a span in ctx
// (tracing off, health paths) h is left as it is.
func Inject(ctx context.Context, h http.Header) {
	injectSpan(trace.SpanFromContext(ctx), h)
}

// injectSpan is Inject for a span: what OTel's TraceContext propagator
// writes, formatted without its string builder and header
// canonicalisation; a dropped request's span formats its traceparent once
// for the outbound request and the response.
func injectSpan(span trace.Span, h http.Header) {
	sc := span.SpanContext()
	if !sc.IsValid() {
		return
	}
	delete(h, "Traceparent")
	delete(h, "Tracestate")
	if ts := sc.TraceState().String(); ts != "" && len(ts) <= maxTracestate {
		h["Tracestate"] = []string{ts}
	}
	var tp string
	if d, ok := span.(*dropSpan); ok {
		if d.traceparent == "" {
			d.traceparent = traceparent(sc)
		}
		tp = d.traceparent
	} else {
		tp = traceparent(sc)
	}
	h["Traceparent"] = []string{tp}
}

// traceparent formats sc as a version-00 traceparent, keeping only the
// flags the specification defines (sampled and random), as OTel does.
func traceparent(sc trace.SpanContext) string {
	var b [55]byte
	tid, sid := sc.TraceID(), sc.SpanID()
	flags := [1]byte{byte(sc.TraceFlags() & (trace.FlagsSampled | trace.FlagsRandom))}
	b[0], b[1], b[2] = '0', '0', '-'
	hex.Encode(b[3:35], tid[:])
	b[35] = '-'
	hex.Encode(b[36:52], sid[:])
	b[52] = '-'
	hex.Encode(b[53:55], flags[:])
	return string(b[:])
}

// headerCarrier reads the trace headers straight from the map (their
// canonical keys), other keys as http.Header does.
type headerCarrier http.Header

func (c headerCarrier) Get(key string) string {
	var v []string
	switch key {
	case "traceparent":
		v = c["Traceparent"]
	case "tracestate":
		v = c["Tracestate"]
	default:
		return http.Header(c).Get(key)
	}
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

func (c headerCarrier) Set(key, value string) { http.Header(c).Set(key, value) }

func (c headerCarrier) Keys() []string { return propagation.HeaderCarrier(c).Keys() }

// layerState is one traced request's per-request memory, in one
// allocation: the response writer, the span of a dropped request, and the
// ids a sampled one was decided on.
type layerState struct {
	sw   spanWriter
	drop dropSpan
	ids  presetIDs
}

// dropSpan is the span of a request the sampler dropped: it records
// nothing and carries its span context to the next hop (flags 00), as the
// SDK's non-recording span does.
type dropSpan struct {
	embedded.Span
	sc          trace.SpanContext
	tp          trace.TracerProvider
	traceparent string // formatted on first use
}

func (s *dropSpan) SpanContext() trace.SpanContext          { return s.sc }
func (s *dropSpan) IsRecording() bool                       { return false }
func (s *dropSpan) End(...trace.SpanEndOption)              {}
func (s *dropSpan) AddEvent(string, ...trace.EventOption)   {}
func (s *dropSpan) AddLink(trace.Link)                      {}
func (s *dropSpan) RecordError(error, ...trace.EventOption) {}
func (s *dropSpan) SetStatus(codes.Code, string)            {}
func (s *dropSpan) SetName(string)                          {}
func (s *dropSpan) SetAttributes(...attribute.KeyValue)     {}
func (s *dropSpan) TracerProvider() trace.TracerProvider    { return s.tp }

// presetIDs are the ids the layer sampled a new span on; the SDK takes
// them, once, through idGenerator, so its sampler sees the same trace id.
type presetIDs struct {
	tid  trace.TraceID
	sid  trace.SpanID
	used bool
}

type presetKey struct{}

// idGenerator is the SDK's random id generator (math/rand/v2), except that
// a span the layer has already sampled gets the ids of that decision.
type idGenerator struct{}

func (idGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	if p, _ := ctx.Value(presetKey{}).(*presetIDs); p != nil && !p.used {
		p.used = true
		return p.tid, p.sid
	}
	return newTraceID(), newSpanID()
}

func (idGenerator) NewSpanID(ctx context.Context, tid trace.TraceID) trace.SpanID {
	if p, _ := ctx.Value(presetKey{}).(*presetIDs); p != nil && !p.used && p.tid == tid {
		p.used = true
		return p.sid
	}
	return newSpanID()
}

func newTraceID() trace.TraceID {
	var tid trace.TraceID
	for !tid.IsValid() {
		binary.NativeEndian.PutUint64(tid[:8], rand.Uint64())
		binary.NativeEndian.PutUint64(tid[8:], rand.Uint64())
	}
	return tid
}

func newSpanID() trace.SpanID {
	var sid trace.SpanID
	for !sid.IsValid() {
		binary.NativeEndian.PutUint64(sid[:], rand.Uint64())
	}
	return sid
}

// spanWriter records the status for the span and, on the caller hop,
// completes the response's trace headers before they are sent. Unwrap
// keeps http.ResponseController (flush, hijack, deadlines) working.
type spanWriter struct {
	http.ResponseWriter
	span    trace.Span
	respond bool     // add traceparent/tracestate/baggage to the response
	baggage []string // the request's (valid) baggage
	status  int
}

func (w *spanWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) { // other 1xx are interim
		w.status = code
		if w.respond {
			w.addResponseHeaders()
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *spanWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Flush is here for callers that assert http.Flusher rather than use
// http.ResponseController.
func (w *spanWriter) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *spanWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *spanWriter) addResponseHeaders() {
	h := w.Header()
	if _, ok := h["Traceparent"]; !ok {
		// A tracestate means nothing without its traceparent: both are ours.
		injectSpan(w.span, h)
	}
	if _, ok := h["Baggage"]; !ok && len(w.baggage) > 0 {
		h["Baggage"] = w.baggage
	}
}

// end closes the span with the response status: HTTP >= 400 is an error
// described as Dapr does, "Code(<n>): <status text>".
func (w *spanWriter) end() {
	if w.span.IsRecording() {
		status := w.status
		if status == 0 {
			status = http.StatusOK
		}
		w.span.SetAttributes(attribute.Int("dapr.status_code", status))
		if status >= 400 {
			w.span.SetStatus(codes.Error, "Code("+strconv.Itoa(status)+"): "+http.StatusText(status))
		} else if code, msg, ok := grpcStatusOf(w.ResponseWriter.Header()); ok && code != "0" {
			// A gRPC call (proxy mode): Error with the status message.
			w.span.SetAttributes(attribute.String("rpc.grpc.status_code", code))
			w.span.SetStatus(codes.Error, msg)
		}
	}
	w.span.End()
}

// shutdownTimeout bounds the flush at sidecar stop.
const shutdownTimeout = 5 * time.Second

// Close flushes and ends the provider within a few seconds; what cannot be
// exported by then is dropped (and counted).
func (t *Tracing) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	return t.Shutdown(ctx)
}
