package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"go.yaml.in/yaml/v3"
)

// dashboardsDir holds the Grafana dashboards the repository ships.
const dashboardsDir = "../dashboards"

// grafanaFile is one dashboard file, decoded loosely so that every
// expression can be walked whatever the panel type.
type grafanaFile struct {
	path string
	raw  []byte
	doc  grafanaDoc
}

type grafanaDoc struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Panels        []grafanaPanel `json:"panels"`
	Rows          []struct {     // the pre-5.0 layout, still found in old exports
		Panels []grafanaPanel `json:"panels"`
	} `json:"rows"`
	Templating struct {
		List []grafanaVar `json:"list"`
	} `json:"templating"`
}

type grafanaPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []grafanaTarget `json:"targets"`
	Panels     []grafanaPanel  `json:"panels"` // a collapsed row's panels
}

type grafanaTarget struct {
	RefID      string          `json:"refId"`
	Expr       string          `json:"expr"`
	Exemplar   bool            `json:"exemplar"`
	Datasource json.RawMessage `json:"datasource"`
}

type grafanaVar struct {
	Name     string          `json:"name"`
	Type     string          `json:"type"`
	Multi    bool            `json:"multi"`
	AllValue string          `json:"allValue"`
	Query    json.RawMessage `json:"query"` // a string, or {"query": "..."} in newer exports
	Current  struct {
		Value json.RawMessage `json:"value"` // a string or a list of strings
	} `json:"current"`
}

// query returns the variable's query text.
func (v grafanaVar) query() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

// current returns the variable's saved value(s).
func (v grafanaVar) current() []string {
	var s string
	if json.Unmarshal(v.Current.Value, &s) == nil {
		return []string{s}
	}
	var l []string
	_ = json.Unmarshal(v.Current.Value, &l)
	return l
}

// allPanels lists every panel: top level, inside collapsed rows, and in
// old-style rows.
func (d grafanaDoc) allPanels() []grafanaPanel {
	var out []grafanaPanel
	var walk func([]grafanaPanel)
	walk = func(ps []grafanaPanel) {
		for _, p := range ps {
			out = append(out, p)
			walk(p.Panels)
		}
	}
	walk(d.Panels)
	for _, r := range d.Rows {
		walk(r.Panels)
	}
	return out
}

// dashExpr is one PromQL expression of a dashboard and where it is.
type dashExpr struct {
	where string // "file: panel title [refId]"
	expr  string
}

// expressions lists every target expression of the dashboard.
func (f grafanaFile) expressions() []dashExpr {
	var out []dashExpr
	for _, p := range f.doc.allPanels() {
		for _, t := range p.Targets {
			if strings.TrimSpace(t.Expr) != "" {
				out = append(out, dashExpr{fmt.Sprintf("%s: %q [%s]", filepath.Base(f.path), p.Title, t.RefID), t.Expr})
			}
		}
	}
	return out
}

func readGrafanaFile(t *testing.T, path string) grafanaFile {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	f := grafanaFile{path: path, raw: raw}
	if err := json.Unmarshal(raw, &f.doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return f
}

// shippedDashboards reads every dashboards/*.json.
func shippedDashboards(t *testing.T) []grafanaFile {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dashboardsDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 5 {
		t.Fatalf("dashboards/ holds %d dashboards, want at least 5: %v", len(paths), paths)
	}
	var out []grafanaFile
	for _, p := range paths {
		out = append(out, readGrafanaFile(t, p))
	}
	return out
}

var registerGrafanaPlugins sync.Once

// foundationErr turns the SDK's result into nil when it holds no error:
// UnmarshalJSONStrict returns an empty cog.BuildErrors (a non-nil error
// value) when the input is fine.
func foundationErr(err error) error {
	var be cog.BuildErrors
	if errors.As(err, &be) && len(be) == 0 {
		return nil
	}
	return err
}

// TestDashboardsAreValidGrafana checks each shipped dashboard against
// Grafana's current dashboard schema with grafana-foundation-sdk (lenient
// decoding, Validate, and strict decoding: unknown fields and missing
// required fields fail), and the conventions they share: a datasource
// variable every query uses, unique panel ids, and exemplars on every
// latency (histogram_quantile) query so that a latency spike links to its
// trace in Jaeger.
func TestDashboardsAreValidGrafana(t *testing.T) {
	registerGrafanaPlugins.Do(plugins.RegisterDefaultPlugins)
	uids := map[string]string{}
	for _, f := range shippedDashboards(t) {
		name := filepath.Base(f.path)
		t.Run(name, func(t *testing.T) {
			var d dashboard.Dashboard
			if err := json.Unmarshal(f.raw, &d); err != nil {
				t.Fatalf("decode: %v", err)
			}
			if err := d.Validate(); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if err := foundationErr(new(dashboard.Dashboard).UnmarshalJSONStrict(f.raw)); err != nil {
				t.Errorf("strict decode: %v", err)
			}
			if f.doc.SchemaVersion < 41 {
				t.Errorf("schemaVersion %d, want the current schema (41 or later)", f.doc.SchemaVersion)
			}
			if f.doc.UID == "" || uids[f.doc.UID] != "" {
				t.Errorf("uid %q empty or also used by %s", f.doc.UID, uids[f.doc.UID])
			}
			uids[f.doc.UID] = name

			hasDS := false
			for _, v := range f.doc.Templating.List {
				if v.Name == "datasource" && v.Type == "datasource" && strings.Contains(string(v.Query), "prometheus") {
					hasDS = true
				}
			}
			if !hasDS {
				t.Error("no `datasource` variable of type datasource for prometheus")
			}
			const wantDS = `{"type":"prometheus","uid":"${datasource}"}`
			sameDS := func(raw json.RawMessage) bool {
				var v any
				if json.Unmarshal(raw, &v) != nil {
					return false
				}
				b, _ := json.Marshal(v)
				return string(b) == wantDS
			}
			ids := map[int]bool{}
			exprs := 0
			for _, p := range f.doc.allPanels() {
				if p.ID == 0 || ids[p.ID] {
					t.Errorf("panel %q: id %d missing or repeated", p.Title, p.ID)
				}
				ids[p.ID] = true
				if p.Type == "row" {
					continue
				}
				if !sameDS(p.Datasource) {
					t.Errorf("panel %q: datasource %s, want %s", p.Title, p.Datasource, wantDS)
				}
				if len(p.Targets) == 0 {
					t.Errorf("panel %q has no query", p.Title)
				}
				for _, tg := range p.Targets {
					exprs++
					if !sameDS(tg.Datasource) {
						t.Errorf("panel %q [%s]: datasource %s, want %s", p.Title, tg.RefID, tg.Datasource, wantDS)
					}
					if strings.Contains(tg.Expr, "histogram_quantile") && !tg.Exemplar {
						t.Errorf("panel %q [%s]: latency query without exemplars", p.Title, tg.RefID)
					}
				}
			}
			if exprs == 0 {
				t.Error("no expressions")
			}
		})
	}
}

// TestGrafanaProvisioningLinksExemplarsToJaeger checks the datasource
// provisioning example: the Prometheus datasource sends the trace_id
// exemplar label (the label the sidecars put on latency exemplars) to the
// Jaeger datasource.
func TestGrafanaProvisioningLinksExemplarsToJaeger(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(dashboardsDir, "provisioning", "datasources.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var p struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, Type, UID, URL string
			JSONData             struct {
				Destinations []struct {
					Name          string `yaml:"name"`
					DatasourceUID string `yaml:"datasourceUid"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(raw, &p); err != nil {
		t.Fatal(err)
	}
	byType := map[string]int{}
	for i, d := range p.Datasources {
		byType[d.Type] = i
	}
	pi, okP := byType["prometheus"]
	ji, okJ := byType["jaeger"]
	if p.APIVersion != 1 || !okP || !okJ {
		t.Fatalf("want apiVersion 1 with a prometheus and a jaeger datasource: %+v", p)
	}
	dest := p.Datasources[pi].JSONData.Destinations
	if len(dest) != 1 || dest[0].Name != "trace_id" || dest[0].DatasourceUID != p.Datasources[ji].UID || dest[0].DatasourceUID == "" {
		t.Errorf("exemplarTraceIdDestinations = %+v, want trace_id → the jaeger datasource (uid %q)", dest, p.Datasources[ji].UID)
	}
}

// promVars substitutes Grafana's variables in a dashboard expression:
// the interval variables by a 1m window, every template variable by vals
// (longest names first, so $app_id is not taken for $app).
func promVars(expr string, vals map[string]string) string {
	for _, v := range []string{"__rate_interval", "__interval", "__range"} {
		expr = strings.NewReplacer("${"+v+"}", "1m", "[["+v+"]]", "1m", "$"+v, "1m").Replace(expr)
	}
	names := make([]string, 0, len(vals))
	for n := range vals {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		re := regexp.MustCompile(`\$\{` + regexp.QuoteMeta(n) + `(:[a-z]+)?\}|\[\[` + regexp.QuoteMeta(n) + `\]\]|\$` + regexp.QuoteMeta(n) + `\b`)
		expr = re.ReplaceAllLiteralString(expr, vals[n])
	}
	return expr
}

// labelValuesQuery is Grafana's label_values(selector, label) variable query.
var labelValuesQuery = regexp.MustCompile(`^\s*label_values\(\s*(.*?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$`)

func TestPromVars(t *testing.T) {
	got := promVars(`rate(x{a=~"$app_id", b="${ns}", c=~"[[app]]"}[$__rate_interval]) + $app`, map[string]string{"app_id": "(a|b)", "app": "z", "ns": "default"})
	want := `rate(x{a=~"(a|b)", b="default", c=~"z"}[1m]) + z`
	if got != want {
		t.Errorf("promVars:\n got %s\nwant %s", got, want)
	}
}

// TestObservabilityDocPrometheusConfig checks that the scrape example in
// docs/observability.md is a configuration Prometheus accepts.
func TestObservabilityDocPrometheusConfig(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not installed: run test/peers/install.sh (make test does): %v", err)
	}
	doc, err := os.ReadFile("../docs/observability.md")
	if err != nil {
		t.Fatal(err)
	}
	var cfg string
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		if strings.Contains(block[1], "scrape_configs:") {
			cfg = block[1]
			break
		}
	}
	if cfg == "" {
		t.Fatal("docs/observability.md has no yaml block with scrape_configs")
	}
	path := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "config", path).CombinedOutput(); err != nil {
		t.Errorf("promtool check config on the doc's example: %v\n%s", err, out)
	}
}
