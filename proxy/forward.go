package proxy

import (
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/skeinmesh/skein/proxy/daprgrpc"
)

// forwarder is the data path's reverse proxy, on both hops: it sends a
// copy of the inbound request, shaped by rewrite, through transport and
// streams the answer back. It does what httputil.ReverseProxy did for us,
// less what we never used (X-Forwarded-* rewriting, 1xx relay, timed
// flushing), with less work per call: one header copy each way, no
// per-call trace, context or media-type parsing. With tunnels set it
// carries WebSocket upgrades (tunnel.go).
//
// Bodies stream in both directions. A response of unknown length
// (chunked) or a text/event-stream is flushed after every read, so each
// piece reaches the client as it comes; others are flushed when the
// handler returns. Response trailers pass through, announced up front
// when the upstream announced them. A response body that breaks midway
// aborts the client's connection (http.ErrAbortHandler), so a truncated
// answer never looks complete.
type forwarder struct {
	Transport http.RoundTripper
	// rewrite addresses out, a copy of in with its own URL and Header (the
	// latter less the hop-by-hop fields).
	rewrite func(in, out *http.Request)
	// onError answers a call that got no response.
	onError func(w http.ResponseWriter, r *http.Request, err error)
	bufs    *bufferPool
	// tunnels, when set, lets a request that asks to switch to WebSocket
	// ask the next hop too, and a 101 answer become a tunnel between the
	// two connections; Transport must then end in handOver. Nil: Upgrade
	// is dropped as hop-by-hop, and a 101 is an error.
	tunnels *tunnels
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, in *http.Request) {
	out := new(http.Request)
	*out = *in // same context, body and trailer map: trailers the client sends at the end pass on
	u := *in.URL
	out.URL = &u
	// Sized as Clone sizes: room for what the rewrites add measured dearer
	// than growing (BenchmarkTwoSidecars: +1.5 KB, +4 allocations a call).
	out.Header = make(http.Header, len(in.Header))
	forwardFields(out.Header, in.Header, true) // hop-by-hop fields stay behind
	out.RequestURI = ""                        // a client request must not have one
	out.Close = false
	if in.ContentLength == 0 {
		out.Body = nil // nothing to send; a transport may not even read it
	}
	if out.Body != nil {
		// Transports close the body; this is for one that did not (net/http
		// contract), so a failed call never leaves the client's body open.
		defer out.Body.Close()
	}
	f.rewrite(in, out)
	var proto string
	var sw *switched
	if f.tunnels != nil {
		if proto = upgradeOf(in); proto != "" {
			out, sw = askUpgrade(out, proto)
		}
	}

	resp, err := f.Transport.RoundTrip(out)
	if err != nil {
		f.onError(w, out, err)
		return
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if sw == nil {
			_ = resp.Body.Close()
			f.onError(w, out, errUpgrade)
			return
		}
		f.switchProtocols(w, out, resp, proto, sw)
		return
	}
	if v := resp.Header[daprgrpc.HeaderAppStatus]; v != nil {
		appStatus(w, in, v[0])
		if c := callFrom(in.Context()); c == nil || !c.fromPeer {
			delete(resp.Header, daprgrpc.HeaderAppStatus) // between sidecars only
		}
	}
	h := w.Header()
	forwardFields(h, resp.Header, false) // resp.Header is ours: its slices may be shared
	announced := len(resp.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range resp.Trailer {
			keys = append(keys, k)
		}
		h["Trailer"] = []string{strings.Join(keys, ", ")}
	}
	w.WriteHeader(resp.StatusCode)

	err = f.copyBody(w, resp)
	_ = resp.Body.Close()
	if err != nil {
		// The client must see the answer cut short, not a complete one.
		panic(http.ErrAbortHandler)
	}
	if len(resp.Trailer) > 0 {
		for k, vv := range resp.Trailer {
			if len(resp.Trailer) != announced {
				k = http.TrailerPrefix + k // not announced up front
			}
			h[k] = vv
		}
	}
}

// copyBody streams resp's body to w, flushing after every piece when the
// response streams. A failed write (the client went away) is not an error
// worth aborting for; a failed read is.
func (f *forwarder) copyBody(w http.ResponseWriter, resp *http.Response) error {
	if resp.Body == http.NoBody {
		return nil
	}
	var flush func() error
	if relayed(resp) {
		rc := http.NewResponseController(w)
		flush = rc.Flush
		_ = flush() // headers now: an event stream may wait long for its first event
	}
	bp := f.bufs.get(resp.ContentLength)
	defer f.bufs.put(bp)
	buf := *bp
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return nil // the client is gone: nothing to tell it
			}
			if flush != nil {
				if werr := flush(); werr != nil {
					return nil
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// relayed reports whether a response is relayed piece by piece: of unknown
// length, or an event stream (httputil.ReverseProxy's rule).
func relayed(resp *http.Response) bool {
	if resp.ContentLength == -1 {
		return true
	}
	ct := resp.Header["Content-Type"]
	if len(ct) == 0 || !strings.HasPrefix(strings.ToLower(ct[0]), "text/event-stream") {
		return false
	}
	mt, _, _ := mime.ParseMediaType(ct[0])
	return mt == "text/event-stream"
}

// Copy buffer sizes: most answers are small and of known length, and a
// call in flight holds its buffer, so small ones get a small buffer.
const (
	smallCopyBuf = 4 << 10
	largeCopyBuf = 64 << 10
)

// bufferPool recycles the forwarders' copy buffers. The zero value is
// ready; safe for concurrent use.
type bufferPool struct{ small, large sync.Pool }

// get returns a buffer for a body of size bytes (-1: unknown).
func (b *bufferPool) get(size int64) *[]byte {
	if size >= 0 && size <= smallCopyBuf {
		if v, ok := b.small.Get().(*[]byte); ok {
			return v
		}
		buf := make([]byte, smallCopyBuf)
		return &buf
	}
	if v, ok := b.large.Get().(*[]byte); ok {
		return v
	}
	buf := make([]byte, largeCopyBuf)
	return &buf
}

func (b *bufferPool) put(p *[]byte) {
	if len(*p) == smallCopyBuf {
		b.small.Put(p)
	} else {
		b.large.Put(p)
	}
}

// appStatus hands a gRPC app's status, carried from the callee's sidecar
// in daprgrpc.HeaderAppStatus, to an InvokeService call waiting for it, so
// the app's status reaches a gRPC caller unchanged (contract §2.2).
func appStatus(w http.ResponseWriter, in *http.Request, v string) {
	if c := callFrom(in.Context()); c != nil && c.fromPeer {
		return // the callee's side: the header goes on to the caller's sidecar
	}
	for w != nil {
		if s, ok := w.(daprgrpc.AppStatusSink); ok {
			s.AppStatus(v)
			return
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return
		}
		w = u.Unwrap()
	}
}
