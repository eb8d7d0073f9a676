package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync/atomic"
)

// clientBodyError is a failure reading a request body from the side that
// sent it: malformed framing (a chunk line ending in a bare LF, RFC 9112
// §7.1), a connection that died mid-body, a stream the sender reset. It is
// the sender's fault, never the fault of the instance the call was going
// to: classify answers it 400, and ClientFault tells discovery (outlier
// detection) and resiliency (retry, breaker), which cannot import proxy,
// not to count it.
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "read request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// ClientFault reports that the client caused the failure.
func (e *clientBodyError) ClientFault() bool { return true }

// clientBody wraps an inbound request body (from the app on the API port,
// from the calling sidecar on the peer port) so that its read errors are
// *clientBodyError wherever a transport surfaces them, and so that such an
// error ends the call at once: abort cancels the call's context with the
// error as its cause, since a transport may not stop by itself (one that
// writes the body beside reading the response head waits for an answer the
// upstream, still waiting for the rest of the body, never sends). Errors
// after Close are not the client's: the transport closes the body when the
// upstream fails, and a read cut short by that says nothing about the
// client. Read and Close may run on different goroutines, as transports do.
type clientBody struct {
	rc     io.ReadCloser
	abort  context.CancelCauseFunc
	closed atomic.Bool
}

// withClientBody wraps r's body (none: nothing to do) and returns the
// context the call must run under, and the func that releases it, which
// the caller defers.
func withClientBody(r *http.Request) (context.Context, context.CancelCauseFunc) {
	if r.Body == nil || r.Body == http.NoBody {
		return r.Context(), func(error) {}
	}
	ctx, abort := context.WithCancelCause(r.Context())
	r.Body = &clientBody{rc: r.Body, abort: abort}
	return ctx, abort
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF && !b.closed.Load() {
		if !isClientFault(err) {
			err = &clientBodyError{err: err}
		}
		b.abort(err)
	}
	return n, err
}

func (b *clientBody) Close() error {
	b.closed.Store(true)
	return b.rc.Close()
}

// clientFaultOf returns the client's fault that ended r's call (see
// clientBody), or nil.
func clientFaultOf(r *http.Request) error {
	if cause := context.Cause(r.Context()); isClientFault(cause) {
		return cause
	}
	return nil
}

// isClientFault reports whether err, or an error it wraps, says the client
// caused it.
func isClientFault(err error) bool {
	var cf interface{ ClientFault() bool }
	return errors.As(err, &cf) && cf.ClientFault()
}
