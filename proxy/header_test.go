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

// hopHeavy has every hop-by-hop header, one named by Connection, and two
// end-to-end ones.
func hopHeavy() http.Header {
	return http.Header{
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
}

func TestRemoveHopHeaders(t *testing.T) {
	h := hopHeavy()
	removeHopHeaders(h)
	want := http.Header{"Authorization": {"Bearer kept"}, "Daprtest-Multi": {"a", "b"}}
	if diff := cmp.Diff(want, h); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestForwardFields: the forwarder's one-pass copy keeps what
// removeHopHeaders keeps; an owned copy shares no value with its source.
func TestForwardFields(t *testing.T) {
	for _, own := range []bool{true, false} {
		src := hopHeavy()
		src["Empty"] = nil // Clone keeps a nil entry as nil
		dst := http.Header{}
		forwardFields(dst, src, own)
		want := http.Header{"Authorization": {"Bearer kept"}, "Daprtest-Multi": {"a", "b"}, "Empty": nil}
		if diff := cmp.Diff(want, dst); diff != "" {
			t.Errorf("own %v (-want +got):\n%s", own, diff)
		}
		dst["Daprtest-Multi"][0] = "changed"
		if got := src["Daprtest-Multi"][0]; (got == "a") != own {
			t.Errorf("own %v: changing the copy's value left the source's %q", own, got)
		}
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
