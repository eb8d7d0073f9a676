package proxy

import "testing"

func TestTimingHeaderRoundTrip(t *testing.T) {
	q, a := parseTiming(formatTiming(1234, 5678901))
	if q != 1234 || a != 5678901 {
		t.Errorf("round trip gave queue %d app %d", q, a)
	}
	for _, bad := range []string{"", "queue", "queue=x,app=-5", "app=,queue=1e9", "other=3"} {
		q, a := parseTiming(bad)
		if q < 0 || a < 0 || (bad != "app=,queue=1e9" && (q != 0 || a != 0)) {
			t.Errorf("parseTiming(%q) = %d, %d", bad, q, a)
		}
	}
}
