package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/skeinmesh/skein/identity/access"
)

// operationsConfiguration returns a Configuration whose one policy (caller
// app "caller") has n operations with distinct names, some wildcards and
// mixed verbs, at about 75 bytes an operation, as the 50 MB file.
func operationsConfiguration(n int) []byte {
	var b bytes.Buffer
	b.WriteString("apiVersion: dapr.io/v1alpha1\nkind: Configuration\nmetadata:\n  name: many\nspec:\n  accessControl:\n    defaultAction: deny\n    trustDomain: public\n    policies:\n    - appId: caller\n      trustDomain: public\n      namespace: default\n      defaultAction: deny\n      operations:\n")
	verbs := []string{"[GET]", "[POST, PUT]", `["*"]`, "[DELETE, GET, PATCH]"}
	for i := range n {
		name := fmt.Sprintf("/svc%d/res%d", i%10, i)
		switch {
		case i%11 == 0:
			name += "/**"
		case i%7 == 0:
			name += "/*"
		}
		action := "allow"
		if i%3 == 0 {
			action = "deny"
		}
		fmt.Fprintf(&b, "      - {name: %s, httpVerb: %s, action: %s}\n", name, verbs[i%len(verbs)], action)
	}
	return b.Bytes()
}

func writeFile(t testing.TB, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// BenchmarkCompileOperations decodes and compiles a Configuration of
// 1,000 to 100,000 operations (55 to 6,800 kB, the largest over
// MaxConfigFileSize): the work of a reload after reading the file.
func BenchmarkCompileOperations(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		doc := operationsConfiguration(n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(doc)))
			for b.Loop() {
				rs, err := decodeResources(context.Background(), "config.yaml", doc)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := compile(Config{Configuration: &rs[0]}, "app"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// padded returns b with a YAML comment appended to make it size bytes.
func padded(b []byte, size int) []byte {
	out := append(append([]byte{}, b...), "#"...)
	out = append(out, bytes.Repeat([]byte("x"), size-len(out)-1)...)
	return append(out, '\n')
}

// TestConfigSizeLimit: a file over MaxConfigFileSize is refused with an
// error naming the file and the limit, without being decoded; one at the
// limit loads; aliases cannot stand for more than the limit holds.
func TestConfigSizeLimit(t *testing.T) {
	valid := operationsConfiguration(10)
	// 12 levels of 4 aliases stand for 4^12 = 16 Mi nodes in 300 bytes.
	var bomb strings.Builder
	bomb.WriteString(string(valid) + "  x0: &x0 [a, a, a, a]\n")
	for i := 1; i <= 12; i++ {
		fmt.Fprintf(&bomb, "  x%d: &x%d [*x%d, *x%d, *x%d, *x%d]\n", i, i, i-1, i-1, i-1, i-1)
	}
	tests := []struct {
		name    string
		content []byte
		wantErr string // "" for none
	}{
		{"one byte over", padded(valid, MaxConfigFileSize+1), "configuration too large: 4194305 bytes, over the limit of 4194304 bytes (4 MiB)"},
		{"50 MB", bytes.Repeat([]byte("#"), 50<<20), "configuration too large: 52428800 bytes, over the limit of 4194304 bytes (4 MiB)"},
		{"alias expansion", []byte(bomb.String()), "document 1: configuration too large: its spec stands for more than 1048576 YAML nodes with its aliases expanded"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := writeFile(t, "config.yaml", tt.content)
			_, err := LoadConfig(f, nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("LoadConfig: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrConfigTooLarge) {
				t.Fatalf("LoadConfig = %v, want ErrConfigTooLarge", err)
			}
			if want := f + ": " + tt.wantErr; err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
		})
	}
	t.Run("exactly at the limit", func(t *testing.T) {
		f := writeFile(t, "config.yaml", []byte("0123456789"))
		if b, err := readLimited(f, 10); err != nil || string(b) != "0123456789" {
			t.Errorf("readLimited at the limit = %q, %v", b, err)
		}
		want := f + ": configuration too large: 10 bytes, over the limit of 9 bytes"
		if _, err := readLimited(f, 9); !errors.Is(err, ErrConfigTooLarge) || err.Error() != want {
			t.Errorf("readLimited one byte over = %v, want %q", err, want)
		}
	})
	t.Run("resources path too", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "big.yaml"), padded(valid, MaxConfigFileSize+1), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadConfig("", []string{dir}); !errors.Is(err, ErrConfigTooLarge) || !strings.Contains(err.Error(), "big.yaml") {
			t.Errorf("LoadConfig = %v, want ErrConfigTooLarge naming big.yaml", err)
		}
	})
	t.Run("a file that never ends", func(t *testing.T) {
		if _, err := os.Stat("/dev/zero"); err != nil {
			t.Skip("no /dev/zero")
		}
		_, err := LoadConfig("/dev/zero", nil)
		if want := "/dev/zero: configuration too large: over the limit of 4194304 bytes (4 MiB)"; !errors.Is(err, ErrConfigTooLarge) || err.Error() != want {
			t.Errorf("LoadConfig = %v, want %q", err, want)
		}
	})
}

// TestLoadConfigStopsWithContext: a load under a context that is done
// stops parsing and returns the context's error.
func TestLoadConfigStopsWithContext(t *testing.T) {
	f := writeFile(t, "config.yaml", operationsConfiguration(1000))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := loadConfig(ctx, f, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("loadConfig = %v, want context.Canceled", err)
	}
}

// TestReloadAfterRejection: an oversized file written over a live config is
// rejected and counted while the last good config keeps deciding; a valid
// config written after it applies; the watcher stops with its context.
func TestReloadAfterRejection(t *testing.T) {
	s := newMetricsSidecar(t, "")
	file := writeFile(t, "config.yaml", operationsConfiguration(10))
	cfg, err := LoadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	// operationsConfiguration(20) adds "/svc4/res14/*", allowed for any verb.
	req := access.Request{Caller: &access.Caller{TrustDomain: "public", Namespace: "default", AppID: "caller"}, Operation: "svc4/res14", Verb: "GET"}
	allowed := func() bool { return s.snap.Load().Access.Decide(req).Allowed }
	count := func(result string) float64 {
		return testutil.ToFloat64(s.reloadMetrics.reloads.WithLabelValues(result))
	}
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			s.watchConfig(ctx, ConfigFiles{Configuration: file})
			close(done)
		}()
		write := func(b []byte) {
			t.Helper()
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			// One check sees the change, the next (the file unchanged
			// since) loads it.
			time.Sleep(2*reloadInterval + reloadInterval/2)
			synctest.Wait()
		}

		write(padded(operationsConfiguration(10), MaxConfigFileSize+1))
		if got := count("rejected"); got != 1 {
			t.Errorf("rejected reloads = %v, want 1", got)
		}
		if allowed() {
			t.Error("the rejected file applied")
		}

		write(operationsConfiguration(20))
		if got := count("applied"); got != 1 {
			t.Errorf("applied reloads = %v, want 1", got)
		}
		if !allowed() {
			t.Error("the valid config written after a rejected one did not apply")
		}
		cancel()
		<-done
	})
}
