package access

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Lint returns warnings about patterns that are valid for Dapr but surprising
// (contract §4.2, §4.5), each starting with its field path, in config order:
//   - a "*" segment before the end of a name (it never matches) and a "**"
//     there (it matches exactly one segment, not several);
//   - an operation shadowed by another: a duplicate name, an earlier sibling
//     that matches first, or a shorter name without wildcard, which also
//     matches every path below it whatever the order; shadowing that only
//     happens on HTTP apps (names compared without case) says so;
//   - a lower-case verb in httpVerb (never matches), or one Dapr does not
//     know (never matches either: Dapr treats unknown methods as POST);
//   - a policy missing appId, trustDomain or namespace (Dapr refuses the
//     whole spec; Validate reports them as errors too), a policy trust
//     domain that is not a SPIFFE trust domain, a policy replaced by a later
//     one with the same appId and namespace;
//   - an operation without action (denies, though Dapr's docs say allow),
//     a name that is not a clean path, and policies without a global
//     defaultAction (Skein denies where Dapr's runtime allows).
//
// A nil Config has no warnings. Lint does not need a valid Config.
func Lint(c *Config) []string {
	if c == nil {
		return nil
	}
	var out []string
	warn := func(path, format string, args ...any) {
		out = append(out, path+": "+fmt.Sprintf(format, args...))
	}
	if c.DefaultAction == "" && len(c.Policies) > 0 {
		warn("accessControl.defaultAction", "unset while policies exist: Skein denies calls no policy allows (Dapr's documented rule); Dapr's runtime would allow them")
	}
	seen := make(map[policyKey]int, len(c.Policies))
	for i := range c.Policies {
		p := &c.Policies[i]
		pp := fmt.Sprintf("accessControl.policies[%d]", i)
		for _, f := range []struct{ name, v string }{{"appId", p.AppID}, {"trustDomain", p.TrustDomain}, {"namespace", p.Namespace}} {
			if f.v == "" {
				warn(pp+"."+f.name, "missing: Dapr refuses the whole accessControl without it")
			}
		}
		if p.TrustDomain != "" {
			if _, err := spiffeid.TrustDomainFromString(p.TrustDomain); err != nil {
				warn(pp+".trustDomain", "%q is not a SPIFFE trust domain, so no caller ever matches this policy", p.TrustDomain)
			}
		}
		key := policyKey{p.AppID, p.Namespace}
		if j, ok := seen[key]; ok {
			warn(fmt.Sprintf("accessControl.policies[%d]", j), "ignored: policies[%d] has the same appId and namespace and replaces it", i)
		}
		seen[key] = i
		lintOperations(p, pp, warn)
	}
	return out
}

func lintOperations(p *Policy, pp string, warn func(path, format string, args ...any)) {
	grpc, http := compilePolicy(p, false), compilePolicy(p, true)
	for k, o := range p.Operations {
		op := fmt.Sprintf("%s.operations[%d]", pp, k)
		name := o.Name
		if !strings.HasPrefix(name, "/") {
			name = "/" + name
		}
		segs := strings.Split(name[1:], "/")
		midStar := false
		switch {
		case o.Name == "":
			warn(op+".name", "empty: it matches only the root path \"/\"")
		case !isClean(name[1:]):
			warn(op+".name", "%q is not a clean path (trailing '/', '//', '.' or '..'); methods are cleaned before matching, so it may never match", o.Name)
		}
		for _, s := range segs[:len(segs)-1] {
			switch s {
			case "*":
				midStar = true
			case "**":
				warn(op+".name", "%q: a \"**\" before the end matches exactly one segment, not several", o.Name)
			}
		}
		if midStar {
			warn(op+".name", "%q: a \"*\" segment before the end never matches, so this operation never applies (\"**\" there matches one segment)", o.Name)
		} else if by, prefix, dup, ok := shadowedBy(grpc, k); ok {
			warn(op, "%s", shadowMessage(p, by, prefix, dup, ""))
		} else if by, prefix, dup, ok := shadowedBy(http, k); ok {
			warn(op, "%s", shadowMessage(p, by, prefix, dup, " on HTTP apps, where names are compared without regard to case"))
		}
		for j, v := range o.HTTPVerb {
			vp := fmt.Sprintf("%s.httpVerb[%d]", op, j)
			switch up := strings.ToUpper(v); {
			case v == "*" || v != verbNone && knownVerb(v) != "":
			case up != verbNone && knownVerb(up) != "":
				warn(vp, "%q: verbs are compared case-sensitively with upper-case names, so this never matches (write %q)", v, up)
			case up == verbNone:
				warn(vp, "%q never matches: verbs are looked up only for calls that have one", v)
			default:
				warn(vp, "%q is not a verb Dapr knows, so it never matches (Dapr treats other methods as POST)", v)
			}
		}
		if o.Action == "" {
			warn(op+".action", "empty: denies (as Dapr's runtime does, though Dapr's docs say allow); write allow or deny")
		}
	}
}

// shadowedBy searches p's trie for a call that operation k alone is meant to
// match and reports which other operation answers instead, and whether that
// one wins by being shorter (the prefix rule) or is the same name.
func shadowedBy(p *policy, k int) (by int, prefix, dup, ok bool) {
	mine := p.ops[k]
	got := p.root.search(representative(mine.pattern))
	if got == nil || got == mine {
		return 0, false, false, false
	}
	// Only a name without wildcard shares its node with the longer name, so
	// only then does it win whatever the order.
	prefix = kindOf(got.pattern) == segLiteral && strings.HasPrefix(mine.pattern, got.pattern+"/")
	return got.index, prefix, got.pattern == mine.pattern, true
}

// representative turns a pattern (without leading '/') into a call only it
// should match: each '*' becomes a NUL byte, which no sane name holds and the
// method normaliser rejects, a trailing "*" one more segment and a trailing
// "**" two.
func representative(pattern string) string {
	segs := strings.Split(pattern, "/")
	for i, s := range segs {
		last := i == len(segs)-1
		switch {
		case last && s == "**":
			segs[i] = "\x00/\x00"
		default:
			segs[i] = strings.ReplaceAll(s, "*", "\x00")
		}
	}
	return strings.Join(segs, "/")
}

func shadowMessage(p *Policy, by int, prefix, dup bool, suffix string) string {
	other := p.Operations[by].Name
	switch {
	case dup:
		return fmt.Sprintf("duplicate of operations[%d] %q: the first one wins and this one is ignored%s", by, other, suffix)
	case prefix:
		return fmt.Sprintf("shadowed by operations[%d] %q: a shorter name also matches every path below it, whatever the order%s", by, other, suffix)
	default:
		return fmt.Sprintf("shadowed by operations[%d] %q, which comes first and matches the same calls%s", by, other, suffix)
	}
}
