package telemetry

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"
)

func TestSamplingRate(t *testing.T) {
	tests := []struct {
		in   string
		want float64
	}{
		{"", DefaultSamplingRate},
		{"abc", DefaultSamplingRate},
		{"1", 1},
		{" 0.5 ", 0.5},
		{"0", 0},
		{"0.0", 0},
		{"1e-3", 0.001},
		{"-1", -1}, // as Dapr: never samples a new trace, still propagates
	}
	for _, tt := range tests {
		if got := SamplingRate(tt.in); got != tt.want {
			t.Errorf("SamplingRate(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func decode(t *testing.T, src string) (*TracingSpec, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return DecodeTracing(&n)
}

func TestDecodeTracing(t *testing.T) {
	f := false
	tests := []struct {
		name string
		src  string
		want *TracingSpec
	}{
		{"full, list of k=v headers", `
samplingRate: "1"
stdout: true
zipkin: {endpointAddress: "http://localhost:9411/api/v2/spans"}
otel:
  endpointAddress: "localhost:4317"
  protocol: grpc
  isSecure: false
  headers: ["x-token=abc", "k = v=w"]
  timeout: 3s
`, &TracingSpec{SamplingRate: "1", Stdout: true, ZipkinEndpoint: "http://localhost:9411/api/v2/spans",
			Otel: OtelSpec{EndpointAddress: "localhost:4317", Protocol: "grpc", IsSecure: &f,
				Headers: []Header{{"x-token", "abc"}, {"k", "v=w"}}, Timeout: 3 * time.Second}}},
		{"CRD headers, unquoted rate, upper-case protocol", `
samplingRate: 1
otel:
  endpointAddress: collector:4318
  protocol: HTTP
  headers:
    - name: x-token
      value: abc
`, &TracingSpec{SamplingRate: "1", Otel: OtelSpec{EndpointAddress: "collector:4318", Protocol: "HTTP",
			Headers: []Header{{"x-token", "abc"}}}}},
		{"headers as one string", `
otel: {headers: "a=1,b=2"}
`, &TracingSpec{Otel: OtelSpec{Headers: []Header{{"a", "1"}, {"b", "2"}}}}},
		{"empty", `{}`, &TracingSpec{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(t, tt.src)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tt.want, got); d != "" {
				t.Errorf("(-want +got)\n%s", d)
			}
		})
	}
}

func TestDecodeTracingErrors(t *testing.T) {
	_, err := decode(t, `
samplingRate: "1"
sampling: 2
otel:
  protocol: udp
  isSecure: maybe
  timeout: soon
  headers: ["novalue", {value: v}, {name: a, extra: 1}]
zipkin: {endpoint: x}
`)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`tracing.sampling: unknown field (line 3)`,
		`tracing.otel.protocol: "udp": must be grpc or http (line 5)`,
		`tracing.otel.isSecure: "maybe": must be true or false (line 6)`,
		`tracing.otel.timeout: "soon": must be a positive duration`,
		`tracing.otel.headers[0]: "novalue": want name=value`,
		`tracing.otel.headers[1].name: required`,
		`tracing.otel.headers[2].extra: unknown field`,
		`tracing.zipkin.endpoint: unknown field`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestResolve(t *testing.T) {
	f, tr := false, true
	tests := []struct {
		name   string
		spec   *TracingSpec
		getenv func(string) string
		rate   float64
		export Export
		warn   string
	}{
		{name: "nothing: default rate, no export", getenv: env(), rate: DefaultSamplingRate},
		{
			name:   "config endpoint, secure by default",
			spec:   &TracingSpec{SamplingRate: "0.5", Otel: OtelSpec{EndpointAddress: "c:4317", Protocol: "grpc"}},
			getenv: env(),
			rate:   0.5,
			export: Export{Protocol: "grpc", Endpoint: "c:4317", Headers: map[string]string{}, Timeout: 10 * time.Second},
		},
		{
			name: "config endpoint wins over environment",
			spec: &TracingSpec{Otel: OtelSpec{EndpointAddress: "c:4318", Protocol: "http", IsSecure: &tr,
				Headers: []Header{{"a", "1"}}, Timeout: time.Second}},
			getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317", "OTEL_EXPORTER_OTLP_INSECURE", "true",
				"OTEL_EXPORTER_OTLP_HEADERS", "b=2", "OTEL_EXPORTER_OTLP_TIMEOUT", "5"),
			rate:   DefaultSamplingRate,
			export: Export{Protocol: "http", Endpoint: "c:4318", URLPath: "/v1/traces", Headers: map[string]string{"a": "1"}, Timeout: time.Second},
		},
		{
			name: "environment: scheme stripped, rate 1, grpc, all overrides",
			getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4317", "OTEL_EXPORTER_OTLP_INSECURE", "true",
				"OTEL_EXPORTER_OTLP_HEADERS", "b=2,c=a%20b", "OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
			rate:   1,
			export: Export{Protocol: "grpc", Endpoint: "env:4317", Insecure: true, Headers: map[string]string{"b": "2", "c": "a b"}, Timeout: 2500 * time.Millisecond},
		},
		{
			name: "environment keeps a configured rate; traces-specific variables win",
			spec: &TracingSpec{SamplingRate: "0.25", Otel: OtelSpec{IsSecure: &f}},
			getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "https://generic:4317", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces:4318/custom/path",
				"OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf",
				"OTEL_EXPORTER_OTLP_HEADERS", "g=1", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "t=1",
				"OTEL_EXPORTER_OTLP_TIMEOUT", "1000", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "2000"),
			rate:   0.25,
			export: Export{Protocol: "http", Endpoint: "traces:4318", URLPath: "/custom/path", Insecure: true, Headers: map[string]string{"t": "1"}, Timeout: 2 * time.Second},
		},
		{
			name:   "generic endpoint is a base: the signal path is appended",
			getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318/otlp", "OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
			rate:   1,
			export: Export{Protocol: "http", Endpoint: "env:4318", URLPath: "/otlp/v1/traces", Headers: map[string]string{}, Timeout: 10 * time.Second},
		},
		{
			name:   "other variables alone do nothing",
			getenv: env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc", "OTEL_EXPORTER_OTLP_INSECURE", "true"),
			rate:   DefaultSamplingRate,
		},
		{
			name:   "endpoint without protocol: no export, warned",
			spec:   &TracingSpec{SamplingRate: "1", Otel: OtelSpec{EndpointAddress: "c:4317"}},
			getenv: env(),
			rate:   1,
			warn:   "protocol (grpc or http) not set",
		},
		{
			name:   "zipkin accepted and ignored",
			spec:   &TracingSpec{SamplingRate: "1", ZipkinEndpoint: "http://z:9411/api/v2/spans"},
			getenv: env(),
			rate:   1,
			warn:   "zipkin ignored",
		},
		{
			name:   "bad timeout variable warned",
			getenv: env("OTEL_EXPORTER_OTLP_ENDPOINT", "env:4317", "OTEL_EXPORTER_OTLP_TIMEOUT", "10s"),
			rate:   1,
			export: Export{Protocol: "grpc", Endpoint: "env:4317", Headers: map[string]string{}, Timeout: 10 * time.Second},
			warn:   "OTEL_EXPORTER_OTLP_TIMEOUT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := resolve(tt.spec, tt.getenv)
			if got.rate != tt.rate {
				t.Errorf("rate %v, want %v", got.rate, tt.rate)
			}
			if d := cmp.Diff(tt.export, got.export); d != "" {
				t.Errorf("export (-want +got)\n%s", d)
			}
			w := strings.Join(got.warnings, "; ")
			if (tt.warn == "") != (w == "") || !strings.Contains(w, tt.warn) {
				t.Errorf("warnings %q, want one containing %q", w, tt.warn)
			}
		})
	}
}
