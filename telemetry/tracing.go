package telemetry

import (
	"fmt"
	"maps"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/skeinmesh/skein/internal/yamlfield"
)

// DefaultSamplingRate is the rate of an empty or unparseable samplingRate,
// as Dapr (contract §6.3).
const DefaultSamplingRate = 0.0001

// defaultExportTimeout bounds one OTLP export when otel.timeout is unset.
const defaultExportTimeout = 10 * time.Second

// TracingSpec is spec.tracing of a Dapr Configuration, as written. Its zero
// value (no tracing section) samples at DefaultSamplingRate and exports
// nothing, so trace context still flows through every hop.
type TracingSpec struct {
	// SamplingRate is a float in a string: "" or unparseable means
	// DefaultSamplingRate; "0" turns tracing off (no spans, no traceparent
	// injected); "1" samples every new trace.
	SamplingRate string
	// Stdout and ZipkinEndpoint are accepted for compatibility with Dapr
	// files and ignored with a warning: Skein exports OTLP only.
	Stdout         bool
	ZipkinEndpoint string
	Otel           OtelSpec
}

// OtelSpec is spec.tracing.otel: where OTLP spans go.
type OtelSpec struct {
	// EndpointAddress is host:port, no scheme (http may add a path; the
	// default path is /v1/traces). Empty: the OTEL_* environment decides.
	EndpointAddress string
	// Protocol is "grpc" or "http" (case-insensitive); required for export.
	Protocol string
	// IsSecure selects TLS (system roots); nil means true.
	IsSecure *bool
	// Headers are sent with every export.
	Headers []Header
	// Timeout bounds one export, retries included; 0 means 10s.
	Timeout time.Duration
}

// Header is one OTLP export header.
type Header struct{ Name, Value string }

// DecodeTracing decodes and validates spec.tracing strictly: unknown
// fields, a protocol other than grpc or http, a bad timeout or header are
// errors naming their field path and line, all of them at once.
func DecodeTracing(n *yaml.Node) (*TracingSpec, error) {
	var d yamlfield.Decoder
	s := &TracingSpec{}
	d.Mapping(n, "tracing", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "samplingRate":
			d.Str(v, path, &s.SamplingRate)
		case "stdout":
			d.Bool(v, path, &s.Stdout)
		case "zipkin":
			d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
				if key != "endpointAddress" {
					return false
				}
				d.Str(v, path, &s.ZipkinEndpoint)
				return true
			})
		case "otel":
			decodeOtel(&d, v, path, &s.Otel)
		default:
			return false
		}
		return true
	})
	if err := d.Err(); err != nil {
		return nil, err
	}
	return s, nil
}

func decodeOtel(d *yamlfield.Decoder, n *yaml.Node, path string, o *OtelSpec) {
	d.Mapping(n, path, func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "endpointAddress":
			d.Str(v, path, &o.EndpointAddress)
		case "protocol":
			d.Str(v, path, &o.Protocol)
			if p := strings.ToLower(o.Protocol); p != "" && p != "grpc" && p != "http" {
				d.Errorf(v, path, "%q: must be grpc or http", o.Protocol)
			}
		case "isSecure":
			var b bool
			if d.Bool(v, path, &b) {
				o.IsSecure = &b
			}
		case "timeout":
			var s string
			d.Str(v, path, &s)
			if s == "" {
				break
			}
			t, err := time.ParseDuration(s)
			if err != nil || t <= 0 {
				d.Errorf(v, path, "%q: must be a positive duration such as 10s", s)
				break
			}
			o.Timeout = t
		case "headers":
			decodeHeaders(d, v, path, &o.Headers)
		default:
			return false
		}
		return true
	})
}

// decodeHeaders takes both forms Dapr files use: ["k=v"] (the standalone
// form; a single "k=v,k2=v2" string too) and [{name: k, value: v}] (the
// Kubernetes CRD form).
func decodeHeaders(d *yamlfield.Decoder, n *yaml.Node, path string, dst *[]Header) {
	kv := func(v *yaml.Node, path, s string) {
		k, val, ok := strings.Cut(s, "=")
		if k = strings.TrimSpace(k); !ok || k == "" {
			d.Errorf(v, path, "%q: want name=value", s)
			return
		}
		*dst = append(*dst, Header{Name: k, Value: strings.TrimSpace(val)})
	}
	if n = yamlfield.Resolve(n); n != nil && n.Kind == yaml.ScalarNode && !yamlfield.IsNull(n) {
		for part := range strings.SplitSeq(n.Value, ",") {
			kv(n, path, part)
		}
		return
	}
	d.List(n, path, func(_ int, v *yaml.Node, path string) {
		if v = yamlfield.Resolve(v); v != nil && v.Kind == yaml.ScalarNode {
			kv(v, path, v.Value)
			return
		}
		var h Header
		d.Mapping(v, path, func(key string, v *yaml.Node, path string) bool {
			switch key {
			case "name":
				d.Str(v, path, &h.Name)
			case "value":
				d.Str(v, path, &h.Value)
			default:
				return false
			}
			return true
		})
		if h.Name == "" {
			d.Errorf(v, path+".name", "required")
			return
		}
		*dst = append(*dst, h)
	})
}

// SamplingRate parses a samplingRate as Dapr does: "" or unparseable gives
// DefaultSamplingRate; the value is otherwise taken as is (0 is off, 1 or
// more samples everything).
func SamplingRate(s string) float64 {
	r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil {
		return DefaultSamplingRate
	}
	return r
}

// Export says where spans go. Its zero value exports nothing.
type Export struct {
	Protocol string // "grpc", "http", or "" for none
	Endpoint string // host:port
	URLPath  string // http only
	Insecure bool
	Headers  map[string]string
	Timeout  time.Duration
}

func (e Export) equal(o Export) bool {
	return e.Protocol == o.Protocol && e.Endpoint == o.Endpoint && e.URLPath == o.URLPath &&
		e.Insecure == o.Insecure && e.Timeout == o.Timeout && maps.Equal(e.Headers, o.Headers)
}

// settings are a TracingSpec with the OTEL_* environment applied and the
// defaults filled in.
type settings struct {
	rate   float64
	export Export
	// warnings are accepted settings that do nothing: logged once each.
	warnings []string
}

// resolve applies the OTEL_* environment the way Dapr does (contract §6.3):
// only when otel.endpointAddress is empty, and only when an endpoint
// variable is set. spec may be nil.
func resolve(spec *TracingSpec, getenv func(string) string) settings {
	var s TracingSpec
	if spec != nil {
		s = *spec
		s.Otel.Headers = append([]Header(nil), spec.Otel.Headers...)
	}
	var warnings []string
	urlPath := ""
	if s.Otel.EndpointAddress == "" {
		ep, traces := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), true
		if ep == "" {
			ep, traces = getenv("OTEL_EXPORTER_OTLP_ENDPOINT"), false
		}
		if ep != "" {
			ep = strings.TrimPrefix(strings.TrimPrefix(ep, "http://"), "https://")
			// The generic endpoint is a base: per the OTLP exporter spec
			// the signal path is appended to it.
			host, p, _ := strings.Cut(ep, "/")
			if !traces {
				ep, urlPath = host, strings.TrimSuffix("/"+p, "/")+"/v1/traces"
			}
			s.Otel.EndpointAddress = ep
			if s.SamplingRate == "" {
				s.SamplingRate = "1"
			}
			s.Otel.Protocol = "grpc"
			if strings.HasPrefix(firstEnv(getenv, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"), "http") {
				s.Otel.Protocol = "http"
			}
			if strings.EqualFold(getenv("OTEL_EXPORTER_OTLP_INSECURE"), "true") {
				f := false
				s.Otel.IsSecure = &f
			}
			if hs := firstEnv(getenv, "OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS"); hs != "" {
				s.Otel.Headers = envHeaders(hs)
			}
			if ms := firstEnv(getenv, "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"); ms != "" {
				if n, err := strconv.Atoi(ms); err == nil && n > 0 {
					s.Otel.Timeout = time.Duration(n) * time.Millisecond
				} else {
					warnings = append(warnings, fmt.Sprintf("OTEL_EXPORTER_OTLP_TIMEOUT %q ignored: want milliseconds", ms))
				}
			}
		}
	}
	out := settings{rate: SamplingRate(s.SamplingRate), warnings: warnings}
	if s.Stdout {
		out.warnings = append(out.warnings, "spec.tracing.stdout ignored: Skein exports OTLP only")
	}
	if s.ZipkinEndpoint != "" {
		out.warnings = append(out.warnings, "spec.tracing.zipkin ignored: Skein exports OTLP only; use spec.tracing.otel")
	}
	o := s.Otel
	switch {
	case o.EndpointAddress == "":
	case o.Protocol == "":
		out.warnings = append(out.warnings, "spec.tracing.otel.endpointAddress ignored: protocol (grpc or http) not set")
	default:
		e := Export{
			Protocol: strings.ToLower(o.Protocol),
			Endpoint: o.EndpointAddress,
			Insecure: o.IsSecure != nil && !*o.IsSecure,
			Headers:  map[string]string{},
			Timeout:  o.Timeout,
		}
		if e.Timeout == 0 {
			e.Timeout = defaultExportTimeout
		}
		if host, p, ok := strings.Cut(e.Endpoint, "/"); ok {
			e.Endpoint, urlPath = host, "/"+p
		}
		if e.Protocol == "http" {
			e.URLPath = urlPath
			if e.URLPath == "" {
				e.URLPath = "/v1/traces"
			}
		}
		for _, h := range o.Headers {
			e.Headers[h.Name] = h.Value
		}
		out.export = e
	}
	return out
}

func firstEnv(getenv func(string) string, keys ...string) string {
	for _, k := range keys {
		if v := getenv(k); v != "" {
			return v
		}
	}
	return ""
}

// envHeaders parses the OTLP exporter's header list: k=v pairs separated
// by commas, values percent-encoded. Malformed pairs are skipped, as the
// OTel SDKs do.
func envHeaders(s string) []Header {
	var hs []Header
	for part := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			continue
		}
		if u, err := url.PathUnescape(strings.TrimSpace(v)); err == nil {
			hs = append(hs, Header{Name: k, Value: u})
		}
	}
	return hs
}
