// Package discovery finds the peer-facing endpoints of an app id and
// chooses one per call.
//
// The embedded registry (Registry) needs no configuration on one machine:
// each sidecar writes a small JSON record under
// $SKEIN_HOME/registry/<namespace>/<app-id>/ and refreshes its modification
// time every second. A record is live while its lease (3 s since the last
// refresh) holds and, for local processes, while its pid exists, so a
// SIGKILLed sidecar leaves the rotation within one poll, a hung one within
// the lease. A clean stop removes the record at once.
//
// Resolver caches the endpoints of every app id it was asked about. A
// Source that pushes changes (a Notifier: xDS EDS) has the changed id
// re-read at once; besides, every id is re-read every 250 ms
// (DefaultRefreshInterval, WithRefreshInterval; 0 turns this polling off),
// which is how the registry's changes, which are not pushed, are seen. An
// unknown id is read on demand, so a new sidecar is found on the first call
// after it registers. Endpoint values outlive refreshes, so an instance
// that stays keeps its load statistics and outlier state.
//
// Target names an app: its app id and namespace, a comparable value shared
// with proxy (proxy.Target is this type) and xds. Its wire form
// "<app-id>.<namespace>" (String) is the :authority of calls between
// sidecars; ParseTarget reads it back only where a name comes from outside.
//
// Picker is the client-side layer (an http.RoundTripper) that resolves the
// target of a request (the call's, given by its caller, else the request's
// logical host "<app-id>.<namespace>"), chooses an endpoint with
// a Balancer (power of two choices over peak-EWMA latency by default, round
// robin on request; latencies within a factor of two, or a few milliseconds,
// of each other count as equal, so a light load is shared rather than sent to
// whichever instance once answered a little faster) and sends a copy of the
// request addressed to it. A try
// the target never processed (the connection or TLS handshake failed, or
// the peer refused the HTTP/2 stream: REFUSED_STREAM, or a GOAWAY below
// our stream) is retried at once on another instance whatever the verb,
// with the body intact (the first 64 KiB are kept for that). Outlier
// detection ejects an instance after consecutive failures (outlier.go).
// Endpoint weights from xDS share load in proportion under both balancers.
package discovery
