package resiliency

import (
	"strconv"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestStatePerTargetIsBounded covers issue 14 point 3 in this package:
// calls naming ever new targets (unknown app ids under a default policy)
// keep at most MaxTargets targets' breakers and budgets and name at most
// maxTargetLabels targets in the metrics, while a target in use keeps its
// state.
func TestStatePerTargetIsBounded(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, "caller")
	if err != nil {
		t.Fatal(err)
	}
	breakers := NewRegistry(m)
	budgets := NewBudgets(DefaultBudget, m)
	bp := &BreakerPolicy{Name: "cb", MaxRequests: 1}
	hot := Policy{Target: "hot", Breaker: bp}
	hotBreaker, hotBudget := breakers.Get(&hot, "m"), budgets.For("hot")
	const n = 3 * MaxTargets
	for i := range n {
		p := Policy{Target: "ghost-" + strconv.Itoa(i), Breaker: bp}
		breakers.Get(&p, "m")
		budgets.For(p.Target)
		m.policyUsed(&p, policyBreaker, StateClosed)
		if i%100 == 0 { // the target in use stays recently used
			breakers.Get(&hot, "m")
			budgets.For("hot")
		}
	}
	if got := breakers.Targets(); got != MaxTargets {
		t.Errorf("breakers of %d targets after %d targets, want %d", got, n, MaxTargets)
	}
	if got := budgets.Len(); got != MaxTargets {
		t.Errorf("budgets of %d targets after %d targets, want %d", got, n, MaxTargets)
	}
	if breakers.Get(&hot, "m") != hotBreaker || budgets.For("hot") != hotBudget {
		t.Error("the target in use lost its breaker or budget")
	}
	if got, want := testutil.CollectAndCount(m.count, "dapr_resiliency_count"), maxTargetLabels+1; got != want {
		t.Errorf("dapr_resiliency_count has %d series, want %d (the cap and app__other)", got, want)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	other := false
	for _, mf := range mfs {
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				other = other || l.GetName() == "target" && l.GetValue() == "app__other"
			}
		}
	}
	if !other {
		t.Error(`no target="app__other" series past the cap`)
	}
}
