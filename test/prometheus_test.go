package test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// prometheus is a real Prometheus server (Debian's package, installed by
// test/peers/install.sh) on a loopback port, scraping sidecars every second.
type prometheus struct {
	url string
	p   *proc
}

// promTarget is one scraped sidecar with the target labels Prometheus's
// Kubernetes service discovery would give it (Dapr's dashboards select on
// them).
type promTarget struct {
	appID string
	port  int
}

func startPrometheus(t *testing.T, m *mesh, targets ...promTarget) *prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatalf("prometheus not installed: run test/peers/install.sh (make test does): %v", err)
	}
	dir := t.TempDir()
	var cfg strings.Builder
	cfg.WriteString("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n- job_name: skein\n  static_configs:\n")
	for _, tg := range targets {
		fmt.Fprintf(&cfg, "  - targets: ['127.0.0.1:%d']\n    labels: {kubernetes_namespace: default, kubernetes_name: %s-dapr}\n", tg.port, tg.appID)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	p := &prometheus{url: "http://127.0.0.1:" + strconv.Itoa(port)}
	p.p = m.start("prometheus", bin, nil,
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address=127.0.0.1:"+strconv.Itoa(port),
		"--enable-feature=exemplar-storage",
		"--log.level=warn")
	waitFor(t, 15*time.Second, "prometheus ready", func() bool {
		if p.p.exited() {
			t.Fatalf("prometheus exited: %v\n%s", p.p.err, p.p.out)
		}
		resp, err := http.Get(p.url + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return p
}

// promSample is one series of an instant query result.
type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

func (s promSample) value() float64 {
	str, _ := s.Value[1].(string)
	f, _ := strconv.ParseFloat(str, 64)
	return f
}

// query runs an instant query; err is Prometheus's own error (a parse
// error, say) or a transport failure.
func (p *prometheus) query(expr string) ([]promSample, error) {
	resp, err := http.PostForm(p.url+"/api/v1/query", url.Values{"query": {expr}})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	switch r.Data.ResultType {
	case "vector":
		var v []promSample
		err := json.Unmarshal(r.Data.Result, &v)
		return v, err
	case "scalar":
		var s [2]any
		err := json.Unmarshal(r.Data.Result, &s)
		return []promSample{{Value: s}}, err
	}
	return nil, fmt.Errorf("result type %s", r.Data.ResultType)
}

// mustQuery runs expr and fails the test on a query error.
func (p *prometheus) mustQuery(t *testing.T, expr string) []promSample {
	t.Helper()
	v, err := p.query(expr)
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	return v
}

// exemplars returns how many exemplars Prometheus holds for the series
// expr selects over the last minute.
func (p *prometheus) exemplars(t *testing.T, expr string) int {
	t.Helper()
	now := time.Now()
	resp, err := http.PostForm(p.url+"/api/v1/query_exemplars", url.Values{"query": {expr},
		"start": {strconv.FormatInt(now.Add(-time.Minute).Unix(), 10)}, "end": {strconv.FormatInt(now.Unix(), 10)}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   []struct {
			Exemplars []struct {
				Labels map[string]string `json:"labels"`
			} `json:"exemplars"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil || r.Status != "success" {
		t.Fatalf("query_exemplars %s: %v %s", expr, err, r.Error)
	}
	n := 0
	for _, s := range r.Data {
		for _, e := range s.Exemplars {
			if len(e.Labels["trace_id"]) == 32 {
				n++
			}
		}
	}
	return n
}

// Configurations and resources of the dashboard load run. Certificates
// live 6 s, so each sidecar renews its SVID every 3 s during the run.
const (
	promCallerConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: caller
spec:
  tracing:
    samplingRate: "1"
  mtls:
    enabled: true
    workloadCertTTL: 6s
    allowedClockSkew: 1s
`
	// app-b: app-a may call anything but /admin (app policy); anyone
	// else is denied by the global default.
	promCalleeBConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee-b
spec:
  tracing:
    samplingRate: "1"
  mtls:
    enabled: true
    workloadCertTTL: 6s
    allowedClockSkew: 1s
  accessControl:
    defaultAction: deny
    trustDomain: public
    policies:
    - appId: app-a
      defaultAction: allow
      trustDomain: public
      namespace: default
      operations:
      - name: /admin
        httpVerb: ['*']
        action: deny
`
	// app-c: everyone is allowed by the global default.
	promCalleeCConfig = `apiVersion: dapr.io/v1alpha1
kind: Configuration
metadata:
  name: callee-c
spec:
  tracing:
    samplingRate: "1"
  mtls:
    enabled: true
    workloadCertTTL: 6s
    allowedClockSkew: 1s
  accessControl:
    defaultAction: allow
    trustDomain: public
`
	promResiliency = `apiVersion: dapr.io/v1alpha1
kind: Resiliency
metadata:
  name: dashboards
spec:
  policies:
    timeouts:
      short: 300ms
    retries:
      twice:
        policy: constant
        duration: 5ms
        maxRetries: 2
        matching:
          httpStatusCodes: "500-599"
    circuitBreakers:
      cb:
        maxRequests: 1
        interval: 0
        timeout: 60s
        trip: consecutiveFailures >= 3
  targets:
    apps:
      app-b:
        timeout: short
        retry: twice
      app-c:
        circuitBreaker: cb
`
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPrometheusDashboards is issue 6 points 3 (Prometheus) and 4: a real
// Prometheus scrapes three sidecars while a load run exercises every
// dashboard (calls that succeed and fail, access denials at both policy
// levels, retries, a spent retry budget, a timeout, an open breaker, an
// ejected instance, certificate renewals, a refused handshake). Then
// Prometheus must hold the expected series with Dapr's labels, every
// expression of every dashboard in dashboards/ (template variables
// resolved as Grafana would) must parse and return data, and so must the
// HTTP queries of Dapr's own sidecar dashboard.
func TestPrometheusDashboards(t *testing.T) {
	m := newMesh(t)
	dir := t.TempDir()
	resDir := filepath.Join(dir, "resources")
	if err := os.Mkdir(resDir, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, resDir, "resiliency.yaml", promResiliency)
	bPort, _ := m.app("b")
	cPort, _ := m.app("c")
	b := m.sidecar("app-b", bPort, "--config", writeFile(t, dir, "b.yaml", promCalleeBConfig))
	c := m.sidecar("app-c", cPort, "--config", writeFile(t, dir, "c.yaml", promCalleeCConfig))
	a := m.sidecar("app-a", 0, "--config", writeFile(t, dir, "a.yaml", promCallerConfig), "--resources-path", resDir)
	prom := startPrometheus(t, m, promTarget{"app-a", a.metrics}, promTarget{"app-b", b.metrics}, promTarget{"app-c", c.metrics})
	start := time.Now()

	call := func(s *sidecar, method, target, path, status string, want int) {
		t.Helper()
		req := newRequest(t, method, s.invokeURL(target, path), strings.NewReader("payload"))
		if status != "" {
			req.Header.Set("X-Echo-Status", status)
		}
		resp, body := do(t, req)
		if resp.StatusCode != want {
			t.Errorf("%s %s/%s via %s (X-Echo-Status %q): %d, want %d: %s", method, target, path, s.appID, status, resp.StatusCode, want, body)
		}
	}
	const echoes = 25
	for range echoes {
		call(a, http.MethodGet, "app-b", "echo", "", 200)
	}
	for range 5 {
		call(a, http.MethodPost, "app-b", "orders", "201", 201)
		call(a, http.MethodGet, "app-b", "missing", "404", 404)
		call(a, http.MethodGet, "app-c", "echo", "", 200) // app-c's global allow
	}
	call(a, http.MethodGet, "app-b", "admin", "", 403) // app-b's app policy for app-a denies /admin
	call(c, http.MethodGet, "app-b", "echo", "", 403)  // app-b's global default denies app-c
	call(a, http.MethodGet, "app-b", "slow?ms=1000", "", 500)
	// Failures in a row: retried (and ejecting app-b's instance), then a
	// burst that spends app-b's retry budget.
	for range 3 {
		call(a, http.MethodGet, "app-b", "boom", "500", 500)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			req := newRequest(t, http.MethodGet, a.invokeURL("app-b", "boom"), nil)
			req.Header.Set("X-Echo-Status", "503")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	// app-c's breaker (per method) opens after three failures; the fourth
	// call fails fast with CIRCUIT_OPEN (500).
	for range 3 {
		call(a, http.MethodGet, "app-c", "boom", "500", 500)
	}
	before := appRequests(t, cPort)
	call(a, http.MethodGet, "app-c", "boom", "", 500)
	if n := appRequests(t, cPort) - before; n != 0 {
		t.Errorf("the open breaker let %d calls reach app-c", n)
	}
	// A plaintext client on app-b's peer-facing port is refused.
	if resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(b.internalPort(t)) + "/echo"); err == nil {
		resp.Body.Close()
		t.Errorf("plaintext call to the peer port answered %d, want a refused handshake", resp.StatusCode)
	}
	loadEnd := time.Now()

	// The first scrape lands ~6 s after Prometheus is ready. Wait until
	// each sidecar has been scraped at least three times, the last two
	// after the load, so every series has the two samples rate() needs.
	waitFor(t, 30*time.Second, "prometheus to scrape all three sidecars three times, twice after the load", func() bool {
		v, err := prom.query(`timestamp(up == 1) and count_over_time(up[1m]) >= 3`)
		if err != nil || len(v) != 3 {
			return false
		}
		for _, s := range v {
			if s.value() < float64(loadEnd.Add(2*time.Second).UnixMilli())/1000 {
				return false
			}
		}
		return true
	})
	t.Logf("load %s, scraped %s after start", loadEnd.Sub(start).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}

	t.Run("series and labels", func(t *testing.T) {
		for _, tt := range []struct {
			expr string
			min  float64 // the sum of the selected series is at least this
			max  float64 // and at most this, when not 0
		}{
			{`dapr_http_server_request_count{app_id="app-a",method="GET",path="/v1.0/invoke/app-b/method/echo",status="200",kubernetes_namespace="default",kubernetes_name="app-a-dapr"}`, echoes, echoes},
			{`dapr_http_server_request_count{app_id="app-a",method="POST",path="/v1.0/invoke/app-b/method/orders",status="201"}`, 5, 5},
			{`dapr_http_server_latency_bucket{app_id="app-a",method="GET",path="/v1.0/invoke/app-b/method/echo",status="200",le="+Inf"}`, echoes, echoes},
			{`dapr_http_client_completed_count{app_id="app-b",method="GET",path="/echo",status="200"}`, echoes, echoes},
			{`dapr_runtime_service_invocation_req_sent_total{app_id="app-a",dst_app_id="app-b",type="unary"}`, echoes + 10, 0},
			{`dapr_runtime_service_invocation_res_recv_total{app_id="app-a",src_app_id="app-b",status="200",type="unary"}`, echoes, echoes},
			{`dapr_runtime_service_invocation_res_recv_total{app_id="app-a",src_app_id="app-b",status="403"}`, 1, 1},
			{`dapr_runtime_service_invocation_req_recv_total{app_id="app-b",src_app_id="app-a"}`, echoes + 10, 0},
			{`dapr_runtime_service_invocation_res_sent_total{app_id="app-b",dst_app_id="app-a",status="200"}`, echoes, echoes},
			{`skein_invocation_requests_total{src_app_id="app-a",dst_app_id="app-b",code_class="2xx"}`, echoes + 5, echoes + 5},
			{`dapr_runtime_component_loaded{app_id="app-c"}`, 0, 0},
			{`dapr_runtime_acl_app_policy_action_blocked_total{app_id="app-a",trustDomain="public",namespace="default",kubernetes_name="app-b-dapr"}`, 1, 1},
			{`dapr_runtime_acl_global_policy_action_blocked_total{app_id="app-c",kubernetes_name="app-b-dapr"}`, 1, 1},
			{`skein_access_decisions_total{caller_app="app-a",decision="deny",kubernetes_name="app-b-dapr"}`, 1, 1},
			{`dapr_resiliency_activations_total{app_id="app-a",policy="retry",target="app_app-b",flow_direction="outbound"}`, 6, 0},
			{`dapr_resiliency_cb_state{app_id="app-a",policy="circuitbreaker",target="app_app-c",status="open"}`, 1, 1},
			{`skein_resiliency_retry_budget_refused_total{app_id="app-a",target="app-b"}`, 1, 0},
			{`skein_discovery_ejections_total{app_id="app-a",dst_app_id="app-b"}`, 1, 0},
			{`skein_identity_handshake_failures_total{app_id="app-b",side="server",reason="plaintext"}`, 1, 1},
			{`dapr_runtime_mtls_workload_cert_rotated_total{app_id="app-a"}`, 1, 0},
			{`go_goroutines{kubernetes_name="app-a-dapr"}`, 1, 0},
			{`process_resident_memory_bytes{kubernetes_name="app-b-dapr"}`, 1, 0},
		} {
			v, err := prom.query(tt.expr)
			if err != nil {
				t.Errorf("%s: %v", tt.expr, err)
				continue
			}
			if len(v) == 0 {
				t.Errorf("%s: no series", tt.expr)
				continue
			}
			sum := 0.0
			for _, s := range v {
				sum += s.value()
			}
			if sum < tt.min || (tt.max != 0 && sum > tt.max) {
				t.Errorf("%s = %v, want [%v, %v]", tt.expr, sum, tt.min, tt.max)
			}
		}
		// Target labels must not collide with the sidecars' own labels
		// (Prometheus would rename them exported_*).
		if v := prom.mustQuery(t, `count by (__name__) ({exported_app_id=~".+"} or {exported_namespace=~".+"} or {exported_instance=~".+"})`); len(v) != 0 {
			t.Errorf("series with exported_* labels (a target label collides with a metric label): %v", v)
		}
	})

	t.Run("every dashboard expression returns data", func(t *testing.T) {
		var failed []string
		for _, f := range shippedDashboards(t) {
			failed = append(failed, checkDashboardQueries(t, prom, f)...)
		}
		if len(failed) > 0 {
			t.Errorf("%d dashboard expressions failed against Prometheus:\n%s", len(failed), strings.Join(failed, "\n"))
		}
	})

	t.Run("the check catches broken and empty expressions", func(t *testing.T) {
		f := grafanaFile{path: "synthetic.json", doc: grafanaDoc{Panels: []grafanaPanel{{Title: "p", Targets: []grafanaTarget{
			{RefID: "A", Expr: `sum(rate(dapr_http_server_request_count[$__rate_interval])`},
			{RefID: "B", Expr: `dapr_http_server_request_count{app_id="no-such-app"}`},
			{RefID: "C", Expr: `sum(rate(dapr_http_server_request_count[$__rate_interval]))`},
		}}}}}
		failed := checkDashboardQueries(t, prom, f)
		if len(failed) != 2 || !strings.Contains(failed[0], "parse error") || !strings.Contains(failed[1], "no series") {
			t.Errorf("failures = %q, want a parse error for A and no series for B", failed)
		}
	})

	t.Run("Dapr sidecar dashboard HTTP queries return data", func(t *testing.T) {
		f := readGrafanaFile(t, "testdata/dapr-sidecar-dashboard-http.json")
		if n := len(f.expressions()); n != 6 {
			t.Fatalf("%d HTTP expressions in Dapr's dashboard copy, want 6", n)
		}
		if failed := checkDashboardQueries(t, prom, f); len(failed) > 0 {
			t.Errorf("%d of Dapr's sidecar dashboard queries failed against Prometheus:\n%s", len(failed), strings.Join(failed, "\n"))
		}
	})

	t.Run("latency exemplars carry trace ids", func(t *testing.T) {
		for _, h := range []string{
			`dapr_http_server_latency_bucket{app_id="app-a"}`,
			`skein_invocation_duration_seconds_bucket{src_app_id="app-a"}`,
		} {
			if n := prom.exemplars(t, h); n == 0 {
				t.Errorf("no exemplars with a trace_id for %s", h)
			}
		}
	})
}

// checkDashboardQueries resolves f's template variables against prom as
// Grafana would on load (each label_values query must return values) and
// runs every expression of f with them; it returns one line per failure.
func checkDashboardQueries(t *testing.T, prom *prometheus, f grafanaFile) []string {
	t.Helper()
	var failed []string
	base := filepath.Base(f.path)
	vals := map[string]string{}
	for _, v := range f.doc.Templating.List {
		if v.Type != "query" {
			continue
		}
		q := promVars(v.query(), vals)
		mm := labelValuesQuery.FindStringSubmatch(q)
		if mm == nil {
			failed = append(failed, fmt.Sprintf("%s: variable %s: unsupported query %q", base, v.Name, q))
			vals[v.Name] = ".*"
			continue
		}
		expr := fmt.Sprintf(`count by (%s) (%s)`, mm[2], mm[1])
		res, err := prom.query(expr)
		var found []string
		for _, s := range res {
			if l := s.Metric[mm[2]]; l != "" {
				found = append(found, l)
			}
		}
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s: variable %s: %s\n    %v", base, v.Name, v.query(), err))
		case len(found) == 0:
			failed = append(failed, fmt.Sprintf("%s: variable %s: %s\n    no values", base, v.Name, v.query()))
		}
		cur := v.current()
		switch {
		case len(cur) > 0 && (cur[0] == "$__all" || cur[0] == "All"):
			vals[v.Name] = v.AllValue
			if vals[v.Name] == "" {
				vals[v.Name] = ".*"
			}
		case len(found) == 0:
			vals[v.Name] = ".*"
		case v.Multi:
			for i := range found {
				found[i] = regexp.QuoteMeta(found[i])
			}
			vals[v.Name] = "(" + strings.Join(found, "|") + ")"
		default:
			vals[v.Name] = found[0]
		}
	}
	for _, e := range f.expressions() {
		q := promVars(e.expr, vals)
		res, err := prom.query(q)
		switch {
		case err != nil:
			failed = append(failed, fmt.Sprintf("%s\n    %s\n    %v", e.where, q, err))
		case len(res) == 0:
			failed = append(failed, fmt.Sprintf("%s\n    %s\n    no series", e.where, q))
		}
	}
	return failed
}
