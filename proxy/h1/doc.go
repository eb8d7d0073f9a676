// Package h1 is Skein's lean HTTP/1.1 client transport, an
// http.RoundTripper designed for forwarding.
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
// There is no goroutine watching idle connections. A pooled connection is
// checked before reuse with a non-blocking MSG_PEEK: a connection whose
// peer closed it, or that holds bytes nobody asked for, is discarded. A
// request without a body (or with GetBody) that still fails on a reused
// connection before any response byte arrives is sent once more on a new
// connection, the rule net/http applies (RFC 9112 §9.3.1).
//
// Cancellation and deadlines come from the request's context: when it
// ends, the connection's deadline is set in the past, which ends the read
// or write in progress, and the connection is closed.
package h1
