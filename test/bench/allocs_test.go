package bench

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/skeinmesh/skein/discovery"
)

// TestAllocationBudget guards the data path's allocations (issue 11,
// point 2): a 1 KiB GET through both sidecar hops, in-process, minus what
// the same GET costs the client and the app directly, must stay within
// sidecarAllocBudget. Allocation counts are deterministic enough to
// assert on, unlike time; the budget is the measurement plus room for
// pool and map noise. See BenchmarkTwoSidecars for allocs/op.
func TestAllocationBudget(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two sidecars")
	}
	appPort := startApp(t)
	reg, err := discovery.NewRegistry(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	startSidecar(t, reg, "b", appPort)
	a := startSidecar(t, reg, "a", 0)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4, DisableCompression: true}}
	defer client.CloseIdleConnections()

	measure := func(url string) float64 {
		for range 200 { // connections, caches and pools warm
			if err := get(client, url); err != nil {
				t.Fatal(err)
			}
		}
		return testing.AllocsPerRun(500, func() {
			if err := get(client, url); err != nil {
				t.Fatal(err)
			}
		})
	}
	direct := measure("http://127.0.0.1:" + strconv.Itoa(appPort) + "/bench")
	through := measure("http://127.0.0.1:" + strconv.Itoa(a.HTTP) + "/v1.0/invoke/b/method/bench")
	sidecars := through - direct
	t.Logf("allocations per 1 KiB GET: direct %.0f, through two sidecars %.0f: %.0f in the sidecars", direct, through, sidecars)
	if sidecars > sidecarAllocBudget {
		t.Errorf("the two sidecar hops allocate %.0f times per GET, budget %d", sidecars, sidecarAllocBudget)
	}
}
