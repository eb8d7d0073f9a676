package accesslog

import (
	"crypto/tls"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"time"
)

// HeaderTiming carries the callee's queue and app times back to the
// caller's sidecar, which asked for them with "?1" because it keeps an
// access log. It never reaches either app: the caller's TryTiming removes
// it from the response, and the callee's sidecar strips it from the
// request before the local app.
const HeaderTiming = "Skein-Timing"

var askTiming = []string{"?1"}

// AskTiming sets the timing request header on h, an outbound request to a
// peer sidecar: the ask when l is on, else no such header at all (one the
// app sent is never passed on).
func (l *Log) AskTiming(h http.Header) {
	delete(h, HeaderTiming)
	if l != nil {
		h[HeaderTiming] = askTiming
	}
}

// TryTiming is the client layer right above the peer transport: it times
// each try (connect, TLS, time to the response's headers), records the
// instance tried, and takes the callee's queue and app times from the
// response, removing the header.
func (l *Log) TryTiming(next http.RoundTripper) http.RoundTripper {
	if l == nil {
		return next
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := recordFrom(r.Context())
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
			if v := resp.Header.Get(HeaderTiming); v != "" {
				queue, app := parseTiming(v)
				rec.queue.Store(queue)
				rec.app.Store(app)
				resp.Header.Del(HeaderTiming)
			}
		}
		return resp, err
	})
}

// AppTiming is the local-app client layer that times the app (to its
// response headers) and, for a caller that asked, reports queue and app
// times in the response. The queue is the time since Inbound saw the
// request: access control and the concurrency queue.
func (l *Log) AppTiming(next http.RoundTripper) http.RoundTripper {
	if l == nil {
		return next
	}
	return roundTripFunc(func(r *http.Request) (*http.Response, error) {
		rec := recordFrom(r.Context())
		if rec == nil {
			return next.RoundTrip(r)
		}
		rec.queue.Store(int64(time.Since(rec.start))) // up to here: access control and the concurrency queue
		start := time.Now()
		resp, err := next.RoundTrip(r)
		rec.app.Store(int64(time.Since(start)))
		if err == nil && rec.wantTimes {
			resp.Header.Set(HeaderTiming, formatTiming(rec.queue.Load(), rec.app.Load()))
		}
		return resp, err
	})
}

// formatTiming and parseTiming: "queue=<ns>,app=<ns>".
func formatTiming(queue, app int64) string {
	return "queue=" + strconv.FormatInt(queue, 10) + ",app=" + strconv.FormatInt(app, 10)
}

// parseTiming reads what a peer sidecar sent; fields it cannot read, or
// negative ones, count as zero.
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

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
