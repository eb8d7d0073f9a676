package access

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Contract §4.8 A: the reservedchars/acl.go configuration, HTTP callee.
const exampleA = `
apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: acl
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app1
      defaultAction: deny
      trustDomain: public
      namespace: default
      operations:
      - name: /public
        httpVerb: ['*']
        action: allow
`

func TestExampleA(t *testing.T) {
	m := mustCompile(t, mustParse(t, exampleA), true)
	app1, app2 := caller("public", "default", "app1"), caller("public", "default", "app2")
	tests := []struct {
		name   string
		caller *Caller
		op     string // as decoded by the caller's sidecar
		want   outcome
	}{
		{"public", app1, "public", outcome{Allowed: true, Level: "app", Rule: "operation /public verb *", Policy: "app1", Operation: "/public"}},
		{"deeper path by prefix", app1, "public/extra", outcome{Allowed: true, Level: "app", Rule: "operation /public verb *", Policy: "app1", Operation: "/public"}},
		{"admin", app1, "admin", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}},
		// admin%2F..%2Fpublic arrives decoded; it is evaluated as /public.
		// (admin%3Fx never gets here: the method normaliser refuses it.)
		{"encoded traversal", app1, "admin/../public", outcome{Allowed: true, Level: "app", Rule: "operation /public verb *", Policy: "app1", Operation: "/public"}},
		{"other app", app2, "public", outcome{Denied: true, Level: "global", Rule: "global default"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := m.Decide(Request{Caller: tt.caller, Operation: tt.op, Verb: "GET"})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Decide(GET %s) (-want +got):\n%s", tt.op, diff)
			}
		})
	}
}

// Contract §4.8 B: the allowlistsappconfig of Dapr's e2e suite.
const exampleB = `
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: allowlists-caller
      defaultAction: deny
      trustDomain: public
      namespace: dapr-tests
      operations:
      - name: /opAllow
        httpVerb: ['POST', 'GET']
        action: allow
      - name: /opDeny
        httpVerb: ["*"]
        action: deny
`

func TestExampleB(t *testing.T) {
	m := mustCompile(t, mustParse(t, exampleB), true)
	const id = "spiffe://public/ns/dapr-tests/allowlists-caller"
	c := caller("public", "dapr-tests", "allowlists-caller")
	tests := []struct {
		name, verb, op string
		want           outcome
		wantErr        string
	}{
		{"allowed verb", "POST", "opAllow", outcome{Allowed: true, Level: "app", Rule: "operation /opAllow verb POST", Policy: "allowlists-caller", Operation: "/opAllow"}, ""},
		{"denied by operation", "POST", "opDeny", outcome{Denied: true, Level: "app", Rule: "operation /opDeny verb *", Policy: "allowlists-caller", Operation: "/opDeny"},
			"access control policy has denied access to id: " + id + " operation: opDeny verb: POST"},
		{"verb not listed", "PUT", "opAllow", outcome{Denied: true, Level: "app", Rule: "app default (allowlists-caller)", Policy: "allowlists-caller", Operation: "/opAllow"},
			"access control policy has denied access to id: " + id + " operation: opAllow verb: PUT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := m.Check(Request{Caller: c, CallerID: id, Operation: tt.op, Verb: tt.verb})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Check(%s %s) (-want +got):\n%s", tt.verb, tt.op, diff)
			}
			checkErr(t, err, tt.wantErr)
		})
	}
}

// Contract §4.8 C: allowlistsgrpcappconfig, a gRPC callee.
const exampleC = `
spec:
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: allowlists-caller
      defaultAction: deny
      trustDomain: public
      namespace: dapr-tests
      operations:
      - name: grpcToGrpcTest
        httpVerb: ['POST']
        action: allow
      - name: httpToGrpcTest
        httpVerb: ['*']
        action: deny
      - name: grpcToGrpcWithoutVerbTest
        action: allow
    - appId: grpcproxyclient
      defaultAction: deny
      trustDomain: public
      namespace: dapr-tests
      operations:
      - name: /helloworld.Greeter/SayHello
        action: allow
`

func TestExampleC(t *testing.T) {
	m := mustCompile(t, mustParse(t, exampleC), false)
	const id = "spiffe://public/ns/dapr-tests/allowlists-caller"
	c := caller("public", "dapr-tests", "allowlists-caller")
	proxy := caller("public", "dapr-tests", "grpcproxyclient")
	tests := []struct {
		name    string
		caller  *Caller
		op      string
		verb    string
		want    outcome
		wantErr string
	}{
		{"InvokeService allowed", c, "grpcToGrpcTest", "", outcome{Allowed: true, Level: "app", Rule: "operation /grpcToGrpcTest", Policy: "allowlists-caller", Operation: "/grpcToGrpcTest"}, ""},
		{"verbs ignored", c, "grpcToGrpcTest", "GET", outcome{Allowed: true, Level: "app", Rule: "operation /grpcToGrpcTest", Policy: "allowlists-caller", Operation: "/grpcToGrpcTest"}, ""},
		{"without verbs", c, "grpcToGrpcWithoutVerbTest", "", outcome{Allowed: true, Level: "app", Rule: "operation /grpcToGrpcWithoutVerbTest", Policy: "allowlists-caller", Operation: "/grpcToGrpcWithoutVerbTest"}, ""},
		{"HTTP caller denied", c, "httpToGrpcTest", "POST", outcome{Denied: true, Level: "app", Rule: "operation /httpToGrpcTest", Policy: "allowlists-caller", Operation: "/httpToGrpcTest"},
			"access control policy has denied access to id: " + id + " operation: httpToGrpcTest verb: NONE"},
		{"case-sensitive", c, "GRPCTOGRPCTEST", "", outcome{Denied: true, Level: "app", Rule: "app default (allowlists-caller)", Policy: "allowlists-caller"},
			"access control policy has denied access to id: " + id + " operation: GRPCTOGRPCTEST verb: NONE"},
		{"proxied allowed", proxy, "/helloworld.Greeter/SayHello", "", outcome{Allowed: true, Level: "app", Rule: "operation /helloworld.Greeter/SayHello", Policy: "grpcproxyclient", Operation: "/helloworld.Greeter/SayHello"}, ""},
		{"proxied without slash", proxy, "helloworld.Greeter/SayHello", "", outcome{Allowed: true, Level: "app", Rule: "operation /helloworld.Greeter/SayHello", Policy: "grpcproxyclient", Operation: "/helloworld.Greeter/SayHello"}, ""},
		{"other proxied method", proxy, "/helloworld.Greeter/SayGoodbye", "", outcome{Denied: true, Level: "app", Rule: "app default (grpcproxyclient)", Policy: "grpcproxyclient"},
			"access control policy has denied access to id: " + id + " operation: /helloworld.Greeter/SayGoodbye verb: NONE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := m.Check(Request{Caller: tt.caller, CallerID: id, Operation: tt.op, Verb: tt.verb})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Check(%s) (-want +got):\n%s", tt.op, diff)
			}
			checkErr(t, err, tt.wantErr)
		})
	}
}

// Contract §4.8 D: the matrix of Dapr's pkg/acl unit tests, global deny.
const exampleD = `
defaultAction: deny
trustDomain: public
policies:
- appId: app1
  defaultAction: deny
  trustDomain: public
  namespace: ns1
  operations:
  - name: /op1
    httpVerb: ['GET']
    action: allow
  - name: /op2
    httpVerb: ['*']
    action: allow
  - name: /op4
    action: allow
- appId: app2
  trustDomain: public
  namespace: ns2
  operations:
  - name: /op3
    httpVerb: ['GET']
    action: allow
`

func TestExampleD(t *testing.T) {
	c := mustParse(t, exampleD)
	tests := []struct {
		name   string
		isHTTP bool
		caller *Caller
		op     string
		verb   string
		want   outcome
	}{
		{"unknown caller", true, caller("public", "ns1", "app9"), "op1", "GET", outcome{Denied: true, Level: "global", Rule: "global default"}},
		{"trust domain mismatch", true, caller("other", "ns1", "app1"), "op1", "GET", outcome{Denied: true, Level: "global", Rule: "global default"}},
		{"namespace mismatch", true, caller("public", "ns2", "app1"), "op1", "GET", outcome{Denied: true, Level: "global", Rule: "global default"}},
		{"no SPIFFE ID", true, nil, "op1", "GET", outcome{Denied: true, Level: "global", Rule: "global default"}},
		{"allowed", true, caller("public", "ns1", "app1"), "op1", "GET", outcome{Allowed: true, Level: "app", Rule: "operation /op1 verb GET", Policy: "app1", Operation: "/op1"}},
		{"unknown operation", true, caller("public", "ns1", "app1"), "opX", "GET", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}},
		{"HTTP case-insensitive", true, caller("public", "ns1", "app1"), "Op2", "GET", outcome{Allowed: true, Level: "app", Rule: "operation /op2 verb *", Policy: "app1", Operation: "/op2"}},
		{"gRPC case-sensitive miss", false, caller("public", "ns1", "app1"), "OP4", "", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1"}},
		{"gRPC exact", false, caller("public", "ns1", "app1"), "op4", "", outcome{Allowed: true, Level: "app", Rule: "operation /op4", Policy: "app1", Operation: "/op4"}},
		{"verb not listed: app default", true, caller("public", "ns1", "app1"), "op1", "POST", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/op1"}},
		{"verb not listed, no app default: global", true, caller("public", "ns2", "app2"), "op3", "POST", outcome{Denied: true, Level: "global", Rule: "global default", Policy: "app2", Operation: "/op3"}},
		{"no app default, verb listed", true, caller("public", "ns2", "app2"), "op3", "GET", outcome{Allowed: true, Level: "global", Rule: "operation /op3 verb GET", Policy: "app2", Operation: "/op3"}},
		{"verb *", true, caller("public", "ns1", "app1"), "op2", "DELETE", outcome{Allowed: true, Level: "app", Rule: "operation /op2 verb *", Policy: "app1", Operation: "/op2"}},
		{"verb NONE on HTTP: app default", true, caller("public", "ns1", "app1"), "op1", "", outcome{Denied: true, Level: "app", Rule: "app default (app1)", Policy: "app1", Operation: "/op1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := mustCompile(t, c, tt.isHTTP)
			d := m.Decide(Request{Caller: tt.caller, Operation: tt.op, Verb: tt.verb})
			if diff := cmp.Diff(tt.want, outcomeOf(d)); diff != "" {
				t.Errorf("Decide (-want +got):\n%s", diff)
			}
		})
	}
}

func checkErr(t *testing.T, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("error %v, want none", err)
		}
		return
	}
	var denied *DeniedError
	if !errors.As(err, &denied) {
		t.Fatalf("error %v, want a *DeniedError", err)
	}
	if got := err.Error(); got != want {
		t.Errorf("error text\n got %q\nwant %q", got, want)
	}
}
