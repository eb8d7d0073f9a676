package proxy

import (
	"encoding/base64"
	"errors"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name, in string
		want     Target
		wantErr  bool
	}{
		{name: "bare id takes caller namespace", in: "orders", want: Target{AppID: "orders", Namespace: "prod"}},
		{name: "id and namespace", in: "orders.default", want: Target{AppID: "orders", Namespace: "default"}},
		{name: "two dots", in: "a.b.c", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "empty namespace", in: "orders.", wantErr: true},
		{name: "empty id", in: ".ns", wantErr: true},
		{name: "slash", in: "a/b", wantErr: true},
		{name: "space", in: "a b", wantErr: true},
		{name: "control", in: "a\x01", wantErr: true},
		{name: "external URL is not an app id", in: "http://example.com", wantErr: true},
		{name: "dashes and digits", in: "app-2_x", want: Target{AppID: "app-2_x", Namespace: "prod"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTarget(tt.in, "prod")
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTarget(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			var bad *InvalidAppIDError
			if err != nil && !errors.As(err, &bad) {
				t.Errorf("error %v is not *InvalidAppIDError", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTarget(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestValidateAppID(t *testing.T) {
	long := strings.Repeat("a", 65)
	for _, id := range []string{"", "a.b", long, "a/b", "a\\b", "a b", "a\tb", "a%b", "a\x7f", "a\xff", "\xc3"} {
		if ValidateAppID(id) == nil {
			t.Errorf("ValidateAppID(%q) = nil, want an error", id)
		}
	}
	for _, id := range []string{"a", "orders", "app-b", "App_1", strings.Repeat("a", 64)} {
		if err := ValidateAppID(id); err != nil {
			t.Errorf("ValidateAppID(%q) = %v", id, err)
		}
	}
}

// TestNormalizeMethod covers contract §1.3 and its table (methods as the
// HTTP path form delivers them: already percent-decoded).
func TestNormalizeMethod(t *testing.T) {
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "plain", in: "orders/42", want: "orders/42"},
		{name: "empty", in: "", want: ""},
		{name: "quote passes", in: `test"stream`, want: `test"stream`},
		{name: "star passes", in: "test*stream", want: "test*stream"},
		{name: "backslash passes", in: `test\stream`, want: `test\stream`},
		{name: "decoded %2F traversal", in: "admin/../public", want: "public"},
		{name: "leading traversal", in: "../../etc/passwd", want: "etc/passwd"},
		{name: "dotdot alone", in: "..", want: ""},
		{name: "dot alone", in: ".", want: ""},
		{name: "dot segments", in: "a/./b/../c", want: "a/c"},
		{name: "doubled slashes", in: "a//b", want: "a/b"},
		{name: "leading slash", in: "/a", want: "a"},
		{name: "trailing slash", in: "a/", want: "a"},
		{name: "dots inside names stay", in: "a..b/.c", want: "a..b/.c"},
		{name: "hash", in: "test#stream", wantErr: true},
		{name: "question mark", in: "test?stream", wantErr: true},
		{name: "NUL", in: "test\x00stream", wantErr: true},
		{name: "CR", in: "test\rstream", wantErr: true},
		{name: "LF", in: "test\nstream", wantErr: true},
		{name: "DEL", in: "test\x7fstream", wantErr: true},
		{name: "decoded %25", in: "test%stream", wantErr: true},
		{name: "decoded %ff: not UTF-8", in: "public/\xff1", wantErr: true},
		{name: "truncated UTF-8", in: "caf\xc3", wantErr: true},
		{name: "UTF-8 passes", in: "café/日本", want: "café/日本"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeMethod(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("NormalizeMethod(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalidMethod) {
				t.Errorf("error %v does not wrap ErrInvalidMethod", err)
			}
			if got != tt.want {
				t.Errorf("NormalizeMethod(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestNormalizeMethodCleanDoesNotAllocate(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { _, _ = NormalizeMethod("orders/42/items") }); n != 0 {
		t.Errorf("NormalizeMethod allocates %v times on a clean method, want 0", n)
	}
}

func TestParseInvocation(t *testing.T) {
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	tests := []struct {
		name    string
		target  string // request target as sent on the wire
		header  map[string]string
		want    Invocation
		wantErr error
	}{
		{name: "path form", target: "/v1.0/invoke/app-b/method/orders/42?x=1",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "orders/42"}},
		{name: "path form with namespace", target: "/v1.0/invoke/app-b.prod/method/x",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "prod"}, Method: "x"}},
		{name: "repeated slashes", target: "/v1.0////invoke//app-b/method//foo",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "foo"}},
		{name: "empty method", target: "/v1.0/invoke/app-b/method/",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: ""}},
		{name: "encoded slash traversal", target: "/v1.0/invoke/app-b/method/admin%2F..%2Fpublic",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "public"}},
		{name: "encoded quote", target: "/v1.0/invoke/app-b/method/test%22stream",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: `test"stream`}},
		{name: "encoded target", target: "/v1.0/invoke/app%2Db/method/x",
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "x"}},
		{name: "encoded hash", target: "/v1.0/invoke/app-b/method/test%23stream", wantErr: ErrInvalidMethod},
		{name: "encoded question mark", target: "/v1.0/invoke/app-b/method/test%3Fstream", wantErr: ErrInvalidMethod},
		{name: "encoded NUL", target: "/v1.0/invoke/app-b/method/test%00stream", wantErr: ErrInvalidMethod},
		{name: "encoded CR", target: "/v1.0/invoke/app-b/method/test%0Dstream", wantErr: ErrInvalidMethod},
		{name: "encoded percent", target: "/v1.0/invoke/app-b/method/test%25stream", wantErr: ErrInvalidMethod},
		{name: "missing method segment", target: "/v1.0/invoke/app-b", wantErr: ErrNoAppID},
		{name: "bare method word", target: "/v1.0/invoke/app-b/method", wantErr: ErrNoAppID},
		{name: "not an invoke path", target: "/nope", wantErr: ErrNoAppID},
		{name: "other API", target: "/v1.0/state/x", wantErr: ErrNoAppID},
		{name: "header form", target: "/orders/42", header: map[string]string{"dapr-app-id": "app-b"},
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "orders/42", ByHeader: true}},
		{name: "header form cleans", target: "///admin/../public", header: map[string]string{"dapr-app-id": "app-b"},
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "public", ByHeader: true}},
		{name: "header wins over path", target: "/v1.0/invoke/x/method/y", header: map[string]string{"dapr-app-id": "app-b"},
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "v1.0/invoke/x/method/y", ByHeader: true}},
		{name: "basic auth", target: "/orders", header: map[string]string{"Authorization": basic("dapr-app-id", "app-b")},
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "orders"}},
		{name: "basic auth user case-insensitive", target: "/orders", header: map[string]string{"Authorization": basic("DAPR-APP-ID", "app-b")},
			want: Invocation{Target: Target{AppID: "app-b", Namespace: "default"}, Method: "orders"}},
		{name: "basic auth other user", target: "/orders", header: map[string]string{"Authorization": basic("bob", "app-b")},
			wantErr: ErrNoAppID},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.target, nil)
			for k, v := range tt.header {
				r.Header.Set(k, v)
			}
			got, err := ParseInvocation(r, "default")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmpopts.IgnoreFields(Invocation{}, "Name")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseInvocationBadTarget(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/v1.0/invoke/a.b.c/method/x", nil)
	_, err := ParseInvocation(r, "default")
	var bad *InvalidAppIDError
	if !errors.As(err, &bad) || bad.ID != "a.b.c" {
		t.Fatalf("error = %v, want invalid app id a.b.c", err)
	}
}

// FuzzNormalizeMethod checks the normaliser's invariants on any input: it
// never panics, its output is already normal (idempotent), contains no
// forbidden byte, no dot segment and no empty segment, and never climbs
// above the root.
func FuzzNormalizeMethod(f *testing.F) {
	for _, s := range []string{"", "a/b", "../x", "a//b/", "./.", `test"x`, "a%2Fb", "\x00", "a/../../b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := NormalizeMethod(in)
		if err != nil {
			if !errors.Is(err, ErrInvalidMethod) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		again, err := NormalizeMethod(got)
		if err != nil || again != got {
			t.Fatalf("not idempotent: %q → %q → %q (%v)", in, got, again, err)
		}
		if got != "" && path.Clean("/"+got) != "/"+got {
			t.Fatalf("%q → %q is not clean", in, got)
		}
		for _, seg := range strings.Split(got, "/") {
			if got != "" && (seg == "" || seg == "." || seg == "..") {
				t.Fatalf("%q → %q has segment %q", in, got, seg)
			}
		}
		if strings.ContainsAny(got, "#?%\x00\r\n\x7f") {
			t.Fatalf("%q → %q kept a forbidden byte", in, got)
		}
		if !utf8.ValidString(got) {
			t.Fatalf("%q → %q is not valid UTF-8", in, got)
		}
	})
}

// FuzzParseTarget checks that any accepted target yields a valid app id and
// namespace, and that rendering and parsing again gives the same target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"a", "a.b", "a.b.c", "", ".", "a/b", "app-b.default", "%41"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseTarget(in, "default")
		if err != nil {
			return
		}
		if ValidateAppID(got.AppID) != nil || ValidateAppID(got.Namespace) != nil {
			t.Fatalf("%q → %+v: invalid parts accepted", in, got)
		}
		again, err := ParseTarget(got.String(), "other")
		if err != nil || again != got {
			t.Fatalf("%q → %+v → %q → %+v (%v)", in, got, got.String(), again, err)
		}
	})
}

// FuzzParseInvocation feeds arbitrary request targets through the whole
// extraction: it never panics and any method it accepts is normal.
func FuzzParseInvocation(f *testing.F) {
	for _, s := range []string{"/v1.0/invoke/a/method/b", "/v1.0////invoke//a/method//b", "/v1.0/invoke/a%2Eb/method/%2e%2e/x", "/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r := &http.Request{Method: http.MethodGet, Header: http.Header{}, URL: mustURL(p)}
		inv, err := ParseInvocation(r, "default")
		if err != nil {
			return
		}
		if m, err := NormalizeMethod(inv.Method); err != nil || m != inv.Method {
			t.Fatalf("%q: method %q not normal", p, inv.Method)
		}
	})
}
