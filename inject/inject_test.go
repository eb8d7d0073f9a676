package inject

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var testOptions = Options{Image: ImageRepository + ":test", ControlPlaneAddress: DefaultControlPlaneAddress, JoinTokenSecret: DefaultJoinTokenSecret}

func newInjector(t *testing.T, o Options) *Injector {
	t.Helper()
	in, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return in
}

// testPod is a Deployment's pod: app container "app", Dapr enabled, plus
// the given annotations.
func testPod(an map[string]string) *corev1.Pod {
	all := map[string]string{AnnotationEnabled: "true", AnnotationAppID: "orders"}
	for k, v := range an {
		all[k] = v
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "orders-0", Namespace: "shop", Labels: map[string]string{"app": "orders"}, Annotations: all},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: "app", Image: "orders:1", Env: []corev1.EnvVar{{Name: "LOG", Value: "1"}}}},
			Volumes:    []corev1.Volume{{Name: "cfg", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "cfg"}}}}},
		},
	}
}

// sidecarOf plans and applies the injection, returning the sidecar.
func sidecarOf(t *testing.T, in *Injector, pod *corev1.Pod) (corev1.Container, *Plan) {
	t.Helper()
	p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	if !p.Injected() {
		t.Fatalf("not injected: %s", p.Skip)
	}
	p.Apply(&pod.ObjectMeta, &pod.Spec)
	return pod.Spec.Containers[len(pod.Spec.Containers)-1], p
}

// flagValues reads `sidecar --a x --b --c=d` into a map (a bare flag is
// "true").
func flagValues(t *testing.T, args []string) map[string]string {
	t.Helper()
	if len(args) == 0 || args[0] != "sidecar" {
		t.Fatalf("args %q do not start with sidecar", args)
	}
	m := map[string]string{}
	for i := 1; i < len(args); i++ {
		name, ok := strings.CutPrefix(args[i], "--")
		if !ok {
			t.Fatalf("argument %q is not a flag", args[i])
		}
		if k, v, ok := strings.Cut(name, "="); ok {
			m[k] = v
			continue
		}
		if i+1 < len(args) && !strings.HasPrefix(args[i+1], "--") {
			m[name] = args[i+1]
			i++
			continue
		}
		m[name] = "true"
	}
	return m
}

// TestAnnotationsBecomeFlags: each supported annotation shows up as the
// sidecar flag it maps to, with the value the sidecar parses.
func TestAnnotationsBecomeFlags(t *testing.T) {
	in := newInjector(t, testOptions)
	tests := []struct {
		name string
		an   map[string]string
		want map[string]string // flag → value; "" means absent
	}{
		{"app id", map[string]string{AnnotationAppID: "checkout"}, map[string]string{"app-id": "checkout"}},
		{"app port", map[string]string{AnnotationAppPort: "8080"}, map[string]string{"app-port": "8080"}},
		{"no app port", nil, map[string]string{"app-port": ""}},
		{"app protocol", map[string]string{AnnotationAppProtocol: "gRPC"}, map[string]string{"app-protocol": "grpc"}},
		{"default protocol", nil, map[string]string{"app-protocol": "http"}},
		{"app-ssl with http", map[string]string{AnnotationAppSSL: "true"}, map[string]string{"app-protocol": "https"}},
		{"app-ssl with grpc", map[string]string{AnnotationAppSSL: "true", AnnotationAppProtocol: "grpc"}, map[string]string{"app-protocol": "grpcs"}},
		{"app channel address", map[string]string{AnnotationAppChannelAddress: "10.0.0.7"}, map[string]string{"app-channel-address": "10.0.0.7"}},
		{"config by name goes to the control plane", map[string]string{AnnotationConfig: "appconfig"}, map[string]string{"config": ""}},
		{"log level", map[string]string{AnnotationLogLevel: "debug"}, map[string]string{"log-level": "debug"}},
		{"log level fatal", map[string]string{AnnotationLogLevel: "fatal"}, map[string]string{"log-level": "error"}},
		{"log as json", map[string]string{AnnotationLogAsJSON: "true"}, map[string]string{"log-as-json": "true"}},
		{"log as json off", map[string]string{AnnotationLogAsJSON: "false"}, map[string]string{"log-as-json": ""}},
		{"metrics by default", nil, map[string]string{"metrics-port": "9090", "metrics-listen-address": "0.0.0.0", "enable-metrics": ""}},
		{"metrics port", map[string]string{AnnotationMetricsPort: "9876"}, map[string]string{"metrics-port": "9876"}},
		{"metrics off", map[string]string{AnnotationEnableMetrics: "false"}, map[string]string{"enable-metrics": "false", "metrics-port": ""}},
		{"app max concurrency", map[string]string{AnnotationAppMaxConcurrency: "10"}, map[string]string{"app-max-concurrency": "10"}},
		{"max body size", map[string]string{AnnotationMaxBodySize: "8Mi"}, map[string]string{"max-body-size": "8Mi"}},
		{"max body size decimal", map[string]string{AnnotationMaxBodySize: "2M"}, map[string]string{"max-body-size": "2M"}},
		{"max body size canonical", map[string]string{AnnotationMaxBodySize: "1.5Mi"}, map[string]string{"max-body-size": "1536Ki"}},
		{"max body size exotic", map[string]string{AnnotationMaxBodySize: "1Pi"}, map[string]string{"max-body-size": "1125899906842624"}},
		{"legacy max request size", map[string]string{AnnotationHTTPMaxRequestSize: "16"}, map[string]string{"max-body-size": "16Mi"}},
		{"max-body-size wins", map[string]string{AnnotationHTTPMaxRequestSize: "16", AnnotationMaxBodySize: "1Mi"}, map[string]string{"max-body-size": "1Mi"}},
		{"read buffer size", map[string]string{AnnotationReadBufferSize: "8Ki"}, map[string]string{"read-buffer-size": "8Ki"}},
		{"legacy read buffer size", map[string]string{AnnotationHTTPReadBufferSize: "16"}, map[string]string{"read-buffer-size": "16Ki"}},
		{"graceful shutdown", map[string]string{AnnotationGracefulShutdown: "20"}, map[string]string{"dapr-graceful-shutdown-seconds": "20"}},
		{"graceful shutdown -1 is the default", map[string]string{AnnotationGracefulShutdown: "-1"}, map[string]string{"dapr-graceful-shutdown-seconds": ""}},
		{"api logging", map[string]string{AnnotationEnableAPILogging: "true"}, map[string]string{"access-log": "-"}},
		{"api logging off", map[string]string{AnnotationEnableAPILogging: "false"}, map[string]string{"access-log": ""}},
		{"app health check", map[string]string{AnnotationEnableAppHealthCheck: "true"}, map[string]string{"enable-app-health-check": "true", "app-health-check-path": ""}},
		{"app health settings", map[string]string{AnnotationEnableAppHealthCheck: "yes", AnnotationAppHealthCheckPath: "/ready", AnnotationAppHealthInterval: "10", AnnotationAppHealthTimeout: "700", AnnotationAppHealthThreshold: "4"},
			map[string]string{"enable-app-health-check": "true", "app-health-check-path": "/ready", "app-health-probe-interval": "10", "app-health-probe-timeout": "700", "app-health-threshold": "4"}},
		{"app health settings without the check", map[string]string{AnnotationAppHealthCheckPath: "/ready"}, map[string]string{"enable-app-health-check": "", "app-health-check-path": ""}},
		{"listen addresses", map[string]string{AnnotationListenAddresses: "[::1],127.0.0.1"}, map[string]string{"dapr-listen-addresses": "[::1],127.0.0.1"}},
		{"fixed ports", nil, map[string]string{"dapr-http-port": "3500", "dapr-grpc-port": "50001", "dapr-internal-grpc-port": "50002", "dapr-internal-grpc-listen-address": "0.0.0.0"}},
		{"control plane", nil, map[string]string{"control-plane-address": DefaultControlPlaneAddress}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := sidecarOf(t, in, testPod(tt.an))
			got := flagValues(t, c.Args)
			for flag, want := range tt.want {
				if got[flag] != want {
					t.Errorf("--%s = %q, want %q (args %q)", flag, got[flag], want, c.Args)
				}
			}
		})
	}
}

// TestAnnotationsShapeTheContainer: the annotations that are not flags
// show up in the container's image, resources, probes, environment,
// mounts and security context.
func TestAnnotationsShapeTheContainer(t *testing.T) {
	in := newInjector(t, testOptions)
	secretEnv := func(name, secret string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{
			LocalObjectReference: corev1.LocalObjectReference{Name: secret}, Key: "token"}}}
	}
	tests := []struct {
		name  string
		an    map[string]string
		check func(t *testing.T, c corev1.Container)
	}{
		{"default image", nil, func(t *testing.T, c corev1.Container) {
			if c.Image != testOptions.Image {
				t.Errorf("image %q, want %q", c.Image, testOptions.Image)
			}
		}},
		{"sidecar image", map[string]string{AnnotationSidecarImage: "example.com/skein:dev"}, func(t *testing.T, c corev1.Container) {
			if c.Image != "example.com/skein:dev" {
				t.Errorf("image %q", c.Image)
			}
		}},
		{"resources", map[string]string{AnnotationCPURequest: "100m", AnnotationCPULimit: "1", AnnotationMemoryRequest: "64Mi", AnnotationMemoryLimit: "256Mi"}, func(t *testing.T, c corev1.Container) {
			want := corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("64Mi")},
				Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1"), corev1.ResourceMemory: resource.MustParse("256Mi")},
			}
			if diff := cmp.Diff(want, c.Resources); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		}},
		{"no resources", nil, func(t *testing.T, c corev1.Container) {
			if diff := cmp.Diff(corev1.ResourceRequirements{}, c.Resources); diff != "" {
				t.Errorf("resources (-want +got):\n%s", diff)
			}
		}},
		{"probe defaults", nil, func(t *testing.T, c corev1.Container) {
			for _, p := range []*corev1.Probe{c.LivenessProbe, c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/v1.0/healthz" || p.HTTPGet.Port.IntVal != PublicPort {
					t.Fatalf("probe %+v: want GET /v1.0/healthz on the public port 3501", p)
				}
				if got := [4]int32{p.InitialDelaySeconds, p.TimeoutSeconds, p.PeriodSeconds, p.FailureThreshold}; got != [4]int32{3, 3, 6, 3} {
					t.Errorf("probe timings %v, want Dapr's [3 3 6 3]", got)
				}
			}
		}},
		{"probe timings", map[string]string{AnnotationLivenessDelay: "1", AnnotationLivenessTimeout: "2", AnnotationLivenessPeriod: "7", AnnotationLivenessThreshold: "8",
			AnnotationReadinessDelay: "0", AnnotationReadinessTimeout: "4", AnnotationReadinessPeriod: "9", AnnotationReadinessThreshold: "1"}, func(t *testing.T, c corev1.Container) {
			l, r := c.LivenessProbe, c.ReadinessProbe
			if got := [4]int32{l.InitialDelaySeconds, l.TimeoutSeconds, l.PeriodSeconds, l.FailureThreshold}; got != [4]int32{1, 2, 7, 8} {
				t.Errorf("liveness %v", got)
			}
			if got := [4]int32{r.InitialDelaySeconds, r.TimeoutSeconds, r.PeriodSeconds, r.FailureThreshold}; got != [4]int32{0, 4, 9, 1} {
				t.Errorf("readiness %v", got)
			}
		}},
		{"metrics port", map[string]string{AnnotationMetricsPort: "9123"}, func(t *testing.T, c corev1.Container) {
			want := []corev1.ContainerPort{
				{Name: "dapr-http", ContainerPort: 3500, Protocol: corev1.ProtocolTCP},
				{Name: "dapr-grpc", ContainerPort: 50001, Protocol: corev1.ProtocolTCP},
				{Name: "dapr-internal", ContainerPort: 50002, Protocol: corev1.ProtocolTCP},
				{Name: "dapr-metrics", ContainerPort: 9123, Protocol: corev1.ProtocolTCP},
			}
			if diff := cmp.Diff(want, c.Ports); diff != "" {
				t.Errorf("ports (-want +got):\n%s", diff)
			}
		}},
		{"probes without metrics too", map[string]string{AnnotationEnableMetrics: "off"}, func(t *testing.T, c corev1.Container) {
			if c.LivenessProbe == nil || c.ReadinessProbe == nil {
				t.Errorf("probes %v %v, want both: they use the public port", c.LivenessProbe, c.ReadinessProbe)
			}
			if !slices.Contains(c.Args, "--dapr-public-port") {
				t.Errorf("args %v without --dapr-public-port", c.Args)
			}
		}},
		{"base environment", nil, func(t *testing.T, c corev1.Container) {
			want := []corev1.EnvVar{
				{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "DAPR_HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "SKEIN_HOME", Value: "/var/run/skein"},
				secretEnv("SKEIN_JOIN_TOKEN", DefaultJoinTokenSecret),
			}
			if diff := cmp.Diff(want, c.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		}},
		{"tokens and env", map[string]string{AnnotationAPITokenSecret: "api-tok", AnnotationAppTokenSecret: "app-tok", AnnotationEnv: "A=1, B=x,y=z,SKEIN_HOME=/tmp/h"}, func(t *testing.T, c corev1.Container) {
			want := []corev1.EnvVar{
				{Name: "NAMESPACE", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}},
				{Name: "DAPR_HOST_IP", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "status.podIP"}}},
				{Name: "SKEIN_HOME", Value: "/tmp/h"},
				secretEnv("SKEIN_JOIN_TOKEN", DefaultJoinTokenSecret),
				secretEnv("DAPR_API_TOKEN", "api-tok"),
				secretEnv("APP_API_TOKEN", "app-tok"),
				{Name: "A", Value: "1"},
				{Name: "B", Value: "x"},
				{Name: "y", Value: "z"},
			}
			if diff := cmp.Diff(want, c.Env); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		}},
		{"env value with commas and equals", map[string]string{AnnotationEnv: "HOSTS=a,b,c,Q=x=y"}, func(t *testing.T, c corev1.Container) {
			got := c.Env[len(c.Env)-2:]
			want := []corev1.EnvVar{{Name: "HOSTS", Value: "a,b,c"}, {Name: "Q", Value: "x=y"}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("env (-want +got):\n%s", diff)
			}
		}},
		{"volume mounts and a config file", map[string]string{AnnotationVolumeMounts: "cfg:/etc/skein", AnnotationConfig: "/etc/skein/config.yaml"}, func(t *testing.T, c corev1.Container) {
			want := []corev1.VolumeMount{{Name: "skein-home", MountPath: "/var/run/skein"},
				{Name: "skein-identity-token", MountPath: "/var/run/secrets/skein.io/identity", ReadOnly: true},
				{Name: "cfg", MountPath: "/etc/skein", ReadOnly: true}}
			if diff := cmp.Diff(want, c.VolumeMounts); diff != "" {
				t.Errorf("mounts (-want +got):\n%s", diff)
			}
			if got := flagValues(t, c.Args)["config"]; got != "/etc/skein/config.yaml" {
				t.Errorf("--config %q", got)
			}
		}},
		{"read-write mounts", map[string]string{AnnotationVolumeMountsRW: "cfg:/data"}, func(t *testing.T, c corev1.Container) {
			if diff := cmp.Diff(corev1.VolumeMount{Name: "cfg", MountPath: "/data"}, c.VolumeMounts[2]); diff != "" {
				t.Errorf("mount (-want +got):\n%s", diff)
			}
		}},
		{"locked down", nil, func(t *testing.T, c corev1.Container) {
			sc := c.SecurityContext
			if !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || *sc.RunAsUser == 0 ||
				!slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
				t.Errorf("security context %+v is not locked down", sc)
			}
		}},
		{"seccomp", map[string]string{AnnotationSeccompProfileType: "Unconfined"}, func(t *testing.T, c corev1.Container) {
			if c.SecurityContext.SeccompProfile.Type != corev1.SeccompProfileTypeUnconfined {
				t.Errorf("seccomp %v", c.SecurityContext.SeccompProfile)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _ := sidecarOf(t, in, testPod(tt.an))
			if c.Name != "daprd" {
				t.Fatalf("sidecar named %q, want daprd", c.Name)
			}
			tt.check(t, c)
		})
	}
}

// TestPodChanges: labels, volume and the app containers' environment, as
// Dapr's injector adds them; a variable the app sets is kept.
func TestPodChanges(t *testing.T) {
	in := newInjector(t, testOptions)
	pod := testPod(map[string]string{AnnotationAppProtocol: "grpc", AnnotationEnableMetrics: "false"})
	pod.Spec.Containers = append(pod.Spec.Containers, corev1.Container{Name: "helper", Env: []corev1.EnvVar{{Name: "DAPR_HTTP_PORT", Value: "3600"}}})
	sidecarOf(t, in, pod)
	wantLabels := map[string]string{"app": "orders", "dapr.io/sidecar-injected": "true", "dapr.io/app-id": "orders", "dapr.io/metrics-enabled": "false"}
	if diff := cmp.Diff(wantLabels, pod.Labels); diff != "" {
		t.Errorf("labels (-want +got):\n%s", diff)
	}
	wantApp := []corev1.EnvVar{{Name: "LOG", Value: "1"}, {Name: "DAPR_HTTP_PORT", Value: "3500"}, {Name: "DAPR_GRPC_PORT", Value: "50001"}, {Name: "APP_PROTOCOL", Value: "grpc"}}
	if diff := cmp.Diff(wantApp, pod.Spec.Containers[0].Env); diff != "" {
		t.Errorf("app env (-want +got):\n%s", diff)
	}
	wantHelper := []corev1.EnvVar{{Name: "DAPR_HTTP_PORT", Value: "3600"}, {Name: "DAPR_GRPC_PORT", Value: "50001"}, {Name: "APP_PROTOCOL", Value: "grpc"}}
	if diff := cmp.Diff(wantHelper, pod.Spec.Containers[1].Env); diff != "" {
		t.Errorf("helper env (-want +got):\n%s", diff)
	}
	if n := len(pod.Spec.Volumes); n != 3 || pod.Spec.Volumes[1].Name != "skein-home" || pod.Spec.Volumes[1].EmptyDir == nil {
		t.Fatalf("volumes %+v: want cfg, the skein-home emptyDir, then the token", pod.Spec.Volumes)
	}
	// The pod's proof of identity to the control plane: a token of the
	// control plane's audience, bound to the pod by the kubelet, mounted
	// read-only in the sidecar alone, which is told where.
	wantToken := corev1.Volume{Name: "skein-identity-token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
			Audience: "skein.io/control-plane", ExpirationSeconds: ptr(int64(3600)), Path: "token"}}},
	}}}
	if diff := cmp.Diff(wantToken, pod.Spec.Volumes[2]); diff != "" {
		t.Errorf("token volume (-want +got):\n%s", diff)
	}
	d := pod.Spec.Containers[len(pod.Spec.Containers)-1]
	wantMount := corev1.VolumeMount{Name: "skein-identity-token", MountPath: "/var/run/secrets/skein.io/identity", ReadOnly: true}
	if !slices.ContainsFunc(d.VolumeMounts, func(m corev1.VolumeMount) bool { return cmp.Equal(m, wantMount) }) {
		t.Errorf("sidecar mounts %+v: want %+v", d.VolumeMounts, wantMount)
	}
	if got := flagValues(t, d.Args)["kubernetes-token-file"]; got != TokenPath || TokenPath != wantMount.MountPath+"/token" {
		t.Errorf("--kubernetes-token-file %q, want %q in the mount", got, TokenPath)
	}
	for _, c := range pod.Spec.Containers[:len(pod.Spec.Containers)-1] {
		if len(c.VolumeMounts) > 0 {
			t.Errorf("app container %s got mounts %+v", c.Name, c.VolumeMounts)
		}
	}

	t.Run("no control plane, no token", func(t *testing.T) {
		opts := testOptions
		opts.ControlPlaneAddress = ""
		pod := testPod(nil)
		d, _ := sidecarOf(t, newInjector(t, opts), pod)
		if n := len(pod.Spec.Volumes); n != 2 || len(d.VolumeMounts) != 1 || slices.Contains(d.Args, "--kubernetes-token-file") {
			t.Errorf("volumes %+v, mounts %+v, args %v: want no token without a control plane", pod.Spec.Volumes, d.VolumeMounts, d.Args)
		}
	})
}

// TestAppIDDefault: the pod's name, else its workload's; a warning says so.
func TestAppIDDefault(t *testing.T) {
	in := newInjector(t, testOptions)
	tests := []struct {
		name, podName, owner, want string
	}{
		{"pod name, as Dapr", "web-0", "web", "web-0"},
		{"workload name for a template", "", "orders", "orders"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(nil)
			delete(pod.Annotations, AnnotationAppID)
			pod.Name = tt.podName
			p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, tt.owner)
			if err != nil {
				t.Fatal(err)
			}
			if p.AppID != tt.want {
				t.Errorf("app id %q, want %q", p.AppID, tt.want)
			}
			if !slices.ContainsFunc(p.Warnings, func(w string) bool { return strings.HasPrefix(w, "dapr.io/app-id: not set") }) {
				t.Errorf("warnings %q: want one about the defaulted app id", p.Warnings)
			}
		})
	}
}

// TestIgnoredAnnotationsWarn: every annotation Skein ignores, and any
// dapr.io one it does not know, is a warning, never silently dropped.
func TestIgnoredAnnotationsWarn(t *testing.T) {
	in := newInjector(t, testOptions)
	for _, a := range Annotations() {
		if a.Supported {
			continue
		}
		t.Run(a.Key, func(t *testing.T) {
			_, p := sidecarOf(t, in, testPod(map[string]string{a.Key: "true"}))
			want := a.Key + ": ignored: " + a.Effect
			if !slices.Contains(p.Warnings, want) {
				t.Errorf("warnings %q: want %q", p.Warnings, want)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, p := sidecarOf(t, in, testPod(map[string]string{"dapr.io/grpc-port": "50005", "example.com/other": "x"}))
		want := []string{"dapr.io/grpc-port: ignored: not an annotation of Dapr v1.14's injector"}
		if diff := cmp.Diff(want, p.Warnings); diff != "" {
			t.Errorf("warnings (-want +got):\n%s", diff)
		}
	})
	t.Run("supported ones do not warn", func(t *testing.T) {
		_, p := sidecarOf(t, in, testPod(map[string]string{AnnotationAppPort: "3000", AnnotationLogLevel: "info"}))
		if len(p.Warnings) != 0 {
			t.Errorf("warnings %q, want none", p.Warnings)
		}
	})
	t.Run("no control plane", func(t *testing.T) {
		o := testOptions
		o.ControlPlaneAddress = ""
		_, p := sidecarOf(t, newInjector(t, o), testPod(map[string]string{AnnotationConfig: "appconfig"}))
		if len(p.Warnings) != 2 || !strings.Contains(p.Warnings[1], `Configuration "appconfig"`) {
			t.Errorf("warnings %q: want the missing control plane and the Configuration it would serve", p.Warnings)
		}
	})
}

// TestInvalidValues: a value the sidecar would refuse is refused at
// injection, naming the annotation; every bad one is reported at once.
func TestInvalidValues(t *testing.T) {
	in := newInjector(t, testOptions)
	tests := []struct {
		name, key, value string
		extra            map[string]string
	}{
		{"app port not a number", AnnotationAppPort, "http", nil},
		{"app port out of range", AnnotationAppPort, "70000", nil},
		{"app port is the sidecar's", AnnotationAppPort, "3500", nil},
		{"app id with a dot", AnnotationAppID, "orders.v2", nil},
		{"app id upper case", AnnotationAppID, "Orders", nil},
		{"app id too long", AnnotationAppID, strings.Repeat("a", 59), nil},
		{"protocol", AnnotationAppProtocol, "ftp", nil},
		{"config", AnnotationConfig, "not a name", nil},
		{"config file not mounted", AnnotationConfig, "/etc/skein/config.yaml", nil},
		{"log level", AnnotationLogLevel, "loud", nil},
		{"boolean", AnnotationEnableMetrics, "maybe", nil},
		{"metrics port", AnnotationMetricsPort, "50002", nil},
		{"concurrency", AnnotationAppMaxConcurrency, "ten", nil},
		{"body size", AnnotationMaxBodySize, "lots", nil},
		{"body size fraction", AnnotationMaxBodySize, "100m", nil},
		{"legacy body size", AnnotationHTTPMaxRequestSize, "-4", nil},
		{"read buffer", AnnotationReadBufferSize, "0", nil},
		{"graceful shutdown", AnnotationGracefulShutdown, "soon", nil},
		{"health path", AnnotationAppHealthCheckPath, "healthz", map[string]string{AnnotationEnableAppHealthCheck: "true"}},
		{"health path escape", AnnotationAppHealthCheckPath, "/%zz", map[string]string{AnnotationEnableAppHealthCheck: "true"}},
		{"health interval", AnnotationAppHealthInterval, "0", nil},
		{"health timeout past interval", AnnotationAppHealthTimeout, "6000", map[string]string{AnnotationEnableAppHealthCheck: "true"}},
		{"health threshold", AnnotationAppHealthThreshold, "0", nil},
		{"listen address", AnnotationListenAddresses, "everywhere", nil},
		{"cpu", AnnotationCPURequest, "fast", nil},
		{"memory request over limit", AnnotationMemoryRequest, "1Gi", map[string]string{AnnotationMemoryLimit: "64Mi"}},
		{"probe timeout", AnnotationLivenessTimeout, "0", nil},
		{"probe delay", AnnotationReadinessDelay, "-1", nil},
		{"seccomp", AnnotationSeccompProfileType, "Localhost", nil},
		{"env", AnnotationEnv, "=x", nil},
		{"env twice", AnnotationEnv, "A=1,A=2", nil},
		{"token secret", AnnotationAPITokenSecret, "Not_A_Name", nil},
		{"mount of no volume", AnnotationVolumeMounts, "secrets:/etc/secrets", nil},
		{"mount not absolute", AnnotationVolumeMountsRW, "cfg:etc", nil},
		{"mount over the sidecar's token", AnnotationVolumeMounts, "cfg:/var/run/secrets/skein.io/identity", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			an := map[string]string{tt.key: tt.value}
			for k, v := range tt.extra {
				an[k] = v
			}
			pod := testPod(an)
			_, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
			var ae *AnnotationError
			if !errors.As(err, &ae) || ae.Key != tt.key {
				t.Fatalf("error %v: want an *AnnotationError for %s", err, tt.key)
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.value) {
				t.Errorf("error %q does not name %s and %q", err, tt.key, tt.value)
			}
		})
	}
	t.Run("all at once", func(t *testing.T) {
		pod := testPod(map[string]string{AnnotationAppPort: "x", AnnotationLogLevel: "loud", AnnotationCPULimit: "?"})
		_, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
		var keys []string
		for _, e := range unjoin(err) {
			var ae *AnnotationError
			if errors.As(e, &ae) {
				keys = append(keys, ae.Key)
			}
		}
		slices.Sort(keys)
		if want := []string{AnnotationAppPort, AnnotationLogLevel, AnnotationCPULimit}; !slices.Equal(keys, want) {
			t.Errorf("errors for %q, want %q", keys, want)
		}
	})
	t.Run("no name to default to", func(t *testing.T) {
		pod := testPod(nil)
		delete(pod.Annotations, AnnotationAppID)
		pod.Name = ""
		_, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
		var ae *AnnotationError
		if !errors.As(err, &ae) || ae.Key != AnnotationAppID {
			t.Errorf("error %v: want one about dapr.io/app-id", err)
		}
	})
}

// TestSkips: no dapr.io/enabled, or a daprd already there, means no change.
func TestSkips(t *testing.T) {
	in := newInjector(t, testOptions)
	tests := []struct {
		name string
		an   map[string]string
		want string
	}{
		{"no annotations", nil, SkipNotEnabled},
		{"disabled", map[string]string{AnnotationEnabled: "false"}, SkipNotEnabled},
		{"not a boolean", map[string]string{AnnotationEnabled: "sure"}, SkipNotEnabled},
		{"others but not enabled", map[string]string{AnnotationAppID: "x", AnnotationAppPort: "not checked"}, SkipNotEnabled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := testPod(nil)
			pod.Annotations = tt.an
			before := pod.DeepCopy()
			p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
			if err != nil || p.Skip != tt.want {
				t.Fatalf("plan %+v, %v: want skip %q", p, err, tt.want)
			}
			p.Apply(&pod.ObjectMeta, &pod.Spec)
			if diff := cmp.Diff(before, pod); diff != "" {
				t.Errorf("pod changed (-before +after):\n%s", diff)
			}
			if ops := p.Patch("", &pod.ObjectMeta, &pod.Spec); len(ops) != 0 {
				t.Errorf("patch %v, want none", ops)
			}
		})
	}
	t.Run("truthy values", func(t *testing.T) {
		for _, v := range []string{"true", "True", "1", "yes", "on", "y", "T"} {
			pod := testPod(map[string]string{AnnotationEnabled: v})
			if p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, ""); err != nil || !p.Injected() {
				t.Errorf("dapr.io/enabled %q: plan %+v, %v: want injected", v, p, err)
			}
		}
	})
	t.Run("idempotent", func(t *testing.T) {
		pod := testPod(nil)
		sidecarOf(t, in, pod)
		once := pod.DeepCopy()
		p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
		if err != nil || p.Skip != SkipInjected {
			t.Fatalf("second plan %+v, %v: want skip %q", p, err, SkipInjected)
		}
		p.Apply(&pod.ObjectMeta, &pod.Spec)
		if diff := cmp.Diff(once, pod); diff != "" {
			t.Errorf("second injection changed the pod (-once +twice):\n%s", diff)
		}
	})
}

// TestPatchIsApply: the JSON Patch, applied by evanphx/json-patch to the
// pod's JSON, gives the pod Apply gives, for pods with and without
// labels, volumes and environment.
func TestPatchIsApply(t *testing.T) {
	in := newInjector(t, testOptions)
	bare := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "bare", Annotations: map[string]string{AnnotationEnabled: "true"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a"}, {Name: "b"}}},
	}
	full := testPod(map[string]string{AnnotationAPITokenSecret: "tok", AnnotationVolumeMounts: "cfg:/cfg"})
	full.Labels["dapr.io/app-id"] = "stale"
	full.Spec.Containers[0].Env = append(full.Spec.Containers[0].Env, corev1.EnvVar{Name: "DAPR_GRPC_PORT", Value: "1"})
	for _, pod := range []*corev1.Pod{bare, full} {
		t.Run(pod.Name, func(t *testing.T) {
			before, err := json.Marshal(pod)
			if err != nil {
				t.Fatal(err)
			}
			p, err := in.Plan(&pod.ObjectMeta, &pod.Spec, "")
			if err != nil {
				t.Fatal(err)
			}
			ops, err := json.Marshal(p.Patch("", &pod.ObjectMeta, &pod.Spec))
			if err != nil {
				t.Fatal(err)
			}
			patch, err := jsonpatch.DecodePatch(ops)
			if err != nil {
				t.Fatal(err)
			}
			patched, err := patch.Apply(before)
			if err != nil {
				t.Fatalf("apply %s: %v", ops, err)
			}
			var got corev1.Pod
			if err := json.Unmarshal(patched, &got); err != nil {
				t.Fatal(err)
			}
			want := pod.DeepCopy()
			p.Apply(&want.ObjectMeta, &want.Spec)
			if diff := cmp.Diff(want, &got); diff != "" {
				t.Errorf("patched pod (-Apply +Patch):\n%s", diff)
			}
		})
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{Image: "x", ImagePullPolicy: "Sometimes"},
		{Image: "x", ControlPlaneAddress: "no-port"},
		{Image: "x", JoinTokenSecret: "Bad Name"},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("New(%+v): no error", o)
		}
	}
}
