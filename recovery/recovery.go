package recovery

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ErrPanic is what a panic below a RoundTripper layer becomes; callers map
// it to a 500 with reason INTERNAL.
var ErrPanic = errors.New("recovered panic")

// logEvery is how often one layer logs a recovered panic with its stack. A
// panic that a request can trigger at will would otherwise turn every such
// request into kilobytes of ERROR log; every panic is still counted, and the
// next line logged says how many were not.
const logEvery = time.Second

// Metrics counts recovered panics by layer. Safe for concurrent use.
type Metrics struct {
	panics *prometheus.CounterVec
}

// NewMetrics registers skein_panics_total{layer} in reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{panics: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "skein_panics_total",
		Help: "Panics recovered in a request layer, by layer; each one failed its request with a 500 or an aborted response.",
	}, []string{"layer"})}
	reg.MustRegister(m.panics)
	return m
}

// guard is what both layers share for one layer name.
type guard struct {
	layer string
	count prometheus.Counter
	log   *slog.Logger
	now   func() time.Time

	lastLog    atomic.Int64 // Unix ns of the last panic logged
	suppressed atomic.Int64 // panics not logged since
}

func newGuard(layer string, m *Metrics, log *slog.Logger) *guard {
	return &guard{
		layer: layer,
		count: m.panics.WithLabelValues(layer), // the series exists at 0 from the start
		log:   log,
		now:   time.Now,
	}
}

// report counts a recovered panic and logs it, at most once per logEvery.
func (g *guard) report(r *http.Request, v any) {
	g.count.Inc()
	now := g.now().UnixNano()
	last := g.lastLog.Load()
	if now-last < int64(logEvery) || !g.lastLog.CompareAndSwap(last, now) {
		g.suppressed.Add(1)
		return
	}
	path := ""
	if r.URL != nil {
		path = clip(r.URL.Path, 256) // never the query: it may carry tokens
	}
	g.log.ErrorContext(r.Context(), "panic recovered",
		"layer", g.layer,
		"panic", clip(describe(v), 512),
		"verb", clip(r.Method, 32),
		"path", path,
		"suppressed", g.suppressed.Swap(0),
		"stack", string(debug.Stack()))
}

func describe(v any) string {
	if err, ok := v.(error); ok {
		return err.Error()
	}
	return fmt.Sprint(v)
}

// clip returns s as valid UTF-8, cut to at most n bytes.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// Handler returns a server layer that recovers a panic of the handler below
// it (see the package doc). reply answers the request when no response
// header has been sent; its own panic aborts the response.
func Handler(layer string, m *Metrics, log *slog.Logger, reply func(http.ResponseWriter, *http.Request)) func(http.Handler) http.Handler {
	g := newGuard(layer, m, log)
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			// A writer that tells whether it has started (proxy/h1's)
			// needs no tracking wrapper.
			s, tells := w.(starter)
			if !tells {
				tw := &trackingWriter{ResponseWriter: w}
				s, w = tw, tw
			}
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if err, ok := v.(error); ok && err == http.ErrAbortHandler {
					panic(v) // an abort on purpose: net/http ends the response quietly
				}
				g.report(r, v)
				if s.Started() || !g.answer(reply, w, r) {
					panic(http.ErrAbortHandler)
				}
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// answer calls reply with w's headers cleared (a half-built response's
// headers must not leak into the error); false if reply panicked too.
func (g *guard) answer(reply func(http.ResponseWriter, *http.Request), w http.ResponseWriter, r *http.Request) (ok bool) {
	defer func() {
		if v := recover(); v != nil {
			g.report(r, v)
			ok = false
		}
	}()
	clear(w.Header())
	reply(w, r)
	return true
}

// starter is a ResponseWriter that tells whether its response has started:
// a final status taken, a body byte, a flush or a hijack.
type starter interface{ Started() bool }

// trackingWriter notes whether the response has started, for a writer that
// does not tell (starter). Flush, Hijack and the rest of
// http.ResponseController reach the writer below.
type trackingWriter struct {
	http.ResponseWriter
	sent bool
}

func (w *trackingWriter) Started() bool { return w.sent }

// WriteHeader marks the response started only once the writer below has
// taken the status: net/http panics on an invalid code before sending
// anything, and that request can still get its 500.
func (w *trackingWriter) WriteHeader(code int) {
	w.ResponseWriter.WriteHeader(code)
	if code >= 200 || code == http.StatusSwitchingProtocols { // other 1xx are interim
		w.sent = true
	}
}

func (w *trackingWriter) Write(b []byte) (int, error) {
	w.sent = true
	return w.ResponseWriter.Write(b)
}

func (w *trackingWriter) Flush() {
	w.sent = true
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack is here, rather than left to Unwrap, so that a hijacked
// connection counts as a started response.
func (w *trackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, rw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	if err == nil {
		w.sent = true
	}
	return c, rw, err
}

func (w *trackingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// RoundTripper returns a client layer that turns a panic of the layers
// below it into an error wrapping ErrPanic (see the package doc).
func RoundTripper(layer string, m *Metrics, log *slog.Logger) func(http.RoundTripper) http.RoundTripper {
	g := newGuard(layer, m, log)
	return func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (resp *http.Response, err error) {
			defer func() {
				v := recover()
				if v == nil {
					return
				}
				if e, ok := v.(error); ok && e == http.ErrAbortHandler {
					panic(v)
				}
				g.report(r, v)
				if r.Body != nil {
					_ = r.Body.Close() // a RoundTripper closes the body, even on error
				}
				resp, err = nil, fmt.Errorf("%w in %s", ErrPanic, g.layer)
			}()
			return next.RoundTrip(r)
		})
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
