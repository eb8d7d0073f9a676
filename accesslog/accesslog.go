package accesslog

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// Log writes one JSON line per call. Writes are one Write call per line,
// so lines from concurrent calls never interleave. A nil *Log is off.
type Log struct {
	mu  sync.Mutex
	w   io.Writer
	buf sync.Pool
}

// New returns a Log writing to w, or nil (off) when w is nil.
func New(w io.Writer) *Log {
	if w == nil {
		return nil
	}
	return &Log{w: w, buf: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

// Call is what a request turned out to be. Both ends are an app id and a
// namespace, written "<app>.<namespace>"; an empty CallerApp is written
// "unknown" (an inbound call without a verified peer).
type Call struct {
	CallerApp, CallerNamespace string
	CalleeApp, CalleeNamespace string
	Method                     string
}

// record collects one call's facts as it passes the layers. The durations
// are nanoseconds, set by the layers that measure them (connect and TLS
// from the transport's dialer, possibly on another goroutine).
type record struct {
	start     time.Time
	inbound   bool
	wantTimes bool // inbound: the caller asked for Skein-Timing
	noted     bool // Note named the call; set and read on the handler's goroutine
	call      Call
	verb      string
	bytesIn   atomic.Int64
	tries     atomic.Int32
	instance  atomic.Pointer[string]
	queue     atomic.Int64
	connect   atomic.Int64
	tls       atomic.Int64
	upstream  atomic.Int64
	app       atomic.Int64
}

type recordKey struct{}

func recordFrom(ctx context.Context) *record {
	rec, _ := ctx.Value(recordKey{}).(*record)
	return rec
}

// Note tells the access log which call the request with ctx turned out to
// be. It does nothing when the request is not being logged, and must be
// called on the goroutine serving the request, before its handler returns.
func Note(ctx context.Context, c Call) {
	if rec := recordFrom(ctx); rec != nil {
		rec.call = c
		rec.noted = true
	}
}

// Outbound is the server layer that logs every invocation through the
// app-facing API.
func (l *Log) Outbound(next http.Handler) http.Handler { return l.handler(false, next) }

// Inbound is the server layer that logs every call from a peer sidecar. It
// goes inside the layer that verifies the peer, whose identity Note
// reports as the caller.
func (l *Log) Inbound(next http.Handler) http.Handler { return l.handler(true, next) }

func (l *Log) handler(inbound bool, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &record{start: time.Now(), inbound: inbound, verb: r.Method}
		if inbound {
			rec.wantTimes = r.Header.Get(HeaderTiming) == "?1"
		}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &countingBody{ReadCloser: r.Body, n: &rec.bytesIn}
		}
		cw := &StatusWriter{ResponseWriter: w}
		next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec)))
		if !rec.noted {
			return // a control endpoint or a request that named no call
		}
		l.write(rec, cw, r)
	})
}

// write formats the line by hand: one buffer from a pool, no reflection.
func (l *Log) write(rec *record, cw *StatusWriter, r *http.Request) {
	bp := l.buf.Get().(*[]byte)
	b := (*bp)[:0]
	ms := func(name string, d int64) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `_ms":`...)
		b = strconv.AppendFloat(b, float64(d)/1e6, 'f', 3, 64)
	}
	str := func(name, v string) {
		b = append(b, `,"`...)
		b = append(b, name...)
		b = append(b, `":`...)
		b = strconv.AppendQuote(b, v)
	}
	end := func(name, app, ns string) {
		if app == "" {
			str(name, "unknown")
			return
		}
		str(name, app+"."+ns)
	}
	b = append(b, `{"time":`...)
	b = strconv.AppendQuote(b, rec.start.UTC().Format(time.RFC3339Nano))
	c := rec.call
	if rec.inbound {
		str("direction", "inbound")
	} else {
		str("direction", "outbound")
	}
	end("caller", c.CallerApp, c.CallerNamespace)
	end("callee", c.CalleeApp, c.CalleeNamespace)
	str("verb", rec.verb)
	str("method", c.Method)
	status := cw.Status
	if status == 0 {
		status = http.StatusOK
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, rec.bytesIn.Load(), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, cw.Bytes, 10)
	if !rec.inbound {
		b = append(b, `,"tries":`...)
		b = strconv.AppendInt(b, int64(rec.tries.Load()), 10)
		if p := rec.instance.Load(); p != nil {
			str("instance", *p)
		}
	}
	ms("duration", int64(time.Since(rec.start)))
	ms("queue", rec.queue.Load())
	if !rec.inbound {
		ms("connect", rec.connect.Load())
		ms("tls", rec.tls.Load())
		ms("upstream", rec.upstream.Load())
	}
	ms("app", rec.app.Load())
	if sc := trace.SpanContextFromContext(r.Context()); sc.HasTraceID() {
		str("trace_id", sc.TraceID().String())
	}
	b = append(b, "}\n"...)
	l.mu.Lock()
	_, _ = l.w.Write(b)
	l.mu.Unlock()
	*bp = b
	l.buf.Put(bp)
}

// StatusWriter remembers the status and counts the body bytes of a
// response; the access log and proxy's metrics layer both wrap their
// writer in one. Flushes and http.ResponseController reach the writer
// below. Status is 0 until the response starts; a 101 (Switching
// Protocols) is final, the status of a call that became a tunnel.
type StatusWriter struct {
	http.ResponseWriter
	Status int
	Bytes  int64
}

func (w *StatusWriter) WriteHeader(code int) {
	if w.Status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) { // other 1xx responses are interim
		w.Status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *StatusWriter) Write(b []byte) (int, error) {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.Bytes += int64(n)
	return n, err
}

func (w *StatusWriter) Flush() {
	if w.Status == 0 {
		w.Status = http.StatusOK
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *StatusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// countingBody counts the request bytes read from the client.
type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
