// Package apphealth probes the local app's health as daprd does
// (--enable-app-health-check; reference/dapr-contract.md §9.1, Dapr's
// pkg/apphealth) and refuses calls to an unhealthy app.
//
// Its parts:
//   - Config: the probe path (HTTP only, default /healthz), interval
//     (5s), timeout (500ms, at most the interval) and threshold (3).
//     WithDefaults fills zero fields; Validate reports every problem.
//   - Prober: one probe of the app. HTTPProbe GETs the path, healthy on a
//     2xx answer, redirects not followed (Dapr's app channel does not);
//     GRPCProbe calls dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck,
//     healthy on OK. A refused connection, a timeout, any other status
//     are unhealthy answers.
//   - Checker: runs a Prober every interval (Run), the first probe at
//     once, each bounded by the timeout. As in Dapr the app starts
//     unhealthy, becomes unhealthy after Threshold failed probes in a row
//     and healthy again after one success. Healthy reports the state,
//     Changed signals each change, Checked closes after the first verdict.
//   - Require(checker): a client-side layer, func(http.RoundTripper)
//     http.RoundTripper, in front of the app: while the app is unhealthy
//     calls fail with ErrUnhealthy ("app is not in a healthy state",
//     Dapr's message) without reaching it.
//   - Metrics: skein_app_healthy{app_id} (1 or 0),
//     skein_app_health_transitions_total{app_id,status}, and Dapr's probe
//     metrics (contract §6.2): dapr_http_healthprobes_completed_count and
//     _roundtrip_latency{app_id,status} for HTTP apps,
//     dapr_grpc_io_healthprobes_completed_count and
//     _roundtrip_latency{app_id,grpc_client_status} for gRPC apps.
//
// Usage:
//
//	m, err := apphealth.NewMetrics(reg, appID)
//	probe := apphealth.NewHTTPProbe("http://127.0.0.1:3000"+cfg.Path, appTransport, m)
//	c := apphealth.New(cfg, probe, m, log)
//	go c.Run(ctx) // owned and waited for by the caller
//	toApp := apphealth.Require(c)(appTransport)
//
// What the sidecar does with a change (marking its instance unhealthy in
// discovery while the app is unhealthy) is up to the caller: it reads
// Healthy after each signal on Changed. Everything here is safe for
// concurrent use; a nil *Checker is an app without health checks, always
// healthy.
package apphealth
