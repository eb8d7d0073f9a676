package resiliency

import "errors"

// clientFault is how an error says that the caller's client caused it, not
// the target: a request body that was malformed or cut off, or one over the
// size limit. Such a failure is neither retried (the body is gone) nor
// counted by a breaker. proxy's body errors have the method; resiliency
// states the fact as a behaviour because it cannot import proxy (STYLE §3).
type clientFault interface{ ClientFault() bool }

// isClientFault reports whether err, or an error it wraps, is a client
// fault.
func isClientFault(err error) bool {
	var cf clientFault
	return errors.As(err, &cf) && cf.ClientFault()
}

// overloaded is how an error says that the call was refused for overload
// (package overload's limits, or a peer sidecar's refusal that proxy turned
// into an error). Such a refusal is no verdict on the target, so a breaker
// counts it as neither failure nor success, and it is never retried: a
// retry would add load where there is too much already (Envoy does not
// retry a response marked x-envoy-overloaded either).
type overloaded interface{ Overloaded() bool }

// isOverloaded reports whether err, or an error it wraps, is a refusal for
// overload.
func isOverloaded(err error) bool {
	var o overloaded
	return errors.As(err, &o) && o.Overloaded()
}
