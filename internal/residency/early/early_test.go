//go:build linux

package early

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestImageRanges: the ranges released are exactly the executable's
// read-only private mappings, its text among them.
func TestImageRanges(t *testing.T) {
	ranges := imageRanges()
	if len(ranges) < 2 {
		t.Fatalf("%d ranges, want the text and the read-only data at least", len(ranges))
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	want := map[[2]uintptr]bool{}
	for _, line := range strings.Split(string(maps), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe || strings.Contains(f[1], "w") || !strings.HasSuffix(f[1], "p") {
			continue
		}
		start, end, _ := strings.Cut(f[0], "-")
		want[[2]uintptr{hexval([]byte(start)), hexval([]byte(end))}] = true
	}
	for _, r := range ranges {
		if !want[r] {
			t.Errorf("range %#x-%#x is not a read-only private mapping of %s", r[0], r[1], exe)
		}
	}
	if len(ranges) != len(want) {
		t.Errorf("%d ranges, want the %d read-only private mappings of the executable", len(ranges), len(want))
	}
	// This very function's code is in one of them.
	var inText bool
	pc := funcPC()
	for _, r := range ranges {
		inText = inText || r[0] <= pc && pc < r[1]
	}
	if !inText {
		t.Errorf("no range holds the code at %#x", pc)
	}
}

// TestStop: Stop ends the releaser and can be called again.
func TestStop(t *testing.T) {
	Stop()
	if !stop.Load() {
		t.Fatal("not stopped")
	}
	select {
	case <-done:
	default:
		t.Fatal("releaser still running after Stop")
	}
	Stop()
}

func TestHexval(t *testing.T) {
	for in, want := range map[string]uintptr{"0": 0, "400000": 0x400000, "7ffd1a2b3000": 0x7ffd1a2b3000} {
		if got := hexval([]byte(in)); got != want {
			t.Errorf("hexval(%q) = %#x, want %#x", in, got, want)
		}
	}
}

// funcPC is the address of code in this package.
func funcPC() uintptr {
	return reflect.ValueOf(TestImageRanges).Pointer()
}
