package access

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestExplain(t *testing.T) {
	b := mustCompile(t, mustParse(t, exampleB), true)
	const id = "spiffe://public/ns/dapr-tests/allowlists-caller"
	c := caller("public", "dapr-tests", "allowlists-caller")
	tests := []struct {
		name string
		m    *Matcher
		r    Request
		want string
	}{
		{"allowed by operation", b, Request{Caller: c, CallerID: id, Operation: "opAllow", Verb: "POST"}, `decision:  allow
caller:    spiffe://public/ns/dapr-tests/allowlists-caller (app "allowlists-caller", namespace "dapr-tests", trust domain "public")
request:   operation "/opAllow", verb POST
policy:    allowlists-caller
matched:   operation /opAllow
rule:      operation /opAllow verb POST (level app)
why:       an operation matched and lists the verb
`},
		{"verb not listed", b, Request{Caller: c, CallerID: id, Operation: "opAllow", Verb: "PUT"}, `decision:  deny
caller:    spiffe://public/ns/dapr-tests/allowlists-caller (app "allowlists-caller", namespace "dapr-tests", trust domain "public")
request:   operation "/opAllow", verb PUT
policy:    allowlists-caller
matched:   operation /opAllow
rule:      app default (allowlists-caller) (level app)
why:       an operation matched but lists neither the verb nor "*"
`},
		{"no identity", b, Request{Operation: "admin/../opAllow"}, `decision:  deny
caller:    none verified (mTLS off or no certificate)
request:   operation "/opAllow", verb NONE
policy:    none applied
rule:      global default (level global)
why:       no verified caller identity (mTLS off or no certificate)
`},
		{"audited", mustCompile(t, &Config{Mode: "audit", DefaultAction: "deny"}, true), Request{Caller: c, Operation: "x", Verb: "GET"}, `decision:  deny, audited: the call goes through (audit mode) and would be refused under enforce
caller:    app "allowlists-caller", namespace "dapr-tests", trust domain "public"
request:   operation "/x", verb GET
policy:    none applied
rule:      global default (level global)
why:       no policy for the caller's app ID and namespace
`},
		{"no ACL", nil, Request{Caller: c, Operation: "x", Verb: "GET"}, `decision:  allow
caller:    app "allowlists-caller", namespace "dapr-tests", trust domain "public"
request:   operation "/x", verb GET
rule:      no access control
why:       no accessControl is configured
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Explain(tt.r, tt.m.Decide(tt.r))); diff != "" {
				t.Errorf("Explain (-want +got):\n%s", diff)
			}
		})
	}
}
