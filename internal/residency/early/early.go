//go:build linux

package early

import (
	"bytes"
	"sync/atomic"
	"syscall"
	"time"
)

// interval is how often the executable's pages are given back while
// start-up runs: often enough that what one package's init touched is gone
// before the next few have run, rarely enough to cost start-up little (each
// page used again is a minor fault from the page cache).
const interval = 2 * time.Millisecond

// limit ends the releasing in any case: a command that never calls Stop
// (skein --help, skein ca ...) gets it for this long at most.
const limit = 5 * time.Second

var (
	stop atomic.Bool
	done = make(chan struct{})
)

func init() {
	ranges := imageRanges()
	if len(ranges) == 0 {
		close(done)
		return
	}
	go func() {
		defer close(done)
		end := time.Now().Add(limit)
		for !stop.Load() && time.Now().Before(end) {
			time.Sleep(interval)
			for _, r := range ranges {
				_, _, _ = syscall.Syscall(syscall.SYS_MADVISE, r[0], r[1]-r[0], syscall.MADV_DONTNEED)
			}
		}
	}()
}

// Stop ends the releasing and waits until the releaser is gone: call it
// once start-up is over, before a last residency.ReleaseImage.
func Stop() {
	stop.Store(true)
	<-done
}

// imageRanges are the executable's read-only, private mappings (text,
// rodata, pclntab), from /proc/self/maps, read with raw syscalls: this
// package runs before os and fmt are initialised.
func imageRanges() [][2]uintptr {
	var exe [4096]byte
	n, err := syscall.Readlink("/proc/self/exe", exe[:])
	if err != nil || n <= 0 {
		return nil
	}
	path := exe[:n]
	fd, err := syscall.Open("/proc/self/maps", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	defer syscall.Close(fd)
	var maps []byte
	buf := make([]byte, 16<<10)
	for {
		n, err := syscall.Read(fd, buf)
		if n > 0 {
			maps = append(maps, buf[:n]...)
		}
		if n <= 0 || err != nil {
			break
		}
	}
	var out [][2]uintptr
	for line := range bytes.Lines(maps) {
		f := bytes.Fields(line)
		// start-end perms offset dev inode path
		if len(f) < 6 || !bytes.Equal(f[5], path) {
			continue
		}
		if perms := f[1]; len(perms) != 4 || perms[0] != 'r' || perms[1] != '-' || perms[3] != 'p' {
			continue // writable (data, bss) or shared: never
		}
		start, end, ok := bytes.Cut(f[0], []byte("-"))
		if !ok {
			continue
		}
		out = append(out, [2]uintptr{hexval(start), hexval(end)})
	}
	return out
}

func hexval(b []byte) uintptr {
	var v uintptr
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		}
	}
	return v
}
