package access

// DeniedError is the error of a call the access policy refused. Callers map
// it to 403 / PermissionDenied with errors.As (STYLE.md §5); Decision names
// the rule for the error's details.
type DeniedError struct {
	CallerID  string // caller's SPIFFE ID URL, "" if none
	Operation string // operation as received
	Verb      string // Dapr's verb name; "" is shown as NONE
	Decision  Decision
}

// Error returns Dapr's exact message (contract §4.7).
func (e *DeniedError) Error() string {
	verb := e.Verb
	if verb == "" {
		verb = verbNone
	}
	return "access control policy has denied access to id: " + e.CallerID + " operation: " + e.Operation + " verb: " + verb
}
