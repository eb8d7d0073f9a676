package test

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// scrape returns a sidecar's metrics exposition, asked for with accept
// ("" for the default text format), from an arbitrary path: daprd serves
// metrics on every path.
func (s *sidecar) scrape(t *testing.T, accept string) string {
	t.Helper()
	req := newRequest(t, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(s.metrics)+"/any/path", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, b := do(t, req)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s", s.appID, resp.Status)
	}
	return string(b)
}

// hasSeries reports whether the exposition has exactly this sample line.
func hasSeries(text, line string) bool {
	return slices.Contains(strings.Split(text, "\n"), line)
}

// daprNameLints are the problems promtool's lint finds in names Dapr
// mandates (contract §6.1-6.2: OpenCensus view names and tags, kept for
// compatibility with Dapr's dashboards): count views are counters without
// _total, four of them end in _count, one latency carries its unit
// abbreviated, and the ACL counters have the label trustDomain. Any other
// problem fails the test.
var daprNameLints = map[string][]string{
	`counter metrics should have "_total" suffix`: {
		"dapr_http_client_completed_count",
		"dapr_http_server_request_count",
		"dapr_http_server_response_count",
		"dapr_resiliency_count",
		"dapr_runtime_component_loaded",
	},
	`non-histogram and non-summary metrics should not have "_count" suffix`: {
		"dapr_http_client_completed_count",
		"dapr_http_server_request_count",
		"dapr_http_server_response_count",
		"dapr_resiliency_count",
	},
	"metric names should not contain abbreviated units": {
		"dapr_runtime_service_invocation_res_recv_latency_ms",
	},
	"label names should be written in 'snake_case' not 'camelCase'": {
		"dapr_runtime_acl_app_policy_action_allowed_total",
		"dapr_runtime_acl_app_policy_action_blocked_total",
		"dapr_runtime_acl_global_policy_action_allowed_total",
		"dapr_runtime_acl_global_policy_action_blocked_total",
	},
}

const metricsConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: observed
spec:
  tracing:
    samplingRate: "1"
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: a
      defaultAction: allow
      trustDomain: public
      namespace: default
`

const metricsResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: res
spec:
  policies:
    retries:
      twice:
        policy: constant
        duration: 10ms
        maxRetries: 2
  targets:
    apps:
      b:
        retry: twice
`

// TestMetricsExposition covers telemetry acceptance point 1 end to end: app
// a calls app b through two real sidecars; both expositions carry Dapr's
// series with the exact names, labels and buckets of contract §6.1-6.2,
// Skein's per-edge series, and pass promtool's checks.
func TestMetricsExposition(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	// Every trace sampled, so latency buckets carry exemplars; b allows a
	// by policy and a retries calls to b, so the access-control and
	// resiliency metrics are in the expositions too.
	cfg, resources := filepath.Join(dir, "config.yaml"), filepath.Join(dir, "resources")
	for f, body := range map[string]string{
		cfg:                                  metricsConfig,
		filepath.Join(resources, "res.yaml"): metricsResiliency,
	} {
		if err := os.MkdirAll(filepath.Dir(f), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	aPort, _ := m.app("a")
	bPort, _ := m.app("b")
	a := m.sidecar("a", aPort, "--config", cfg, "--resources-path", resources)
	b := m.sidecar("b", bPort, "--config", cfg)

	resp, body := do(t, newRequest(t, http.MethodGet, a.invokeURL("b", "hi"), nil))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %s: %s", resp.Status, body)
	}
	resp, body = do(t, newRequest(t, http.MethodPost, a.invokeURL("b", "orders"), strings.NewReader(strings.Repeat("x", 3000))))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("invoke: %s: %s", resp.Status, body)
	}

	caller, callee := a.scrape(t, ""), b.scrape(t, "")
	for _, c := range []struct {
		side, text string
		want       []string
	}{
		{"caller", caller, []string{
			`dapr_http_server_request_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/hi",status="200"} 1`,
			`dapr_http_server_response_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/hi",status="200"} 1`,
			`dapr_http_server_latency_count{app_id="a",method="GET",path="/v1.0/invoke/b/method/hi",status="200"} 1`,
			`dapr_http_server_request_count{app_id="a",method="POST",path="/v1.0/invoke/b/method/orders",status="200"} 1`,
			`dapr_runtime_service_invocation_req_sent_total{app_id="a",dst_app_id="b",type="unary"} 2`,
			`dapr_runtime_service_invocation_res_recv_total{app_id="a",src_app_id="b",status="200",type="unary"} 2`,
			`dapr_runtime_service_invocation_res_recv_latency_ms_count{app_id="a",src_app_id="b",status="200"} 2`,
			`skein_invocation_requests_total{code_class="2xx",dst_app_id="b",src_app_id="a"} 2`,
			`skein_invocation_duration_seconds_count{dst_app_id="b",src_app_id="a"} 2`,
			`dapr_runtime_component_loaded{app_id="a"} 0`,
		}},
		{"callee", callee, []string{
			`dapr_http_client_completed_count{app_id="b",method="GET",path="/hi",status="200"} 1`,
			`dapr_http_client_roundtrip_latency_count{app_id="b",method="GET",path="/hi",status="200"} 1`,
			`dapr_http_client_completed_count{app_id="b",method="POST",path="/orders",status="200"} 1`,
			`dapr_http_client_sent_bytes_bucket{app_id="b",method="POST",path="/orders",le="4096"} 1`,
			`dapr_http_client_sent_bytes_bucket{app_id="b",method="POST",path="/orders",le="2048"} 0`,
			`dapr_runtime_service_invocation_req_recv_total{app_id="b",src_app_id="a"} 2`,
			`dapr_runtime_service_invocation_res_sent_total{app_id="b",dst_app_id="a",status="200"} 2`,
			`dapr_runtime_mtls_init_total{app_id="b"} 1`,
			`dapr_runtime_acl_app_policy_action_allowed_total{app_id="a",namespace="default",trustDomain="public"} 2`,
			`dapr_runtime_component_loaded{app_id="b"} 0`,
		}},
	} {
		for _, w := range c.want {
			if !hasSeries(c.text, w) {
				t.Errorf("%s exposition lacks %s", c.side, w)
			}
		}
	}
	// Request sizes: the 3000-byte POST is the one request between 2 and 4 KiB.
	if d := a.metric(t, "dapr_http_server_request_bytes_bucket", `le="4096"`) - a.metric(t, "dapr_http_server_request_bytes_bucket", `le="2048"`); d != 1 {
		t.Errorf("requests between 2 and 4 KiB = %v, want 1", d)
	}
	// The health checks the harness made are recorded too (contract §6.2).
	if a.metric(t, "dapr_http_server_request_count", `path="/v1.0/healthz"`, `status="204"`) < 1 {
		t.Error("no dapr_http_server_request_count for /v1.0/healthz with status 204")
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds", "dapr_resiliency_count", "dapr_runtime_mtls_init_total", "skein_config_last_applied_timestamp_seconds"} {
		if !strings.Contains(caller, "\n# TYPE "+name+" ") {
			t.Errorf("caller exposition lacks the family %s", name)
		}
	}

	// Buckets: Dapr's latency boundaries (ms) and size boundaries (bytes).
	if got, want := bucketBounds(caller, `dapr_http_server_latency_bucket{app_id="a",method="GET",path="/v1.0/invoke/b/method/hi",status="200",`),
		"1 2 3 4 5 6 8 10 13 16 20 25 30 40 50 65 80 100 130 160 200 250 300 400 500 650 800 1000 2000 5000 10000 20000 50000 100000 +Inf"; got != want {
		t.Errorf("latency buckets = %s, want %s", got, want)
	}
	if got, want := bucketBounds(callee, `dapr_http_client_received_bytes_bucket{app_id="b",`),
		"1024 2048 4096 16384 65536 262144 1.048576e+06 4.194304e+06 1.6777216e+07 6.7108864e+07 2.68435456e+08 1.073741824e+09 4.294967296e+09 +Inf"; got != want {
		t.Errorf("size buckets = %s, want %s", got, want)
	}

	t.Run("promtool", func(t *testing.T) {
		for _, s := range []*sidecar{a, b} {
			problems := promtool(t, s.scrape(t, ""))
			var other []string
			for _, p := range problems {
				name, lint, _ := strings.Cut(p, " ")
				if slices.Contains(daprNameLints[lint], name) {
					continue
				}
				other = append(other, p)
			}
			if len(other) > 0 {
				t.Errorf("promtool check metrics on %s: problems beyond the lints of Dapr's mandated names:\n%s", s.appID, strings.Join(other, "\n"))
			}
			if len(problems) == 0 {
				t.Errorf("promtool reported nothing on %s; expected the _total lint on Dapr's counters (is the exposition empty?)", s.appID)
			}
		}
	})

	t.Run("exemplars", func(t *testing.T) {
		// Awaits tracing: the request context must carry an OTel span.
		om := a.scrape(t, "application/openmetrics-text; version=1.0.0")
		ex := regexp.MustCompile(`(?m)^dapr_http_server_latency_bucket\{[^}]*\} \d+ # \{trace_id="[0-9a-f]{32}"\} `)
		if !ex.MatchString(om) {
			t.Errorf("no trace_id exemplar on a dapr_http_server_latency bucket in the OpenMetrics exposition")
		}
	})
}

// TestMetricsConfiguration covers spec.metrics end to end: low cardinality,
// path matching, excluded verbs and latency buckets on one sidecar, and
// enabled: false on another.
func TestMetricsConfiguration(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	write := func(name, spec string) string {
		p := filepath.Join(dir, name)
		doc := "apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: " + strings.TrimSuffix(name, ".yaml") + "\nspec:\n  metrics:\n" + spec
		if err := os.WriteFile(p, []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	low := write("low.yaml", "    latencyDistributionBuckets: [5, 50, 500, 5000]\n    http:\n      increasedCardinality: false\n      excludeVerbs: true\n      pathMatching: [\"/orders/{id}\"]\n")
	off := write("off.yaml", "    enabled: false\n")
	bPort, _ := m.app("b")
	b := m.sidecar("b", bPort, "--config", low)
	cPort, _ := m.app("c")
	c := m.sidecar("c", cPort, "--config", off)
	for _, u := range []string{b.invokeURL("b", "orders/1"), b.invokeURL("b", "orders/2"), b.invokeURL("b", "other/3"), c.invokeURL("b", "hi")} {
		resp, body := do(t, newRequest(t, http.MethodGet, u, nil))
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s: %s", u, resp.Status, body)
		}
	}
	text := b.scrape(t, "")
	for _, w := range []string{
		`dapr_http_server_request_count{app_id="b",method="",path="/v1.0/invoke/{app_id}/method/orders/{id}",status="200"} 2`,
		`dapr_http_server_request_count{app_id="b",method="",path="",status="200"} 1`,
		`dapr_http_client_completed_count{app_id="b",method="",path="/orders/{id}",status="200"} 2`,
		`dapr_http_client_completed_count{app_id="b",method="",path="",status="200"} 2`, // other/3, and hi from c
		`dapr_runtime_service_invocation_req_recv_total{app_id="b",src_app_id="c"} 1`,
	} {
		if !hasSeries(text, w) {
			t.Errorf("low-cardinality exposition lacks %s", w)
		}
	}
	if strings.Contains(text, "dapr_http_server_response_count") {
		t.Error("dapr_http_server_response_count served with increasedCardinality: false")
	}
	if got, want := bucketBounds(text, `dapr_http_server_latency_bucket{app_id="b",`), "5 50 500 5000 +Inf"; got != want {
		t.Errorf("latencyDistributionBuckets: buckets = %s, want %s", got, want)
	}

	// enabled: false: the call went through c, but only go_* and process_* are served.
	var families []string
	for _, l := range strings.Split(c.scrape(t, ""), "\n") {
		if n, ok := strings.CutPrefix(l, "# TYPE "); ok {
			n, _, _ = strings.Cut(n, " ")
			if !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
				families = append(families, n)
			}
		}
	}
	if len(families) > 0 {
		t.Errorf("with spec.metrics.enabled false, c serves %v; want only go_* and process_*", families)
	}
	if c.metric(t, "go_goroutines") == 0 {
		t.Error("go_goroutines missing with metrics disabled")
	}
}

// bucketBounds lists the le values of the first series whose bucket lines
// start with prefix, space-separated, in exposition order.
func bucketBounds(text, prefix string) string {
	var les []string
	first := ""
	for _, l := range strings.Split(text, "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		series, rest, ok := strings.Cut(l, `le="`)
		if !ok {
			continue
		}
		if first == "" {
			first = series
		}
		if series != first {
			break
		}
		le, _, _ := strings.Cut(rest, `"`)
		les = append(les, le)
	}
	return strings.Join(les, " ")
}

// promtool runs Debian's `promtool check metrics` on an exposition and
// returns its problem lines ("<metric> <lint>"); exit status 3 means lint
// problems, anything else but 0 fails the test.
func promtool(t *testing.T, exposition string) []string {
	t.Helper()
	path, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not installed: run test/peers/install.sh (make test does): %v", err)
	}
	cmd := exec.Command(path, "check", "metrics")
	cmd.Stdin = strings.NewReader(exposition)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee) && ee.ExitCode() == 3:
	default:
		t.Fatalf("promtool check metrics: %v\n%s", err, out.String())
	}
	var problems []string
	for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if l != "" {
			problems = append(problems, strings.TrimSpace(l))
		}
	}
	return problems
}
