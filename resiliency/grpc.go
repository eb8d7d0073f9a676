package resiliency

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// grpcStatus is the gRPC status of a response that ended before any
// message (a trailers-only response, grpc-status in its headers), as a
// proxied gRPC call's failure usually does. ok is false for any other
// response, a gRPC one whose status only its trailers will carry
// included: that call is streaming and counts as a success here.
func grpcStatus(resp *http.Response) (code int, isGRPC, ok bool) {
	ct := resp.Header.Get("Content-Type")
	if !strings.HasPrefix(ct, "application/grpc") {
		return 0, false, false
	}
	v := resp.Header.Get("Grpc-Status")
	if v == "" {
		return 0, true, false
	}
	code, err := strconv.Atoi(v)
	return code, true, err == nil
}

// grpcServerFailure reports whether a gRPC status is the server's failure,
// the gRPC side of an HTTP 5xx (the codes Dapr maps to 500-504): Unknown,
// DeadlineExceeded, Unimplemented, Internal, Unavailable, DataLoss.
func grpcServerFailure(code int) bool {
	switch code {
	case 2, 4, 12, 13, 14, 15:
		return true
	}
	return false
}

// grpcFailed reports whether resp is a gRPC call that failed on the
// server's side before any message.
func grpcFailed(resp *http.Response) bool {
	code, _, ok := grpcStatus(resp)
	return ok && grpcServerFailure(code)
}

// grpcReplay makes a proxied gRPC call's request body, a stream of unknown
// length, replayable for the attempts that fail before any answer
// (trailers-only), which is when a gRPC call may be retried. The body is
// read through a recorder keeping what went out, up to max bytes; a retry
// waits until the failed attempt's transport is done with its body, then
// sends what was recorded followed by the rest of the client's stream. A
// call that sent more than max bytes is not retried. Streams are never
// held back: each attempt reads the client's stream as it comes.
type grpcReplay struct {
	src io.Reader
	ctx context.Context
	max int64

	mu   sync.Mutex
	rec  []byte
	over bool
	cur  *grpcAttempt // the attempt whose body was handed out last
}

// grpcReplayable returns a replay of req's body when req is a gRPC call
// with a body of unknown length and a replay bound is set; nil otherwise.
func grpcReplayable(req *http.Request, max int64) *grpcReplay {
	if max <= 0 || req.ContentLength >= 0 || req.Body == nil || req.Body == http.NoBody ||
		!strings.HasPrefix(req.Header.Get("Content-Type"), "application/grpc") {
		return nil
	}
	return &grpcReplay{src: req.Body, ctx: req.Context(), max: max}
}

// errNotReplayable ends a retry whose earlier attempt still holds the body.
var errNotReplayable = errors.New("the previous attempt did not release the request body")

// attemptRelease bounds the wait for a failed attempt's transport to close
// its body (HTTP/2 does it as the stream ends, usually at once).
const attemptRelease = time.Second

// next returns the body of the next attempt.
func (g *grpcReplay) next() (io.ReadCloser, error) {
	if prev := g.cur; prev != nil {
		t := time.NewTimer(attemptRelease)
		defer t.Stop()
		select {
		case <-prev.closed:
		case <-t.C:
			return nil, errNotReplayable
		case <-g.ctx.Done():
			return nil, g.ctx.Err()
		}
	}
	a := &grpcAttempt{g: g, closed: make(chan struct{})}
	g.cur = a
	return a, nil
}

// replayable reports whether another attempt can replay what was sent.
func (g *grpcReplay) replayable() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !g.over
}

// grpcAttempt is one attempt's body: the recorded bytes, then the rest of
// the client's stream. Closing it releases it to the next attempt; the
// client's body itself is closed by whoever owns the request.
type grpcAttempt struct {
	g      *grpcReplay
	off    int
	closed chan struct{}
	once   sync.Once
}

func (a *grpcAttempt) Read(p []byte) (int, error) {
	g := a.g
	g.mu.Lock()
	if a.off < len(g.rec) {
		n := copy(p, g.rec[a.off:])
		a.off += n
		g.mu.Unlock()
		return n, nil
	}
	g.mu.Unlock()
	n, err := g.src.Read(p)
	if n > 0 {
		g.mu.Lock()
		if !g.over {
			if int64(len(g.rec)+n) > g.max {
				g.over, g.rec = true, nil
			} else {
				g.rec = append(g.rec, p[:n]...)
				a.off = len(g.rec)
			}
		}
		g.mu.Unlock()
	}
	return n, err
}

func (a *grpcAttempt) Close() error {
	a.once.Do(func() { close(a.closed) })
	return nil
}
