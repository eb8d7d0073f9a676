// Package faults is Skein's fault suite (issue 14, points 4 and 6): each
// test starts real sidecars, apps and peers on 127.0.0.1 (package
// test/harness), puts steady load through them, injects one fault, and
// asserts by counts what the fault may and may not cost:
//
//   - callee instances killed (SIGKILL) and restarted in a loop: no
//     idempotent call fails, no POST reaches an app twice (the apps count);
//   - graceful shutdown (SIGTERM) and a rolling restart: no call fails,
//     calls in flight finish, no POST is duplicated;
//   - the app hanging, answering garbage or dropping the connection
//     mid-response; clients going away mid-upload and mid-download: the
//     calls end with the right status, and the sidecars' goroutines and
//     open fds come back to their baseline;
//   - issuer and root CA rotation under load; the control plane flapping;
//     the trace collector a black hole and no Prometheus scraping;
//     $SKEIN_HOME's registry corrupted or unwritable.
//
// Cases covered elsewhere are not repeated here: one instance leaving
// (test.TestDiscoveryInstanceLeaves), SVID renewal under load
// (test.TestSVIDRotationUnderLoad), the collector's port closed
// (test.TestTracingCollectorDown), the control plane killed once
// (test.TestXDSControlPlane), skein run draining on a signal
// (test.TestRunDrainsOnSignal).
//
// Every case is bounded in time and the package runs in CI with `make test`.
package faults
