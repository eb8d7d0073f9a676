package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/skeinmesh/skein/identity"
)

// headerTiming carries the callee's queue and app times back to the
// caller's sidecar, which asked for them with "?1" because it keeps an
// access log. It never reaches either app.
const headerTiming = "Skein-Timing"

var askTiming = []string{"?1"}

// accessLog writes one JSON line per call (--access-log). Writes are one
// Write call per line, so lines from concurrent calls never interleave.
type accessLog struct {
	mu  sync.Mutex
	w   io.Writer
	buf sync.Pool
}

func newAccessLog(w io.Writer) *accessLog {
	return &accessLog{w: w, buf: sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}}
}

// accessRecord collects one call's facts as it passes the layers. The
// durations are nanoseconds, set by the layers that measure them (connect
// and TLS from the transport's dialer, possibly on another goroutine).
type accessRecord struct {
	start     time.Time
	inbound   bool
	wantTimes bool // inbound: the caller asked for Skein-Timing
	call      *call
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

type accessKey struct{}

func accessFrom(ctx context.Context) *accessRecord {
	rec, _ := ctx.Value(accessKey{}).(*accessRecord)
	return rec
}

// noteCall tells the access log which call a request turned out to be.
func noteCall(ctx context.Context, c *call) {
	if rec := accessFrom(ctx); rec != nil {
		rec.call = c
	}
}

// accessLayer is the server layer that logs every invocation through the
// API (outbound) or the peer port (inbound). Off, it is not in the chain.
func (s *Sidecar) accessLayer(inbound bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if s.access == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rec := &accessRecord{start: time.Now(), inbound: inbound, verb: r.Method}
			if inbound {
				rec.wantTimes = r.Header.Get(headerTiming) == "?1"
			}
			if r.Body != nil && r.Body != http.NoBody {
				r.Body = &accessBody{ReadCloser: r.Body, n: &rec.bytesIn}
			}
			cw := &statusWriter{ResponseWriter: w}
			next.ServeHTTP(cw, r.WithContext(context.WithValue(r.Context(), accessKey{}, rec)))
			if rec.call == nil {
				return // a control endpoint or a request that named no call
			}
			s.access.write(s, rec, cw, r)
		})
	}
}

// write formats the line by hand: one buffer from a pool, no reflection.
func (l *accessLog) write(s *Sidecar, rec *accessRecord, cw *statusWriter, r *http.Request) {
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
	b = append(b, `{"time":`...)
	b = strconv.AppendQuote(b, rec.start.UTC().Format(time.RFC3339Nano))
	c := rec.call
	if rec.inbound {
		str("direction", "inbound")
		caller := "unknown"
		if p, ok := identity.PeerFrom(r.Context()); ok {
			caller = p.AppID + "." + p.Namespace
		}
		str("caller", caller)
		str("callee", s.self.String())
	} else {
		str("direction", "outbound")
		str("caller", s.self.String())
		str("callee", c.target.String())
	}
	str("verb", rec.verb)
	str("method", c.method)
	status := cw.status
	if status == 0 {
		status = http.StatusOK
	}
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"bytes_in":`...)
	b = strconv.AppendInt(b, rec.bytesIn.Load(), 10)
	b = append(b, `,"bytes_out":`...)
	b = strconv.AppendInt(b, cw.bytes, 10)
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

// tryTiming is the client layer right above the peer transport: it times
// each try (connect, TLS, time to the response's headers), asks the callee
// for its queue and app times, and strips them from the response.
func (s *Sidecar) tryTiming(next http.RoundTripper) http.RoundTripper {
	if s.access == nil {
		return next
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := accessFrom(r.Context())
		if rec == nil {
			return next.RoundTrip(r)
		}
		rec.tries.Add(1)
		addr := r.URL.Host
		rec.instance.Store(&addr)
		var connStart, tlsStart time.Time
		ctx := httptrace.WithClientTrace(r.Context(), &httptrace.ClientTrace{
			ConnectStart:      func(string, string) { connStart = time.Now() },
			ConnectDone:       func(string, string, error) { rec.connect.Add(int64(time.Since(connStart))) },
			TLSHandshakeStart: func() { tlsStart = time.Now() },
			TLSHandshakeDone:  func(tls.ConnectionState, error) { rec.tls.Add(int64(time.Since(tlsStart))) },
		})
		start := time.Now()
		resp, err := next.RoundTrip(r.WithContext(ctx))
		rec.upstream.Store(int64(time.Since(start)))
		if err == nil {
			if v := resp.Header.Get(headerTiming); v != "" {
				queue, app := parseTiming(v)
				rec.queue.Store(queue)
				rec.app.Store(app)
				resp.Header.Del(headerTiming)
			}
		}
		return resp, err
	})
}

// appTiming is the local-app layer that times the app (to its response
// headers) and, for a caller that asked, reports queue and app times in
// the response.
func (s *Sidecar) appTiming(next http.RoundTripper) http.RoundTripper {
	if s.access == nil {
		return next
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := accessFrom(r.Context())
		if rec == nil {
			return next.RoundTrip(r)
		}
		rec.queue.Store(int64(time.Since(rec.start))) // up to here: access control and the concurrency queue
		start := time.Now()
		resp, err := next.RoundTrip(r)
		rec.app.Store(int64(time.Since(start)))
		if err == nil && rec.wantTimes {
			resp.Header.Set(headerTiming, formatTiming(rec.queue.Load(), rec.app.Load()))
		}
		return resp, err
	})
}

// formatTiming and parseTiming: "queue=<ns>,app=<ns>".
func formatTiming(queue, app int64) string {
	return "queue=" + strconv.FormatInt(queue, 10) + ",app=" + strconv.FormatInt(app, 10)
}

func parseTiming(v string) (queue, app int64) {
	for f := range strings.SplitSeq(v, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(f), "=")
		n, err := strconv.ParseInt(val, 10, 64)
		if err != nil || n < 0 {
			continue
		}
		switch k {
		case "queue":
			queue = n
		case "app":
			app = n
		}
	}
	return queue, app
}

// accessBody counts the request bytes read from the client.
type accessBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *accessBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}
