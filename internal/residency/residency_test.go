package residency

import (
	"bytes"
	"os"
	"reflect"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const smapsSample = `00400000-01158000 r-xp 00000000 fe:00 9986113                            /usr/bin/skein
Rss:               11608 kB
Anonymous:             0 kB
01158000-022dd000 r--p 00d58000 fe:00 9986113                            /usr/bin/skein
Rss:               10512 kB
Anonymous:             0 kB
022dd000-0238d000 rw-p 01edd000 fe:00 9986113                            /usr/bin/skein
Rss:                 704 kB
Anonymous:           400 kB
0238d000-023b0000 r--p 01f8d000 fe:00 9986113                            /usr/bin/skein
Rss:                   8 kB
Anonymous:             8 kB
c000000000-c004000000 rw-p 00000000 00:00 0 
Rss:                4096 kB
Anonymous:          4096 kB
7f0000000000-7f0000200000 r-xp 00000000 fe:00 1234                       /usr/lib/x86_64-linux-gnu/libc.so.6
Rss:                1160 kB
Anonymous:             0 kB
7f0000300000-7f0000400000 r--s 00000000 fe:00 555                        /tmp/my file (deleted)
Rss:                  64 kB
Anonymous:             0 kB
VmFlags: rd sh mr mw me ms sd
`

func TestImageMappings(t *testing.T) {
	tests := []struct {
		name string
		pc   uint64
		want []mapping
	}{
		{
			name: "the executable's read-only mappings, without written or writable ones",
			pc:   0x495700,
			want: []mapping{
				{start: 0x400000, end: 0x1158000, perms: "r-xp", file: "fe:00 9986113 /usr/bin/skein", rss: 11608 << 10},
				{start: 0x1158000, end: 0x22dd000, perms: "r--p", file: "fe:00 9986113 /usr/bin/skein", rss: 10512 << 10},
			},
		},
		{
			name: "another file's mappings when pc is in it",
			pc:   0x7f0000000100,
			want: []mapping{
				{start: 0x7f0000000000, end: 0x7f0000200000, perms: "r-xp", file: "fe:00 1234 /usr/lib/x86_64-linux-gnu/libc.so.6", rss: 1160 << 10},
			},
		},
		{name: "shared mappings are left alone", pc: 0x7f0000300000},
		{name: "anonymous memory is never released", pc: 0xc000000010},
		{name: "pc outside every mapping", pc: 0x10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := imageMappings([]byte(smapsSample), tt.pc)
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(mapping{})); diff != "" {
				t.Errorf("imageMappings (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSmapsPathWithBlanks(t *testing.T) {
	got := parseSmaps([]byte(smapsSample))
	if diff := cmp.Diff("fe:00 555 /tmp/my file (deleted)", got[6].file); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
}

// TestReleaseImage releases the test binary's own start-up pages: the
// resident set of its read-only mappings shrinks, and the code keeps running
// (every page comes back on demand).
func TestReleaseImage(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("Linux only")
	}
	before := imageRSS(t)
	n, err := ReleaseImage()
	if err != nil {
		t.Fatal(err)
	}
	after := imageRSS(t)
	t.Logf("image resident: %d kB before, %d kB after; released %d kB", before>>10, after>>10, n>>10)
	if n <= 0 {
		t.Errorf("ReleaseImage released %d bytes, want > 0", n)
	}
	if after >= before {
		t.Errorf("image resident set %d bytes after, want less than %d before", after, before)
	}
	var buf bytes.Buffer // code and data the call unmapped, used again
	buf.WriteString("still running")
	if buf.String() != "still running" {
		t.Error("code after ReleaseImage misbehaves")
	}
}

func imageRSS(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for _, m := range imageMappings(b, uint64(reflect.ValueOf(ReleaseImage).Pointer())) {
		sum += m.rss
	}
	return sum
}
