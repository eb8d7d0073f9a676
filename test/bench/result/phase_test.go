package result

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAppendRead(t *testing.T) {
	file := filepath.Join(t.TempDir(), "raw.jsonl")
	want := []Phase{
		{Scenario: "direct", Run: 1, Mode: ModeRate, Requests: 10, Latency: Percentiles{P50: 0.1}},
		{Scenario: "skein-mtls", Run: 2, Mode: ModePost, Method: "POST", RequestBytes: 1 << 20,
			Procs: []Proc{{Name: "skein-a", CPUPer1k: 0.5, RSSKiB: 10000, HWMKiB: 12000}}},
	}
	for _, p := range want {
		if err := Append(file, p); err != nil {
			t.Fatal(err)
		}
	}
	got, err := ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ReadFile (-want +got):\n%s", diff)
	}
}

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []Phase
		wantErr bool
	}{
		{"older file without run", `{"scenario":"skein","mode":"max"}` + "\n\n", []Phase{{Scenario: "skein", Mode: ModeMax, Run: 1}}, false},
		{"empty", "\n", nil, true},
		{"not JSON", "{\n", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(strings.NewReader(tt.in))
			if (err != nil) != tt.wantErr {
				t.Fatalf("Read error %v, want error %v", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
		})
	}
}
