package faults

import (
	"fmt"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// TestKillRestartLoop is issue 14 point 4, instances crashing: the sidecars
// of three instances of app-b are killed (SIGKILL) and started again, one
// after another, six times, under steady GETs and POSTs. No GET fails: one
// that never reached an instance, or whose instance died under it, goes to
// another. A POST in flight at a killed instance may fail (nobody can tell
// whether its app got it), but none reaches an app twice, every POST
// answered 200 reached exactly one app, and no more POSTs fail than were
// in flight: at most one per load worker per kill.
func TestKillRestartLoop(t *testing.T) {
	const instances, kills, workers = 3, 6, 4
	m := harness.NewMesh(t, bin)
	var ports [instances]int
	var scs [instances]*harness.Sidecar
	for i := range instances {
		ports[i], _ = m.App(fmt.Sprintf("b%d", i), 0)
		scs[i] = m.Sidecar("app-b", ports[i])
	}
	a := m.Sidecar("app-a", 0)
	load := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: workers, Posts: true})
	load.Progress(t, 100, 20*time.Second)

	for k := range kills {
		i := k % instances
		scs[i].Kill() // SIGKILL: no deregistration, connections reset
		scs[i] = m.Sidecar("app-b", ports[i])
		harness.WaitFor(t, 10*time.Second, "the caller to see the restarted instance", func() bool {
			return len(a.Instances(t, "app-b")) == instances
		})
		// The next kill once the load reaches the restarted instance.
		served := harness.AppNumber(t, ports[i], "/requests")
		harness.WaitFor(t, 10*time.Second, "the load reaching the restarted instance", func() bool {
			return harness.AppNumber(t, ports[i], "/requests") >= served+10
		})
	}
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.GETFailed != 0 {
		t.Errorf("%d GETs failed while instances were killed, first failures: %v", res.GETFailed, res.Failures)
	}
	if res.POSTFailed > kills*workers {
		t.Errorf("%d POSTs failed in %d kills, want at most %d (one in flight per worker): %v", res.POSTFailed, kills, kills*workers, res.Failures)
	}
	var counts []map[string]int
	for _, p := range ports {
		counts = append(counts, harness.AppCounts(t, p))
	}
	reached := harness.Duplicates(t, res, counts...)
	t.Logf("%d of %d POSTs reached an app, %d failed", reached, res.POSTs, res.POSTFailed)
}
