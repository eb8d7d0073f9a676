package proxy

import (
	"testing"
	"time"
)

func TestGRPCTimeout(t *testing.T) {
	tests := []struct {
		d    time.Duration
		want string
	}{
		{300 * time.Millisecond, "300000u"},
		{2 * time.Second, "2000000u"},
		{1500*time.Millisecond + 1, "1500001u"}, // rounded up, never shorter
		{10 * time.Minute, "600000m"},
		{50 * time.Hour, "180000S"},
		{0, "1n"},
	}
	for _, tt := range tests {
		got := encodeTimeout(tt.d)
		if got != tt.want {
			t.Errorf("encodeTimeout(%s) = %q, want %q", tt.d, got, tt.want)
		}
		back, ok := parseTimeout(got)
		if !ok || back < tt.d {
			t.Errorf("parseTimeout(%q) = %s, %v; want ≥ %s", got, back, ok, tt.d)
		}
	}
	for _, bad := range []string{"", "5", "m", "123456789m", "-1S", "1x", "1.5S"} {
		if _, ok := parseTimeout(bad); ok {
			t.Errorf("parseTimeout(%q) accepted", bad)
		}
	}
	for s, want := range map[string]time.Duration{"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "4m": 4 * time.Millisecond, "5u": 5 * time.Microsecond, "6n": 6} {
		if got, ok := parseTimeout(s); !ok || got != want {
			t.Errorf("parseTimeout(%q) = %s, %v; want %s", s, got, ok, want)
		}
	}
}
