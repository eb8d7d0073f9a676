package inject

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"
)

// AnnotationError is an annotation whose value the injector refuses.
type AnnotationError struct {
	Key, Value, Reason string
}

func (e *AnnotationError) Error() string {
	return fmt.Sprintf("%s: %q: %s", e.Key, e.Value, e.Reason)
}

// The sidecar's fixed ports, as Dapr's injector sets them
// (pkg/injector/patcher/sidecar.go, SidecarConfig defaults).
const (
	HTTPPort           = 3500
	GRPCPort           = 50001
	InternalPort       = 50002
	PublicPort         = 3501 // health only, for the kubelet's probes (daprd's public port)
	DefaultMetricsPort = 9090
)

// sidecarConfig is what a pod's annotations say, parsed and checked.
// Zero values mean "not given": the sidecar's own default applies.
type sidecarConfig struct {
	appID, appIDFrom    string // appIDFrom: where a defaulted app id came from
	appPort             int
	appProtocol         string
	appChannelAddress   string
	config              string // an absolute path: --config
	configName          string // a Configuration's name: the control plane's
	logLevel            string
	logAsJSON           bool
	enableMetrics       bool
	metricsPort         int
	appMaxConcurrency   *int
	maxBodySize         string
	readBufferSize      string
	gracefulShutdown    *int
	apiLogging          bool
	appHealth           bool
	appHealthPath       string
	appHealthInterval   *int // seconds
	appHealthTimeout    *int // milliseconds
	appHealthThreshold  *int
	listenAddresses     string
	resources           corev1.ResourceRequirements
	liveness, readiness probeSettings
	image               string
	seccomp             corev1.SeccompProfileType
	env                 []corev1.EnvVar
	apiToken, appToken  string // Secret names
	volumeMounts        []corev1.VolumeMount
	warnings            []string
}

// probeSettings are a probe's timings, Dapr's defaults unless annotated.
type probeSettings struct{ delay, timeout, period, threshold int32 }

var defaultProbe = probeSettings{delay: 3, timeout: 3, period: 6, threshold: 3}

// parseConfig reads a pod's annotations. owner names the pod when it has
// no name of its own (its workload's name), for the app id's default.
// Every refused value is in the returned error, each an *AnnotationError.
func parseConfig(an map[string]string, podName, owner string, spec *corev1.PodSpec) (*sidecarConfig, error) {
	p := parser{an: an}
	c := &sidecarConfig{enableMetrics: true, metricsPort: DefaultMetricsPort, liveness: defaultProbe, readiness: defaultProbe, seccomp: corev1.SeccompProfileTypeRuntimeDefault}

	c.appID = p.str(AnnotationAppID)
	if c.appID == "" {
		// Dapr's default is the pod's name (SidecarConfig.GetAppID), which a
		// pod made by a controller does not have yet at admission: Dapr then
		// refuses the pod. Skein takes the workload's name instead.
		switch {
		case podName != "":
			c.appID, c.appIDFrom = podName, "the pod's name"
		case owner != "":
			c.appID, c.appIDFrom = owner, "its workload's name"
		default:
			p.fail(AnnotationAppID, "", "not set, and the pod has neither a name nor an owner to default to")
		}
	}
	if c.appID != "" {
		// Dapr: the app id names the Service <app-id>-dapr, a DNS-1123 label.
		if errs := validation.IsDNS1123Label(c.appID + "-dapr"); len(errs) > 0 {
			key := AnnotationAppID
			reason := "an app id must be a lower-case DNS label of at most 58 characters: " + errs[0]
			if c.appIDFrom != "" {
				reason = "defaulted from " + c.appIDFrom + ", which is not a valid app id (set dapr.io/app-id): " + errs[0]
			}
			p.fail(key, c.appID, reason)
		}
	}
	if v, ok := p.port(AnnotationAppPort); ok {
		c.appPort = v
		switch v {
		case HTTPPort, GRPCPort, InternalPort:
			p.fail(AnnotationAppPort, strconv.Itoa(v), "is one of the sidecar's ports (3500, 50001, 50002)")
		}
	}
	c.appProtocol = strings.ToLower(p.str(AnnotationAppProtocol))
	switch c.appProtocol {
	case "":
		c.appProtocol = "http"
	case "http", "h2c", "https", "grpc", "grpcs":
	default:
		p.fail(AnnotationAppProtocol, p.str(AnnotationAppProtocol), "want http, h2c, https, grpc or grpcs")
	}
	if v, ok := p.boolean(AnnotationAppSSL); ok && v {
		// Dapr's GetAppProtocol: app-ssl upgrades the plain protocols.
		switch c.appProtocol {
		case "http":
			c.appProtocol = "https"
		case "grpc":
			c.appProtocol = "grpcs"
		}
	}
	if v := p.str(AnnotationAppChannelAddress); v != "" {
		c.appChannelAddress = v
	}
	if v := p.str(AnnotationConfig); v != "" {
		switch {
		case path.IsAbs(v):
			c.config = v
		case len(validation.IsDNS1123Subdomain(v)) == 0:
			c.configName = v
		default:
			p.fail(AnnotationConfig, v, "neither a Configuration's name nor an absolute file path")
		}
	}
	if v := strings.ToLower(p.str(AnnotationLogLevel)); v != "" {
		switch v {
		case "debug", "info", "warn", "error":
			c.logLevel = v
		case "fatal", "panic":
			c.logLevel = "error"
			p.warn(AnnotationLogLevel + ": " + v + " is not a Skein log level: error is used")
		default:
			p.fail(AnnotationLogLevel, p.str(AnnotationLogLevel), "want debug, info, warn or error")
		}
	}
	if v, ok := p.boolean(AnnotationLogAsJSON); ok {
		c.logAsJSON = v
	}
	if v, ok := p.boolean(AnnotationEnableMetrics); ok {
		c.enableMetrics = v
	}
	if v, ok := p.port(AnnotationMetricsPort); ok {
		c.metricsPort = v
		if v == HTTPPort || v == GRPCPort || v == InternalPort || (v == c.appPort && v != 0) {
			p.fail(AnnotationMetricsPort, strconv.Itoa(v), "is taken by the sidecar's API, its peer port or the app")
		}
	}
	if v, ok := p.integer(AnnotationAppMaxConcurrency, -1); ok {
		c.appMaxConcurrency = &v
	}
	c.maxBodySize = p.size(AnnotationMaxBodySize, AnnotationHTTPMaxRequestSize, "Mi")
	c.readBufferSize = p.size(AnnotationReadBufferSize, AnnotationHTTPReadBufferSize, "Ki")
	if v, ok := p.integer(AnnotationGracefulShutdown, -1); ok && v >= 0 {
		c.gracefulShutdown = &v // -1 is Dapr's "the sidecar's default"
	}
	if v, ok := p.boolean(AnnotationEnableAPILogging); ok {
		c.apiLogging = v
	}
	c.parseAppHealth(&p)
	if v := p.str(AnnotationListenAddresses); v != "" {
		if err := checkListenAddresses(v); err != nil {
			p.fail(AnnotationListenAddresses, v, err.Error())
		}
		c.listenAddresses = v
	}
	c.resources = p.resources()
	c.liveness = p.probe(defaultProbe, AnnotationLivenessDelay, AnnotationLivenessTimeout, AnnotationLivenessPeriod, AnnotationLivenessThreshold)
	c.readiness = p.probe(defaultProbe, AnnotationReadinessDelay, AnnotationReadinessTimeout, AnnotationReadinessPeriod, AnnotationReadinessThreshold)
	c.image = p.str(AnnotationSidecarImage)
	if v := p.str(AnnotationSeccompProfileType); v != "" {
		switch t := corev1.SeccompProfileType(v); t {
		case corev1.SeccompProfileTypeRuntimeDefault, corev1.SeccompProfileTypeUnconfined:
			c.seccomp = t
		default:
			p.fail(AnnotationSeccompProfileType, v, "want RuntimeDefault or Unconfined (Localhost needs a profile path no annotation gives)")
		}
	}
	c.env = p.env()
	c.apiToken = p.secretName(AnnotationAPITokenSecret)
	c.appToken = p.secretName(AnnotationAppTokenSecret)
	c.volumeMounts = append(p.mounts(AnnotationVolumeMounts, true, spec), p.mounts(AnnotationVolumeMountsRW, false, spec)...)
	if c.config != "" && !mountedAt(c.volumeMounts, c.config) {
		p.fail(AnnotationConfig, c.config, "no volume in dapr.io/volume-mounts or dapr.io/volume-mounts-rw holds this path")
	}
	c.warnings = append(p.warnings, ignoredWarnings(an)...)
	return c, errors.Join(p.errs...)
}

// parseAppHealth reads the app health annotations. As in Dapr they count
// only with dapr.io/enable-app-health-check; daprd refuses a timeout
// longer than the interval, so the injector does too.
func (c *sidecarConfig) parseAppHealth(p *parser) {
	if v, ok := p.boolean(AnnotationEnableAppHealthCheck); ok {
		c.appHealth = v
	}
	if v := p.str(AnnotationAppHealthCheckPath); v != "" {
		// As the sidecar's --app-health-check-path (apphealth.Config.Validate).
		if u, err := url.Parse("http://app" + v); !strings.HasPrefix(v, "/") || err != nil || u.Host != "app" {
			p.fail(AnnotationAppHealthCheckPath, v, "not a URL path starting with /")
		}
		c.appHealthPath = v
	}
	if v, ok := p.integer(AnnotationAppHealthInterval, 1); ok {
		c.appHealthInterval = &v
	}
	if v, ok := p.integer(AnnotationAppHealthTimeout, 1); ok {
		c.appHealthTimeout = &v
	}
	if v, ok := p.integer(AnnotationAppHealthThreshold, 1); ok {
		c.appHealthThreshold = &v
	}
	interval, timeout := 5000, 500 // Dapr's defaults, in ms
	if c.appHealthInterval != nil {
		interval = *c.appHealthInterval * 1000
	}
	if c.appHealthTimeout != nil {
		timeout = *c.appHealthTimeout
	}
	if c.appHealth && timeout > interval {
		p.fail(AnnotationAppHealthTimeout, p.str(AnnotationAppHealthTimeout), fmt.Sprintf("%dms is longer than the probe interval (%ds)", timeout, interval/1000))
	}
	if !c.appHealth {
		for _, k := range []string{AnnotationAppHealthCheckPath, AnnotationAppHealthInterval, AnnotationAppHealthTimeout, AnnotationAppHealthThreshold} {
			if p.str(k) != "" {
				p.warn(k + ": ignored: app health checks are off (dapr.io/enable-app-health-check)")
			}
		}
	}
}

// parser reads annotation values, collecting every error.
type parser struct {
	an       map[string]string
	errs     []error
	warnings []string
}

func (p *parser) fail(key, value, reason string) {
	p.errs = append(p.errs, &AnnotationError{Key: key, Value: value, Reason: reason})
}

func (p *parser) warn(w string) { p.warnings = append(p.warnings, w) }

// str is the annotation's value, trimmed; "" when absent or empty (Dapr
// skips empty values).
func (p *parser) str(key string) string { return strings.TrimSpace(p.an[key]) }

// boolean reads Dapr's truthy values (dapr/kit utils.IsTruthy) and their
// opposites; anything else is refused, where Dapr would read false.
func (p *parser) boolean(key string) (v, ok bool) {
	s := p.str(key)
	if s == "" {
		return false, false
	}
	switch strings.ToLower(s) {
	case "y", "yes", "true", "t", "on", "1":
		return true, true
	case "n", "no", "false", "f", "off", "0":
		return false, true
	}
	p.fail(key, s, "not a boolean (want true or false)")
	return false, false
}

// integer reads a whole number of at least min.
func (p *parser) integer(key string, min int) (int, bool) {
	s := p.str(key)
	if s == "" {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	switch {
	case err != nil:
		p.fail(key, s, "not a whole number")
		return 0, false
	case v < min:
		p.fail(key, s, fmt.Sprintf("below %d", min))
		return 0, false
	}
	return v, true
}

func (p *parser) port(key string) (int, bool) {
	s := p.str(key)
	if s == "" {
		return 0, false
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < 1 || v > 65535 {
		p.fail(key, s, "not a port (1-65535)")
		return 0, false
	}
	return v, true
}

// size reads a byte size: key as a Kubernetes quantity ("4Mi"), else
// legacy as Dapr's older whole number in legacyUnit. It returns the flag
// value in a form the sidecar's --max-body-size / --read-buffer-size
// accept; "" when neither is set.
func (p *parser) size(key, legacy, legacyUnit string) string {
	if s := p.str(key); s != "" {
		if p.str(legacy) != "" {
			p.warn(legacy + ": ignored: " + key + " is set too")
		}
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 || q.MilliValue()%1000 != 0 {
			p.fail(key, s, "not a positive whole number of bytes such as 4Mi")
			return ""
		}
		if v := q.String(); sidecarSize.MatchString(v) {
			return v
		}
		return strconv.FormatInt(q.Value(), 10)
	}
	if v, ok := p.integer(legacy, 1); ok {
		return strconv.Itoa(v) + legacyUnit
	}
	return ""
}

// sidecarSize is what the sidecar's size flags parse (cmd/skein
// parseQuantity).
var sidecarSize = regexp.MustCompile(`^[0-9]+(Ki|Mi|Gi|Ti|k|K|M|G|T)?$`)

func (p *parser) resources() corev1.ResourceRequirements {
	var r corev1.ResourceRequirements
	for _, x := range []struct {
		key  string
		list *corev1.ResourceList
		name corev1.ResourceName
	}{
		{AnnotationCPURequest, &r.Requests, corev1.ResourceCPU},
		{AnnotationCPULimit, &r.Limits, corev1.ResourceCPU},
		{AnnotationMemoryRequest, &r.Requests, corev1.ResourceMemory},
		{AnnotationMemoryLimit, &r.Limits, corev1.ResourceMemory},
	} {
		s := p.str(x.key)
		if s == "" {
			continue
		}
		q, err := resource.ParseQuantity(s)
		if err != nil || q.Sign() <= 0 {
			p.fail(x.key, s, "not a positive Kubernetes quantity such as 100m or 64Mi")
			continue
		}
		if *x.list == nil {
			*x.list = corev1.ResourceList{}
		}
		(*x.list)[x.name] = q
	}
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okR := r.Requests[n]
		lim, okL := r.Limits[n]
		if okR && okL && req.Cmp(lim) > 0 {
			key := AnnotationCPURequest
			if n == corev1.ResourceMemory {
				key = AnnotationMemoryRequest
			}
			p.fail(key, req.String(), "more than the limit "+lim.String())
		}
	}
	return r
}

func (p *parser) probe(def probeSettings, delay, timeout, period, threshold string) probeSettings {
	s := def
	for _, f := range []struct {
		key string
		v   *int32
		min int
	}{{delay, &s.delay, 0}, {timeout, &s.timeout, 1}, {period, &s.period, 1}, {threshold, &s.threshold, 1}} {
		if v, ok := p.integer(f.key, f.min); ok {
			*f.v = int32(min(v, 1<<30))
		}
	}
	return s
}

// envName is a variable name as Dapr's dapr.io/env parser accepts it.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// envSplit finds the commas that start a new KEY= in dapr.io/env, so a
// value may hold commas (Dapr's envRegexp in patcher/sidecar_container.go).
var envSplit = regexp.MustCompile(`,\s*[A-Za-z_][A-Za-z0-9_]*=`)

// env parses dapr.io/env, "KEY=value,KEY2=value2". Unlike Dapr, which
// drops entries with a second '=', a value may hold '='; an entry without
// one is refused rather than dropped.
func (p *parser) env() []corev1.EnvVar {
	s := p.str(AnnotationEnv)
	if s == "" {
		return nil
	}
	var parts []string
	last := 0
	for _, m := range envSplit.FindAllStringIndex(s, -1) {
		parts = append(parts, s[last:m[0]])
		last = m[0] + 1
	}
	parts = append(parts, s[last:])
	var out []corev1.EnvVar
	seen := map[string]bool{}
	for _, part := range parts {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || !envName.MatchString(k) {
			p.fail(AnnotationEnv, s, fmt.Sprintf("%q is not KEY=value", strings.TrimSpace(part)))
			continue
		}
		if seen[k] {
			p.fail(AnnotationEnv, s, k+" is set twice")
			continue
		}
		seen[k] = true
		out = append(out, corev1.EnvVar{Name: k, Value: v})
	}
	return out
}

func (p *parser) secretName(key string) string {
	s := p.str(key)
	if s != "" && len(validation.IsDNS1123Subdomain(s)) > 0 {
		p.fail(key, s, "not a Secret's name")
		return ""
	}
	return s
}

// mounts parses dapr.io/volume-mounts(-rw): "volume:/path,volume2:/path2",
// each volume one of the pod's.
func (p *parser) mounts(key string, readOnly bool, spec *corev1.PodSpec) []corev1.VolumeMount {
	s := p.str(key)
	if s == "" {
		return nil
	}
	var out []corev1.VolumeMount
	for item := range strings.SplitSeq(s, ",") {
		name, dir, ok := strings.Cut(strings.TrimSpace(item), ":")
		if !ok || name == "" || !path.IsAbs(dir) {
			p.fail(key, s, fmt.Sprintf("%q is not volume:/absolute/path", item))
			continue
		}
		if !hasVolume(spec, name) {
			p.fail(key, s, fmt.Sprintf("the pod has no volume %q", name))
			continue
		}
		if name == homeVolume || dir == homeDir || name == tokenVolume || dir == tokenDir {
			p.fail(key, s, fmt.Sprintf("%s (%s) and %s (%s) are the sidecar's own", homeVolume, homeDir, tokenVolume, tokenDir))
			continue
		}
		out = append(out, corev1.VolumeMount{Name: name, MountPath: dir, ReadOnly: readOnly})
	}
	return out
}

func hasVolume(spec *corev1.PodSpec, name string) bool {
	for _, v := range spec.Volumes {
		if v.Name == name {
			return true
		}
	}
	return false
}

func mountedAt(mounts []corev1.VolumeMount, file string) bool {
	for _, m := range mounts {
		if strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/") {
			return true
		}
	}
	return false
}

// checkListenAddresses accepts what the sidecar's --dapr-listen-addresses
// does: IP addresses, bracketed or not, and localhost.
func checkListenAddresses(s string) error {
	n := 0
	for a := range strings.SplitSeq(s, ",") {
		a = strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(a), "["), "]")
		if a == "" {
			continue
		}
		if a != "localhost" && net.ParseIP(a) == nil {
			return fmt.Errorf("%q is not an IP address", a)
		}
		n++
	}
	if n == 0 {
		return errors.New("no address given")
	}
	return nil
}
