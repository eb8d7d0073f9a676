package proxy

import (
	"net/http"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func mustURL(p string) *url.URL {
	return &url.URL{Path: p}
}

func TestRemoveHopHeaders(t *testing.T) {
	h := http.Header{
		"Connection":          {"X-Custom, keep-alive"},
		"X-Custom":            {"1"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Connection":    {"keep-alive"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"h2c"},
		"Http2-Settings":      {"x"},
		"Te":                  {"trailers"},
		"Trailer":             {"X-T"},
		"Proxy-Authorization": {"Basic x"},
		"Proxy-Authenticate":  {"Basic"},
		"Authorization":       {"Bearer kept"},
		"Daprtest-Multi":      {"a", "b"},
	}
	removeHopHeaders(h)
	want := http.Header{"Authorization": {"Bearer kept"}, "Daprtest-Multi": {"a", "b"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestStampIdentityReplacesSpoofedValues(t *testing.T) {
	h := http.Header{
		HeaderCallerAppID:     {"evil", "evil2"},
		HeaderCallerNamespace: {"evil-ns"},
		HeaderCalleeAppID:     {"other"},
	}
	stampIdentity(h, Caller{AppID: "app-a", Namespace: "default"}, Target{AppID: "app-b", Namespace: "default"})
	want := http.Header{
		HeaderCallerAppID:     {"app-a"},
		HeaderCallerNamespace: {"default"},
		HeaderCalleeAppID:     {"app-b"},
	}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestForwardingStamp(t *testing.T) {
	tests := []struct {
		name string
		host Host
		in   http.Header
		want http.Header
	}{
		{
			name: "fresh",
			host: Host{IP: "10.0.0.5", Name: "box"},
			in:   http.Header{},
			want: http.Header{
				"X-Forwarded-For":  {"10.0.0.5"},
				"X-Forwarded-Host": {"box"},
				"Forwarded":        {"for=10.0.0.5;by=10.0.0.5;host=box"},
			},
		},
		{
			name: "appends to existing",
			host: Host{IP: "10.0.0.5", Name: "box"},
			in:   http.Header{"X-Forwarded-For": {"1.2.3.4"}, "Forwarded": {"for=1.2.3.4"}, "X-Forwarded-Host": {"old"}},
			want: http.Header{
				"X-Forwarded-For":  {"1.2.3.4, 10.0.0.5"},
				"X-Forwarded-Host": {"box"},
				"Forwarded":        {"for=1.2.3.4, for=10.0.0.5;by=10.0.0.5;host=box"},
			},
		},
		{
			name: "IPv6 quoted and bracketed",
			host: Host{IP: "::1", Name: "box"},
			in:   http.Header{},
			want: http.Header{
				"X-Forwarded-For":  {"::1"},
				"X-Forwarded-Host": {"box"},
				"Forwarded":        {`for="[::1]";by="[::1]";host=box`},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			newForwarding(tt.host).stamp(tt.in)
			if diff := cmp.Diff(tt.want, tt.in); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}
