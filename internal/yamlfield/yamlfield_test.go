package yamlfield

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"go.yaml.in/yaml/v3"
)

func TestDecoderNamesEveryProblem(t *testing.T) {
	var n yaml.Node
	src := "a: x\nb: [1, 2]\nb: 3\nc: {d: 1}\nn: notanint\nq: 7\n"
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	var d Decoder
	var a string
	var q int
	d.Mapping(&n, "root", func(key string, v *yaml.Node, path string) bool {
		switch key {
		case "a":
			d.Str(v, path, &a)
		case "b":
			d.List(v, path, func(int, *yaml.Node, string) {})
		case "c":
			d.Str(v, path, &a) // a mapping where a string belongs
		case "n", "q":
			var i int
			if d.Int(v, path, &i) && key == "q" {
				q = i
			}
		default:
			return false
		}
		return true
	})
	err := d.Err()
	if err == nil {
		t.Fatal("no errors")
	}
	for _, want := range []string{
		"root.b: duplicate field (line 3)",
		"root.c: must be a string (line 4)",
		`root.n: "notanint": must be an integer (line 5)`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
	if a != "x" || q != 7 {
		t.Errorf("decoded a=%q q=%d", a, q)
	}
}

func TestUnknownFieldAndNull(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("known: ~\nextra: 1\n"), &n); err != nil {
		t.Fatal(err)
	}
	var d Decoder
	s := "preset"
	d.Mapping(&n, "x", func(key string, v *yaml.Node, path string) bool {
		if key != "known" {
			return false
		}
		d.Str(v, path, &s)
		return true
	})
	if err := d.Err(); err == nil || !strings.Contains(err.Error(), "x.extra: unknown field (line 2)") {
		t.Errorf("err = %v", err)
	}
	if s != "" {
		t.Errorf("null decoded to %q, want empty", s)
	}
	if !IsNull(nil) || IsNull(Resolve(&n)) {
		t.Error("IsNull")
	}
}

func TestBool(t *testing.T) {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("t: true\nq: \"false\"\nz: ~\nbad: maybe\nm: {x: 1}\n"), &n); err != nil {
		t.Fatal(err)
	}
	var d Decoder
	got := map[string]bool{}
	held := map[string]bool{}
	d.Mapping(&n, "root", func(key string, v *yaml.Node, path string) bool {
		b := true // null must leave it alone
		held[key] = d.Bool(v, path, &b)
		got[key] = b
		return true
	})
	if !got["t"] || got["q"] || !got["z"] || !held["t"] || !held["q"] || held["z"] || held["bad"] || held["m"] {
		t.Errorf("values %v, held %v", got, held)
	}
	err := d.Err()
	if err == nil || !strings.Contains(err.Error(), `root.bad: "maybe": must be true or false`) || !strings.Contains(err.Error(), "root.m:") {
		t.Errorf("errors: %v", err)
	}
}

func TestDocuments(t *testing.T) {
	type doc struct {
		Kind string `yaml:"kind"`
	}
	var kinds []string
	err := Documents("f.yaml", strings.NewReader("kind: A\n---\nkind: B\n"), func(n int, d *doc) error {
		kinds = append(kinds, d.Kind)
		return nil
	})
	if err != nil || strings.Join(kinds, ",") != "A,B" {
		t.Errorf("kinds %v, err %v", kinds, err)
	}
	err = Documents("f.yaml", strings.NewReader("kind: A\n---\nkind: B\nextra: 1\n"), func(int, *doc) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml: document 2: ") || !strings.Contains(err.Error(), "extra") {
		t.Errorf("unknown field: %v", err)
	}
}

// TestDocumentsStopsWithItsReader: a reader failing mid-file (a context
// done at shutdown) stops the parse with the reader's error.
func TestDocumentsStopsWithItsReader(t *testing.T) {
	stop := errors.New("stopped")
	big := strings.Repeat("kind: A\n---\n", 10_000)
	r := io.MultiReader(strings.NewReader(big), failingReader{stop})
	n := 0
	err := Documents("f.yaml", r, func(int, *struct {
		Kind string `yaml:"kind"`
	}) error {
		n++
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "stopped") || n >= 10_000 {
		t.Errorf("after %d documents: %v, want the reader's error", n, err)
	}
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }

// TestDuplicateKeys: duplicates are found in small mappings (scanned) and
// large ones (a map) alike, and paths of list items are indexed.
func TestDuplicateKeys(t *testing.T) {
	for _, keys := range []int{3, 20} {
		t.Run(fmt.Sprint(keys), func(t *testing.T) {
			var b strings.Builder
			for i := range keys {
				fmt.Fprintf(&b, "k%d: %d\n", i, i)
			}
			fmt.Fprintf(&b, "k%d: again\n", keys-1)
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(b.String()), &n); err != nil {
				t.Fatal(err)
			}
			var d Decoder
			d.Mapping(&n, "root", func(string, *yaml.Node, string) bool { return true })
			want := fmt.Sprintf("root.k%d: duplicate field (line %d)", keys-1, keys+1)
			if diff := cmp.Diff(want, fmt.Sprint(d.Err())); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}

			var l yaml.Node
			if err := yaml.Unmarshal([]byte("- a\n- b\n- c\n"), &l); err != nil {
				t.Fatal(err)
			}
			var paths []string
			d.List(&l, "root.l", func(_ int, _ *yaml.Node, path string) { paths = append(paths, path) })
			if diff := cmp.Diff([]string{"root.l[0]", "root.l[1]", "root.l[2]"}, paths); diff != "" {
				t.Errorf("(-want +got)\n%s", diff)
			}
		})
	}
}

// TestNodes counts nodes with aliases expanded, and stops past the limit.
func TestNodes(t *testing.T) {
	tests := []struct {
		name  string
		src   string
		limit int
		want  int
	}{
		{"scalar", "a", 10, 2},                   // document + scalar
		{"mapping", "{a: 1, b: [x, y]}", 100, 8}, // doc, map, a, 1, b, seq, x, y
		{"alias counted as its target", "{a: &x [1, 2], b: *x}", 100, 10},
		{"stops past the limit", "[1, 2, 3, 4, 5, 6]", 3, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(tt.src), &n); err != nil {
				t.Fatal(err)
			}
			if got := Nodes(&n, tt.limit); got != tt.want {
				t.Errorf("Nodes = %d, want %d", got, tt.want)
			}
		})
	}
	// Ten levels of ten aliases each stand for 10^10 nodes: Nodes stops
	// after limit+1, whatever the expansion.
	var b strings.Builder
	b.WriteString("l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "l%d: &l%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*l%d, ", i-1), 10), ", "))
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(b.String()), &n); err != nil {
		t.Fatal(err)
	}
	if got := Nodes(&n, 1_000_000); got != 1_000_001 {
		t.Errorf("alias bomb: Nodes = %d, want 1000001", got)
	}
}
