package ratelimit

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

// takes counts the requests of n taken at now that b admits.
func takes(b *Bucket, n int, now time.Time) (admitted int, lastWait time.Duration) {
	for range n {
		if ok, wait := b.Take(now); ok {
			admitted++
		} else {
			lastWait = wait
		}
	}
	return admitted, lastWait
}

func TestBucketAdmitsBurstThenRate(t *testing.T) {
	tests := []struct {
		name     string
		limit    Limit
		wantNow  int           // admitted of 10 at t0
		wantWait time.Duration // Retry-After of the refusals
		later    time.Duration // then, this much later
		wantThen int           // admitted of 10
	}{
		{"2 rps burst 2", Limit{2, 2}, 2, 500 * time.Millisecond, time.Second, 2},
		{"half a request a second", Limit{0.5, 1}, 1, 2 * time.Second, time.Second, 0},
		{"burst above rate", Limit{1, 5}, 5, time.Second, 3 * time.Second, 3},
		{"fast", Limit{1000, 1}, 1, time.Millisecond, 3 * time.Millisecond, 1}, // the bucket holds 1 token at most
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewBucket(tt.limit)
			n, wait := takes(b, 10, t0)
			if n != tt.wantNow || wait != tt.wantWait {
				t.Errorf("at t0: admitted %d, wait %v; want %d, %v", n, wait, tt.wantNow, tt.wantWait)
			}
			if n, _ := takes(b, 10, t0.Add(tt.later)); n != tt.wantThen {
				t.Errorf("%v later: admitted %d, want %d", tt.later, n, tt.wantThen)
			}
		})
	}
}

func TestClientsKeepsABucketPerAddressWithinItsBound(t *testing.T) {
	c := NewClients(Limit{1, 1}, 8)
	a := netip.MustParseAddr("10.0.0.1")
	if ok, _ := c.Take(a, t0); !ok {
		t.Fatal("first request of a refused")
	}
	if ok, _ := c.Take(a, t0); ok {
		t.Fatal("second request of a admitted: its bucket was not kept")
	}
	// Another address has its own bucket.
	if ok, _ := c.Take(netip.MustParseAddr("10.0.0.2"), t0); !ok {
		t.Error("first request of another address refused")
	}
	// 1,000 addresses: state for 8 at most.
	for i := range 1000 {
		c.Take(netip.AddrFrom4([4]byte{192, 168, byte(i >> 8), byte(i)}), t0)
		if c.Len() > 8 {
			t.Fatalf("after %d addresses, %d buckets, want at most 8", i+1, c.Len())
		}
	}
	// a was forgotten, least recently seen: a full bucket again.
	if ok, _ := c.Take(a, t0); !ok {
		t.Error("a, evicted, refused")
	}
}

func TestClientKey(t *testing.T) {
	tests := []struct{ in, want string }{
		{"127.0.0.1", "127.0.0.1"},
		{"::ffff:10.1.2.3", "10.1.2.3"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::"},
		{"2001:db8:1:2:ffff::1", "2001:db8:1:2::"},
		{"fe80::1%eth0", "fe80::"},
		{"::1", "::"},
	}
	for _, tt := range tests {
		if got := ClientKey(netip.MustParseAddr(tt.in)); got.String() != tt.want {
			t.Errorf("ClientKey(%s) = %s, want %s", tt.in, got, tt.want)
		}
	}
	if got := ClientKey(netip.Addr{}); got.IsValid() {
		t.Errorf("ClientKey(zero) = %s, want the zero Addr", got)
	}
}

func TestMiddlewareLimit(t *testing.T) {
	tests := []struct {
		name    string
		md      map[string]string
		want    Limit
		wantErr string
	}{
		{"default", nil, Limit{100, 100}, ""},
		{"integer", map[string]string{"maxRequestsPerSecond": "10"}, Limit{10, 10}, ""},
		{"float", map[string]string{"maxRequestsPerSecond": "42.42"}, Limit{42.42, 42}, ""},
		{"below one", map[string]string{"maxRequestsPerSecond": "0.5"}, Limit{0.5, 1}, ""},
		{"any case, spaces", map[string]string{"MaxRequestsPerSecond": " 2 "}, Limit{2, 2}, ""},
		{"zero", map[string]string{"maxRequestsPerSecond": "0"}, Limit{}, "metadata property maxRequestsPerSecond must be a positive value"},
		{"negative", map[string]string{"maxRequestsPerSecond": "-2"}, Limit{}, "must be a positive value"},
		{"not a number", map[string]string{"maxRequestsPerSecond": "foo-bar"}, Limit{}, `"foo-bar": must be a number`},
		{"NaN", map[string]string{"maxRequestsPerSecond": "NaN"}, Limit{}, "must be a number"},
		{"huge", map[string]string{"maxRequestsPerSecond": "1e12"}, Limit{}, "must be at most"},
		{"misspelt", map[string]string{"maxRequestPerSecond": "2"}, Limit{}, `metadata "maxRequestPerSecond": unknown field`},
		{"twice", map[string]string{"maxRequestsPerSecond": "2", "MAXREQUESTSPERSECOND": "3"}, Limit{}, "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := MiddlewareLimit(tt.md)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("limit = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func decodeYAML(t *testing.T, src string) (*Config, error) {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return Decode(&doc)
}

func TestDecode(t *testing.T) {
	c, err := decodeYAML(t, `
default: {requestsPerSecond: 100, burst: 200}
policies:
- appId: batch
  requestsPerSecond: "0.5"
- appId: checkout
  namespace: shop
  trustDomain: example.org
  requestsPerSecond: 20
  burst: 40
`)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Default: &Rate{100, 200},
		Policies: []Policy{
			{AppID: "batch", Rate: Rate{RequestsPerSecond: 0.5}},
			{AppID: "checkout", Namespace: "shop", TrustDomain: "example.org", Rate: Rate{20, 40}},
		},
	}
	if d := cmp.Diff(want, c); d != "" {
		t.Errorf("(-want +got)\n%s", d)
	}
	if err := c.Validate(); err != nil {
		t.Error(err)
	}
}

func TestDecodeAndValidateNameEveryProblem(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // each in the error
	}{
		{"unknown fields", "policies:\n- appId: a\n  rps: 2\nfoo: 1\n", []string{
			"callerRateLimits.policies[0].rps: unknown field (line 3)", "callerRateLimits.foo: unknown field (line 4)"}},
		{"YAML infinity is not a number", "default: {requestsPerSecond: .inf}\n", []string{`callerRateLimits.default.requestsPerSecond: ".inf": must be a number`}},
		{"rate not a number", "default: {requestsPerSecond: fast}\n", []string{`callerRateLimits.default.requestsPerSecond: "fast": must be a number`}},
		{"burst not an integer", "default: {requestsPerSecond: 1, burst: 1.5}\n", []string{"callerRateLimits.default.burst"}},
		{"negative rate", "policies:\n- {appId: a, requestsPerSecond: -1}\n", []string{"callerRateLimits.policies[0].requestsPerSecond: -1: must be greater than 0"}},
		{"zero rate", "default: {requestsPerSecond: 0}\n", []string{"callerRateLimits.default.requestsPerSecond: 0: must be greater than 0"}},
		{"missing rate", "policies:\n- {appId: a}\n", []string{"callerRateLimits.policies[0].requestsPerSecond: 0: must be greater than 0 (required)"}},
		{"NaN and Inf", "policies:\n- {appId: a, requestsPerSecond: NaN}\n- {appId: b, requestsPerSecond: Inf}\n", []string{
			"policies[0].requestsPerSecond: NaN: must be greater than 0", "policies[1].requestsPerSecond: +Inf: must be at most"}},
		{"negative burst", "policies:\n- {appId: a, requestsPerSecond: 1, burst: -3}\n", []string{"callerRateLimits.policies[0].burst: -3: must be within 1-"}},
		{"missing app id", "policies:\n- {requestsPerSecond: 1}\n", []string{"callerRateLimits.policies[0].appId: required"}},
		{"SPIFFE ID for app id", "policies:\n- {appId: 'spiffe://public/ns/default/a', requestsPerSecond: 1}\n", []string{"an app id, not a SPIFFE ID"}},
		{"dotted app id", "policies:\n- {appId: a.shop, requestsPerSecond: 1}\n", []string{"app ids cannot contain dots"}},
		{"bad characters", "policies:\n- {appId: 'a b', namespace: 'x/y', trustDomain: 'Bad Domain', requestsPerSecond: 1}\n", []string{
			`policies[0].appId: "a b":`, `policies[0].namespace: "x/y":`, `policies[0].trustDomain: "Bad Domain":`}},
		{"duplicate caller", "policies:\n- {appId: a, requestsPerSecond: 1}\n- {appId: a, namespace: default, trustDomain: public, requestsPerSecond: 2}\n", []string{
			"callerRateLimits.policies[1]: caller public/ns/default/a already limited by policies[0]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := decodeYAML(t, tt.src)
			if err == nil {
				_, err = Compile(c)
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestCallersFor(t *testing.T) {
	a := Caller{"public", "default", "a"}
	b := Caller{"public", "default", "b"}
	aShop := Caller{"public", "shop", "a"}
	tests := []struct {
		name   string
		cfg    *Config
		caller Caller
		verify bool
		want   string // the bucket's name; "" unlimited
		limit  Limit
	}{
		{"named", &Config{Policies: []Policy{{AppID: "a", Rate: Rate{RequestsPerSecond: 2}}}}, a, true, "a", Limit{2, 2}},
		{"unnamed, no default", &Config{Policies: []Policy{{AppID: "a", Rate: Rate{RequestsPerSecond: 2}}}}, b, true, "", Limit{}},
		{"other namespace is another caller", &Config{Policies: []Policy{{AppID: "a", Rate: Rate{RequestsPerSecond: 2}}}}, aShop, true, "", Limit{}},
		{"namespace named", &Config{Policies: []Policy{{AppID: "a", Namespace: "shop", Rate: Rate{RequestsPerSecond: 2}}}}, aShop, true, "a.shop", Limit{2, 2}},
		{"unnamed, default", &Config{Default: &Rate{10, 20}, Policies: []Policy{{AppID: "a", Rate: Rate{RequestsPerSecond: 2}}}}, b, true, "default", Limit{10, 20}},
		{"unverified gets the default", &Config{Default: &Rate{RequestsPerSecond: 10}, Policies: []Policy{{AppID: "a", Rate: Rate{RequestsPerSecond: 2}}}}, a, false, "default", Limit{10, 10}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := Compile(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			bk, name := cs.For(tt.caller, tt.verify)
			if name != tt.want || (bk == nil) != (tt.want == "") {
				t.Fatalf("For = %v, %q; want %q", bk, name, tt.want)
			}
			if bk != nil && bk.Limit() != tt.limit {
				t.Errorf("limit %+v, want %+v", bk.Limit(), tt.limit)
			}
		})
	}
	if cs, err := Compile(&Config{}); cs != nil || err != nil {
		t.Errorf("empty config compiles to %v, %v; want nil, nil", cs, err)
	}
	if bk, _ := (*Callers)(nil).For(a, true); bk != nil {
		t.Error("nil Callers limits")
	}
}

func TestInheritKeepsUnchangedBuckets(t *testing.T) {
	compile := func(aRate, defRate float64) *Callers {
		cs, err := Compile(&Config{
			Default:  &Rate{RequestsPerSecond: defRate, Burst: 1},
			Policies: []Policy{{AppID: "a", Rate: Rate{aRate, 1}}, {AppID: "b", Rate: Rate{1, 1}}},
		})
		if err != nil {
			t.Fatal(err)
		}
		return cs
	}
	admits := func(cs *Callers, app string, verified bool) bool {
		bk, _ := cs.For(Caller{"public", "default", app}, verified)
		ok, _ := bk.Take(t0)
		return ok
	}
	old := compile(0.001, 0.001)
	for _, app := range []string{"a", "b", ""} {
		if !admits(old, app, app != "") {
			t.Fatalf("%q: first call refused", app)
		}
	}
	// a's limit changes; b's and the default's do not.
	cs := compile(0.002, 0.001)
	cs.Inherit(old)
	for _, tt := range []struct {
		app  string
		want bool
	}{{"a", true}, {"b", false}, {"", false}} {
		if got := admits(cs, tt.app, tt.app != ""); got != tt.want {
			t.Errorf("%q after reload: admitted %v, want %v (a changed limit starts full, unchanged ones keep their state)", tt.app, got, tt.want)
		}
	}
}

func ExampleCompile() {
	cs, _ := Compile(&Config{Policies: []Policy{{AppID: "batch", Rate: Rate{RequestsPerSecond: 2}}}})
	b, name := cs.For(Caller{TrustDomain: "public", Namespace: "default", AppID: "batch"}, true)
	for range 3 {
		ok, wait := b.Take(t0)
		fmt.Println(name, ok, wait)
	}
	// Output:
	// batch true 0s
	// batch true 0s
	// batch false 500ms
}

// The per-request cost of a limit: a bucket (per-caller limits) and a
// client address's bucket (Dapr's middleware), both admitting.
func BenchmarkBucketTake(b *testing.B) {
	bk := NewBucket(Limit{RequestsPerSecond: 1e9, Burst: MaxBurst})
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		bk.Take(now)
	}
}

func BenchmarkClientsTake(b *testing.B) {
	c := NewClients(Limit{RequestsPerSecond: 1e9, Burst: MaxBurst}, 0)
	addr := netip.MustParseAddr("127.0.0.1")
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		c.Take(addr, now)
	}
}

func TestTakeDoesNotAllocate(t *testing.T) {
	bk := NewBucket(Limit{RequestsPerSecond: 1e9, Burst: MaxBurst})
	c := NewClients(Limit{RequestsPerSecond: 1e9, Burst: MaxBurst}, 0)
	addr := netip.MustParseAddr("2001:db8::1")
	c.Take(addr, t0)
	if n := testing.AllocsPerRun(100, func() { bk.Take(t0) }); n != 0 {
		t.Errorf("Bucket.Take allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { c.Take(addr, t0) }); n != 0 {
		t.Errorf("Clients.Take of a known address allocates %v times, want 0", n)
	}
}
