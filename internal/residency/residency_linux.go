package residency

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"syscall"
)

// ReleaseImage unmaps the resident pages of the executable's read-only
// private mappings and returns how many bytes were resident in them.
// Writable mappings (data, bss) are never touched, nor is a read-only
// mapping holding a page that was written (a copy-on-write page: a relocated
// RELRO page, a debugger's breakpoint), since dropping that page would lose
// the write. It is safe for concurrent use: another goroutine running code of
// those pages faults it back in.
func ReleaseImage() (int64, error) {
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("release image: %w", err)
	}
	// The executable is whatever file maps this function's code.
	pc := uint64(reflect.ValueOf(ReleaseImage).Pointer())
	var released int64
	for _, m := range imageMappings(smaps, pc) {
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); errno != 0 {
			return released, fmt.Errorf("release image: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		released += m.rss
	}
	return released, nil
}

// mapping is one entry of /proc/self/smaps.
type mapping struct {
	start, end uint64
	perms      string // "r-xp"
	file       string // "dev inode path", the identity of the mapped file
	rss        int64  // bytes resident
	anon       int64  // bytes in copy-on-write (anonymous) pages
}

// imageMappings returns the read-only private mappings of the file that also
// maps pc, leaving out those with anonymous pages.
func imageMappings(smaps []byte, pc uint64) []mapping {
	all := parseSmaps(smaps)
	var file string
	for _, m := range all {
		if m.start <= pc && pc < m.end {
			file = m.file
		}
	}
	if file == "" {
		return nil
	}
	var out []mapping
	for _, m := range all {
		if m.file != file || m.perms[1] == 'w' || m.perms[3] != 'p' || m.anon != 0 {
			continue
		}
		out = append(out, m)
	}
	return out
}

// parseSmaps reads the mappings of a /proc/PID/smaps (proc(5)): a header
// line "start-end perms offset dev inode [path]" then "Key: value kB" lines.
// Anonymous mappings (inode 0) keep an empty file.
func parseSmaps(b []byte) []mapping {
	var out []mapping
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if bytes.HasSuffix(f[0], []byte(":")) { // a "Key: value kB" line
			if len(out) == 0 || len(f) < 2 {
				continue
			}
			m := &out[len(out)-1]
			switch string(f[0]) {
			case "Rss:":
				m.rss = kB(f[1])
			case "Anonymous:":
				m.anon = kB(f[1])
			}
			continue
		}
		start, end, ok := bytes.Cut(f[0], []byte("-"))
		if !ok || len(f) < 5 || len(f[1]) != 4 {
			continue
		}
		m := mapping{start: hex(start), end: hex(end), perms: string(f[1])}
		if string(f[4]) != "0" {
			m.file = string(f[3]) + " " + string(f[4]) + " " + string(pathOf(line))
		}
		out = append(out, m)
	}
	return out
}

// pathOf returns what follows the fifth field of a header line: the path,
// which may hold blanks (and ends in " (deleted)" once the file is replaced).
func pathOf(line []byte) []byte {
	for range 5 {
		line = bytes.TrimLeft(line, " \t")
		if i := bytes.IndexAny(line, " \t\n"); i >= 0 {
			line = line[i:]
		} else {
			return nil
		}
	}
	return bytes.TrimSpace(line)
}

func hex(b []byte) uint64 {
	v, _ := strconv.ParseUint(string(b), 16, 64)
	return v
}

func kB(b []byte) int64 {
	v, _ := strconv.ParseInt(string(b), 10, 64)
	return v << 10
}
