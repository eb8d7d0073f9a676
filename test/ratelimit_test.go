package test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Issue 14 point 2: rate limits compatible with Dapr (a
// middleware.http.ratelimit component named in a Configuration's
// httpPipeline or appHttpPipeline) and Skein's per-caller limits on the
// callee side (spec.callerRateLimits), answering 429 RATE_LIMITED and
// hot-reloaded. Rates are chosen so that counts decide, not timing: 0.001
// requests a second refills one token in 1,000 s, longer than any test.

// rateLimitComponent is Dapr's documented component, at rps.
func rateLimitComponent(name, rps string) string {
	return `apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: ` + name + `
spec:
  type: middleware.http.ratelimit
  version: v1
  metadata:
  - name: maxRequestsPerSecond
    value: ` + rps + "\n"
}

// pipelineConfig is a Configuration whose field (httpPipeline or
// appHttpPipeline) names component, as Dapr's docs write it.
func pipelineConfig(field, component string) string {
	return `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: appconfig
spec:
  ` + field + `:
    handlers:
    - name: ` + component + `
      type: middleware.http.ratelimit
`
}

// writeAtomically replaces file's content as editors do (write beside,
// rename), so the watcher never reads half a file.
func writeAtomically(t *testing.T, file, body string) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// reload writes file and waits until s has applied (or, with rejected,
// rejected) a configuration change.
func reload(t *testing.T, s *sidecar, file, body string, rejected bool) {
	t.Helper()
	result := `result="applied"`
	if rejected {
		result = `result="rejected"`
	}
	before := s.metric(t, "skein_config_reloads_total", result)
	writeAtomically(t, file, body)
	waitFor(t, 10*time.Second, "the reload to be "+result, func() bool {
		return s.metric(t, "skein_config_reloads_total", result) > before
	})
}

// limitedCalls makes n invocations of target's echo through s and returns
// how many succeeded; every other answer must be a 429 with reason
// RATE_LIMITED, errorCode code and a Retry-After of at least one second.
func limitedCalls(t *testing.T, s *sidecar, target string, n int, code string) (ok int) {
	t.Helper()
	for i := range n {
		resp, b := do(t, newRequest(t, http.MethodGet, s.invokeURL(target, "echo"), nil))
		switch resp.StatusCode {
		case http.StatusOK:
			ok++
		case http.StatusTooManyRequests:
			e := decodeError(t, resp, b)
			if e.reason() != "RATE_LIMITED" || e.ErrorCode != code {
				t.Errorf("call %d: 429 with %s/%s, want %s/RATE_LIMITED: %s", i+1, e.ErrorCode, e.reason(), code, b)
			}
			if ra, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || ra < 1 {
				t.Errorf("call %d: Retry-After %q, want whole seconds >= 1", i+1, resp.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("call %d: status %d, want 200 or 429: %s", i+1, resp.StatusCode, b)
		}
	}
	return ok
}

// TestRateLimitMiddleware: Dapr's middleware.http.ratelimit named in the
// caller's httpPipeline limits the app's requests to its sidecar's API:
// at 2 a second (burst 2, as Dapr's), a run of calls gets at most
// 2 + 2 × its duration through, the rest 429 RATE_LIMITED that never leave
// the sidecar; health endpoints are not limited; a reload to another rate
// applies at once with a fresh bucket; a bad rate is rejected with a clear
// error and the last good limit keeps applying.
func TestRateLimitMiddleware(t *testing.T) {
	m := newMesh(t)
	bPort, _ := m.app("b")
	m.sidecar("app-b", bPort)
	dir := t.TempDir()
	resources := filepath.Join(dir, "components")
	if err := os.Mkdir(resources, 0o700); err != nil {
		t.Fatal(err)
	}
	component := writeFile(t, resources, "ratelimit.yaml", rateLimitComponent("ratelimit", "2"))
	cfg := writeFile(t, dir, "config.yaml", pipelineConfig("httpPipeline", "ratelimit"))
	a := m.sidecar("app-a", 0, "--config", cfg, "--resources-path", resources)

	t.Run("beyond the rate", func(t *testing.T) {
		const n = 40
		start := time.Now()
		ok := limitedCalls(t, a, "app-b", n, "ERR_TOO_MANY_REQUESTS")
		elapsed := time.Since(start)
		most := 2 + int(2*elapsed.Seconds()) // the burst, then 2 a second
		t.Logf("%d of %d admitted in %s", ok, n, elapsed)
		if ok < 2 || ok > most {
			t.Errorf("%d of %d calls admitted in %s, want 2 to %d", ok, n, elapsed, most)
		}
		if got := appRequests(t, bPort); got != ok {
			t.Errorf("app-b served %d requests, want %d (refused calls never leave app-a's sidecar)", got, ok)
		}
		if got := a.metric(t, "skein_ratelimit_refused_total", `limiter="http_pipeline"`, `name="ratelimit"`); got != float64(n-ok) {
			t.Errorf("skein_ratelimit_refused_total = %v, want %d", got, n-ok)
		}
		if got := a.metric(t, "dapr_http_server_request_count", `status="429"`); got != float64(n-ok) {
			t.Errorf("dapr_http_server_request_count{status=429} = %v, want %d (refusals are API requests too)", got, n-ok)
		}
		for range 10 {
			resp, _ := do(t, newRequest(t, http.MethodGet, a.url("/v1.0/healthz"), nil))
			if resp.StatusCode != http.StatusNoContent {
				t.Fatalf("healthz: %d, want 204 (health endpoints are not limited)", resp.StatusCode)
			}
		}
	})

	t.Run("hot reload to another rate", func(t *testing.T) {
		reload(t, a, component, rateLimitComponent("ratelimit", `"0.001"`), false) // burst 1
		if ok := limitedCalls(t, a, "app-b", 5, "ERR_TOO_MANY_REQUESTS"); ok != 1 {
			t.Errorf("after the reload %d of 5 calls admitted, want 1 (a fresh bucket of 1 at the new rate)", ok)
		}
	})

	t.Run("bad rate rejected, last good applies", func(t *testing.T) {
		reload(t, a, component, rateLimitComponent("ratelimit", "-1"), true)
		if !strings.Contains(a.out.String(), "metadata property maxRequestsPerSecond must be a positive value") {
			t.Errorf("the rejection does not say why:\n%s", a.out)
		}
		if ok := limitedCalls(t, a, "app-b", 3, "ERR_TOO_MANY_REQUESTS"); ok != 0 {
			t.Errorf("after the rejected change %d of 3 calls admitted, want 0 (the 0.001/s bucket, still empty)", ok)
		}
	})
}

// TestAppHTTPPipeline: a ratelimit component in the callee's
// appHttpPipeline limits calls on their way to its app, from other
// sidecars and from the app itself (self-invocation), as Dapr's HTTP app
// channel does; /v1.0/metadata lists the component as daprd does.
func TestAppHTTPPipeline(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	writeFile(t, dir, "ratelimit.yaml", rateLimitComponent("applimit", `"0.001"`))
	cfg := writeFile(t, t.TempDir(), "config.yaml", pipelineConfig("appHttpPipeline", "applimit"))
	bPort, _ := m.app("b")
	b := m.sidecar("app-b", bPort, "--config", cfg, "--resources-path", dir)
	a := m.sidecar("app-a", 0)

	// Every call reaches app-b's sidecar from 127.0.0.1: one client, one
	// token.
	if ok := limitedCalls(t, a, "app-b", 4, "ERR_TOO_MANY_REQUESTS"); ok != 1 {
		t.Errorf("%d of 4 calls from app-a admitted, want 1", ok)
	}
	if ok := limitedCalls(t, b, "app-b", 2, "ERR_TOO_MANY_REQUESTS"); ok != 0 {
		t.Errorf("%d of 2 self-invocations admitted, want 0", ok)
	}
	if got := appRequests(t, bPort); got != 1 {
		t.Errorf("app-b served %d requests, want 1", got)
	}
	if got := b.metric(t, "skein_ratelimit_refused_total", `limiter="app_http_pipeline"`, `name="applimit"`); got != 5 {
		t.Errorf("skein_ratelimit_refused_total = %v, want 5", got)
	}
	comps := fmt.Sprint(b.metadata(t)["components"])
	if want := "map[capabilities:[] name:applimit type:middleware.http.ratelimit version:v1]"; !strings.Contains(comps, want) {
		t.Errorf("metadata components = %s, want %s", comps, want)
	}
}

// callerLimits is app-c's Configuration: callerRateLimits with the given
// policies (and default, "" for none).
func callerLimits(def, policies string) string {
	s := `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee
spec:
  callerRateLimits:
`
	if def != "" {
		s += "    default: " + def + "\n"
	}
	return s + "    policies:\n" + policies
}

// TestCallerRateLimits: Skein's per-caller limits on the callee side. The
// caller a policy names is limited (by its SPIFFE identity), a caller it
// does not name is not; refusals are 429 RATE_LIMITED from the callee that
// app-a's sidecar hands to its app without holding them against the
// instance (no breaker opens, no ejection); reloads change limits at once
// and keep the buckets of unchanged ones; a bad policy is rejected with a
// clear error and the last good limits keep applying.
func TestCallerRateLimits(t *testing.T) {
	m := newMesh(t)
	cPort, _ := m.app("c")
	cfg := writeFile(t, t.TempDir(), "config.yaml", callerLimits("",
		"    - {appId: app-a, requestsPerSecond: 0.001, burst: 3}\n"))
	c := m.sidecar("app-c", cPort, "--config", cfg)
	// app-a's breaker on app-c would open after 3 failures: refusals must not count.
	res := t.TempDir()
	writeFile(t, res, "resiliency.yaml", `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    circuitBreakers:
      cb: {maxRequests: 1, interval: 0, timeout: 60s, trip: consecutiveFailures >= 3}
  targets:
    apps:
      app-c: {circuitBreaker: cb}
`)
	a := m.sidecar("app-a", 0, "--resources-path", res)
	b := m.sidecar("app-b", 0)

	t.Run("named caller limited, other not", func(t *testing.T) {
		if ok := limitedCalls(t, a, "app-c", 10, "ERR_DIRECT_INVOKE"); ok != 3 {
			t.Errorf("app-a: %d of 10 calls admitted, want 3 (its burst)", ok)
		}
		if ok := limitedCalls(t, b, "app-c", 10, "ERR_DIRECT_INVOKE"); ok != 10 {
			t.Errorf("app-b: %d of 10 calls admitted, want all (no policy names it)", ok)
		}
		resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("app-c", "echo"), nil))
		if resp.StatusCode != http.StatusTooManyRequests || !strings.Contains(string(body), "calls from spiffe://public/ns/default/app-a exceed 0.001 requests per second") {
			t.Errorf("refusal %d does not name the caller and its limit: %s", resp.StatusCode, body)
		}
		if got := appRequests(t, cPort); got != 13 {
			t.Errorf("app-c served %d requests, want 13", got)
		}
		if got := c.metric(t, "skein_ratelimit_refused_total", `limiter="caller"`, `name="app-a"`); got != 8 {
			t.Errorf("skein_ratelimit_refused_total{caller,app-a} = %v, want 8", got)
		}
		if got := a.metric(t, "skein_discovery_ejections_total"); got != 0 {
			t.Errorf("app-a ejected app-c %v times for its refusals", got)
		}
	})

	t.Run("hot reload: unchanged limit keeps its bucket, new default applies", func(t *testing.T) {
		reload(t, c, cfg, callerLimits("{requestsPerSecond: 0.001, burst: 2}",
			"    - {appId: app-a, requestsPerSecond: 0.001, burst: 3}\n"), false)
		if ok := limitedCalls(t, a, "app-c", 3, "ERR_DIRECT_INVOKE"); ok != 0 {
			t.Errorf("app-a: %d of 3 admitted, want 0 (its limit did not change, nor its empty bucket)", ok)
		}
		if ok := limitedCalls(t, b, "app-c", 5, "ERR_DIRECT_INVOKE"); ok != 2 {
			t.Errorf("app-b: %d of 5 admitted, want 2 (the new default's burst)", ok)
		}
	})

	t.Run("hot reload: changed limit applies", func(t *testing.T) {
		reload(t, c, cfg, callerLimits("", "    - {appId: app-a, requestsPerSecond: 0.001, burst: 1}\n"), false)
		if ok := limitedCalls(t, a, "app-c", 3, "ERR_DIRECT_INVOKE"); ok != 1 {
			t.Errorf("app-a: %d of 3 admitted, want 1 (a fresh bucket of the new burst)", ok)
		}
		if ok := limitedCalls(t, b, "app-c", 5, "ERR_DIRECT_INVOKE"); ok != 5 {
			t.Errorf("app-b: %d of 5 admitted, want all (the default is gone)", ok)
		}
	})

	t.Run("bad policy rejected, last good applies", func(t *testing.T) {
		reload(t, c, cfg, callerLimits("", "    - {appId: app-a, requestsPerSecond: -5}\n    - {appId: spiffe://public/ns/default/app-b, requestsPerSecond: 1}\n"), true)
		for _, want := range []string{
			"callerRateLimits.policies[0].requestsPerSecond: -5: must be greater than 0",
			`callerRateLimits.policies[1].appId: \"spiffe://public/ns/default/app-b\": an app id, not a SPIFFE ID`, // quoted in the log line
		} {
			if !strings.Contains(c.out.String(), want) {
				t.Errorf("the rejection does not say %q:\n%s", want, c.out)
			}
		}
		if ok := limitedCalls(t, a, "app-c", 3, "ERR_DIRECT_INVOKE"); ok != 0 {
			t.Errorf("app-a: %d of 3 admitted, want 0 (the last good limit, its bucket empty)", ok)
		}
		if ok := limitedCalls(t, b, "app-c", 3, "ERR_DIRECT_INVOKE"); ok != 3 {
			t.Errorf("app-b: %d of 3 admitted, want all", ok)
		}
	})
	// All along, app-a's breaker stayed closed: every refusal above was
	// app-c's 429, never app-a's CIRCUIT_OPEN (limitedCalls checks each).
	if got := a.metric(t, "dapr_resiliency_cb_state", `status="open"`); got != 0 {
		t.Errorf("app-a's breaker on app-c is open: %v", got)
	}
}

// TestCallerRateLimitsGRPCProxy: a proxied gRPC call over the per-caller
// limit gets RESOURCE_EXHAUSTED with reason RATE_LIMITED, and the caller's
// breaker (open after 2 failures) does not count it: every refusal stays
// the callee's, never the caller's open circuit.
func TestCallerRateLimitsGRPCProxy(t *testing.T) {
	m := newMesh(t)
	cfg := writeFile(t, t.TempDir(), "config.yaml", callerLimits("", "    - {appId: app-a, requestsPerSecond: 0.001, burst: 1}\n"))
	m.sidecar("app-g", m.grpcApp("g"), "--app-protocol", "grpc", "--config", cfg)
	res := t.TempDir()
	writeFile(t, res, "resiliency.yaml", `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    circuitBreakers:
      cb: {maxRequests: 1, interval: 0, timeout: 60s, trip: consecutiveFailures >= 2}
  targets:
    apps:
      app-g: {circuitBreaker: cb}
`)
	a := m.sidecar("app-a", 0, "--resources-path", res)
	tc := testgrpc.NewTestServiceClient(grpcConn(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "dapr-app-id", "app-g")
	if _, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{}); err != nil {
		t.Fatalf("first call: %v", err)
	}
	for i := range 4 {
		_, err := tc.UnaryCall(ctx, &testgrpc.SimpleRequest{})
		st := status.Convert(err)
		reason := ""
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				reason = info.Reason
			}
		}
		if st.Code() != codes.ResourceExhausted || reason != "RATE_LIMITED" {
			t.Errorf("call %d: %v (reason %q), want ResourceExhausted RATE_LIMITED", i+2, err, reason)
		}
	}
}
