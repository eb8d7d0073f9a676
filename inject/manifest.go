package inject

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	jsonpatch "github.com/evanphx/json-patch/v5"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// MaxManifestBytes bounds what Manifest reads.
const MaxManifestBytes = 64 << 20

// Document is what Manifest did with one pod or pod template.
type Document struct {
	// Index is the document's number in the input, from 1; Item is the
	// item's number in a List, from 1, else 0.
	Index, Item int
	// Line is the document's first line in the input, from 1.
	Line       int
	Kind, Name string
	// Plan is the injection's plan; Plan.Skip says why there was none.
	Plan *Plan
}

// String names the document for messages: document 2 (line 14,
// Deployment orders).
func (d Document) String() string {
	s := "document " + strconv.Itoa(d.Index)
	if d.Item > 0 {
		s += " item " + strconv.Itoa(d.Item)
	}
	s += " (line " + strconv.Itoa(d.Line)
	if d.Kind != "" {
		s += ", " + d.Kind
		if d.Name != "" {
			s += " " + d.Name
		}
	}
	return s + ")"
}

// templatePaths are the kinds whose pods Manifest injects, by API group,
// and where their pod template sits (a Pod is its own template).
var templatePaths = map[string]map[string]string{
	"":           {"Pod": "", "ReplicationController": "/spec/template"},
	"apps":       {"Deployment": "/spec/template", "StatefulSet": "/spec/template", "DaemonSet": "/spec/template", "ReplicaSet": "/spec/template"},
	"extensions": {"Deployment": "/spec/template", "DaemonSet": "/spec/template", "ReplicaSet": "/spec/template"},
	"batch":      {"Job": "/spec/template", "CronJob": "/spec/jobTemplate/spec/template"},
}

// Manifest injects the sidecar into the pods and pod templates of a
// multi-document YAML manifest (Pods, Deployments, StatefulSets,
// DaemonSets, ReplicaSets, ReplicationControllers, Jobs, CronJobs, and
// v1 Lists of them), as `linkerd inject` does, and writes the result to w.
// A document it does not change (another kind, a pod without
// dapr.io/enabled, one already injected) is written byte for byte; a
// changed one is written as YAML with its keys sorted and its leading
// comments kept. It returns one Document per pod or template seen. An
// error names the document and the field; nothing is written then.
func (in *Injector) Manifest(w io.Writer, r io.Reader) ([]Document, error) {
	src, err := io.ReadAll(io.LimitReader(r, MaxManifestBytes+1))
	if err != nil {
		return nil, err
	}
	if len(src) > MaxManifestBytes {
		return nil, fmt.Errorf("manifest over %d bytes", MaxManifestBytes)
	}
	var out bytes.Buffer
	var docs []Document
	var errs []error
	for i, d := range splitDocuments(src) {
		out.Write(d.separator)
		body, seen, err := in.document(i+1, d)
		docs = append(docs, seen...)
		if err != nil {
			errs = append(errs, unjoin(err)...)
			continue
		}
		out.Write(body)
	}
	if err := errors.Join(errs...); err != nil {
		return docs, err
	}
	_, err = w.Write(out.Bytes())
	return docs, err
}

// document injects into one YAML document, returning what to write.
func (in *Injector) document(index int, d rawDocument) ([]byte, []Document, error) {
	where := fmt.Sprintf("document %d (line %d)", index, d.line)
	js, err := yaml.YAMLToJSON(d.body)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", where, err)
	}
	var head struct {
		APIVersion string          `json:"apiVersion"`
		Kind       string          `json:"kind"`
		Items      json.RawMessage `json:"items"`
	}
	if !bytes.HasPrefix(bytes.TrimSpace(js), []byte("{")) {
		return d.body, nil, nil // empty, a scalar or a sequence: nothing Kubernetes reads
	}
	_ = json.Unmarshal(js, &head) // wrong types show below, with their field
	var (
		ops  []Operation
		seen []Document
		errs []error
	)
	visit := func(item int, prefix string, obj json.RawMessage) {
		o, doc, err := in.object(obj, prefix)
		doc.Index, doc.Item, doc.Line = index, item, d.line
		if err != nil {
			for _, e := range unjoin(err) {
				errs = append(errs, fmt.Errorf("%s: %w", doc, e))
			}
			return
		}
		if doc.Plan != nil {
			seen = append(seen, doc)
		}
		ops = append(ops, o...)
	}
	if head.Kind == "List" && head.APIVersion == "v1" {
		var items []json.RawMessage
		if err := json.Unmarshal(head.Items, &items); len(head.Items) > 0 && err != nil {
			return nil, nil, fmt.Errorf("%s (List): items: not a list", where)
		}
		for i, it := range items {
			visit(i+1, "/items/"+strconv.Itoa(i), it)
		}
	} else {
		visit(0, "", js)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, seen, err
	}
	if len(ops) == 0 {
		return d.body, seen, nil
	}
	patched, err := applyOps(js, ops)
	if err != nil {
		return nil, seen, fmt.Errorf("%s: %w", where, err)
	}
	y, err := yaml.JSONToYAML(patched)
	if err != nil {
		return nil, seen, fmt.Errorf("%s: %w", where, err)
	}
	return append(leadingComments(d.body), y...), seen, nil
}

// object plans the injection into one Kubernetes object, returning the
// operations with paths from the document's root (under prefix).
func (in *Injector) object(obj json.RawMessage, prefix string) ([]Operation, Document, error) {
	var head struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Metadata   struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = json.Unmarshal(obj, &head) // a wrong type shows below, with its field
	doc := Document{Kind: head.Kind, Name: head.Metadata.Name}
	group, _, _ := strings.Cut(head.APIVersion, "/")
	if !strings.Contains(head.APIVersion, "/") {
		group = ""
	}
	path, ok := templatePaths[group][head.Kind]
	if !ok {
		return nil, doc, nil
	}
	raw, field, err := subtree(obj, path)
	if err != nil || raw == nil {
		return nil, doc, err
	}
	var tmpl corev1.PodTemplateSpec
	if err := json.Unmarshal(raw, &tmpl); err != nil {
		return nil, doc, fieldError(field, err)
	}
	owner := ""
	if path != "" {
		owner = head.Metadata.Name
	}
	plan, err := in.Plan(&tmpl.ObjectMeta, &tmpl.Spec, owner)
	if err != nil {
		return nil, doc, inField(field, err)
	}
	doc.Plan = plan
	return plan.Patch(prefix+path, &tmpl.ObjectMeta, &tmpl.Spec), doc, nil
}

// subtree returns the JSON value at a JSON Pointer of object members,
// nil when a member on the way is absent or null, and the path as a
// field name (spec.template).
func subtree(obj json.RawMessage, pointer string) (json.RawMessage, string, error) {
	cur := obj
	var field []string
	for seg := range strings.SplitSeq(strings.TrimPrefix(pointer, "/"), "/") {
		if seg == "" {
			continue
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(cur, &m); err != nil {
			return nil, "", fmt.Errorf("%s: not an object", fieldName(field))
		}
		field = append(field, seg)
		next, ok := m[seg]
		if !ok || string(next) == "null" {
			return nil, "", nil
		}
		cur = next
	}
	return cur, fieldName(field), nil
}

// rootField is the field name of a whole object.
const rootField = "(the object)"

func fieldName(f []string) string {
	if len(f) == 0 {
		return rootField
	}
	return strings.Join(f, ".")
}

// fieldError names the field of a decoding error from the document's
// root: encoding/json names it from the pod template's.
func fieldError(field string, err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) && te.Field != "" {
		f := te.Field
		if field != rootField {
			f = field + "." + f
		}
		hint := ""
		if strings.Contains(f, "annotations") || strings.Contains(f, "labels") {
			hint = " (quote the value)"
		}
		return fmt.Errorf("%s: got a JSON %s, want %s%s", f, te.Value, te.Type, hint)
	}
	if field == rootField {
		return err
	}
	return fmt.Errorf("%s: %w", field, err)
}

// FieldError is an error about one field of a manifest document.
type FieldError struct {
	Field string // from the document's root: spec.template.metadata.annotations[dapr.io/app-port]
	Err   error
}

func (e *FieldError) Error() string {
	var ae *AnnotationError
	if errors.As(e.Err, &ae) {
		return fmt.Sprintf("%s: %q: %s", e.Field, ae.Value, ae.Reason)
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// inField puts the pod template's place in front of each of Plan's errors:
// an annotation's becomes spec.template.metadata.annotations[KEY].
func inField(field string, err error) error {
	prefix := ""
	if field != rootField {
		prefix = field + "."
	}
	list := unjoin(err)
	out := make([]error, 0, len(list))
	for _, e := range list {
		var ae *AnnotationError
		if errors.As(e, &ae) {
			out = append(out, &FieldError{Field: prefix + "metadata.annotations[" + ae.Key + "]", Err: ae})
			continue
		}
		var fe *FieldError
		if errors.As(e, &fe) {
			out = append(out, &FieldError{Field: prefix + fe.Field, Err: fe.Err})
			continue
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// unjoin lists the errors of an errors.Join, else err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func applyOps(doc []byte, ops []Operation) ([]byte, error) {
	b, err := json.Marshal(ops)
	if err != nil {
		return nil, err
	}
	p, err := jsonpatch.DecodePatch(b)
	if err != nil {
		return nil, err
	}
	return p.Apply(doc)
}

// rawDocument is one document of a YAML stream, as it was written.
type rawDocument struct {
	separator []byte // the "---" line before it, if any
	body      []byte
	line      int // of the body's first line, from 1
}

// splitDocuments splits a YAML stream at its "---" lines, keeping every
// byte: writing each separator and body in turn gives back src.
func splitDocuments(src []byte) []rawDocument {
	var docs []rawDocument
	cur := rawDocument{line: 1}
	start, line := 0, 1
	for off := 0; off < len(src); {
		end := bytes.IndexByte(src[off:], '\n')
		next := len(src)
		if end >= 0 {
			next = off + end + 1
		}
		l := bytes.TrimRight(src[off:next], "\r\n")
		if isSeparator(l) {
			if off > 0 || len(cur.separator) > 0 {
				cur.body = src[start:off]
				docs = append(docs, cur)
			}
			cur = rawDocument{separator: src[off:next], line: line + 1}
			start = next
		}
		off = next
		line++
	}
	cur.body = src[start:]
	return append(docs, cur)
}

// isSeparator reports a YAML document marker line: "---", alone or
// followed by a comment. (A marker followed by content is left inside the
// document, where the YAML parser refuses it.)
func isSeparator(l []byte) bool {
	if !bytes.HasPrefix(l, []byte("---")) {
		return false
	}
	rest := bytes.TrimLeft(l[3:], " \t")
	return len(rest) == 0 || (rest[0] == '#' && len(rest) < len(l)-3)
}

// leadingComments returns the comment and blank lines a document starts
// with.
func leadingComments(body []byte) []byte {
	n := 0
	for n < len(body) {
		end := bytes.IndexByte(body[n:], '\n')
		if end < 0 {
			break
		}
		t := bytes.TrimSpace(body[n : n+end])
		if len(t) > 0 && t[0] != '#' {
			break
		}
		n += end + 1
	}
	return append([]byte(nil), body[:n]...)
}
