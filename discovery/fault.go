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
