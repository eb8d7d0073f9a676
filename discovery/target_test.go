package discovery

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseTarget(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Target
		wantErr bool
	}{
		{name: "app and namespace", in: "orders.default", want: Target{AppID: "orders", Namespace: "default"}},
		{name: "dashes", in: "app-b.prod-1", want: Target{AppID: "app-b", Namespace: "prod-1"}},
		{name: "no namespace", in: "orders", wantErr: true},
		{name: "empty app id", in: ".default", wantErr: true},
		{name: "empty namespace", in: "orders.", wantErr: true},
		{name: "two dots", in: "orders.default.svc", wantErr: true},
		{name: "empty", in: "", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseTarget(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("ParseTarget(%q) error = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseTarget(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

// FuzzParseTarget checks that ParseTarget and String are inverses: any
// accepted name is a Target's String, and it parses back to that Target.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"orders.default", "a.b", "orders", ".x", "x.", "a.b.c", "é.ü"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := ParseTarget(in)
		if err != nil {
			return
		}
		if got.AppID == "" || got.Namespace == "" || strings.Contains(got.Namespace, ".") {
			t.Fatalf("ParseTarget(%q) = %+v, want both parts non-empty and no dot in the namespace", in, got)
		}
		if got.String() != in {
			t.Fatalf("ParseTarget(%q).String() = %q", in, got.String())
		}
		again, err := ParseTarget(got.String())
		if err != nil || again != got {
			t.Fatalf("ParseTarget(%q) = %+v, %v; want %+v", got.String(), again, err, got)
		}
	})
}
