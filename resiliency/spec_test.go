package resiliency

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"go.yaml.in/yaml/v3"
)

func decodeString(t *testing.T, doc string) (*Spec, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	return Decode(&n)
}

func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func intp(i int) *int { return &i }

const contractSpec = `
policies:
  timeouts: {general: 5s}
  retries:
    retryForever: {policy: exponential, maxInterval: 15s, maxRetries: -1}
    important:    {policy: constant, duration: 5s, maxRetries: 30,
                   matching: {httpStatusCodes: "429,500-599", gRPCStatusCodes: "1-4,8-11,13,14"}}
  circuitBreakers:
    simpleCB: {maxRequests: 1, interval: 8s, timeout: 45s, trip: consecutiveFailures > 8}
targets:
  apps:
    app-b: {timeout: general, retry: important, circuitBreaker: simpleCB,
            circuitBreakerCacheSize: 100}
  actors: {}
`

func TestDecode(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    *Spec
		wantErr []string
	}{
		{"contract example", contractSpec, &Spec{
			Policies: Policies{
				Timeouts: map[string]string{"general": "5s"},
				Retries: map[string]RetrySpec{
					"retryForever": {Policy: "exponential", MaxInterval: "15s", MaxRetries: intp(-1)},
					"important": {Policy: "constant", Duration: "5s", MaxRetries: intp(30),
						Matching: Matching{HTTPStatusCodes: "429,500-599", GRPCStatusCodes: "1-4,8-11,13,14"}},
				},
				CircuitBreakers: map[string]CircuitBreakerSpec{
					"simpleCB": {MaxRequests: 1, Interval: "8s", Timeout: "45s", Trip: "consecutiveFailures > 8"},
				},
			},
			Targets: Targets{Apps: map[string]AppTarget{
				"app-b": {Timeout: "general", Retry: "important", CircuitBreaker: "simpleCB", CircuitBreakerCacheSize: 100},
			}},
		}, nil},
		{"empty", ``, &Spec{}, nil},
		{"integers as strings", `
policies:
  timeouts: {fast: 100}
  retries: {r: {maxRetries: "3", duration: 10}}
`, &Spec{Policies: Policies{
			Timeouts: map[string]string{"fast": "100"},
			Retries:  map[string]RetrySpec{"r": {MaxRetries: intp(3), Duration: "10"}},
		}}, nil},
		{"strict", `
policies:
  timeout: {a: 1s}
  retries:
    r: {maxRetries: many, matching: {httpStatus: "500"}}
  circuitBreakers:
    cb: {maxRequests: [1], trip: x, trip: y}
targets:
  apps:
    a: {retries: r}
  other: {}
`, nil, []string{
			`spec.policies.timeout: unknown field (line 3)`,
			`spec.policies.retries.r.maxRetries: "many": must be an integer (line 5)`,
			`spec.policies.retries.r.matching.httpStatus: unknown field (line 5)`,
			`spec.policies.circuitBreakers.cb.maxRequests: must be an integer (line 7)`,
			`spec.policies.circuitBreakers.cb.trip: duplicate field (line 7)`,
			`spec.targets.apps.a.retries: unknown field (line 10)`,
			`spec.targets.other: unknown field (line 11)`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeString(t, tt.doc)
			if diff := cmp.Diff(tt.wantErr, errLines(err)); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Targets{}, "Actors", "Components")); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		wantErr []string
	}{
		{"contract example", contractSpec, nil},
		{"problems", `
policies:
  timeouts: {bad: 5x, neg: -1, ok: 1m30s}
  retries:
    p: {policy: linear, duration: soon, maxInterval: "-5s", maxRetries: -2}
    c1: {matching: {httpStatusCodes: "600"}}
    c2: {matching: {httpStatusCodes: "5-1", gRPCStatusCodes: "17"}}
    c3: {matching: {httpStatusCodes: "1-2-3"}}
    c4: {matching: {httpStatusCodes: "500,abc"}}
`, []string{
			`spec.policies.timeouts.bad: duration "5x": want milliseconds or a Go duration such as 5s`,
			`spec.policies.timeouts.neg: duration "-1": must not be negative`,
			`spec.policies.retries.c1.matching.httpStatusCodes: "600": codes must be within 100-599`,
			`spec.policies.retries.c2.matching.httpStatusCodes: "5-1": codes must be within 100-599`,
			`spec.policies.retries.c2.matching.gRPCStatusCodes: "17": codes must be within 0-16`,
			`spec.policies.retries.c3.matching.httpStatusCodes: "1-2-3": a range is two codes joined by -`,
			`spec.policies.retries.c4.matching.httpStatusCodes: "abc": not a status code`,
			`spec.policies.retries.p.policy: "linear": must be constant or exponential`,
			`spec.policies.retries.p.duration: duration "soon": want milliseconds or a Go duration such as 5s`,
			`spec.policies.retries.p.maxInterval: duration "-5s": must not be negative`,
			`spec.policies.retries.p.maxRetries: -2: must be -1 (unlimited) or more`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := decodeString(t, tt.doc)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantErr, errLines(s.Validate())); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

// The breaker and target problems are checked by prefix: CEL's messages
// are its own.
func TestValidateBreakersAndTargets(t *testing.T) {
	s, err := decodeString(t, `
policies:
  circuitBreakers:
    t1: {trip: "consecutiveFailures >"}
    t2: {trip: "consecutiveFailures + 1"}
    t3: {trip: "unknownVar > 3", maxRequests: -1, interval: x, timeout: 1h}
    ok: {trip: "requests > 10 && totalFailures * 2 > requests"}
targets:
  apps:
    a: {timeout: nope, retry: missing, circuitBreaker: t9, circuitBreakerCacheSize: -1}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		`spec.policies.circuitBreakers.t1.trip: "consecutiveFailures >"`,
		`spec.policies.circuitBreakers.t2.trip: "consecutiveFailures + 1": must be a bool expression`,
		`spec.policies.circuitBreakers.t3.maxRequests: -1: must be within 0-4294967295`,
		`spec.policies.circuitBreakers.t3.interval: duration "x"`,
		`spec.policies.circuitBreakers.t3.trip: "unknownVar > 3"`,
		`spec.targets.apps.a.timeout: no timeout policy named "nope"`,
		`spec.targets.apps.a.retry: no retry policy named "missing"`,
		`spec.targets.apps.a.circuitBreaker: no circuit breaker policy named "t9"`,
		`spec.targets.apps.a.circuitBreakerCacheSize: -1: must not be negative`,
	}
	var got []string
	for _, l := range errLines(s.Validate()) {
		if strings.HasPrefix(l, "spec.") { // CEL errors span lines
			got = append(got, l)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
}

func TestParseDuration(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"100", 100 * time.Millisecond, false},
		{"0", 0, false},
		{"500ms", 500 * time.Millisecond, false},
		{"5s", 5 * time.Second, false},
		{"1m30s", 90 * time.Second, false},
		{"1h", time.Hour, false},
		{" 30 ", 30 * time.Millisecond, false},
		{"", 0, true},
		{"5", 5 * time.Millisecond, false},
		{"5x", 0, true},
		{"-5", 0, true},
		{"-1s", 0, true},
		{"1.5", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("ParseDuration(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestParseCodes(t *testing.T) {
	tests := []struct {
		in      string
		lo, hi  int
		in1     []int
		out     []int
		wantErr string
	}{
		{"", 100, 599, nil, []int{500}, ""},
		{"429,500-599", 100, 599, []int{429, 500, 550, 599}, []int{428, 499, 404}, ""},
		{" 400 , 500 ", 100, 599, []int{400, 500}, []int{401}, ""},
		{"1-4,8-11,13,14", 0, 16, []int{1, 4, 8, 11, 13, 14}, []int{0, 5, 12, 15, 16}, ""},
		{"100,101", 100, 599, []int{100, 101}, []int{102}, ""},
		{"600", 100, 599, nil, nil, `"600": codes must be within 100-599`},
		{"99", 100, 599, nil, nil, `"99": codes must be within 100-599`},
		{"5-1", 0, 16, nil, nil, `"5-1": range starts after it ends`},
		{"1-2-3", 0, 16, nil, nil, `"1-2-3": a range is two codes joined by -`},
		{"500,", 100, 599, nil, nil, `"": not a status code`},
		{"-1", 0, 16, nil, nil, `"-1": not a status code`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			c, err := ParseCodes(tt.in, tt.lo, tt.hi)
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("error = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, code := range tt.in1 {
				if !c.Contains(code) {
					t.Errorf("%d not contained", code)
				}
			}
			for _, code := range tt.out {
				if c.Contains(code) {
					t.Errorf("%d contained", code)
				}
			}
		})
	}
}

func TestDecodeResource(t *testing.T) {
	s, err := DecodeResource([]byte(`
apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata: {name: myresiliency, namespace: prod, labels: {a: b}}
scopes: [app-a, app-b]
spec:
  policies: {timeouts: {general: 5s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := &Spec{Name: "myresiliency", Namespace: "prod", Scopes: []string{"app-a", "app-b"},
		Policies: Policies{Timeouts: map[string]string{"general": "5s"}}}
	if diff := cmp.Diff(want, s); diff != "" {
		t.Errorf("DecodeResource (-want +got):\n%s", diff)
	}
	if !s.AppliesTo("app-b") || s.AppliesTo("app-c") {
		t.Error("AppliesTo ignores scopes")
	}
	for _, doc := range []string{
		"kind: Configuration\nspec: {}",
		"kind: Resiliency\nscopes: x",
		"kind: Resiliency\nspec: {policies: {bogus: 1}}",
		"kind: [",
	} {
		if _, err := DecodeResource([]byte(doc)); err == nil {
			t.Errorf("DecodeResource(%q) succeeded", doc)
		}
	}
	if s, err := DecodeResource([]byte("kind: Resiliency\nscopes: ~")); err != nil || !s.AppliesTo("any") {
		t.Errorf("no spec, null scopes: %v, %v", s, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(contractSpec)
	f.Add("policies: {retries: {r: {matching: {httpStatusCodes: '1-2-3'}}}}")
	f.Fuzz(func(t *testing.T, doc string) {
		var n yaml.Node
		if yaml.Unmarshal([]byte(doc), &n) != nil {
			return
		}
		s, err := Decode(&n)
		if err != nil {
			return
		}
		if s.Validate() == nil {
			if _, err := Compile(s); err != nil {
				t.Errorf("valid spec does not compile: %v", err)
			}
		}
	})
}

func FuzzParseCodes(f *testing.F) {
	for _, s := range []string{"429,500-599", "1-2-3", "5-1", "", " 1 , 2 "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCodes(s, 100, 599)
		if err != nil {
			return
		}
		for _, r := range c.ranges {
			if r.lo < 100 || r.hi > 599 || r.lo > r.hi {
				t.Errorf("bad range %v from %q", r, s)
			}
		}
	})
}
