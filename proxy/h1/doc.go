// Package h1 is Skein's lean HTTP/1.1: a client transport, an
// http.RoundTripper designed for forwarding, and a server (Server) that
// runs an http.Handler on each connection's goroutine.
//
// # Server
//
// net/http's server starts a goroutine for every request without a body
// left to read (the "background read", which notices a client closing its
// connection while the handler runs) and ends it when the handler returns:
// a goroutine hand-off each way per request, measured at about 40 % of a
// minimal server's CPU on loopback (0.087 against 0.046 ms per 1 KiB GET at
// 1,000 req/s, with internal/inlineio on both). Server reads the request
// with http.ReadRequest (net/http's own parsing) and makes net/http's
// server-side checks (Host, header names and values, protocol version,
// Expect), answers on the same goroutine, holds up to 4 KiB of the body so
// that short answers get a Content-Length, and otherwise frames as net/http
// does (chunked on HTTP/1.1 with trailers, close-delimited on HTTP/1.0,
// none for HEAD, 1xx, 204 and 304, a sniffed Content-Type when the handler
// sets none). A client that goes away is noticed without a goroutine per
// request: one goroutine per Server, running only while requests are,
// looks every WatchDelay (50 ms) for requests that have run that long and
// have read their body, and starts a one-byte read of their connection; a
// failed read cancels the request's context, a byte read (the client's
// next request) is kept. A timer per request was tried first: resetting it
// woke the network poller on every request and cost half the gain.
//
// A connection reuses, from one request to the next, its ResponseWriter
// and response header map, and the header map (and values array) of a
// request head it parsed itself: a handler must not use its ResponseWriter
// or the request's Header after it returns, nor leave a goroutine that
// does (fasthttp's rule; net/http's own for the ResponseWriter). A request
// body gets a reader of its own, which stays closed for a goroutine that
// outlives the handler. ResponseWriter.Started tells recovery.Handler
// whether a panic can still be answered, with no wrapper per request.
//
// A Transport call made under a Server's request context (the proxy's
// case: the forwarder's request carries the inbound one's context, plus
// values) is watched by the serving connection: when the request's context
// ends (the client went away, or the handler returned) the connection
// interrupts the call, as context.AfterFunc would, with none of the five
// allocations AfterFunc makes against a fresh request context. A context
// with a deadline or cancel of its own gets context.AfterFunc.
//
// # Client
//
// net/http's Transport gives every connection a read goroutine and a write
// goroutine, and a call hands its request to one and waits for the other:
// three or four goroutine hand-offs a call, which on a loaded proxy cost
// more CPU than the proxying itself (issue 11's profile). Transport writes
// the request and reads the response on the caller's goroutine, as
// fasthttp's client and HAProxy do, so a call that finds an idle
// connection makes no hand-off at all:
//
//   - a request without a body, or with a fixed-length body of at most
//     InlineBodyMax bytes, is written inline and then its response read;
//   - a longer or chunked body is written by one goroutine per call while
//     the caller reads the response, so a server that answers while it
//     still reads (an echo, an early error) cannot dead-lock the call;
//   - the response body streams from the connection; the connection goes
//     back to the pool when the body has been read to its end (trailers
//     included) and the request was written whole, and is closed otherwise.
//
// Requests are written with http.Request.Write and responses parsed with
// http.ReadResponse, so framing (Content-Length, chunked, trailers, HEAD,
// 1xx, 101 upgrades) is net/http's own, well-tested code.
//
// There is no goroutine watching idle connections. A request without a
// body (or with GetBody) that fails on a reused connection before any
// response byte arrives is sent once more on a new connection, the rule
// net/http applies (RFC 9112 §9.3.1); such a request takes a connection
// pooled less than 500 ms ago as it is. Any other reuse is checked first
// with a non-blocking MSG_PEEK: a connection whose peer closed it, or that
// holds bytes nobody asked for, is discarded.
//
// # Long bodies over TLS
//
// crypto/tls reads one record (16 KiB at most) per Read and writes each
// record with a write(2) of its own. On internal/inlineio sockets the
// server and the transport read a long body over TLS gathering every
// record at hand (Conn.SetReadNoWait), and write one corked (Conn.Cork):
// a 1 MiB body costs each sidecar 19 writes instead of 67 (tlsio.go).
//
// The server sends a response as soon as all of its declared
// Content-Length is written, before its handler returns.
//
// Cancellation and deadlines come from the request's context: when it
// ends, the connection's deadline is set in the past, which ends the read
// or write in progress, and the connection is closed.
package h1
