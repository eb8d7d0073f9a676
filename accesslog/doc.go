// Package accesslog is Skein's --access-log: one JSON line per call, on
// each side of it, with the call's ends, method, status, bytes and where
// its time went.
//
// A Log (New) writes the lines and hands out the layers, in the stdlib
// shapes so the package never imports proxy; a nil *Log is "off" and every
// layer it hands out is then its next layer unchanged:
//   - Outbound and Inbound, func(http.Handler) http.Handler, put a record
//     of the call in the request's context, count the body bytes both ways
//     and write the line once the call is over. A request that Note never
//     named as a call (a control endpoint, a rejected request) is not
//     logged.
//   - TryTiming, func(http.RoundTripper) http.RoundTripper, right above the
//     peer transport: counts tries, times connect, TLS and each try to its
//     response headers, and takes the callee's queue and app times from the
//     Skein-Timing response header, which it removes.
//   - AppTiming, func(http.RoundTripper) http.RoundTripper, right above the
//     app transport: times the queue and the app and, when the caller asked
//     with "Skein-Timing: ?1", reports them in that response header.
//
// Note is how the layers in between say which call a request turned out to
// be (plain app ids and the method, no proxy types). AskTiming and
// HeaderTiming are the request side of the timing exchange; the header
// never reaches either app (the sidecar strips it before the local app).
//
// The line format, fields in this order (test/accesslog_test.go pins it):
//
//	{"time","direction","caller","callee","verb","method","status",
//	 "bytes_in","bytes_out",["tries","instance" outbound],"duration_ms",
//	 "queue_ms",["connect_ms","tls_ms","upstream_ms" outbound],"app_ms",
//	 ["trace_id" when the request has a trace]}
//
// Everything here is safe for concurrent use; lines from concurrent calls
// never interleave.
package accesslog
