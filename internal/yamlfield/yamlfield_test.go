package yamlfield

import (
	"strings"
	"testing"

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
	err := Documents("f.yaml", []byte("kind: A\n---\nkind: B\n"), func(n int, d *doc) error {
		kinds = append(kinds, d.Kind)
		return nil
	})
	if err != nil || strings.Join(kinds, ",") != "A,B" {
		t.Errorf("kinds %v, err %v", kinds, err)
	}
	err = Documents("f.yaml", []byte("kind: A\n---\nkind: B\nextra: 1\n"), func(int, *doc) error { return nil })
	if err == nil || !strings.HasPrefix(err.Error(), "f.yaml: document 2: ") || !strings.Contains(err.Error(), "extra") {
		t.Errorf("unknown field: %v", err)
	}
}
