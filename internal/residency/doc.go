// Package residency gives back, once start-up is over, the pages of the
// executable that only start-up needed.
//
// Why: a Go binary's read-only segments (machine code, rodata with the type
// descriptors, the pclntab) are file-backed, and every page the process maps
// counts in its resident set. Start-up touches code and data spread over the
// whole image: the runtime registers every itab (reading the type descriptor
// of both sides), and every package with an init function runs code in its
// own part of the text, envoy's and the other protobuf packages included.
// Linux then maps more than what is touched: a file read fault also maps
// up to 64 KiB of cached neighbours (fault-around), and on kernels with large
// page-cache folios a whole folio. For the sidecar that is about 24 MB of the
// image mapped after start-up; released, about 4 MB comes back while idle
// and about 20 MB at 1,000 req/s (docs/performance.md, "Memory").
//
// [ReleaseImage] unmaps the resident pages of the executable's read-only,
// private, never-written mappings with madvise(MADV_DONTNEED). Nothing is
// lost: those pages are identical to the file, so a later access faults the
// page back in from the page cache (a minor fault, no I/O while cached).
// What stays mapped afterwards is what the process really uses. The page
// cache itself is the kernel's: clean, shared by every process running the
// same binary, and reclaimable without writing anything; once unmapped those
// pages are reclaimed before mapped ones.
//
// It lowers the resident set from then on (VmRSS), not the peak reached
// before the call (VmHWM). Call it once, after start-up:
//
//	if n, err := residency.ReleaseImage(); err != nil {
//		log.Warn("release start-up pages", "err", err)
//	} else {
//		log.Debug("start-up pages released", "bytes", n)
//	}
//
// ReleaseImage is for Linux; on other systems it does nothing.
package residency
