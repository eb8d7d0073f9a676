package proxy

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// Dapr's bucket boundaries (contract §6.1): latency in milliseconds, sizes
// in bytes.
var (
	defaultLatencyBuckets = []float64{1, 2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 30, 40, 50, 65, 80, 100, 130, 160, 200, 250, 300, 400, 500, 650, 800, 1000, 2000, 5000, 10000, 20000, 50000, 100000}
	sizeBuckets           = []float64{1024, 2048, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864, 268435456, 1073741824, 4294967296}
)

// MetricsSpec is the Configuration's spec.metrics (contract §6.1, §6.2),
// decoded and compiled. The zero value is not the default: use
// defaultMetricsSpec. It is immutable once compiled and safe for concurrent
// use.
type MetricsSpec struct {
	// Enabled records Dapr's and Skein's metrics; false leaves only go_* and
	// process_* on the endpoint. Default true.
	Enabled bool
	// IncreasedCardinality keeps request paths in the path label (Dapr's
	// default, true); false empties it except for Dapr's static paths.
	IncreasedCardinality bool
	// PathMatching are http.ServeMux patterns whose text replaces a matching
	// path in the path label; each not starting with /v1.0/invoke/ also
	// matches /v1.0/invoke/{app_id}/method<pattern>.
	PathMatching []string
	// ExcludeVerbs empties the method label.
	ExcludeVerbs bool
	// LatencyBuckets are the millisecond boundaries of the latency
	// histograms; Dapr's defaults unless latencyDistributionBuckets is set.
	LatencyBuckets []float64
	// Rules rewrite label values of named metrics.
	Rules []MetricRule
	// RecordErrorCodes is accepted for compatibility; Skein does not record
	// dapr_error_code_total yet.
	RecordErrorCodes bool

	mux   *http.ServeMux                       // PathMatching, expanded; nil without patterns
	rules map[string]map[string][]labelRewrite // metric → label → rewrites, in document order
	reqs  sync.Pool                            // *http.Request for ServeMux lookups
	// boundedValues are the label values the Configuration itself names
	// (pathMatching patterns, rule replacements): exempt from the cap on
	// label values (metrics_limit.go).
	boundedValues map[string]bool
}

// MetricRule is one entry of spec.metrics.rules: regex replacements for
// label values of the metric Name (its Prometheus name).
type MetricRule struct {
	Name   string
	Labels []LabelRule
}

// LabelRule rewrites values of the label Name: the first Regex entry whose
// pattern matches a value replaces the whole value with its key.
type LabelRule struct {
	Name  string
	Regex []labelRewrite
}

type labelRewrite struct {
	replacement string
	re          *regexp.Regexp
}

// defaultMetricsSpec is spec.metrics when the Configuration has none.
func defaultMetricsSpec() *MetricsSpec {
	return &MetricsSpec{Enabled: true, IncreasedCardinality: true, LatencyBuckets: defaultLatencyBuckets}
}

// MetricsConfig decodes, validates and compiles the Configuration's
// spec.metrics; the defaults when there is none.
func MetricsConfig(cfg Config) (*MetricsSpec, error) {
	c := cfg.Configuration
	if c == nil {
		return defaultMetricsSpec(), nil
	}
	n, key := yamlfield.Field(&c.Spec, "metrics"), "metrics"
	if n == nil {
		n, key = yamlfield.Field(&c.Spec, "metric"), "metric" // Dapr's older spelling
	}
	if n == nil {
		return defaultMetricsSpec(), nil
	}
	m, err := decodeMetrics(n, "spec."+key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.File, err)
	}
	return m, nil
}

func decodeMetrics(n *yaml.Node, path string) (*MetricsSpec, error) {
	m := defaultMetricsSpec()
	var d yamlfield.Decoder
	var buckets []float64
	d.Mapping(n, path, func(key string, v *yaml.Node, p string) bool {
		switch key {
		case "enabled":
			d.Bool(v, p, &m.Enabled)
		case "recordErrorCodes":
			d.Bool(v, p, &m.RecordErrorCodes)
		case "latencyDistributionBuckets":
			d.List(v, p, func(i int, v *yaml.Node, p string) {
				f, err := strconv.ParseFloat(v.Value, 64)
				if v.Kind != yaml.ScalarNode || err != nil || f <= 0 {
					d.Errorf(v, p, "must be a positive number of milliseconds")
					return
				}
				if len(buckets) > 0 && f <= buckets[len(buckets)-1] {
					d.Errorf(v, p, "buckets must increase")
					return
				}
				buckets = append(buckets, f)
			})
		case "http":
			d.Mapping(v, p, func(key string, v *yaml.Node, p string) bool {
				switch key {
				case "increasedCardinality":
					d.Bool(v, p, &m.IncreasedCardinality)
				case "excludeVerbs":
					d.Bool(v, p, &m.ExcludeVerbs)
				case "pathMatching":
					d.List(v, p, func(i int, v *yaml.Node, p string) {
						var s string
						d.Str(v, p, &s)
						if s != "" && !strings.HasPrefix(s, "/") {
							d.Errorf(v, p, "pattern %q must start with /", s)
							return
						}
						if s != "" {
							m.PathMatching = append(m.PathMatching, s)
						}
					})
				default:
					return false
				}
				return true
			})
		case "rules":
			d.List(v, p, func(i int, v *yaml.Node, p string) {
				m.Rules = append(m.Rules, decodeRule(&d, v, p))
			})
		default:
			return false
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, err
	}
	if len(buckets) > 0 {
		m.LatencyBuckets = buckets
	}
	if err := m.compile(path); err != nil {
		return nil, err
	}
	return m, nil
}

func decodeRule(d *yamlfield.Decoder, n *yaml.Node, path string) MetricRule {
	var r MetricRule
	d.Mapping(n, path, func(key string, v *yaml.Node, p string) bool {
		switch key {
		case "name":
			d.Str(v, p, &r.Name)
		case "labels":
			d.List(v, p, func(i int, v *yaml.Node, p string) {
				var l LabelRule
				d.Mapping(v, p, func(key string, v *yaml.Node, p string) bool {
					switch key {
					case "name":
						d.Str(v, p, &l.Name)
					case "regex":
						// {replacement: pattern}, kept in document order:
						// the first pattern that matches wins.
						d.Mapping(v, p, func(repl string, v *yaml.Node, p string) bool {
							var pat string
							d.Str(v, p, &pat)
							re, err := regexp.Compile(pat)
							if err != nil {
								d.Errorf(v, p, "invalid regex: %v", err)
								return true
							}
							l.Regex = append(l.Regex, labelRewrite{replacement: repl, re: re})
							return true
						})
					default:
						return false
					}
					return true
				})
				if l.Name == "" {
					d.Errorf(v, p+".name", "required")
				}
				r.Labels = append(r.Labels, l)
			})
		default:
			return false
		}
		return true
	})
	if r.Name == "" {
		d.Errorf(n, path+".name", "required")
	}
	return r
}

// invokePrefix is how pathMatching patterns are expanded to match the
// invoke API's paths (contract §6.2).
const invokePrefix = "/v1.0/invoke/"

// compile builds the path matcher and rule index.
func (m *MetricsSpec) compile(path string) (err error) {
	if len(m.PathMatching) > 0 {
		pats := slices.Clone(m.PathMatching)
		for _, p := range m.PathMatching {
			if !strings.HasPrefix(p, invokePrefix) {
				pats = append(pats, invokePrefix+"{app_id}/method"+p)
			}
		}
		slices.Sort(pats)
		pats = slices.Compact(pats)
		mux := http.NewServeMux()
		for _, p := range pats {
			// ServeMux panics on invalid or conflicting patterns.
			func() {
				defer func() {
					if r := recover(); r != nil {
						err = errors.Join(err, fmt.Errorf("%s.http.pathMatching: %v", path, r))
					}
				}()
				mux.Handle(p, patternHandler(p))
			}()
		}
		if err != nil {
			return err
		}
		m.mux = mux
		m.boundedValues = map[string]bool{}
		for _, p := range pats {
			m.boundedValues[p] = true
		}
	}
	m.rules = map[string]map[string][]labelRewrite{}
	for _, r := range m.Rules {
		byLabel := m.rules[r.Name]
		if byLabel == nil {
			byLabel = map[string][]labelRewrite{}
			m.rules[r.Name] = byLabel
		}
		for _, l := range r.Labels {
			byLabel[l.Name] = append(byLabel[l.Name], l.Regex...)
			for _, rw := range l.Regex {
				if m.boundedValues == nil {
					m.boundedValues = map[string]bool{}
				}
				m.boundedValues[rw.replacement] = true
			}
		}
	}
	return nil
}

// patternHandler is a handler that only carries its pattern; ServeMux is
// used for its matching, never to serve.
type patternHandler string

func (patternHandler) ServeHTTP(http.ResponseWriter, *http.Request) {}

// staticPaths keep their path label with low cardinality (contract §6.2).
var staticPaths = map[string]bool{"/dapr/config": true, "/dapr/metrics": true, "/dapr/subscribe": true, "/healthz": true}

// pathLabel is the path label of a request path (server side: the API
// request path; client side: "/" + the method).
func (m *MetricsSpec) pathLabel(p string) string {
	if m.mux != nil && p != "" {
		r, _ := m.reqs.Get().(*http.Request)
		if r == nil {
			r = &http.Request{Method: http.MethodGet, URL: &url.URL{}}
		}
		r.URL.Path = p
		h, _ := m.mux.Handler(r)
		r.URL.Path = ""
		m.reqs.Put(r)
		if ph, ok := h.(patternHandler); ok {
			return string(ph)
		}
	}
	if m.IncreasedCardinality || staticPaths[p] {
		return p
	}
	return ""
}

// methodLabel is the method label of an HTTP verb (contract §6.2).
func (m *MetricsSpec) methodLabel(verb string) string {
	if m.ExcludeVerbs {
		return ""
	}
	switch verb {
	case http.MethodGet, http.MethodPut, http.MethodPost, http.MethodPatch, http.MethodDelete,
		http.MethodHead, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return verb
	}
	return "UNKNOWN"
}

// rewrite applies spec.metrics.rules to the label values of metric, in
// place; names are the metric's label names in the order of values.
func (m *MetricsSpec) rewrite(metric string, names, values []string) []string {
	byLabel := m.rules[metric]
	if byLabel == nil {
		return values
	}
	for i, n := range names {
		for _, rw := range byLabel[n] {
			if rw.re.MatchString(values[i]) {
				values[i] = rw.replacement
				break
			}
		}
	}
	return values
}
