package inject

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// manifests are the sample manifests in testdata/, each injected into its
// .golden.yaml twin (test/inject_test.go checks the skein binary against
// the same files).
var manifests = []string{"hello-kubernetes.yaml", "service-invocation.yaml", "list.yaml", "pod.yaml"}

func TestManifestGolden(t *testing.T) {
	in := newInjector(t, testOptions)
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if _, err := in.Manifest(&out, bytes.NewReader(src)); err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", strings.TrimSuffix(name, ".yaml")+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update)", err)
			}
			if diff := cmp.Diff(string(want), out.String()); diff != "" {
				t.Errorf("output (-golden +got):\n%s", diff)
			}
		})
	}
}

// TestManifestKeepsOtherDocuments: what is not injected is written back
// byte for byte, comments, key order and blank lines included; what is
// keeps its leading comments and every field, known or not.
func TestManifestKeepsOtherDocuments(t *testing.T) {
	in := newInjector(t, testOptions)
	src, err := os.ReadFile(filepath.Join("testdata", "service-invocation.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	docs, err := in.Manifest(&out, bytes.NewReader(src))
	if err != nil {
		t.Fatal(err)
	}
	srcDocs, outDocs := splitDocuments(src), splitDocuments(out.Bytes())
	if len(srcDocs) != len(outDocs) {
		t.Fatalf("%d documents in, %d out", len(srcDocs), len(outDocs))
	}
	injected := map[int]bool{}
	for _, d := range docs {
		if d.Plan.Injected() {
			injected[d.Index] = true
		}
	}
	for i := range srcDocs {
		same := bytes.Equal(srcDocs[i].body, outDocs[i].body) && bytes.Equal(srcDocs[i].separator, outDocs[i].separator)
		if injected[i+1] == same {
			t.Errorf("document %d: injected %v, unchanged %v", i+1, injected[i+1], same)
		}
		if c := leadingComments(srcDocs[i].body); !bytes.HasPrefix(outDocs[i].body, c) {
			t.Errorf("document %d lost its leading comments %q", i+1, c)
		}
	}
	wantKinds := []string{"Deployment order-processor", "Deployment checkout", "StatefulSet inventory", "CronJob nightly-report", "Deployment redis"}
	var kinds []string
	for _, d := range docs {
		kinds = append(kinds, d.Kind+" "+d.Name)
	}
	if diff := cmp.Diff(wantKinds, kinds); diff != "" {
		t.Errorf("documents (-want +got):\n%s", diff)
	}

	t.Run("unknown fields survive", func(t *testing.T) {
		src, err := os.ReadFile(filepath.Join("testdata", "list.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if _, err := in.Manifest(&out, bytes.NewReader(src)); err != nil {
			t.Fatal(err)
		}
		for _, s := range []string{"futureField: kept", "replicas: 1", "generation: 3", "name: daprd"} {
			if !strings.Contains(out.String(), s) {
				t.Errorf("output lost %q:\n%s", s, out.String())
			}
		}
	})
}

// TestManifestIdempotent: injecting an injected manifest changes nothing,
// byte for byte.
func TestManifestIdempotent(t *testing.T) {
	in := newInjector(t, testOptions)
	for _, name := range manifests {
		t.Run(name, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join("testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			var once, twice bytes.Buffer
			if _, err := in.Manifest(&once, bytes.NewReader(src)); err != nil {
				t.Fatal(err)
			}
			docs, err := in.Manifest(&twice, bytes.NewReader(once.Bytes()))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(once.String(), twice.String()); diff != "" {
				t.Errorf("second injection changed the manifest (-once +twice):\n%s", diff)
			}
			for _, d := range docs {
				if d.Plan.Injected() {
					t.Errorf("%s injected twice", d)
				}
			}
		})
	}
}

// TestManifestTemplates: every workload kind's pod template is found and
// injected; the result decodes as the kind, with the sidecar in place.
func TestManifestTemplates(t *testing.T) {
	in := newInjector(t, testOptions)
	tmpl := `metadata: {annotations: {dapr.io/enabled: "true"}}
spec: {containers: [{name: app, image: app:1}]}`
	indent := func(s, pad string) string { return pad + strings.ReplaceAll(s, "\n", "\n"+pad) }
	tests := []struct {
		apiVersion, kind, body, path string
	}{
		{"v1", "Pod", `spec: {containers: [{name: app, image: app:1}]}`, ""},
		{"v1", "ReplicationController", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"apps/v1", "Deployment", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"apps/v1", "StatefulSet", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"apps/v1", "DaemonSet", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"apps/v1", "ReplicaSet", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"extensions/v1beta1", "Deployment", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"batch/v1", "Job", "spec:\n  template:\n" + indent(tmpl, "    "), "spec.template"},
		{"batch/v1", "CronJob", "spec:\n  jobTemplate:\n    spec:\n      template:\n" + indent(tmpl, "        "), "spec.jobTemplate.spec.template"},
	}
	for _, tt := range tests {
		t.Run(tt.kind+" "+tt.apiVersion, func(t *testing.T) {
			meta := "metadata: {name: w}\n"
			if tt.kind == "Pod" {
				meta = `metadata: {name: w, annotations: {dapr.io/enabled: "true"}}` + "\n"
			}
			src := "apiVersion: " + tt.apiVersion + "\nkind: " + tt.kind + "\n" + meta + tt.body + "\n"
			var out bytes.Buffer
			docs, err := in.Manifest(&out, strings.NewReader(src))
			if err != nil {
				t.Fatal(err)
			}
			if len(docs) != 1 || !docs[0].Plan.Injected() || docs[0].Plan.AppID != "w" {
				t.Fatalf("documents %+v: want one injected, app id w", docs)
			}
			var obj map[string]any
			if err := yaml.Unmarshal(out.Bytes(), &obj); err != nil {
				t.Fatal(err)
			}
			var cur any = obj
			if tt.path != "" {
				for seg := range strings.SplitSeq(tt.path, ".") {
					cur = cur.(map[string]any)[seg]
				}
			}
			b, _ := yaml.Marshal(cur)
			var pt corev1.PodTemplateSpec
			if err := yaml.Unmarshal(b, &pt); err != nil {
				t.Fatal(err)
			}
			if n := len(pt.Spec.Containers); n != 2 || pt.Spec.Containers[1].Name != "daprd" {
				t.Errorf("containers %+v: want app and daprd", pt.Spec.Containers)
			}
		})
	}
	t.Run("other kinds and groups pass through", func(t *testing.T) {
		src := "apiVersion: example.com/v1\nkind: Deployment\nmetadata: {name: w}\n" + "spec:\n  template:\n" + indent(tmpl, "    ") + "\n---\napiVersion: v1\nkind: ConfigMap\ndata: {a: b}\n"
		var out bytes.Buffer
		docs, err := in.Manifest(&out, strings.NewReader(src))
		if err != nil || len(docs) != 0 || out.String() != src {
			t.Errorf("documents %v, %v, output %q: want the input back", docs, err, out.String())
		}
	})
}

// TestManifestErrors: an error names the document and the field, and
// nothing is written.
func TestManifestErrors(t *testing.T) {
	in := newInjector(t, testOptions)
	deploy := func(annotations, containers string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: orders}\nspec:\n  template:\n    metadata:\n      annotations: " + annotations + "\n    spec:\n      containers: " + containers + "\n"
	}
	tests := []struct {
		name, src string
		want      []string
	}{
		{"bad annotation", deploy(`{dapr.io/enabled: "true", dapr.io/app-port: "http"}`, "[{name: a}]"),
			[]string{`document 2 (line 5, Deployment orders): spec.template.metadata.annotations[dapr.io/app-port]: "http": not a port (1-65535)`}},
		{"two bad annotations", deploy(`{dapr.io/enabled: "true", dapr.io/app-port: "0", dapr.io/log-level: "loud"}`, "[{name: a}]"),
			[]string{"annotations[dapr.io/app-port]", "annotations[dapr.io/log-level]"}},
		{"unquoted annotation", deploy(`{dapr.io/enabled: "true", dapr.io/app-port: 3000}`, "[{name: a}]"),
			[]string{"document 2 (line 5, Deployment orders): spec.template.metadata.annotations", "quote the value"}},
		{"wrong type", deploy(`{dapr.io/enabled: "true"}`, "[{name: a, ports: [{containerPort: http}]}]"),
			[]string{"document 2 (line 5, Deployment orders): spec.template.spec.containers.ports.containerPort: got a JSON string, want int32"}},
		{"template not an object", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: [1]\n",
			[]string{"document 1 (line 1, Deployment x): spec: not an object"}},
		{"not YAML", "a: b\n---\nkey: [unclosed\n", []string{"document 2 (line 3): yaml:"}},
		{"List items", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {name: p, annotations: {dapr.io/enabled: \"1\", dapr.io/app-protocol: ftp}}\n  spec: {containers: [{name: a}]}\n",
			[]string{`document 1 item 1 (line 1, Pod p): metadata.annotations[dapr.io/app-protocol]: "ftp"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			_, err := in.Manifest(&out, strings.NewReader(tt.src))
			if err == nil {
				t.Fatalf("no error; output:\n%s", out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if out.Len() != 0 {
				t.Errorf("wrote %q despite the error", out.String())
			}
		})
	}
	t.Run("typed", func(t *testing.T) {
		_, err := in.Manifest(&bytes.Buffer{}, strings.NewReader(tests[0].src))
		var fe *FieldError
		var ae *AnnotationError
		if !errors.As(err, &fe) || fe.Field != "spec.template.metadata.annotations[dapr.io/app-port]" || !errors.As(err, &ae) || ae.Key != AnnotationAppPort {
			t.Errorf("error %v: want a *FieldError wrapping an *AnnotationError", err)
		}
	})
}

// TestSplitDocuments: the split keeps every byte and finds each "---".
func TestSplitDocuments(t *testing.T) {
	tests := []struct {
		src  string
		want int
	}{
		{"", 1},
		{"a: 1\n", 1},
		{"---\na: 1\n", 1},
		{"a: 1\n---\nb: 2\n", 2},
		{"a: 1\n--- # second\nb: 2\n---\n", 3},
		{"a: |\n  ---x\n---\r\nb: 2", 2},
		{"a: 1\n--- b: 2\n", 1}, // content after the marker stays in the document
	}
	for _, tt := range tests {
		docs := splitDocuments([]byte(tt.src))
		var back []byte
		for _, d := range docs {
			back = append(append(back, d.separator...), d.body...)
		}
		if string(back) != tt.src || len(docs) != tt.want {
			t.Errorf("split %q: %d documents rejoined as %q, want %d", tt.src, len(docs), back, tt.want)
		}
	}
}

// FuzzManifest: any input either fails or injects; nothing panics, and
// output injected again stays the same.
func FuzzManifest(f *testing.F) {
	for _, name := range manifests {
		if b, err := os.ReadFile(filepath.Join("testdata", name)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("---\n--- #\n\n"))
	in, err := New(testOptions)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, src []byte) {
		docs := splitDocuments(src)
		var back []byte
		for _, d := range docs {
			back = append(append(back, d.separator...), d.body...)
		}
		if !bytes.Equal(back, src) {
			t.Fatalf("split lost bytes: %q", src)
		}
		var once bytes.Buffer
		if _, err := in.Manifest(&once, bytes.NewReader(src)); err != nil {
			return
		}
		var twice bytes.Buffer
		if _, err := in.Manifest(&twice, bytes.NewReader(once.Bytes())); err != nil {
			t.Fatalf("injected output does not inject again: %v\n%s", err, once.String())
		}
		if !bytes.Equal(once.Bytes(), twice.Bytes()) {
			t.Fatalf("not idempotent:\n%s\n---- became ----\n%s", once.String(), twice.String())
		}
	})
}
