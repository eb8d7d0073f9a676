package inject

import (
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	// ContainerName is the sidecar container's name: daprd, as Dapr's
	// injector names it, so `kubectl logs -c daprd` and dashboards keyed on
	// the container name keep working, and a pod Dapr already injected is
	// left alone.
	ContainerName = "daprd"
	// ImageRepository is where Skein's sidecar image is published; the
	// image's entrypoint is the skein binary.
	ImageRepository = "ghcr.io/skeinmesh/skein"
	// DefaultControlPlaneAddress is the Service deploy/ runs `skein
	// control-plane` behind: its xDS, registry and CA port.
	DefaultControlPlaneAddress = "skein-control-plane.skein-system.svc:18000"
	// DefaultJoinTokenSecret is the Secret, in each app's namespace, whose
	// key "token" holds the join token sidecars present to the control
	// plane.
	DefaultJoinTokenSecret = "skein-join-token" //nolint:gosec // a Secret's name

	// homeVolume is an emptyDir mounted at homeDir as $SKEIN_HOME: the
	// sidecar's only writable place, its root filesystem being read-only.
	homeVolume = "skein-home"
	homeDir    = "/var/run/skein"
	// tokenKey is the key of the API token Secrets, as in Dapr.
	tokenKey = "token"

	// TokenAudience is the audience of the service-account token projected
	// into each sidecar: the control plane asks TokenReview for exactly
	// this audience, so the token proves nothing to the API server itself
	// or to anyone else, and no other audience's token proves anything to
	// the control plane (Dapr's Sentry uses "dapr.io/sentry", istiod
	// "istio-ca").
	TokenAudience = "skein.io/control-plane"
	// TokenPath is where the sidecar reads that token (its
	// --kubernetes-token-file); the kubelet rewrites it before it expires.
	TokenPath = tokenDir + "/token"
	// tokenVolume is the projected volume of the token, mounted read-only
	// at tokenDir in the sidecar only.
	tokenVolume = "skein-identity-token"
	tokenDir    = "/var/run/secrets/skein.io/identity"
	// tokenExpirationSeconds is the token's lifetime; the kubelet renews
	// it at 80% of it. The sidecar reads it at each signing request.
	tokenExpirationSeconds = 3600
)

// Options are the injector's settings: what no annotation says.
type Options struct {
	// Image is the sidecar image for pods without dapr.io/sidecar-image
	// (required), e.g. ImageRepository + ":0.1.0".
	Image string
	// ImagePullPolicy of the sidecar; "" leaves Kubernetes' default.
	ImagePullPolicy corev1.PullPolicy
	// ControlPlaneAddress is HOST:PORT of `skein control-plane` (its
	// Service), given to every sidecar as --control-plane-address. Empty:
	// none, and every injection warns that its sidecar will find no other
	// pod's sidecar.
	ControlPlaneAddress string
	// JoinTokenSecret names the Secret (key "token") in the pod's namespace
	// that holds the control plane's join token, given to the sidecar as
	// SKEIN_JOIN_TOKEN. Empty: none.
	JoinTokenSecret string
}

// Injector decides and builds sidecar injections. It is immutable after
// New and safe for concurrent use.
type Injector struct {
	opts Options
}

// New checks opts and returns an injector.
func New(opts Options) (*Injector, error) {
	var errs []error
	if opts.Image == "" {
		errs = append(errs, errors.New("image: required"))
	}
	switch opts.ImagePullPolicy {
	case "", corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = append(errs, fmt.Errorf("image pull policy: %q is not Always, IfNotPresent or Never", opts.ImagePullPolicy))
	}
	if a := opts.ControlPlaneAddress; a != "" {
		if h, p, err := net.SplitHostPort(a); err != nil || h == "" || p == "" {
			errs = append(errs, fmt.Errorf("control plane address: %q: want HOST:PORT", a))
		}
	}
	if s := opts.JoinTokenSecret; s != "" && len(validation.IsDNS1123Subdomain(s)) > 0 {
		errs = append(errs, fmt.Errorf("join token secret: %q is not a Secret's name", s))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &Injector{opts: opts}, nil
}

// Why a pod gets no sidecar (Plan.Skip).
const (
	SkipNotEnabled = "dapr.io/enabled is not true"
	SkipInjected   = "the pod already has a daprd container"
)

// Plan is what injecting a sidecar into one pod means: the containers,
// volumes, labels and environment to add. Apply makes the change to a
// typed pod, Patch says it as JSON Patch operations; both add exactly the
// same. A Plan is immutable once made.
type Plan struct {
	// Skip says why nothing is injected; "" when the sidecar is.
	Skip string
	// AppID is the sidecar's app id.
	AppID string
	// Warnings are annotations ignored or values adjusted, one line each,
	// and defaults a person may want to know about.
	Warnings []string

	sidecar corev1.Container
	volumes []corev1.Volume
	labels  [][2]string             // in the order they are added
	appEnv  map[int][]corev1.EnvVar // container index → variables it lacks
}

// Plan decides what injection means for a pod with meta and spec, neither
// of which it modifies. owner is the name of the workload the pod belongs
// to, the app id's default when the pod has no name ("" if none). A pod
// without dapr.io/enabled, or with a daprd container, gets a Plan whose
// Skip says so. Invalid annotations are all reported in the error, each an
// *AnnotationError.
func (in *Injector) Plan(meta *metav1.ObjectMeta, spec *corev1.PodSpec, owner string) (*Plan, error) {
	if !truthy(meta.Annotations[AnnotationEnabled]) {
		return &Plan{Skip: SkipNotEnabled}, nil
	}
	for _, c := range spec.Containers {
		if c.Name == ContainerName {
			return &Plan{Skip: SkipInjected}, nil
		}
	}
	cfg, err := parseConfig(meta.Annotations, meta.Name, owner, spec)
	if err != nil {
		return nil, err
	}
	for _, v := range []string{homeVolume, tokenVolume} {
		if hasVolume(spec, v) {
			return nil, &FieldError{Field: "spec.volumes", Err: fmt.Errorf("the pod already has a volume named %s, the sidecar's", v)}
		}
	}
	p := &Plan{AppID: cfg.appID, Warnings: cfg.warnings}
	if cfg.appIDFrom != "" {
		p.Warnings = append(p.Warnings, fmt.Sprintf("%s: not set: the app id is %q (%s)", AnnotationAppID, cfg.appID, cfg.appIDFrom))
	}
	if in.opts.ControlPlaneAddress == "" {
		p.Warnings = append(p.Warnings, "no control plane address: the sidecar will find no other pod's sidecar and get no SVID from a control plane")
		if cfg.configName != "" {
			p.Warnings = append(p.Warnings, fmt.Sprintf("%s: Configuration %q is served by the control plane, and there is none", AnnotationConfig, cfg.configName))
		}
	}
	p.sidecar = in.container(cfg)
	p.volumes = []corev1.Volume{{
		Name: homeVolume,
		VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
			SizeLimit: ptr(resource.MustParse("16Mi")),
		}},
	}}
	if in.opts.ControlPlaneAddress != "" {
		// The pod's proof of identity to the control plane's CA: a token
		// bound to this pod (the kubelet binds projected tokens to it),
		// for the control plane's audience only.
		p.volumes = append(p.volumes, corev1.Volume{
			Name: tokenVolume,
			VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
				Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
					Audience: TokenAudience, ExpirationSeconds: ptr(int64(tokenExpirationSeconds)), Path: "token",
				}}},
			}},
		})
	}
	p.labels = [][2]string{
		{labelSidecarInjected, "true"},
		{labelAppID, cfg.appID},
		{labelMetricsEnabled, strconv.FormatBool(cfg.enableMetrics)},
	}
	// Dapr's addDaprEnvVarsToContainers: every app container learns the
	// sidecar's ports and the app protocol, unless it sets them itself.
	add := []corev1.EnvVar{
		{Name: "DAPR_HTTP_PORT", Value: strconv.Itoa(HTTPPort)},
		{Name: "DAPR_GRPC_PORT", Value: strconv.Itoa(GRPCPort)},
		{Name: "APP_PROTOCOL", Value: cfg.appProtocol},
	}
	p.appEnv = map[int][]corev1.EnvVar{}
	for i, c := range spec.Containers {
		var missing []corev1.EnvVar
		for _, e := range add {
			if !hasEnv(c.Env, e.Name) {
				missing = append(missing, e)
			}
		}
		if len(missing) > 0 {
			p.appEnv[i] = missing
		}
	}
	return p, nil
}

// Injected reports whether the plan adds a sidecar.
func (p *Plan) Injected() bool { return p.Skip == "" }

// Apply makes the plan's change to a pod's meta and spec: the ones Plan
// was given, or copies of them. A skipping plan changes nothing.
func (p *Plan) Apply(meta *metav1.ObjectMeta, spec *corev1.PodSpec) {
	if !p.Injected() {
		return
	}
	if meta.Labels == nil {
		meta.Labels = map[string]string{}
	}
	for _, l := range p.labels {
		meta.Labels[l[0]] = l[1]
	}
	spec.Volumes = append(spec.Volumes, p.volumes...)
	for _, i := range p.appEnvOrder() {
		spec.Containers[i].Env = append(spec.Containers[i].Env, p.appEnv[i]...)
	}
	spec.Containers = append(spec.Containers, *p.sidecar.DeepCopy())
}

func (p *Plan) appEnvOrder() []int {
	idx := make([]int, 0, len(p.appEnv))
	for i := range p.appEnv {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	return idx
}

// container builds the sidecar container: Dapr's ports and probe
// timings, `skein sidecar` with the flags the annotations map to, and a
// locked-down security context.
func (in *Injector) container(c *sidecarConfig) corev1.Container {
	args := []string{"sidecar",
		"--app-id", c.appID,
		"--app-protocol", c.appProtocol,
		"--dapr-http-port", strconv.Itoa(HTTPPort),
		"--dapr-grpc-port", strconv.Itoa(GRPCPort),
		// Health only, on the pod's IP, for the kubelet's probes.
		"--dapr-public-port", strconv.Itoa(PublicPort),
		// Other pods' sidecars call this one on the pod's IP.
		"--dapr-internal-grpc-port", strconv.Itoa(InternalPort),
		"--dapr-internal-grpc-listen-address", "0.0.0.0",
	}
	if c.listenAddresses != "" {
		args = append(args, "--dapr-listen-addresses", c.listenAddresses)
	}
	if c.appPort != 0 {
		args = append(args, "--app-port", strconv.Itoa(c.appPort))
	}
	if c.appChannelAddress != "" {
		args = append(args, "--app-channel-address", c.appChannelAddress)
	}
	if c.logLevel != "" {
		args = append(args, "--log-level", c.logLevel)
	}
	if c.logAsJSON {
		args = append(args, "--log-as-json")
	}
	if c.enableMetrics {
		// Prometheus scrapes the pod's IP, as daprd's metrics listen on 0.0.0.0.
		args = append(args, "--metrics-port", strconv.Itoa(c.metricsPort), "--metrics-listen-address", "0.0.0.0")
	} else {
		args = append(args, "--enable-metrics=false")
	}
	if c.config != "" {
		args = append(args, "--config", c.config)
	}
	if c.appMaxConcurrency != nil {
		args = append(args, "--app-max-concurrency", strconv.Itoa(*c.appMaxConcurrency))
	}
	if c.maxBodySize != "" {
		args = append(args, "--max-body-size", c.maxBodySize)
	}
	if c.readBufferSize != "" {
		args = append(args, "--read-buffer-size", c.readBufferSize)
	}
	if c.gracefulShutdown != nil {
		args = append(args, "--dapr-graceful-shutdown-seconds", strconv.Itoa(*c.gracefulShutdown))
	}
	if c.apiLogging {
		args = append(args, "--access-log", "-")
	}
	if c.appHealth {
		args = append(args, "--enable-app-health-check")
		if c.appHealthPath != "" {
			args = append(args, "--app-health-check-path", c.appHealthPath)
		}
		if c.appHealthInterval != nil {
			args = append(args, "--app-health-probe-interval", strconv.Itoa(*c.appHealthInterval))
		}
		if c.appHealthTimeout != nil {
			args = append(args, "--app-health-probe-timeout", strconv.Itoa(*c.appHealthTimeout))
		}
		if c.appHealthThreshold != nil {
			args = append(args, "--app-health-threshold", strconv.Itoa(*c.appHealthThreshold))
		}
	}
	mounts := []corev1.VolumeMount{{Name: homeVolume, MountPath: homeDir}}
	if in.opts.ControlPlaneAddress != "" {
		args = append(args, "--control-plane-address", in.opts.ControlPlaneAddress, "--kubernetes-token-file", TokenPath)
		mounts = append(mounts, corev1.VolumeMount{Name: tokenVolume, MountPath: tokenDir, ReadOnly: true})
	}

	image := in.opts.Image
	if c.image != "" {
		image = c.image
	}
	ports := []corev1.ContainerPort{
		{Name: "dapr-http", ContainerPort: HTTPPort, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-grpc", ContainerPort: GRPCPort, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-internal", ContainerPort: InternalPort, Protocol: corev1.ProtocolTCP},
		{Name: "dapr-metrics", ContainerPort: int32(c.metricsPort), Protocol: corev1.ProtocolTCP},
	}
	ctr := corev1.Container{
		Name:            ContainerName,
		Image:           image,
		ImagePullPolicy: in.opts.ImagePullPolicy,
		Args:            args,
		Ports:           ports,
		Env:             in.env(c),
		Resources:       c.resources,
		VolumeMounts:    append(mounts, c.volumeMounts...),
		SecurityContext: &corev1.SecurityContext{
			RunAsNonRoot:             ptr(true),
			RunAsUser:                ptr(int64(65532)),
			RunAsGroup:               ptr(int64(65532)),
			ReadOnlyRootFilesystem:   ptr(true),
			AllowPrivilegeEscalation: ptr(false),
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
			SeccompProfile:           &corev1.SeccompProfile{Type: c.seccomp},
		},
	}
	ctr.LivenessProbe = probe(c.liveness)
	ctr.ReadinessProbe = probe(c.readiness)
	return ctr
}

// probe is an HTTP GET of /v1.0/healthz on the public port, with Dapr's
// timings, as Dapr's injector probes daprd: the sidecar's readiness (app
// port reachable, registered), on the pod's IP, where the API port (on
// loopback) cannot be reached and must not be exposed.
func probe(s probeSettings) *corev1.Probe {
	return &corev1.Probe{
		ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/v1.0/healthz",
			Port: intstr.FromInt32(PublicPort),
		}},
		InitialDelaySeconds: s.delay,
		TimeoutSeconds:      s.timeout,
		PeriodSeconds:       s.period,
		FailureThreshold:    s.threshold,
	}
}

// env is the sidecar's environment: where it runs, where it keeps state,
// its tokens, then dapr.io/env (which may replace any of these).
func (in *Injector) env(c *sidecarConfig) []corev1.EnvVar {
	env := []corev1.EnvVar{
		{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
		// The address this sidecar registers for other sidecars to call.
		{Name: "DAPR_HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
		{Name: "SKEIN_HOME", Value: homeDir},
	}
	secret := func(name, secret string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: tokenKey,
		}}}
	}
	if in.opts.JoinTokenSecret != "" {
		env = append(env, secret("SKEIN_JOIN_TOKEN", in.opts.JoinTokenSecret))
	}
	if c.apiToken != "" {
		env = append(env, secret("DAPR_API_TOKEN", c.apiToken))
	}
	if c.appToken != "" {
		env = append(env, secret("APP_API_TOKEN", c.appToken))
	}
	for _, e := range c.env {
		replaced := false
		for i := range env {
			if env[i].Name == e.Name {
				env[i], replaced = e, true
			}
		}
		if !replaced {
			env = append(env, e)
		}
	}
	return env
}

func hasEnv(env []corev1.EnvVar, name string) bool {
	for _, e := range env {
		if e.Name == name {
			return true
		}
	}
	return false
}

// truthy is dapr/kit's utils.IsTruthy, which Dapr's injector reads
// dapr.io/enabled with.
func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "y", "yes", "true", "t", "on", "1":
		return true
	}
	return false
}

func ptr[T any](v T) *T { return &v }
