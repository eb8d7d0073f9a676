package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/skeinmesh/skein/apphealth"
)

// TestSidecarRejectsBadFlags checks that every bad flag or value exits
// non-zero with a one-line reason, before anything listens.
func TestSidecarRejectsBadFlags(t *testing.T) {
	t.Setenv("SKEIN_HOME", t.TempDir())
	tests := []struct {
		name string
		args []string
		want string // substring of the one-line reason
	}{
		{"unknown flag", []string{"--app-id", "a", "--frobnicate"}, "flag provided but not defined: -frobnicate"},
		{"missing app id", []string{}, "--app-id"},
		{"app id with dot", []string{"--app-id", "a.b"}, "cannot contain dots"},
		{"app id with slash", []string{"--app-id", "a/b"}, "forbidden character"},
		{"port not a number", []string{"--app-id", "a", "--app-port", "x"}, `invalid value "x" for flag -app-port`},
		{"port out of range", []string{"--app-id", "a", "--dapr-http-port", "70000"}, "70000 is not a port"},
		{"negative port", []string{"--app-id", "a", "--metrics-port", "-1"}, "is not a port"},
		{"app port equals API port", []string{"--app-id", "a", "--app-port", "3500"}, "also the sidecar's API port"},
		{"unknown protocol", []string{"--app-id", "a", "--app-protocol", "ftp"}, `unknown protocol "ftp"`},
		{"bad log level", []string{"--app-id", "a", "--log-level", "loud"}, "--log-level"},
		{"bad body size", []string{"--app-id", "a", "--max-body-size", "lots"}, "--max-body-size"},
		{"bad listen address", []string{"--app-id", "a", "--dapr-listen-addresses", "example.com"}, "not an IP address"},
		{"bad mode", []string{"--app-id", "a", "--mode", "kubernetes"}, "--mode"},
		{"bad balancer", []string{"--app-id", "a", "--load-balancer", "random"}, "--load-balancer"},
		{"bad replay bound", []string{"--app-id", "a", "--max-replay-body-size", "big"}, "--max-replay-body-size"},
		{"negative outlier run", []string{"--app-id", "a", "--outlier-consecutive-failures", "-1"}, "--outlier-*"},
		{"outlier max below base", []string{"--app-id", "a", "--outlier-base-ejection", "1m", "--outlier-max-ejection", "1s"}, "--outlier-*"},
		{"zero idle timeout", []string{"--app-id", "a", "--api-idle-timeout", "0s"}, "--api-idle-timeout"},
		{"no idle connections", []string{"--app-id", "a", "--api-max-idle-connections", "0"}, "--api-max-idle-connections"},
		{"negative header timeout", []string{"--app-id", "a", "--api-read-header-timeout", "-1s"}, "--api-read-header-timeout"},
		{"zero probe interval", []string{"--app-id", "a", "--app-health-probe-interval", "0"}, "--app-health-probe-interval: 0s is not positive"},
		{"negative probe timeout", []string{"--app-id", "a", "--app-health-probe-timeout", "-1ms"}, "--app-health-probe-timeout: -1ms is not positive"},
		{"probe timeout past interval", []string{"--app-id", "a", "--app-health-probe-interval", "1s", "--app-health-probe-timeout", "2s"}, "--app-health-probe-timeout: 2s is longer than --app-health-probe-interval 1s"},
		{"probe interval not a duration", []string{"--app-id", "a", "--app-health-probe-interval", "soon"}, `invalid value "soon" for flag -app-health-probe-interval`},
		{"zero health threshold", []string{"--app-id", "a", "--enable-app-health-check", "--app-health-threshold", "0"}, "--app-health-threshold: 0 is below 1"},
		{"bad health check path", []string{"--app-id", "a", "--app-health-check-path", "/%zz"}, "--app-health-check-path"},
		{"zero overload min limit", []string{"--app-id", "a", "--overload-min-limit", "0"}, "--overload-min-limit: 0 is below 1"},
		{"overload max below min", []string{"--app-id", "a", "--overload-min-limit", "50", "--overload-max-limit", "10"}, "--overload-max-limit: 10 is below --overload-min-limit 50"},
		{"stray argument", []string{"--app-id", "a", "extra"}, `unexpected argument "extra"`},
		{"missing config file", []string{"--app-id", "a", "--config", "/nonexistent.yaml"}, "nonexistent.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(append([]string{"sidecar"}, tt.args...), &out, &errOut)
			if code == 0 {
				t.Fatalf("exit code 0, want non-zero")
			}
			msg := errOut.String()
			if strings.Count(strings.TrimRight(msg, "\n"), "\n") != 0 {
				t.Errorf("reason is not one line:\n%s", msg)
			}
			if !strings.Contains(msg, tt.want) {
				t.Errorf("reason %q does not mention %q", msg, tt.want)
			}
		})
	}
}

func TestParseQuantity(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "4Mi", want: 4 << 20},
		{in: "4Ki", want: 4 << 10},
		{in: "1Gi", want: 1 << 30},
		{in: "2M", want: 2e6},
		{in: "512", want: 512},
		{in: "0", want: 0},
		{in: "", bad: true},
		{in: "Mi", bad: true},
		{in: "-1Mi", bad: true},
		{in: "1.5Mi", bad: true},
		{in: "99999999999Ti", bad: true},
	}
	for _, tt := range tests {
		got, err := parseQuantity(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseQuantity(%q) = %d, %v; want %d (bad %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestParseListenAddresses(t *testing.T) {
	got, err := parseListenAddresses("[::1],127.0.0.1")
	if err != nil || len(got) != 2 || got[0] != "::1" || got[1] != "127.0.0.1" {
		t.Errorf("got %v, %v", got, err)
	}
	if _, err := parseListenAddresses(" , "); err == nil {
		t.Error("empty list accepted")
	}
}

func TestUnknownCommand(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"frob"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), `unknown command "frob"`) {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
}

func TestRunNeedsCommand(t *testing.T) {
	t.Setenv("SKEIN_HOME", t.TempDir())
	var out, errOut bytes.Buffer
	if code := run([]string{"run", "--app-id", "a"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "no app command") {
		t.Errorf("code %d, stderr %q", code, errOut.String())
	}
}

// TestAppHealthFlags checks the --app-health-* flags become the sidecar's
// apphealth.Config, in Go durations and in daprd's whole numbers (seconds
// for the interval, milliseconds for the timeout), and nothing without
// --enable-app-health-check.
func TestAppHealthFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want *apphealth.Config
	}{
		{"off by default", nil, nil},
		{"defaults", []string{"--enable-app-health-check"},
			&apphealth.Config{Path: "/healthz", Interval: 5 * time.Second, Timeout: 500 * time.Millisecond, Threshold: 3}},
		{"durations", []string{"--enable-app-health-check", "--app-health-check-path", "/ready", "--app-health-probe-interval", "200ms", "--app-health-probe-timeout", "150ms", "--app-health-threshold", "1"},
			&apphealth.Config{Path: "/ready", Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Threshold: 1}},
		{"daprd's whole numbers", []string{"--enable-app-health-check", "--app-health-probe-interval", "2", "--app-health-probe-timeout", "300"},
			&apphealth.Config{Path: "/healthz", Interval: 2 * time.Second, Timeout: 300 * time.Millisecond, Threshold: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f sidecarFlags
			if err := newSidecarFlagSet("sidecar", &f, false).Parse(append([]string{"--app-id", "a"}, tt.args...)); err != nil {
				t.Fatal(err)
			}
			opts, err := f.options()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, opts.AppHealth); diff != "" {
				t.Errorf("AppHealth (-want +got):\n%s", diff)
			}
		})
	}
}
