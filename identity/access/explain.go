package access

import (
	"fmt"
	"strings"
)

// Explain returns a multi-line, human explanation of d, the Decision for r
// (for `skein policy explain`). It is not on the request path.
func Explain(r Request, d Decision) string {
	var b strings.Builder
	result := "allow"
	switch {
	case d.Allowed && d.Denied:
		result = "deny, audited: the call goes through (audit mode) and would be refused under enforce"
	case d.Denied:
		result = "deny"
	}
	if d.Audit && !d.Denied {
		result += " (audit mode)"
	}
	line := func(k, format string, args ...any) {
		fmt.Fprintf(&b, "%-10s %s\n", k+":", fmt.Sprintf(format, args...))
	}
	line("decision", "%s", result)
	switch c := r.Caller; {
	case c == nil:
		line("caller", "none verified (mTLS off or no certificate)")
	case r.CallerID != "":
		line("caller", "%s (app %q, namespace %q, trust domain %q)", r.CallerID, c.AppID, c.Namespace, c.TrustDomain)
	default:
		line("caller", "app %q, namespace %q, trust domain %q", c.AppID, c.Namespace, c.TrustDomain)
	}
	verb := r.Verb
	if verb == "" {
		verb = verbNone
	}
	line("request", "operation %q, verb %s", "/"+normalize(r.Operation), verb)
	if d.Policy != "" {
		line("policy", "%s", d.Policy)
	} else if d.Level != "" {
		line("policy", "none applied")
	}
	if d.Operation != "" {
		line("matched", "operation %s", d.Operation)
	}
	if d.Level != "" {
		line("rule", "%s (level %s)", d.Rule, d.Level)
	} else {
		line("rule", "%s", d.Rule)
	}
	line("why", "%s", d.Reason)
	return b.String()
}
