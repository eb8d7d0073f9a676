// Package early gives back the executable's pages while package
// initialisation runs, so that start-up's peak resident set (VmHWM) is not
// the sum of every page every package's init touched.
//
// Why: a Go binary's inits run code and read type descriptors spread over
// the whole image, and Linux maps more than is touched (fault-around). One
// release after start-up (internal/residency.ReleaseImage) lowers the
// resident set from then on but not its peak, which start-up has reached
// already: the sidecar's `--help` peaked at 32 MB, most of it pages of the
// executable used once.
//
// How: importing the package starts, from its init (which runs among the
// first: it needs only syscall and time, and packages are initialised in
// import-path order once their imports are), a goroutine that every 2 ms
// unmaps the resident pages of the executable's read-only private mappings
// with madvise(MADV_DONTNEED), the same sound operation as ReleaseImage:
// the pages are identical to the file, and whatever runs next faults back
// what it uses from the page cache. Stop ends it (cmd/skein calls it when
// the sidecar listens, before ReleaseImage); it ends by itself after 5 s.
// It never touches writable or shared mappings.
package early
