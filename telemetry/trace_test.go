package telemetry

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseTraceparent(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{"valid", valid, true},
		{"unsampled", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", true},
		{"future version with extra field", "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", true},
		{"version 00 with extra", valid + "-x", false},
		{"version ff", "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", false},
		{"upper case hex", "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", false},
		{"zero trace id", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", false},
		{"zero span id", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", false},
		{"short", "00-4bf92f35", false},
		{"bad separators", "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01", false},
		{"empty", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sc, ok := ParseTraceparent(tt.in)
			if ok != tt.ok {
				t.Fatalf("ParseTraceparent(%q) ok = %v, want %v", tt.in, ok, tt.ok)
			}
			if ok && tt.in[:2] == "00" && sc.Traceparent() != tt.in {
				t.Errorf("round trip: %q → %q", tt.in, sc.Traceparent())
			}
		})
	}
}

func TestTraceContextLayer(t *testing.T) {
	var got SpanContext
	h := TraceContext()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, _ = SpanFrom(r.Context())
	}))

	t.Run("continues inbound trace with a new span", func(t *testing.T) {
		const in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Traceparent", in)
		h.ServeHTTP(httptest.NewRecorder(), r)
		out := got.Traceparent()
		if !strings.HasPrefix(out, in[:36]) || !strings.HasSuffix(out, "-01") {
			t.Errorf("trace id or flags changed: %s → %s", in, out)
		}
		if out == in {
			t.Error("span id not replaced")
		}
		if r.Header.Get("Traceparent") != in {
			t.Error("inbound request modified")
		}
	})
	t.Run("starts a trace when absent or invalid", func(t *testing.T) {
		for _, in := range []string{"", "garbage"} {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			if in != "" {
				r.Header.Set("Traceparent", in)
			}
			h.ServeHTTP(httptest.NewRecorder(), r)
			if _, ok := ParseTraceparent(got.Traceparent()); !ok {
				t.Errorf("inbound %q: new context %q is invalid", in, got.Traceparent())
			}
		}
	})
}

func FuzzParseTraceparent(f *testing.F) {
	f.Add("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	f.Add("")
	f.Fuzz(func(t *testing.T, in string) {
		sc, ok := ParseTraceparent(in)
		if !ok {
			return
		}
		again, ok := ParseTraceparent(sc.Traceparent())
		if !ok || again != sc {
			t.Fatalf("%q → %q does not parse back", in, sc.Traceparent())
		}
	})
}

func TestParseLevel(t *testing.T) {
	for _, s := range []string{"debug", "info", "warn", "error", "fatal", "INFO"} {
		if _, err := ParseLevel(s); err != nil {
			t.Errorf("ParseLevel(%q) = %v", s, err)
		}
	}
	if _, err := ParseLevel("loud"); err == nil {
		t.Error("ParseLevel(loud) = nil error")
	}
}
