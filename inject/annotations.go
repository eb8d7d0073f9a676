package inject

import (
	"sort"
	"strings"
)

// Dapr's pod annotations (Dapr v1.14 pkg/injector/annotations), the ones
// this package reads.
const (
	AnnotationEnabled               = "dapr.io/enabled"
	AnnotationAppID                 = "dapr.io/app-id"
	AnnotationAppPort               = "dapr.io/app-port"
	AnnotationAppProtocol           = "dapr.io/app-protocol"
	AnnotationAppSSL                = "dapr.io/app-ssl"
	AnnotationAppChannelAddress     = "dapr.io/app-channel-address"
	AnnotationConfig                = "dapr.io/config"
	AnnotationLogLevel              = "dapr.io/log-level"
	AnnotationLogAsJSON             = "dapr.io/log-as-json"
	AnnotationEnableMetrics         = "dapr.io/enable-metrics"
	AnnotationMetricsPort           = "dapr.io/metrics-port"
	AnnotationAppMaxConcurrency     = "dapr.io/app-max-concurrency"
	AnnotationHTTPMaxRequestSize    = "dapr.io/http-max-request-size"
	AnnotationMaxBodySize           = "dapr.io/max-body-size"
	AnnotationHTTPReadBufferSize    = "dapr.io/http-read-buffer-size"
	AnnotationReadBufferSize        = "dapr.io/read-buffer-size"
	AnnotationGracefulShutdown      = "dapr.io/graceful-shutdown-seconds"
	AnnotationEnableAPILogging      = "dapr.io/enable-api-logging"
	AnnotationEnableAppHealthCheck  = "dapr.io/enable-app-health-check"
	AnnotationAppHealthCheckPath    = "dapr.io/app-health-check-path"
	AnnotationAppHealthInterval     = "dapr.io/app-health-probe-interval"
	AnnotationAppHealthTimeout      = "dapr.io/app-health-probe-timeout"
	AnnotationAppHealthThreshold    = "dapr.io/app-health-threshold"
	AnnotationListenAddresses       = "dapr.io/sidecar-listen-addresses"
	AnnotationCPURequest            = "dapr.io/sidecar-cpu-request"
	AnnotationCPULimit              = "dapr.io/sidecar-cpu-limit"
	AnnotationMemoryRequest         = "dapr.io/sidecar-memory-request"
	AnnotationMemoryLimit           = "dapr.io/sidecar-memory-limit"
	AnnotationLivenessDelay         = "dapr.io/sidecar-liveness-probe-delay-seconds"
	AnnotationLivenessTimeout       = "dapr.io/sidecar-liveness-probe-timeout-seconds"
	AnnotationLivenessPeriod        = "dapr.io/sidecar-liveness-probe-period-seconds"
	AnnotationLivenessThreshold     = "dapr.io/sidecar-liveness-probe-threshold"
	AnnotationReadinessDelay        = "dapr.io/sidecar-readiness-probe-delay-seconds"
	AnnotationReadinessTimeout      = "dapr.io/sidecar-readiness-probe-timeout-seconds"
	AnnotationReadinessPeriod       = "dapr.io/sidecar-readiness-probe-period-seconds"
	AnnotationReadinessThreshold    = "dapr.io/sidecar-readiness-probe-threshold"
	AnnotationSidecarImage          = "dapr.io/sidecar-image"
	AnnotationSeccompProfileType    = "dapr.io/sidecar-seccomp-profile-type"
	AnnotationEnv                   = "dapr.io/env"
	AnnotationAPITokenSecret        = "dapr.io/api-token-secret" //nolint:gosec // a Secret's name, not a secret
	AnnotationAppTokenSecret        = "dapr.io/app-token-secret" //nolint:gosec // a Secret's name, not a secret
	AnnotationVolumeMounts          = "dapr.io/volume-mounts"
	AnnotationVolumeMountsRW        = "dapr.io/volume-mounts-rw"
	annotationPrefix                = "dapr.io/"
	labelSidecarInjected            = "dapr.io/sidecar-injected"
	labelAppID                      = "dapr.io/app-id"
	labelMetricsEnabled             = "dapr.io/metrics-enabled"
	annotationEnableProfiling       = "dapr.io/enable-profiling"
	annotationEnableDebug           = "dapr.io/enable-debug"
	annotationDebugPort             = "dapr.io/debug-port"
	annotationUnixDomainSocketPath  = "dapr.io/unix-domain-socket-path"
	annotationBlockShutdown         = "dapr.io/block-shutdown-duration"
	annotationDisableK8sSecretStore = "dapr.io/disable-builtin-k8s-secret-store" //nolint:gosec // an annotation key
	annotationPlacement             = "dapr.io/placement-host-address"
	annotationScheduler             = "dapr.io/scheduler-host-address"
	annotationPluggable             = "dapr.io/pluggable-components"
	annotationPluggableFolder       = "dapr.io/pluggable-components-sockets-folder"
	annotationComponentContainer    = "dapr.io/component-container"
	annotationInjectPluggable       = "dapr.io/inject-pluggable-components"
)

// Annotation describes what the injector does with one of Dapr's pod
// annotations: docs/kubernetes.md's table is this list.
type Annotation struct {
	Key string
	// Supported: the annotation changes the injected pod; Effect says how.
	// Otherwise it is ignored with a warning and Effect says why.
	Supported bool
	Effect    string
}

// annotations is every annotation Dapr v1.14's injector reads
// (pkg/injector/patcher/sidecar.go, SidecarConfig's annotation tags).
var annotations = []Annotation{
	{AnnotationEnabled, true, `inject only when true (Dapr's truthy values: "true", "1", "yes", "on", "y", "t")`},
	{AnnotationAppID, true, "`--app-id` and label `dapr.io/app-id`; default: the pod's name, else its workload's name"},
	{AnnotationAppPort, true, "`--app-port`"},
	{AnnotationAppProtocol, true, "`--app-protocol` (http, h2c, https, grpc, grpcs); `APP_PROTOCOL` in the app containers"},
	{AnnotationAppSSL, true, "deprecated in Dapr: turns `http` into `https` and `grpc` into `grpcs`"},
	{AnnotationAppChannelAddress, true, "`--app-channel-address`"},
	{AnnotationConfig, true, "a Configuration's name is served by the control plane over xDS (warning without a control plane address); an absolute path (a file the pod mounts with `dapr.io/volume-mounts`) becomes `--config`"},
	{AnnotationLogLevel, true, "`--log-level` (debug, info, warn, error; Dapr's fatal and panic become error)"},
	{AnnotationLogAsJSON, true, "`--log-as-json`"},
	{AnnotationEnableMetrics, true, "`--enable-metrics` and label `dapr.io/metrics-enabled`"},
	{AnnotationMetricsPort, true, "`--metrics-port` and the `dapr-metrics` container port (default 9090)"},
	{AnnotationAppMaxConcurrency, true, "`--app-max-concurrency`"},
	{AnnotationHTTPMaxRequestSize, true, "`--max-body-size <N>Mi` (Dapr's legacy size in MB); `dapr.io/max-body-size` wins"},
	{AnnotationMaxBodySize, true, "`--max-body-size`"},
	{AnnotationHTTPReadBufferSize, true, "`--read-buffer-size <N>Ki` (Dapr's legacy size in KB); `dapr.io/read-buffer-size` wins"},
	{AnnotationReadBufferSize, true, "`--read-buffer-size`"},
	{AnnotationGracefulShutdown, true, "`--dapr-graceful-shutdown-seconds`"},
	{AnnotationEnableAPILogging, true, "true: `--access-log -` (one JSON line per call on the sidecar's stderr)"},
	{AnnotationEnableAppHealthCheck, true, "`--enable-app-health-check`"},
	{AnnotationAppHealthCheckPath, true, "`--app-health-check-path` (with health checks on)"},
	{AnnotationAppHealthInterval, true, "`--app-health-probe-interval` in seconds (with health checks on)"},
	{AnnotationAppHealthTimeout, true, "`--app-health-probe-timeout` in milliseconds (with health checks on)"},
	{AnnotationAppHealthThreshold, true, "`--app-health-threshold` (with health checks on)"},
	{AnnotationListenAddresses, true, "`--dapr-listen-addresses` (default: Skein's, 127.0.0.1)"},
	{AnnotationCPURequest, true, "the sidecar's `resources.requests.cpu`"},
	{AnnotationCPULimit, true, "the sidecar's `resources.limits.cpu`"},
	{AnnotationMemoryRequest, true, "the sidecar's `resources.requests.memory`"},
	{AnnotationMemoryLimit, true, "the sidecar's `resources.limits.memory`"},
	{AnnotationLivenessDelay, true, "the liveness probe's `initialDelaySeconds` (3)"},
	{AnnotationLivenessTimeout, true, "the liveness probe's `timeoutSeconds` (3)"},
	{AnnotationLivenessPeriod, true, "the liveness probe's `periodSeconds` (6)"},
	{AnnotationLivenessThreshold, true, "the liveness probe's `failureThreshold` (3)"},
	{AnnotationReadinessDelay, true, "the readiness probe's `initialDelaySeconds` (3)"},
	{AnnotationReadinessTimeout, true, "the readiness probe's `timeoutSeconds` (3)"},
	{AnnotationReadinessPeriod, true, "the readiness probe's `periodSeconds` (6)"},
	{AnnotationReadinessThreshold, true, "the readiness probe's `failureThreshold` (3)"},
	{AnnotationSidecarImage, true, "the sidecar's image"},
	{AnnotationSeccompProfileType, true, "the sidecar's `securityContext.seccompProfile.type` (default RuntimeDefault)"},
	{AnnotationEnv, true, "environment of the sidecar (`KEY=value,KEY2=value2`)"},
	{AnnotationAPITokenSecret, true, "`DAPR_API_TOKEN` from the Secret's key `token`"},
	{AnnotationAppTokenSecret, true, "`APP_API_TOKEN` from the Secret's key `token`"},
	{AnnotationVolumeMounts, true, "the pod's volumes mounted read-only in the sidecar (`volume:/path,...`)"},
	{AnnotationVolumeMountsRW, true, "the pod's volumes mounted read-write in the sidecar"},
	{annotationEnableProfiling, false, "Skein serves no pprof endpoint"},
	{annotationEnableDebug, false, "there is no debugger build of the Skein sidecar"},
	{annotationDebugPort, false, "there is no debugger build of the Skein sidecar"},
	{annotationUnixDomainSocketPath, false, "Skein's API listens on TCP loopback only"},
	{annotationBlockShutdown, false, "Skein drains calls in flight on SIGTERM for `--dapr-graceful-shutdown-seconds` and does not block shutdown"},
	{annotationDisableK8sSecretStore, false, "Skein has no secret stores"},
	{annotationPlacement, false, "Skein has no actors"},
	{annotationScheduler, false, "Skein has no jobs, actor reminders or workflows"},
	{annotationPluggable, false, "Skein loads no components"},
	{annotationPluggableFolder, false, "Skein loads no components"},
	{annotationComponentContainer, false, "Skein loads no components"},
	{annotationInjectPluggable, false, "Skein loads no components"},
}

// Annotations returns every Dapr annotation the injector knows, supported
// or ignored, sorted by key. The caller may modify the result.
func Annotations() []Annotation {
	out := append([]Annotation(nil), annotations...)
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

var annotationByKey = func() map[string]Annotation {
	m := make(map[string]Annotation, len(annotations))
	for _, a := range annotations {
		m[a.Key] = a
	}
	return m
}()

// ignoredWarnings returns one warning for each dapr.io annotation on the
// pod that Skein ignores or does not know, sorted by key; an empty value
// counts as absent, as in Dapr.
func ignoredWarnings(an map[string]string) []string {
	var out []string
	for k, v := range an {
		if !strings.HasPrefix(k, annotationPrefix) || strings.TrimSpace(v) == "" {
			continue
		}
		a, known := annotationByKey[k]
		switch {
		case !known:
			out = append(out, k+": ignored: not an annotation of Dapr v1.14's injector")
		case !a.Supported:
			out = append(out, k+": ignored: "+a.Effect)
		}
	}
	sort.Strings(out)
	return out
}
