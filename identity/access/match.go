package access

import (
	"errors"
	"fmt"
	"path"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Levels of a Decision: Dapr's metric label for the action that decided.
const (
	LevelGlobal = "global"
	LevelApp    = "app"
)

// Rules and reasons a Decision carries. Rules that name a policy or an
// operation are built by Compile from the config, so every string a Decision
// holds comes from a bounded set.
const (
	ruleNoACL  = "no access control"
	ruleGlobal = "global default"

	reasonNoACL       = "no accessControl is configured"
	reasonNoIdentity  = "no verified caller identity (mTLS off or no certificate)"
	reasonNoAppID     = "the caller's identity has no app ID"
	reasonNoPolicy    = "no policy for the caller's app ID and namespace"
	reasonTrustDomain = "the policy's trust domain is not the caller's"
	reasonNamespace   = "the policy's namespace is not the caller's"
	reasonNoOperation = "no operation matched"
	reasonVerb        = "an operation matched and lists the verb"
	reasonVerbStar    = `an operation matched and lists "*" for any verb`
	reasonVerbMiss    = `an operation matched but lists neither the verb nor "*"`
	reasonVerbNone    = "an operation matched a call without HTTP verb (NONE): the policy's defaultAction applies"
	reasonGRPC        = "an operation matched (gRPC app: verbs are not used)"
)

// ErrMalformedID is returned by CallerFromID for a SPIFFE ID whose path is
// not /ns/<namespace>/<app-id>[/...].
var ErrMalformedID = errors.New("malformed SPIFFE ID")

// Caller is the verified identity of the calling app, from its SPIFFE ID
// spiffe://<TrustDomain>/ns/<Namespace>/<AppID>.
type Caller struct {
	TrustDomain, Namespace, AppID string
}

// CallerFromID reads a Caller from a verified SPIFFE ID. As in Dapr
// (contract §4.3) the path must start /ns/<namespace>/<app-id>; further
// segments are ignored. Anything else is ErrMalformedID, and the call must be
// refused rather than treated as anonymous.
func CallerFromID(id spiffeid.ID) (*Caller, error) {
	segs := strings.Split(strings.TrimPrefix(id.Path(), "/"), "/")
	if id.IsZero() || len(segs) < 3 || segs[0] != "ns" || segs[1] == "" || segs[2] == "" {
		return nil, fmt.Errorf("%w: %s", ErrMalformedID, id)
	}
	return &Caller{TrustDomain: id.TrustDomain().Name(), Namespace: segs[1], AppID: segs[2]}, nil
}

// Request is what Decide needs to know about one call.
type Request struct {
	// Caller is the verified caller; nil when there is none (mTLS off), in
	// which case only the global default applies (contract §4.6).
	Caller *Caller
	// CallerID is the caller's SPIFFE ID URL for messages, "" if none.
	CallerID string
	// Operation is the normalised method, without leading '/' (the gRPC
	// proxy's "/pkg.Service/Method" may keep it). Decide cleans it again
	// (path.Clean) as defence in depth but does not reject forbidden bytes:
	// that is the method normaliser's job (contract §1.3).
	Operation string
	// Verb is the HTTP method as sent ("GET", "POST", ...); "" means NONE.
	// As in Dapr it is upper-cased and mapped to Dapr's verb names; any other
	// method counts as POST (contract §1.4). Unused for gRPC apps.
	Verb string
	// GRPC marks a gRPC call (Dapr's proxy mode): as for a gRPC app, its
	// operation (the method's path) matches case-sensitively and its verb
	// is not looked at, whatever the app's protocol.
	GRPC bool
}

// Decision is the outcome of Decide. Every string in it comes from the
// config or from a fixed set, so it may label metrics and errors.
type Decision struct {
	// Allowed is what happens: true also when an audit-mode rule would deny.
	Allowed bool
	// Denied is what enforcement would do; Allowed && Denied means audited.
	Denied bool
	// Audit reports that the deciding rule is in audit mode.
	Audit bool
	// Level is Dapr's metric label: "app" when the caller's policy has a
	// defaultAction (even if an operation decided), "global" otherwise, and
	// "" when there is no access control at all (Dapr records nothing then).
	Level string
	// Rule names the deciding rule: "no access control", "global default",
	// "app default (app1)", "operation /public verb *", "operation /op" (gRPC).
	Rule string
	// Policy is the appId of the caller's policy when one applied, "" when
	// only the global default was consulted.
	Policy string
	// Operation is the matched operation name ("/public"), "" if none.
	Operation string
	// Reason says in a phrase why Rule decided (Skein addition, for Explain).
	Reason string
}

// Matcher is a compiled accessControl. It is immutable and safe for
// concurrent use. A nil *Matcher allows every call.
type Matcher struct {
	enabled     bool // false: no accessControl, allow everything
	isHTTP      bool
	audit       bool
	globalAllow bool
	trustDomain string
	policies    map[policyKey]*policy
}

// policyKey is Dapr's appId||namespace key, as a struct so that a lookup
// builds no string.
type policyKey struct {
	appID, namespace string
}

type policy struct {
	appID, namespace, trustDomain string
	hasDefault                    bool // defaultAction set: level app
	defaultAllow                  bool
	defaultRule                   string // "app default (app1)"
	noneRule                      string // rule for verb NONE: the app default, even unset
	audit                         bool
	root                          node
	exact                         node         // for an HTTP app: the operations as written, for gRPC calls (proxy mode)
	ops                           []*operation // config order, for Lint
}

// operation is a compiled Operation at the end of its trie path.
type operation struct {
	index     int    // in Policy.Operations
	name      string // as configured, with leading '/'
	pattern   string // name as matched: without '/', lower-cased for HTTP
	allow     bool
	rule      string // "operation /x": gRPC apps
	verbs     []verbRule
	star      bool
	starRule  string
	starAllow bool
}

type verbRule struct {
	verb, rule string
}

// Compile validates c and builds its Matcher. isHTTP says the callee app
// speaks HTTP (http, https, h2c): operation names then match without regard
// to case and verbs are used; for gRPC apps names match exactly and verbs
// are ignored (contract §4.2). A nil Config, or one without trustDomain,
// defaultAction and policies, compiles to a Matcher that allows everything.
// Time and memory grow linearly with the operations, however many share a
// prefix (BenchmarkCompileOperations: 100,000 in about 0.3 s).
func Compile(c *Config, isHTTP bool) (*Matcher, error) {
	m := &Matcher{isHTTP: isHTTP, trustDomain: DefaultTrustDomain}
	if c == nil {
		return m, nil
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.TrustDomain != "" {
		m.trustDomain = c.TrustDomain
	}
	if c.TrustDomain == "" && c.DefaultAction == "" && len(c.Policies) == 0 {
		return m, nil // contract §4.2: the ACL is absent
	}
	m.enabled = true
	m.audit = c.Mode == ModeAudit
	switch {
	case c.DefaultAction != "":
		m.globalAllow = isAllow(c.DefaultAction)
	case len(c.Policies) > 0:
		// PRODUCT.md difference 3: Dapr documents deny here; its runtime
		// allows because it merges the Configuration into a default of allow.
		m.globalAllow = false
	default:
		m.globalAllow = true // only a trustDomain: nothing to restrict
	}
	m.policies = make(map[policyKey]*policy, len(c.Policies))
	for i := range c.Policies {
		p := compilePolicy(&c.Policies[i], isHTTP)
		// A later policy with the same key replaces an earlier one (§4.2).
		m.policies[policyKey{p.appID, p.namespace}] = p
	}
	return m, nil
}

func compilePolicy(p *Policy, isHTTP bool) *policy {
	cp := &policy{
		appID:        p.AppID,
		namespace:    p.Namespace,
		trustDomain:  p.TrustDomain,
		hasDefault:   p.DefaultAction != "",
		defaultAllow: isAllow(p.DefaultAction),
		defaultRule:  "app default (" + p.AppID + ")",
		audit:        p.Mode == ModeAudit,
	}
	cp.noneRule = cp.defaultRule
	if !cp.hasDefault {
		cp.noneRule = "app default (" + p.AppID + ", unset: deny)"
	}
	cp.ops = make([]*operation, 0, len(p.Operations))
	for k, o := range p.Operations {
		name := o.Name
		if !strings.HasPrefix(name, "/") {
			name = "/" + name
		}
		op := &operation{index: k, name: name, allow: isAllow(o.Action), rule: "operation " + name}
		for _, v := range o.HTTPVerb {
			if v == "*" {
				op.star, op.starAllow, op.starRule = true, op.allow, "operation "+name+" verb *"
				continue
			}
			// Decide looks up only the verbs Dapr knows, upper-case
			// (verbName), so another spelling never matches (Lint warns)
			// and is dropped here: op.verbs stays short whatever the list.
			if knownVerb(v) == v && v != verbNone && op.verb(v) == nil {
				op.verbs = append(op.verbs, verbRule{verb: v, rule: "operation " + name + " verb " + v})
			}
		}
		op.pattern = name[1:]
		if isHTTP {
			op.pattern = strings.ToLower(op.pattern)
			// gRPC calls to this HTTP app (proxy mode) match exactly.
			cp.exact.put(name[1:], op)
		}
		cp.ops = append(cp.ops, op)
		cp.root.put(op.pattern, op)
	}
	return cp
}

// verb returns the rule for a verb listed exactly (case-sensitive, §4.1).
func (op *operation) verb(v string) *verbRule {
	for i := range op.verbs {
		if op.verbs[i].verb == v {
			return &op.verbs[i]
		}
	}
	return nil
}

// TrustDomain returns the callee's own trust domain: the configured one or
// DefaultTrustDomain.
func (m *Matcher) TrustDomain() string {
	if m == nil {
		return DefaultTrustDomain
	}
	return m.trustDomain
}

// Decide evaluates r as Dapr does (contract §4.4), with the global default
// of PRODUCT.md difference 3 and Skein's audit mode. It does not allocate
// when the operation is already clean and, for HTTP apps, lower-case, and
// the verb is empty or upper-case. A gRPC-proxied call is evaluated as
// non-HTTP (§4.4): use a Matcher compiled with isHTTP false for it.
func (m *Matcher) Decide(r Request) Decision {
	if m == nil || !m.enabled {
		return Decision{Allowed: true, Rule: ruleNoACL, Reason: reasonNoACL}
	}
	d := Decision{Level: LevelGlobal, Rule: ruleGlobal}
	allow := m.globalAllow
	c := r.Caller
	if c == nil {
		d.Reason = reasonNoIdentity
		return m.finish(d, allow, false)
	}
	if c.AppID == "" {
		d.Reason = reasonNoAppID
		return m.finish(d, allow, false)
	}
	p := m.policies[policyKey{c.AppID, c.Namespace}]
	switch {
	case p == nil:
		d.Reason = reasonNoPolicy
		return m.finish(d, allow, false)
	case p.trustDomain != c.TrustDomain:
		d.Reason = reasonTrustDomain
		return m.finish(d, allow, false)
	case p.namespace != c.Namespace: // the key holds it; kept as in Dapr
		d.Reason = reasonNamespace
		return m.finish(d, allow, false)
	}
	d.Policy = p.appID
	byPolicy := false // the action comes from this policy's own rules
	if p.hasDefault {
		allow, byPolicy = p.defaultAllow, true
		d.Level, d.Rule = LevelApp, p.defaultRule
	}
	isHTTP := m.isHTTP && !r.GRPC
	op := normalize(r.Operation)
	if isHTTP {
		op = strings.ToLower(op) // allocates only if op has upper case
	}
	root := &p.root
	if m.isHTTP && r.GRPC {
		root = &p.exact
	}
	o := root.search(op)
	if o == nil {
		d.Reason = reasonNoOperation
		return m.finish(d, allow, byPolicy && p.audit)
	}
	d.Operation = o.name
	switch {
	case !isHTTP:
		allow, byPolicy = o.allow, true
		d.Rule, d.Reason = o.rule, reasonGRPC
	default:
		verb := verbName(r.Verb)
		if verb == verbNone {
			// Dapr: an HTTP app called without verb gets the policy's
			// default, which denies when unset (§4.4 step 8).
			allow, byPolicy = p.defaultAllow, true
			d.Rule, d.Reason = p.noneRule, reasonVerbNone
		} else if v := o.verb(verb); v != nil {
			allow, byPolicy = o.allow, true
			d.Rule, d.Reason = v.rule, reasonVerb
		} else if o.star {
			allow, byPolicy = o.starAllow, true
			d.Rule, d.Reason = o.starRule, reasonVerbStar
		} else {
			d.Reason = reasonVerbMiss // keep the app or global default
		}
	}
	return m.finish(d, allow, byPolicy && p.audit)
}

// finish applies audit mode: the whole accessControl's, or that of the
// policy whose own rule decided.
func (m *Matcher) finish(d Decision, allow, policyAudit bool) Decision {
	d.Audit = m.audit || policyAudit
	d.Denied = !allow
	d.Allowed = allow || d.Audit
	return d
}

// Check decides r and returns a *DeniedError when the call must be refused
// (denied and not audited). The error's verb is what Dapr reports: NONE for
// gRPC apps and calls without verb.
func (m *Matcher) Check(r Request) (Decision, error) {
	d := m.Decide(r)
	if d.Allowed {
		return d, nil
	}
	verb := verbNone
	if m.isHTTP && !r.GRPC && r.Verb != "" {
		verb = verbName(r.Verb)
	}
	return d, &DeniedError{CallerID: r.CallerID, Operation: r.Operation, Verb: verb, Decision: d}
}

// normalize returns the operation without its leading '/', cleaned as Dapr's
// method normaliser does (path.Clean; contract §1.3). An operation that is
// already clean comes back as a substring, without allocating.
func normalize(op string) string {
	rest := strings.TrimPrefix(op, "/") // Dapr prepends '/' only if missing
	if isClean(rest) {
		return rest
	}
	return path.Clean("/" + op)[1:]
}

// isClean reports whether "/"+rest is its own path.Clean: no empty, "." or
// ".." segment and no trailing slash.
func isClean(rest string) bool {
	if rest == "" {
		return true
	}
	for {
		i := strings.IndexByte(rest, '/')
		seg := rest
		if i >= 0 {
			seg = rest[:i]
		}
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
		if i < 0 {
			return true
		}
		rest = rest[i+1:]
	}
}

// Dapr's HTTPExtension verb names (contract §1.4).
const verbNone = "NONE"

// verbName maps a method as sent to Dapr's verb name: upper-cased, NONE when
// empty, POST when unknown.
func verbName(v string) string {
	if v == "" {
		return verbNone
	}
	if n := knownVerb(v); n != "" {
		return n
	}
	if n := knownVerb(strings.ToUpper(v)); n != "" {
		return n
	}
	return "POST"
}

func knownVerb(v string) string {
	switch v {
	case "NONE":
		return verbNone
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "CONNECT":
		return "CONNECT"
	case "OPTIONS":
		return "OPTIONS"
	case "TRACE":
		return "TRACE"
	case "PATCH":
		return "PATCH"
	}
	return ""
}
