package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
)

// TestScaleSmall runs the benchmark at a CI size against the real `skein
// control-plane`: 50 sidecars, 1,000 endpoints of 100 apps, 10 changes,
// in both ADS modes. Every sidecar must hold the initial state, ACK every
// change and end with the registry's state; delta must push fewer bytes
// per change than state of the world, which resends every assignment a
// sidecar follows. The big sizes run from `make bench-xds`.
func TestScaleSmall(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "skein")
	build := exec.Command("go", "build", "-o", bin, "../../../cmd/skein")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("build skein: %v", err)
	}
	got := map[string]Result{}
	for _, mode := range []string{"sotw", "delta"} {
		t.Run(mode, func(t *testing.T) {
			r, err := runOne(context.Background(), config{
				skein: bin, label: "test", sidecars: 50, mode: mode, endpoints: 1000, apps: 100,
				rate: 20, changes: 10, connectHz: 500, settle: 2 * time.Minute, work: t.TempDir(), progress: testWriter{t},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r.summary())
			if r.Missed != 0 || r.Diverged != 0 {
				t.Errorf("%d (change, sidecar) pairs never ACKed, %d sidecars not at the registry's state", r.Missed, r.Diverged)
			}
			// At least one EDS response per change reached some sidecar,
			// and none pushed nothing.
			if r.ResponsesPerChange <= 0 || r.BytesPerChange <= 0 || r.InitialBytesPerSide <= 0 {
				t.Errorf("responses %.1f, bytes %.0f per change, initial %.0f per sidecar: want > 0", r.ResponsesPerChange, r.BytesPerChange, r.InitialBytesPerSide)
			}
			got[mode] = r
		})
	}
	if s, d := got["sotw"], got["delta"]; s.Mode != "" && d.Mode != "" && d.BytesPerChange >= s.BytesPerChange {
		t.Errorf("bytes per change: delta %.0f, state of the world %.0f: want delta smaller", d.BytesPerChange, s.BytesPerChange)
	}
	dir := t.TempDir()
	for _, r := range got {
		if err := appendJSON(filepath.Join(dir, "raw.jsonl"), r); err != nil {
			t.Fatal(err)
		}
	}
	if err := writeReport(dir); err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(filepath.Join(dir, "report.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(md), "| test | 50 | 1000 |"); n != len(got) {
		t.Errorf("report has %d rows of the runs, want %d:\n%s", n, len(got), md)
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestScanNamed checks the protowire reading of a ClusterLoadAssignment
// against one built with the generated types.
func TestScanNamed(t *testing.T) {
	ep := func(h corev3.HealthStatus) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{HealthStatus: h, HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "10.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080}}}}}}}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "app-0007", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{Locality: &corev3.Locality{Zone: "a"}, LbEndpoints: []*endpointv3.LbEndpoint{ep(corev3.HealthStatus_HEALTHY), ep(corev3.HealthStatus_UNHEALTHY)}},
		{Locality: &corev3.Locality{Zone: "b"}, LbEndpoints: []*endpointv3.LbEndpoint{ep(corev3.HealthStatus_UNHEALTHY), ep(corev3.HealthStatus_DRAINING)}},
	}}
	b, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	name, eps, bad, err := scanNamed(b, true)
	if err != nil || name != "app-0007" || eps != 4 || bad != 2 {
		t.Errorf("scanNamed = %q, %d endpoints, %d unhealthy, %v; want app-0007, 4, 2, nil", name, eps, bad, err)
	}
	if _, _, _, err := scanNamed(b[:len(b)-3], true); err == nil {
		t.Error("truncated: no error")
	}
	if _, _, _, err := scanNamed(nil, true); err == nil {
		t.Error("empty: no error")
	}
}

func TestPct(t *testing.T) {
	vs := make([]float64, 100)
	for i := range vs {
		vs[len(vs)-1-i] = float64(i + 1) // 1..100, reversed
	}
	if p50, p99, p100 := pct(vs, 50), pct(vs, 99), pct(vs, 100); p50 != 50 || p99 != 99 || p100 != 100 {
		t.Errorf("pct = %v, %v, %v; want 50, 99, 100", p50, p99, p100)
	}
	if pct(nil, 50) != 0 {
		t.Error("pct(nil) != 0")
	}
}
