package proxy

import (
	"strings"
	"sync"
	"unicode/utf8"
)

// Label values that come from requests are made safe before they reach a
// metric (STYLE.md §10): valid UTF-8, which Prometheus requires (an invalid
// value makes WithLabelValues panic), and bounded in number.
//
//   - Invalid UTF-8 is replaced, sequence by sequence, with U+FFFD
//     (strings.ToValidUTF8), so the readable rest of a value is kept. The
//     parsers already refuse such app ids and methods (ValidateAppID,
//     NormalizeMethod); this is the last line for anything else, e.g. a
//     raw API path.
//   - Paths: each metric keeps at most maxLabelValues distinct values of
//     its path label, counted after spec.metrics.rules (a rule that
//     collapses paths spends no slots on the paths it collapses); later new
//     values are recorded as labelOther.
//   - App ids: at most maxLabelValues distinct apps called (dst_app_id of
//     req_sent and skein_invocation_*, src_app_id of res_recv*) and as many
//     calling apps (src_app_id of req_recv, dst_app_id of res_sent) per
//     sidecar; later ones are labelOther in every metric alike. The caller
//     set is apart because with mTLS off callers name themselves.
//   - Values bounded by construction never count and are always kept: the
//     empty path of low cardinality, Dapr's static paths, pathMatching
//     patterns, rule replacements, this sidecar's own app id and the
//     placeholders below.
//   - A call to an app id that resolves to no instance records no Dapr
//     invocation series (Dapr fails name resolution before it records
//     any), and Skein's per-edge series under labelUnknown.
//
// The caps are per sidecar, not per snapshot: the metric vectors outlive
// Configuration reloads, and so does the set of values admitted to them.
// At the caps a sidecar's metrics take about 20 MB and 150,000 exposition
// lines (TestMetricsCardinalityBound).
const maxLabelValues = 1000

// Placeholder label values.
const (
	// labelOther stands for every value past a cap.
	labelOther = "_other"
	// labelUnknown is the dst_app_id of calls to an app id with no
	// instance (APP_NOT_FOUND).
	labelUnknown = "_unknown"
	// callerUnknown is Dapr's src_app_id of a call without a valid caller.
	callerUnknown = "unknown"
)

// The sets of app ids (see above), as labelLimits names them.
const (
	appsCalled  = "apps called"
	appsCalling = "apps calling"
)

// labelLimits admits up to max distinct values per set: a (metric, label)
// pair for paths, appsCalled or appsCalling for app ids. It is consulted
// only when a snapshot's child cache misses, so one mutex is enough. Safe
// for concurrent use.
type labelLimits struct {
	max  int
	mu   sync.Mutex
	seen map[labelValue]struct{}
	n    map[labelSet]int
}

type labelSet struct{ metric, label string }

type labelValue struct {
	labelSet
	value string
}

func newLabelLimits(max int) *labelLimits {
	return &labelLimits{max: max, seen: map[labelValue]struct{}{}, n: map[labelSet]int{}}
}

// admit returns v if it is, or now becomes, one of the values of set, else
// labelOther.
func (l *labelLimits) admit(set labelSet, v string) string {
	k := labelValue{set, v}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[k]; ok {
		return v
	}
	if l.n[set] >= l.max {
		return labelOther
	}
	l.seen[k] = struct{}{}
	l.n[set]++
	return v
}

// validLabel returns v with invalid UTF-8 replaced by U+FFFD.
func validLabel(v string) string {
	if utf8.ValidString(v) {
		return v
	}
	return strings.ToValidUTF8(v, "\uFFFD")
}

// labels returns the label values of metric: valid UTF-8, after
// spec.metrics.rules, its path capped. values is changed in place; names
// are the metric's label names in the order of values. App ids are capped
// before, by the callers (appLabel).
func (m *meters) labels(metric string, names []string, values ...string) []string {
	for i, v := range values {
		values[i] = validLabel(v)
	}
	values = m.spec.rewrite(metric, names, values)
	for i, n := range names {
		if n == "path" && !m.bounded(values[i]) {
			values[i] = m.in.limits.admit(labelSet{metric, n}, values[i])
		}
	}
	return values
}

// appLabel is the label value of app id in set (appsCalled, appsCalling):
// the id, or labelOther past the cap.
func (m *meters) appLabel(set, id string) string {
	id = validLabel(id)
	if m.bounded(id) {
		return id
	}
	return m.in.limits.admit(labelSet{set, "app_id"}, id)
}

// bounded reports whether v is a label value that cannot grow with
// requests.
func (m *meters) bounded(v string) bool {
	switch v {
	case "", m.appID, labelOther, labelUnknown, callerUnknown:
		return true
	}
	return staticPaths[v] || m.spec.boundedValues[v]
}

// callerLabel is the src_app_id of a call from another sidecar: its app id
// if it is a valid one, else Dapr's "unknown". With mTLS off the id comes
// from a header any client can set.
func callerLabel(id string) string {
	if ValidateAppID(id) != nil {
		return callerUnknown
	}
	return id
}
