package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"path"
	"strings"
	"unicode/utf8"

	"github.com/skeinmesh/skein/discovery"
)

// Errors returned by the target and method parsers. The invoke handler maps
// them to Dapr's status codes in errors.go.
var (
	// ErrNoAppID means the request named no target: no dapr-app-id header, no
	// Basic-auth app id and no /v1.0/invoke/<id>/method/ path (Dapr: 404).
	ErrNoAppID = errors.New("failed getting app id either from the URL path or the header dapr-app-id")
	// ErrInvalidMethod wraps a method containing a forbidden character.
	ErrInvalidMethod = errors.New("invalid method")
)

// Target is the app a call is addressed to. It is discovery's type, so the
// target parsed from an invocation reaches the picker, the resolver and the
// peer pools as a value, never as a name parsed again; its String,
// "<app-id>.<namespace>", is the :authority the callee checks.
type Target = discovery.Target

// InvalidAppIDError reports a target that is not a valid app id (Dapr's
// "invalid app id <x>").
type InvalidAppIDError struct {
	ID     string
	Reason string
}

func (e *InvalidAppIDError) Error() string {
	if e.Reason == "" {
		return "invalid app id " + e.ID
	}
	return "invalid app id " + e.ID + ": " + e.Reason
}

// ValidateAppID checks a self-hosted app id as Dapr does (non-empty, no dots)
// and, because the id becomes a SPIFFE path segment and a registry directory
// name, also rejects '/', '\', whitespace and control characters, invalid
// UTF-8 (an id is a metric label value too, which must be UTF-8) and ids
// longer than 64 bytes (Sentry's limit).
func ValidateAppID(id string) error {
	switch {
	case id == "":
		return &InvalidAppIDError{ID: id, Reason: "app id cannot be empty"}
	case len(id) > 64:
		return &InvalidAppIDError{ID: id, Reason: "app id longer than 64 characters"}
	case strings.Contains(id, "."):
		return &InvalidAppIDError{ID: id, Reason: "app id cannot contain dots"}
	case id == "..":
		return &InvalidAppIDError{ID: id}
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c == 0x7f || c == '/' || c == '\\' || c == '%' {
			return &InvalidAppIDError{ID: id, Reason: fmt.Sprintf("app id contains forbidden character %q", c)}
		}
	}
	if !utf8.ValidString(id) {
		return &InvalidAppIDError{ID: id, Reason: "app id is not valid UTF-8"}
	}
	return nil
}

// ParseTarget splits "<app-id>" or "<app-id>.<namespace>" (contract §1.2);
// a bare app id is in the caller's namespace. Two or more dots are an error.
func ParseTarget(s, callerNamespace string) (Target, error) {
	id, ns, found := strings.Cut(s, ".")
	if !found {
		ns = callerNamespace
	} else if strings.Contains(ns, ".") || ns == "" {
		return Target{}, &InvalidAppIDError{ID: s}
	}
	if err := ValidateAppID(id); err != nil {
		return Target{}, &InvalidAppIDError{ID: s}
	}
	if err := ValidateAppID(ns); err != nil {
		return Target{}, &InvalidAppIDError{ID: s, Reason: "invalid namespace"}
	}
	return Target{AppID: id, Namespace: ns}, nil
}

// NormalizeMethod applies Dapr's method normalisation (contract §1.3) to a
// percent-decoded method: a method containing '#', '?', NUL, a control byte
// (0x01-0x1f, 0x7f) or '%' is rejected; otherwise it is cleaned as a rooted
// path, so dot segments, doubled and trailing slashes and leading "../"
// residue disappear, and returned without its leading '/'.
//
// '%' after decoding is rejected outright: Dapr lets "%25" through the
// normaliser and then fails to build the app URL (500), so rejecting it here
// gives the same status with a clearer reason.
//
// A method that is not valid UTF-8 (e.g. "%ff") is rejected too, with the
// same 500 INVALID_METHOD: Dapr carries the method to the callee in a
// proto3 string, whose marshalling refuses invalid UTF-8, so such a call
// fails in Dapr as well, only later and less clearly. Refusing it here keeps
// it out of access decisions, span names, logs and metric labels.
func NormalizeMethod(m string) (string, error) {
	ascii := true
	for i := 0; i < len(m); i++ {
		switch c := m[i]; {
		case c < 0x20, c == 0x7f, c == '#', c == '?', c == '%':
			return "", fmt.Errorf("%w: method contains forbidden character: %q", ErrInvalidMethod, m)
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	if !ascii && !utf8.ValidString(m) {
		return "", fmt.Errorf("%w: method is not valid UTF-8: %q", ErrInvalidMethod, m)
	}
	if isClean(m) {
		return m, nil
	}
	return path.Clean("/" + m)[1:], nil
}

// isClean reports whether m is already in normal form, the common case,
// so NormalizeMethod need not allocate.
func isClean(m string) bool {
	if m == "" {
		return true
	}
	if m[0] == '/' || m[len(m)-1] == '/' {
		return false
	}
	seg := 0 // start of the current segment
	for i := 0; i <= len(m); i++ {
		if i < len(m) && m[i] != '/' {
			continue
		}
		switch m[seg:i] {
		case "", ".", "..":
			return false
		}
		seg = i + 1
	}
	return true
}

// invokeVerbs are the verbs of Dapr's HTTPExtension enum (contract §1.4).
var invokeVerbs = [...]string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
	http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch}

// invokeVerb is the verb a call carries to the app. Dapr carries it as
// HTTPExtension's enum, upper-casing what was sent, so "get" reaches the
// app as GET and a verb outside the enum (e.g. PROPFIND) as POST (contract
// §1.4); Skein does the same, and access control decides on this verb,
// never on the one as sent. It does not allocate.
func invokeVerb(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete,
		http.MethodConnect, http.MethodOptions, http.MethodTrace, http.MethodPatch:
		return m
	}
	for _, v := range invokeVerbs {
		if strings.EqualFold(m, v) {
			return v
		}
	}
	return http.MethodPost
}

// Invocation is what the invoke handler extracted from an app's request.
type Invocation struct {
	Target Target
	// Method is the normalised method, without a leading '/'.
	Method string
	// ByHeader is true when the target came from the dapr-app-id header,
	// which must then be removed before forwarding.
	ByHeader bool
	// Name is the target as the request named it (e.g. "app-b.other"),
	// which Dapr's error messages quote.
	Name string
}

// ParseInvocation finds the target and method of an invoke API request, in
// Dapr's order (contract §1.2): the dapr-app-id header, then Basic auth with
// user "dapr-app-id", then the /v1.0/invoke/<target>/method/<method> path.
func ParseInvocation(r *http.Request, callerNamespace string) (Invocation, error) {
	var raw string
	byHeader := false
	method := ""
	if v := r.Header.Get(HeaderAppID); v != "" {
		raw, method, byHeader = v, r.URL.Path, true
	} else if user, pass, ok := r.BasicAuth(); ok && strings.EqualFold(user, HeaderAppID) && pass != "" {
		raw, method = pass, r.URL.Path
	} else {
		t, m, ok := parseInvokePath(r.URL.Path)
		if !ok {
			return Invocation{}, ErrNoAppID
		}
		u, err := url.QueryUnescape(t)
		if err != nil {
			return Invocation{}, &InvalidAppIDError{ID: t}
		}
		raw, method = u, m
	}
	var target Target
	if !isURLTarget(raw) { // a URL is an external invocation: no app id (contract §1.2)
		t, err := ParseTarget(raw, callerNamespace)
		if err != nil {
			return Invocation{}, err
		}
		target = t
	}
	m, err := NormalizeMethod(method)
	if err != nil {
		return Invocation{}, err
	}
	return Invocation{Target: target, Method: m, ByHeader: byHeader, Name: raw}, nil
}

// parseInvokePath splits "/v1.0/invoke/<target>/method/<method>", tolerating
// repeated slashes between the fixed segments as Dapr's router does. The
// target is everything up to the first "/method/"; a path without that
// segment names no target.
func parseInvokePath(p string) (target, method string, ok bool) {
	p = strings.TrimLeft(p, "/")
	if p, ok = strings.CutPrefix(p, "v1.0/"); !ok {
		return "", "", false
	}
	p = strings.TrimLeft(p, "/")
	if p, ok = strings.CutPrefix(p, "invoke/"); !ok {
		return "", "", false
	}
	p = strings.TrimLeft(p, "/")
	target, method, ok = strings.Cut(p, "/method/")
	if !ok || target == "" {
		return "", "", false
	}
	return target, method, true
}
