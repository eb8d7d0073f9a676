package discovery

import "errors"

// clientFault is how an error says that the caller's client caused it, not
// the instance: a request body that was malformed or cut off, or one over
// the size limit. proxy's body errors have the method; discovery states the
// fact as a behaviour because it cannot import proxy (STYLE §3), as net/http
// does with Timeout() bool.
type clientFault interface{ ClientFault() bool }

// isClientFault reports whether err, or an error it wraps, is a client
// fault.
func isClientFault(err error) bool {
	var cf clientFault
	return errors.As(err, &cf) && cf.ClientFault()
}

// faultOfClient returns the error that shows a failed try was the client's
// fault, or nil: err itself when it says so, else the request body's read
// error when that does, for a transport that reports a failed body read as
// an error of its own.
func faultOfClient(err error, body *replayBody) error {
	if isClientFault(err) {
		return err
	}
	if rerr := body.readErr(); isClientFault(rerr) {
		return rerr
	}
	return nil
}

// overloaded is how an error says that the call was refused for overload:
// the instance's sidecar answered, at once, that its app has too many
// calls in flight (proxy turns that answer into an error with this
// method). The instance is alive and did not fail: no outlier verdict, no
// latency sample (a fast refusal would make it look fast and draw more
// calls), and the call is not sent to another instance (no retry adds to
// an overload).
type overloaded interface{ Overloaded() bool }

// isOverloaded reports whether err, or an error it wraps, is a refusal for
// overload.
func isOverloaded(err error) bool {
	var o overloaded
	return errors.As(err, &o) && o.Overloaded()
}
