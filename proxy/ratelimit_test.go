package proxy

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/identity"
)

// rateComponent is a middleware.http.ratelimit Component.
func rateComponent(name, rps string) string {
	return "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
		"\nspec:\n  type: middleware.http.ratelimit\n  version: v1\n  metadata:\n  - name: maxRequestsPerSecond\n    value: " + rps + "\n"
}

// limitsConfig loads a Configuration of spec (YAML, "" for no spec) with
// resource files of the given contents.
func limitsConfig(t *testing.T, spec string, resources ...string) Config {
	t.Helper()
	dir := t.TempDir()
	res := filepath.Join(dir, "resources")
	if err := os.Mkdir(res, 0o700); err != nil {
		t.Fatal(err)
	}
	for i, r := range resources {
		if err := os.WriteFile(filepath.Join(res, string(rune('a'+i))+".yaml"), []byte(r), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	f := filepath.Join(dir, "config.yaml")
	doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: limits\nspec:\n" + indent(spec) + "\n"
	if spec == "" {
		doc = "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: limits\nspec: {}\n"
	}
	if err := os.WriteFile(f, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadConfig(f, []string{res})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func names(p []*middlewareLimit) []string {
	var out []string
	for _, m := range p {
		out = append(out, m.name)
	}
	return out
}

func TestCompileRateLimits(t *testing.T) {
	const both = "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}\nappHttpPipeline:\n  handlers:\n  - {name: rl2, type: middleware.http.ratelimit, version: v1}\n  - {name: rl, type: middleware.http.ratelimit}"
	oauth := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: oauth}\nspec:\n  type: middleware.http.oauth2\n  version: v1\n  metadata:\n  - name: clientSecret\n    secretKeyRef: {name: s, key: k}\n"
	state := "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata: {name: rl}\nspec:\n  type: state.redis\n  version: v1\n  metadata:\n  - {name: x, secretKeyRef: {name: s}}\n"
	tests := []struct {
		name      string
		spec      string
		resources []string
		api, app  []string
		callers   bool
		wantErr   []string
	}{
		{name: "pipelines", spec: both, resources: []string{rateComponent("rl", "2"), rateComponent("rl2", `"0.5"`)},
			api: []string{"rl"}, app: []string{"rl2", "rl"}},
		{name: "components without pipeline limit nothing", resources: []string{rateComponent("rl", "2")}},
		{name: "other components are not judged", resources: []string{oauth, state}},
		{name: "caller limits", spec: "callerRateLimits:\n  policies:\n  - {appId: a, requestsPerSecond: 2}", callers: true},
		{name: "scoped to this app", spec: both, resources: []string{rateComponent("rl", "2") + "scopes: [a]\n", rateComponent("rl2", "1")},
			api: []string{"rl"}, app: []string{"rl2", "rl"}},
		{name: "missing component", spec: both, resources: []string{rateComponent("rl", "2")},
			wantErr: []string{`spec.appHttpPipeline.handlers[0]: component "rl2" not found`}},
		{name: "scoped elsewhere", spec: both, resources: []string{rateComponent("rl", "2") + "scopes: [b]\n", rateComponent("rl2", "1")},
			wantErr: []string{`spec.httpPipeline.handlers[0]: component "rl" is scoped to other apps`}},
		{name: "unsupported middleware", spec: "httpPipeline:\n  handlers:\n  - {name: oauth, type: middleware.http.oauth2}", resources: []string{oauth},
			wantErr: []string{`type "middleware.http.oauth2": not supported by Skein, which implements only middleware.http.ratelimit`}},
		{name: "type mismatch", spec: "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.uppercase}", resources: []string{rateComponent("rl", "2")},
			wantErr: []string{`type "middleware.http.uppercase": component "rl" is of type "middleware.http.ratelimit"`}},
		{name: "version mismatch", spec: "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit, version: v2}", resources: []string{rateComponent("rl", "2")},
			wantErr: []string{`version "v2": component "rl" is version "v1"`}},
		{name: "listed twice", spec: "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}\n  - {name: rl, type: middleware.http.ratelimit}", resources: []string{rateComponent("rl", "2")},
			wantErr: []string{`spec.httpPipeline.handlers[1]: component "rl" listed twice`}},
		{name: "unknown handler field", spec: "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit, order: 1}", resources: []string{rateComponent("rl", "2")},
			wantErr: []string{"spec.httpPipeline.handlers[0].order: unknown field"}},
		{name: "negative rate", resources: []string{rateComponent("rl", "-1")},
			wantErr: []string{"component rl: metadata property maxRequestsPerSecond must be a positive value"}},
		{name: "misspelt metadata", resources: []string{strings.Replace(rateComponent("rl", "2"), "maxRequestsPerSecond", "maxRequestPerSecond", 1)},
			wantErr: []string{`component rl: metadata "maxRequestPerSecond": unknown field`}},
		{name: "secret reference", resources: []string{strings.Replace(rateComponent("rl", "2"), "value: 2", "secretKeyRef: {name: s, key: k}", 1)},
			wantErr: []string{"spec.metadata[0].secretKeyRef: not supported by Skein", "spec.metadata[0].value: required"}},
		{name: "other version", resources: []string{strings.Replace(rateComponent("rl", "2"), "version: v1", "version: v2", 1)},
			wantErr: []string{`spec.version: "v2": middleware.http.ratelimit has only version v1`}},
		{name: "defined twice", resources: []string{rateComponent("rl", "2"), rateComponent("rl", "3")},
			wantErr: []string{"component rl: defined twice"}},
		{name: "bad caller limits", spec: "callerRateLimits:\n  policies:\n  - {appId: 'spiffe://public/ns/default/a', requestsPerSecond: -1}",
			wantErr: []string{"spec.callerRateLimits.policies[0].appId", "callerRateLimits.policies[0].requestsPerSecond: -1: must be greater than 0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := limitsConfig(t, tt.spec, tt.resources...)
			s, err := compile(cfg, "a")
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatal("accepted")
				}
				for _, w := range tt.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error lacks %q:\n%v", w, err)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.api, names(s.limits.api)); d != "" {
				t.Errorf("httpPipeline (-want +got)\n%s", d)
			}
			if d := cmp.Diff(tt.app, names(s.limits.app)); d != "" {
				t.Errorf("appHttpPipeline (-want +got)\n%s", d)
			}
			if got := s.limits.callers != nil; got != tt.callers {
				t.Errorf("caller limits compiled: %v, want %v", got, tt.callers)
			}
		})
	}
}

// TestComponentSharedByPipelines: a component both pipelines name is one
// set of buckets, as Dapr builds a component's handler once.
func TestComponentSharedByPipelines(t *testing.T) {
	cfg := limitsConfig(t, "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}\nappHttpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}", rateComponent("rl", "2"))
	s, err := compile(cfg, "a")
	if err != nil {
		t.Fatal(err)
	}
	if s.limits.api[0] != s.limits.app[0] {
		t.Error("two limits for one component")
	}
	want := []metadataComponent{{Name: "rl", Type: "middleware.http.ratelimit", Version: "v1", Capabilities: []string{}}}
	if d := cmp.Diff(want, s.limits.components); d != "" {
		t.Errorf("metadata components (-want +got)\n%s", d)
	}
}

// apiRequest is a request to the API port from addr.
func apiRequest(path, addr string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:3500"+path, nil)
	r.RemoteAddr = addr
	return r
}

// TestHTTPPipelineRefusesBeyondTheRate: spec.httpPipeline's limit counts
// requests per client address (not its X-Forwarded-For), answers 429 with
// RATE_LIMITED, Retry-After and tollbooth's headers, counts the refusal,
// and leaves the health endpoints alone.
func TestHTTPPipelineRefusesBeyondTheRate(t *testing.T) {
	s := newMetricsSidecar(t, "")
	// 0.01 requests a second, burst 1: one request, then none for 100 s.
	if err := s.Apply(limitsConfig(t, "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}", rateComponent("rl", `"0.01"`))); err != nil {
		t.Fatal(err)
	}
	serve := func(r *http.Request) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		s.apiHandler.ServeHTTP(w, r)
		return w
	}
	if w := serve(apiRequest("/v1.0/metadata", "10.0.0.1:1000")); w.Code != http.StatusOK {
		t.Fatalf("first request: %d %s", w.Code, w.Body)
	}
	r := apiRequest("/v1.0/metadata", "10.0.0.1:1001") // another connection of the same client
	r.Header.Set("X-Forwarded-For", "192.0.2.7")       // believed by Dapr, not here
	w := serve(r)
	if w.Code != http.StatusTooManyRequests {
		t.Fatalf("second request: %d %s, want 429", w.Code, w.Body)
	}
	var body errorBody
	if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
		t.Fatal(err)
	}
	if body.ErrorCode != codeTooManyRequests || body.Message != msgRateLimited || len(body.Details) != 1 ||
		body.Details[0].Reason != ReasonRateLimited || body.Details[0].Metadata["component"] != "rl" {
		t.Errorf("refusal body: %+v", body)
	}
	for h, want := range map[string]string{"Retry-After": "100", "X-Rate-Limit-Limit": "0.01", "RateLimit-Limit": "0", "RateLimit-Remaining": "0", "Content-Type": "application/json"} {
		if got := w.Header().Get(h); got != want {
			t.Errorf("%s = %q, want %q", h, got, want)
		}
	}
	if w := serve(apiRequest("/v1.0/metadata", "10.0.0.2:1000")); w.Code != http.StatusOK {
		t.Errorf("another client: %d, want its own bucket", w.Code)
	}
	for range 5 {
		if w := serve(apiRequest("/v1.0/healthz", "10.0.0.1:1000")); w.Code == http.StatusTooManyRequests {
			t.Fatal("health endpoint rate limited")
		}
	}
	if got := testutil.ToFloat64(s.rateMetrics.refused.WithLabelValues(limiterHTTPPipeline, "rl")); got != 1 {
		t.Errorf("refusals counted: %v, want 1", got)
	}
}

// TestApplyKeepsBucketsOfUnchangedLimits: a reload that leaves a limit as
// it was keeps its buckets (no fresh burst for every client); a changed
// limit starts full; a rejected config changes nothing.
func TestApplyKeepsBucketsOfUnchangedLimits(t *testing.T) {
	s := newMetricsSidecar(t, "")
	pipeline := "httpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}\n"
	apply := func(spec, rps string) error { return s.Apply(limitsConfig(t, spec, rateComponent("rl", rps))) }
	admits := func() bool {
		w := httptest.NewRecorder()
		s.apiHandler.ServeHTTP(w, apiRequest("/v1.0/metadata", "10.0.0.1:1000"))
		return w.Code == http.StatusOK
	}
	if err := apply(pipeline, `"0.01"`); err != nil {
		t.Fatal(err)
	}
	if !admits() || admits() {
		t.Fatal("want one request admitted, then a refusal")
	}
	// Something else changes: the bucket stays empty.
	if err := apply(pipeline+"callerRateLimits:\n  default: {requestsPerSecond: 5}", `"0.01"`); err != nil {
		t.Fatal(err)
	}
	if admits() {
		t.Error("an unchanged limit was given a fresh bucket by a reload")
	}
	// A rejected config: the bucket stays empty too.
	if err := apply(pipeline, "-1"); err == nil {
		t.Fatal("a negative rate was accepted")
	}
	if admits() {
		t.Error("a rejected config changed the limit")
	}
	// The limit changes: a full bucket at the new rate.
	if err := apply(pipeline, `"0.02"`); err != nil {
		t.Fatal(err)
	}
	if !admits() || admits() {
		t.Error("after the rate changed: want one admitted, then a refusal")
	}
}

// peerRequest is a call from caller's sidecar to s's app, with its
// verified identity.
func peerRequest(t *testing.T, s *Sidecar, caller string) *http.Request {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "http://a/orders", nil)
	r.Host = s.self.String()
	r.RemoteAddr = "10.0.0.9:40000"
	if caller != "" {
		u, _ := url.Parse("spiffe://public/ns/default/" + caller)
		cs := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{URIs: []*url.URL{u}}}}
		r = r.WithContext(identity.ContextWithPeer(r.Context(), cs))
		if _, ok := identity.PeerFrom(r.Context()); !ok {
			t.Fatal("no peer in the test request")
		}
	}
	return r
}

// TestCallerLimits: spec.callerRateLimits limits the callers it names,
// each on its own bucket, and the others on the shared default; a refusal
// is a 429 ERR_DIRECT_INVOKE with RATE_LIMITED and Retry-After that never
// reaches the app.
func TestCallerLimits(t *testing.T) {
	s := newMetricsSidecar(t, "callerRateLimits:\n  default: {requestsPerSecond: 0.01, burst: 2}\n  policies:\n  - {appId: batch, requestsPerSecond: 0.01, burst: 3}\n  - {appId: vip, requestsPerSecond: 1000000000}")
	reached := 0
	s.local.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		reached++
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
	admitted := func(caller string, n int) int {
		ok := 0
		for range n {
			w := httptest.NewRecorder()
			s.inbound.ServeHTTP(w, peerRequest(t, s, caller))
			switch w.Code {
			case http.StatusOK:
				ok++
			case http.StatusTooManyRequests:
				var body errorBody
				if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
					t.Fatal(err)
				}
				if body.ErrorCode != codeDirectInvoke || body.Details[0].Reason != ReasonRateLimited || w.Header().Get("Retry-After") != "100" {
					t.Errorf("refusal: %s (Retry-After %q)", w.Body, w.Header().Get("Retry-After"))
				}
			default:
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
		return ok
	}
	for _, tt := range []struct {
		caller string
		n      int
		want   int
	}{
		{"batch", 10, 3}, // its own burst
		{"vip", 10, 10},  // its own, large, limit
		{"other", 1, 1},  // the default, shared: 2 tokens
		{"another", 5, 1},
		{"", 1, 0}, // no verified caller: the default, now empty
	} {
		if got := admitted(tt.caller, tt.n); got != tt.want {
			t.Errorf("%q: %d of %d admitted, want %d", tt.caller, got, tt.n, tt.want)
		}
	}
	if reached != 15 {
		t.Errorf("the app got %d calls, want 15 (refused ones never reach it)", reached)
	}
	for name, want := range map[string]float64{"batch": 7, "vip": 0, "default": 5} {
		if got := testutil.ToFloat64(s.rateMetrics.refused.WithLabelValues(limiterCaller, name)); got != want {
			t.Errorf("refusals of %s counted: %v, want %v", name, got, want)
		}
	}
}

// TestAppPipelineCoversSelfInvocation: spec.appHttpPipeline limits calls
// on their way to the app, self-invocation included.
func TestAppPipelineCoversSelfInvocation(t *testing.T) {
	s := newMetricsSidecar(t, "")
	if err := s.Apply(limitsConfig(t, "appHttpPipeline:\n  handlers:\n  - {name: rl, type: middleware.http.ratelimit}", rateComponent("rl", `"0.01"`))); err != nil {
		t.Fatal(err)
	}
	s.local.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("ok")), Request: r}, nil
	})
	codes := func(r func() *http.Request, handler http.Handler) []int {
		var out []int
		for range 2 {
			w := httptest.NewRecorder()
			handler.ServeHTTP(w, r())
			out = append(out, w.Code)
		}
		return out
	}
	self := func() *http.Request { return apiRequest("/v1.0/invoke/a/method/orders", "127.0.0.1:5000") }
	if d := cmp.Diff([]int{200, 429}, codes(self, s.apiHandler)); d != "" {
		t.Errorf("self-invocation (-want +got)\n%s", d)
	}
	peer := func() *http.Request { return peerRequest(t, s, "b") }
	if d := cmp.Diff([]int{200, 429}, codes(peer, s.inbound)); d != "" {
		t.Errorf("from a peer (-want +got)\n%s", d)
	}
	if got := testutil.ToFloat64(s.rateMetrics.refused.WithLabelValues(limiterAppHTTPPipeline, "rl")); got != 2 {
		t.Errorf("refusals counted: %v, want 2", got)
	}
}

func TestRetryAfter(t *testing.T) {
	for _, tt := range []struct {
		wait string
		want string
	}{{"0s", "1"}, {"1ns", "1"}, {"500ms", "1"}, {"1s", "1"}, {"1.2s", "2"}, {"100s", "100"}} {
		d, _ := time.ParseDuration(tt.wait)
		if got := retryAfter(d); got != tt.want {
			t.Errorf("retryAfter(%s) = %s, want %s", tt.wait, got, tt.want)
		}
	}
}
