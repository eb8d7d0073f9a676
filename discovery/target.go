package discovery

import (
	"fmt"
	"strings"
)

// Target is the app a call is addressed to: an app id in a namespace. It is
// a comparable value, used as a map key by the Resolver, by proxy's
// snapshots and connection pools, and by xDS translation; proxy.Target is
// the same type. The zero value names no app.
//
// A name is parsed into a Target once, where it enters the process (the
// invoke API's target, an xDS cluster name, ParseTarget for a request
// addressed by its logical host); after that it travels as this value and
// is never cut out of a string again.
type Target struct {
	AppID     string
	Namespace string
}

// String returns the target's name on the wire, "<app-id>.<namespace>":
// the :authority of a call between sidecars, which the callee checks, and
// the name the metadata endpoint lists instances under.
func (t Target) String() string { return t.AppID + "." + t.Namespace }

// ParseTarget parses the wire form "<app-id>.<namespace>" that String
// returns. Both parts must be non-empty and the namespace holds no dot; an
// app id is not otherwise checked (proxy.ValidateAppID has Dapr's rules for
// names that come from apps).
func ParseTarget(name string) (Target, error) {
	id, ns, ok := strings.Cut(name, ".")
	if !ok || id == "" || ns == "" || strings.Contains(ns, ".") {
		return Target{}, fmt.Errorf("target %q is not <app-id>.<namespace>", name)
	}
	return Target{AppID: id, Namespace: ns}, nil
}
