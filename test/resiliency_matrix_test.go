package test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The resiliency matrix: every matching case of contract §5.4 and every
// row of §5.8 (but retrymatchinggrpc, which needs the gRPC proxy Skein does
// not serve yet) against one real test app that counts its calls per test
// (X-Count-Key, read back from /count). Each policy gets a target app id of
// its own, every id a sidecar in front of the same app, so the subtests run
// in parallel without sharing a breaker or a retry budget.

// rhCases are Dapr's resiliency/apps/retry/http.go: maxRetries 2 and a
// matching list; a retried status costs 3 calls, any other one call.
var rhCases = []struct {
	target, codes       string
	retried, notRetried []int
}{
	{"rh-empty", "", []int{500}, nil},
	{"rh-200", "200", nil, []int{200}},
	{"rh-500", "500", []int{500}, nil},
	{"rh-400-500", "400,500", []int{400, 500}, nil},
	{"rh-200-320", "200-320", nil, []int{201, 301}},
	{"rh-400-550", "400-550", []int{404, 501}, nil},
	{"rh-mixed", "200,400-500,501", []int{400, 401, 420, 500, 501}, []int{200, 301, 399, 502}},
}

// matrixRes is the Resiliency resource of the "mx" callers. Retry
// intervals keep each target within its retry budget (10 retries at once,
// 10 more a second): budgets are tested by TestRetryBudget, not here.
func matrixRes() string {
	var b strings.Builder
	b.WriteString(`apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: matrix
spec:
  policies:
    timeouts:
      fast: 500ms
    retries:
      matchingHTTP:
        policy: constant
        duration: 100ms
        maxRetries: 3
        matching:
          httpStatusCodes: "100,101,102,200,304,403,505,501-503,509,546,547"
      noRetryStreaming:
        policy: constant
        duration: 1ms
        maxRetries: 3
      recovery:
        policy: constant
        duration: 10ms
        maxRetries: 5
      fiveRetriesWithMatch:
        policy: constant
        duration: 10ms
        maxRetries: 5
        matching:
          httpStatusCodes: "500"
          gRPCStatusCodes: "2"
`)
	for _, c := range rhCases {
		fmt.Fprintf(&b, "      %s:\n        policy: constant\n        duration: 20ms\n        maxRetries: 2\n        matching:\n          httpStatusCodes: %q\n", c.target, c.codes)
	}
	b.WriteString(`    circuitBreakers:
      streamingCB:
        maxRequests: 1
        interval: 0
        timeout: 60s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      rmh:
        retry: matchingHTTP
      nr:
        retry: noRetryStreaming
      rec:
        retry: recovery
      scb:
        circuitBreaker: streamingCB
      e2e:
        timeout: fast
        retry: fiveRetriesWithMatch
`)
	for _, c := range rhCases {
		fmt.Fprintf(&b, "      %s:\n        retry: %s\n", c.target, c.target)
	}
	return b.String()
}

// defaultsRes is apps/defaultretry.go and apps/defaulttimeout.go.
const defaultsRes = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: defaults
spec:
  policies:
    timeouts:
      DefaultAppTimeoutPolicy: 30s
    retries:
      DefaultAppRetryPolicy:
        policy: constant
        duration: 100ms
        maxRetries: 3
`

// defaultCBRes is apps/defaultcircuitbreaker.go, with a 2 s timeout
// instead of 5 s.
const defaultCBRes = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: dcb
spec:
  policies:
    circuitBreakers:
      DefaultAppCircuitBreakerPolicy:
        maxRequests: 1
        interval: 0
        timeout: 2s
        trip: consecutiveFailures >= 3
`

// cbStateRes is metrics/resiliencycbstate.go.
const cbStateRes = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: cbstate
spec:
  policies:
    circuitBreakers:
      cb:
        maxRequests: 1
        interval: 0
        timeout: 1s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      server:
        circuitBreaker: cb
`

// resDir writes a Resiliency resource into a new directory for
// --resources-path.
func resDir(t *testing.T, res string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "res.yaml"), []byte(res), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// countedReq is a call through s to target's method that the test app
// counts under key; hdr are header name, value pairs.
func countedReq(t *testing.T, s *sidecar, verb, target, method, key string, body io.Reader, hdr ...string) *http.Request {
	t.Helper()
	req := newRequest(t, verb, s.invokeURL(target, method), body)
	req.Header.Set("X-Count-Key", key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	return req
}

// chunked makes req's body of unknown length, so it is sent chunked.
func chunked(req *http.Request, body []byte) *http.Request {
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.GetBody = nil
	req.ContentLength = -1
	return req
}

// appCount reads how many requests the test app on port received under key.
func appCount(t *testing.T, port int, key string) int {
	t.Helper()
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/count?key=" + url.QueryEscape(key))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.Atoi(string(b))
	if err != nil {
		t.Fatalf("count: %q", b)
	}
	return n
}

// wantBody checks that an echo (or flaky) answer saw exactly body.
func wantBody(t *testing.T, b []byte, body []byte) {
	t.Helper()
	e := decodeEcho(t, b)
	sum := sha256.Sum256(body)
	if e.BodyLen != int64(len(body)) || e.BodyHash != hex.EncodeToString(sum[:]) {
		t.Errorf("the app got %d bytes (sha256 %.12s), want the %d sent (%.12x)", e.BodyLen, e.BodyHash, len(body), sum)
	}
}

// TestResiliencyMatrix covers resiliency point 1's tested behaviours:
// contract §5.4's matching cases and §5.8's rows, each with the app's call
// count, plus point 2's replay bound with retry policies.
func TestResiliencyMatrix(t *testing.T) {
	t.Parallel()
	m := newMesh(t)
	appPort, _ := m.app("t")
	var all []*sidecar
	for _, id := range []string{"rmh", "nr", "rec", "scb", "e2e", "server"} {
		all = append(all, m.sidecarNoWait(id, appPort))
	}
	for _, c := range rhCases {
		all = append(all, m.sidecarNoWait(c.target, appPort))
	}
	mxDir := resDir(t, matrixRes())
	mx := m.sidecarNoWait("mx", 0, "--resources-path", mxDir)
	mxSmall := m.sidecarNoWait("mx-small", 0, "--resources-path", mxDir, "--max-replay-body-size", "64Ki")
	dflt := m.sidecarNoWait("dflt", 0, "--resources-path", resDir(t, defaultsRes))
	dcb := m.sidecarNoWait("dcb", 0, "--resources-path", resDir(t, defaultCBRes))
	cbs := m.sidecarNoWait("cbs", 0, "--resources-path", resDir(t, cbStateRes))
	for _, s := range append(all, mx, mxSmall, dflt, dcb, cbs) {
		s.waitReady(t)
	}

	// status calls target's echo endpoint through s, the app answering
	// status, and returns the status the caller got and the app's calls.
	status := func(t *testing.T, s *sidecar, target string, code int) (int, int) {
		t.Helper()
		key := t.Name() + "/" + strconv.Itoa(code)
		resp, b := do(t, countedReq(t, s, http.MethodGet, target, "echo", key, nil, "X-Echo-Status", strconv.Itoa(code)))
		if resp.StatusCode == code && code >= 200 && code != 204 && code != 304 {
			decodeEcho(t, b) // the app's own answer, not a sidecar error
		}
		return resp.StatusCode, appCount(t, appPort, key)
	}

	t.Run("5.4 retry/http.go", func(t *testing.T) {
		t.Parallel()
		for _, c := range rhCases {
			t.Run(fmt.Sprintf("codes %q", c.codes), func(t *testing.T) {
				t.Parallel()
				for _, tt := range []struct {
					codes []int
					calls int
				}{{c.retried, 3}, {c.notRetried, 1}} {
					for _, code := range tt.codes {
						got, calls := status(t, mx, c.target, code)
						if got != code || calls != tt.calls {
							t.Errorf("app answers %d: caller got %d after %d app calls, want %d after %d", code, got, calls, code, tt.calls)
						}
					}
				}
			})
		}
	})

	t.Run("5.4 retrymatchinghttp.go", func(t *testing.T) {
		t.Parallel()
		// 101 is left out: Go's HTTP client (the callee sidecar's app
		// channel) refuses a 101 to a request that asked for no upgrade
		// ("101 switching protocols response with non-writable body"), so
		// the caller gets a sidecar 500 after one call where Dapr retries.
		// 100 and 102 are informational: the app's final answer is 200.
		for _, tt := range []struct{ code, want, calls int }{
			{100, 200, 1}, {102, 200, 1},
			{200, 200, 1}, {204, 204, 1}, {304, 304, 1}, {404, 404, 1}, {504, 504, 1}, {548, 548, 1},
			{403, 403, 4}, {501, 501, 4}, {502, 502, 4}, {503, 503, 4}, {505, 505, 4}, {509, 509, 4}, {546, 546, 4}, {547, 547, 4},
		} {
			got, calls := status(t, mx, "rmh", tt.code)
			if got != tt.want || calls != tt.calls {
				t.Errorf("app answers %d: caller got %d after %d app calls, want %d after %d", tt.code, got, calls, tt.want, tt.calls)
			}
		}
	})

	t.Run("5.8 defaulttimeout and defaultretry", func(t *testing.T) {
		t.Parallel()
		timeouts := func(t *testing.T) float64 {
			return dflt.metric(t, "dapr_resiliency_count", `policy="timeout"`, `target="app_server"`, `name="defaults"`)
		}
		t.Run("defaulttimeout: a normal call succeeds under the 30s default", func(t *testing.T) {
			before := timeouts(t)
			if got, calls := status(t, dflt, "server", 200); got != 200 || calls != 1 {
				t.Errorf("got %d after %d calls", got, calls)
			}
			if n := timeouts(t) - before; n != 1 {
				t.Errorf("DefaultAppTimeoutPolicy applied to %v attempts, want 1", n)
			}
		})
		t.Run("defaultretry: 200 once", func(t *testing.T) {
			if got, calls := status(t, dflt, "server", 200); got != 200 || calls != 1 {
				t.Errorf("got %d after %d calls, want 200 after 1", got, calls)
			}
		})
		t.Run("defaultretry: 400 four times, the app's answer returned", func(t *testing.T) {
			retries := dflt.metric(t, "dapr_resiliency_activations_total", `policy="retry"`, `target="app_server"`)
			key := t.Name()
			resp, b := do(t, countedReq(t, dflt, http.MethodPost, "server", "orders", key, strings.NewReader("order"),
				"X-Echo-Status", "400", "X-Echo-Header", "X-App-Said: no"))
			if resp.StatusCode != 400 || resp.Header.Get("X-App-Said") != "no" {
				t.Errorf("got %d, X-App-Said %q; want the app's 400 with its header", resp.StatusCode, resp.Header.Get("X-App-Said"))
			}
			if e := decodeEcho(t, b); e.Path != "/orders" || e.Method != http.MethodPost {
				t.Errorf("body is not the app's: %s", b)
			}
			wantBody(t, b, []byte("order"))
			if n := appCount(t, appPort, key); n != 4 {
				t.Errorf("%d app calls, want 4", n)
			}
			if n := dflt.metric(t, "dapr_resiliency_activations_total", `policy="retry"`, `target="app_server"`) - retries; n != 3 {
				t.Errorf("retry activations %v, want 3", n)
			}
		})
	})

	t.Run("5.8 defaultcircuitbreaker", func(t *testing.T) {
		t.Parallel()
		testBreakerOpensAndCloses(t, dcb, appPort, 2*time.Second, "dcb")
	})

	t.Run("5.8 resiliencycbstate", func(t *testing.T) {
		t.Parallel()
		testBreakerOpensAndCloses(t, cbs, appPort, time.Second, "cbstate")
	})

	t.Run("5.8 streaming/resiliencynoretry", func(t *testing.T) {
		t.Parallel()
		body := []byte("a body of some length")
		key := t.Name() + "/chunked"
		resp, b := do(t, chunked(countedReq(t, mx, http.MethodPost, "nr", "echo", key, nil, "X-Echo-Status", "500"), body))
		if resp.StatusCode != 500 {
			t.Errorf("chunked: status %d", resp.StatusCode)
		}
		wantBody(t, b, body)
		if n := appCount(t, appPort, key); n != 1 {
			t.Errorf("chunked request: %d app calls, want 1 (never retried)", n)
		}
		key = t.Name() + "/fixed"
		resp, b = do(t, countedReq(t, mx, http.MethodPost, "nr", "echo", key, bytes.NewReader(body), "X-Echo-Status", "500"))
		if resp.StatusCode != 500 {
			t.Errorf("fixed-length: status %d", resp.StatusCode)
		}
		wantBody(t, b, body)
		if n := appCount(t, appPort, key); n != 4 {
			t.Errorf("fixed-length request: %d app calls, want 4", n)
		}
	})

	t.Run("5.8 streaming/resiliencyrecovery", func(t *testing.T) {
		t.Parallel()
		body := bytes.Repeat([]byte("replay me "), 1000)
		key := t.Name()
		resp, b := do(t, countedReq(t, mx, http.MethodPost, "rec", "flaky?fail=3", key, bytes.NewReader(body)))
		if resp.StatusCode != 200 {
			t.Errorf("status %d: %s", resp.StatusCode, b)
		}
		wantBody(t, b, body)
		if n := appCount(t, appPort, key); n != 4 {
			t.Errorf("%d app calls, want 4 (3 failures, then success)", n)
		}
	})

	t.Run("5.8 streaming/circuitbreaker", func(t *testing.T) {
		t.Parallel()
		key := t.Name()
		for i := range 3 {
			resp, b := do(t, chunked(countedReq(t, mx, http.MethodPost, "scb", "stream", key, nil, "X-Echo-Status", "500"), []byte("chunk")))
			if resp.StatusCode != 500 {
				t.Fatalf("chunked call %d: %d %s", i+1, resp.StatusCode, b)
			}
			decodeEcho(t, b)
		}
		if n := appCount(t, appPort, key); n != 3 {
			t.Errorf("%d app calls for 3 chunked requests, want 3", n)
		}
		resp, b := do(t, chunked(countedReq(t, mx, http.MethodPost, "scb", "stream", key, nil, "X-Echo-Status", "500"), []byte("chunk")))
		if e := decodeError(t, resp, b); resp.StatusCode != 500 || e.reason() != "CIRCUIT_OPEN" {
			t.Errorf("4th call: %d %s, want 500 CIRCUIT_OPEN", resp.StatusCode, b)
		}
		if n := appCount(t, appPort, key); n != 3 {
			t.Errorf("the open breaker let the 4th call reach the app (%d calls)", n)
		}
	})

	t.Run("5.8 e2e TestServiceInvocationResiliency", func(t *testing.T) {
		t.Parallel()
		// One target, one retry budget: the cases run in turn.
		for _, tt := range []struct {
			name, method string
			want, calls  int
		}{
			{"recovers after 3 failures", "flaky?fail=3", 200, 4},
			{"10 failures exhaust 5 retries", "flaky?fail=10", 500, 6},
			{"404 is not in the matching list", "flaky?fail=10&status=404", 404, 1},
			{"2 s answers time out, retries recover once the app is fast", "flaky?fail=2&status=200&sleep=2s", 200, 3},
		} {
			t.Run(tt.name, func(t *testing.T) {
				resp, b := do(t, countedReq(t, mx, http.MethodGet, "e2e", tt.method, t.Name(), nil))
				if resp.StatusCode != tt.want {
					t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.want, b)
				} else {
					decodeEcho(t, b)
				}
				if n := appCount(t, appPort, t.Name()); n != tt.calls {
					t.Errorf("%d app calls, want %d", n, tt.calls)
				}
			})
		}
		t.Run("unknown app", func(t *testing.T) {
			resp, b := do(t, countedReq(t, mx, http.MethodGet, "no-such-app", "flaky?fail=3", t.Name(), nil))
			checkInvokeError(t, resp, b, 500, "APP_NOT_FOUND", "failed to invoke, id: no-such-app, err: ")
			if n := appCount(t, appPort, t.Name()); n != 0 {
				t.Errorf("%d app calls, want 0", n)
			}
		})
	})

	// Point 2: a retry policy replays fixed-length bodies up to
	// --max-replay-body-size (default 1Mi); a larger one is sent once.
	t.Run("replay bound", func(t *testing.T) {
		t.Parallel()
		for _, tt := range []struct {
			name   string
			caller *sidecar
			size   int
			calls  int
		}{
			{"default 1Mi: 1Mi replayed", mx, 1 << 20, 4},
			{"default 1Mi: 1Mi+1 sent once", mx, 1<<20 + 1, 1},
			{"64Ki: 64Ki replayed", mxSmall, 64 << 10, 4},
			{"64Ki: 64Ki+1 sent once", mxSmall, 64<<10 + 1, 1},
		} {
			t.Run(tt.name, func(t *testing.T) {
				body := bytes.Repeat([]byte{'r'}, tt.size)
				resp, b := do(t, countedReq(t, tt.caller, http.MethodPut, "nr", "blob", t.Name(), bytes.NewReader(body), "X-Echo-Status", "503"))
				if resp.StatusCode != 503 {
					t.Fatalf("status %d: %.300s", resp.StatusCode, b)
				}
				wantBody(t, b, body)
				if n := appCount(t, appPort, t.Name()); n != tt.calls {
					t.Errorf("%d-byte body: %d app calls, want %d", tt.size, n, tt.calls)
				}
			})
		}
	})
}

// testBreakerOpensAndCloses is apps/defaultcircuitbreaker.go and
// metrics/resiliencycbstate.go: caller's breaker on target "server" (trip
// consecutiveFailures >= 3, maxRequests 1, the given timeout) opens after
// three 500s, fails the 4th call fast without the app, lets one probe
// through after the timeout, and closes on its success; the metrics follow,
// the state gauge flipping as soon as the probe has answered.
func testBreakerOpensAndCloses(t *testing.T, caller *sidecar, appPort int, timeout time.Duration, resource string) {
	key := t.Name()
	call := func(code int) (*http.Response, []byte) {
		t.Helper()
		return do(t, countedReq(t, caller, http.MethodGet, "server", "work", key, nil, "X-Echo-Status", strconv.Itoa(code)))
	}
	metric := func(name, policy, status string) float64 {
		t.Helper()
		return caller.metric(t, name, `target="app_server"`, `name="`+resource+`"`, `policy="`+policy+`"`, `status="`+status+`"`)
	}
	gauge := func() map[string]float64 {
		t.Helper()
		g := map[string]float64{}
		for _, s := range []string{"closed", "half-open", "open", "unknown"} {
			g[s] = metric("dapr_resiliency_cb_state", "circuitbreaker", s)
		}
		return g
	}
	wantGauge := func(when, state string) {
		t.Helper()
		g := gauge()
		for s, v := range g {
			if want := map[bool]float64{true: 1, false: 0}[s == state]; v != want {
				t.Errorf("%s: dapr_resiliency_cb_state{status=%q} = %v, want %v (all: %v)", when, s, v, want, g)
			}
		}
	}

	for i := range 3 {
		if resp, b := call(500); resp.StatusCode != 500 {
			t.Fatalf("failure %d: %d %s", i+1, resp.StatusCode, b)
		}
	}
	opened := time.Now()
	wantGauge("after 3 failures", "open")
	resp, b := call(200)
	if e := decodeError(t, resp, b); resp.StatusCode != 500 || e.reason() != "CIRCUIT_OPEN" || !strings.Contains(e.Message, "circuit breaker is open") {
		t.Errorf("4th call: %d %s, want 500 CIRCUIT_OPEN", resp.StatusCode, b)
	}
	if n := appCount(t, appPort, key); n != 3 {
		t.Errorf("%d app calls after the 4th, want 3: the open breaker must not call the app", n)
	}
	if n := metric("dapr_resiliency_count", "circuitbreaker", "closed"); n != 3 {
		t.Errorf("count{closed} = %v, want 3", n)
	}
	if n := metric("dapr_resiliency_count", "circuitbreaker", "open"); n < 1 {
		t.Errorf("count{open} = %v, want at least 1", n)
	}

	// Calls while open fail fast; the first after the timeout is the probe.
	deadline := time.Now().Add(timeout + 5*time.Second)
	for {
		resp, b := call(200)
		if resp.StatusCode == 200 {
			break
		}
		if e := decodeError(t, resp, b); e.reason() != "CIRCUIT_OPEN" || time.Now().After(deadline) {
			t.Fatalf("waiting for the probe: %d %s", resp.StatusCode, b)
		}
		time.Sleep(timeout / 10)
	}
	if waited := time.Since(opened); waited < timeout*3/4 {
		t.Errorf("a probe was let through %s after opening, before the %s timeout", waited, timeout)
	}
	wantGauge("right after the probe", "closed")
	for _, s := range []string{"open", "half-open", "closed"} {
		if n := metric("dapr_resiliency_activations_total", "circuitbreaker", s); n != 1 {
			t.Errorf("activations_total{status=%q} = %v, want 1", s, n)
		}
	}
	for range 3 {
		if resp, b := call(200); resp.StatusCode != 200 {
			t.Errorf("after closing: %d %s", resp.StatusCode, b)
		}
	}
	if n := appCount(t, appPort, key); n != 7 {
		t.Errorf("%d app calls, want 7 (3 failures, the probe, 3 more)", n)
	}
	if n := metric("dapr_resiliency_count", "circuitbreaker", "closed"); n != 6 {
		t.Errorf("count{closed} = %v, want 6 (attempts while closed)", n)
	}
	if n := metric("dapr_resiliency_count", "circuitbreaker", "half-open"); n != 1 {
		t.Errorf("count{half-open} = %v, want 1 (the probe)", n)
	}
}
