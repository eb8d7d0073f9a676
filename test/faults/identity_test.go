package faults

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/skeinmesh/skein/test/harness"
)

// TestCARotationUnderLoad is issue 14 point 4, certificate and CA root
// rotation under load: the embedded CA's issuer, then its root, are
// replaced (`skein ca rotate`, `skein ca rotate --root`) while steady GETs
// and POSTs cross mTLS between a caller and two instances. Every sidecar
// renews its SVID after each rotation, no call fails and no POST reaches
// an app twice. (SVIDs expiring and renewing on their own under load:
// test.TestSVIDRotationUnderLoad.)
func TestCARotationUnderLoad(t *testing.T) {
	m := harness.NewMesh(t, bin)
	var ports [2]int
	var scs []*harness.Sidecar
	for i, name := range []string{"b1", "b2"} {
		ports[i], _ = m.App(name, 0)
		scs = append(scs, m.Sidecar("app-b", ports[i]))
	}
	a := m.Sidecar("app-a", 0)
	scs = append(scs, a)
	load := harness.StartLoad(harness.LoadSpec{Caller: a, Target: "app-b", Workers: 4, Posts: true})
	load.Progress(t, 100, 20*time.Second)

	for i, args := range [][]string{{"ca", "rotate"}, {"ca", "rotate", "--root"}} {
		cmd := exec.Command(bin.Skein, args...)
		cmd.Env = append(os.Environ(), "SKEIN_HOME="+m.Home)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("skein %v: %v\n%s", args, err, out)
		}
		for _, s := range scs {
			harness.WaitFor(t, 10*time.Second, s.AppID+" renewing its SVID after skein "+strings.Join(args, " "), func() bool {
				return strings.Count(s.Output(), "ca changed on disk") >= i+1
			})
		}
		load.Progress(t, 200, 20*time.Second)
	}
	res := load.Stop()
	t.Logf("load: %s", res)
	if res.Failed() != 0 {
		t.Errorf("%d calls failed across the rotations, first: %v", res.Failed(), res.Failures)
	}
	harness.Duplicates(t, res, harness.AppCounts(t, ports[0]), harness.AppCounts(t, ports[1]))
	for _, s := range scs {
		if n := s.Metric(t, "skein_identity_handshake_failures_total"); n != 0 {
			t.Errorf("%s refused %v handshakes across the rotations", s.AppID, n)
		}
	}
}
