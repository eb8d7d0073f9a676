// Package yamlfield decodes YAML nodes by hand, strictly, so that every
// error names its field path and line and all of them are reported at once:
// what Skein's resource decoders (access policies, resiliency) need and
// yaml's struct decoding does not give.
//
//	var d yamlfield.Decoder
//	d.Mapping(n, "accessControl", func(key string, v *yaml.Node, path string) bool {
//		switch key {
//		case "defaultAction":
//			d.Str(v, path, &c.DefaultAction)
//		default:
//			return false // "accessControl.x: unknown field (line 3)"
//		}
//		return true
//	})
//	return d.Err()
package yamlfield

import (
	"errors"
	"fmt"
	"io"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// Decoder collects decoding errors. Its zero value is ready to use; it is
// not safe for concurrent use.
type Decoder struct {
	errs []error
}

// Errorf records a problem at path (and n's line).
func (d *Decoder) Errorf(n *yaml.Node, path, format string, args ...any) {
	d.errs = append(d.errs, fmt.Errorf("%s: %s (line %d)", path, fmt.Sprintf(format, args...), n.Line))
}

// Err returns every recorded problem joined, or nil.
func (d *Decoder) Err() error { return errors.Join(d.errs...) }

// Mapping calls set for each key of mapping n; set reports whether it knows
// the key. Unknown and duplicate keys, merge keys and non-string keys are
// errors; a null n is an empty mapping.
func (d *Decoder) Mapping(n *yaml.Node, path string, set func(key string, v *yaml.Node, path string) bool) {
	n = Resolve(n)
	if IsNull(n) {
		return
	}
	if n.Kind != yaml.MappingNode {
		d.Errorf(n, path, "must be a mapping")
		return
	}
	// A config may hold 100,000 small mappings (access operations): up to
	// mapAbove keys, a duplicate is looked for among the earlier keys
	// rather than in a map allocated per mapping.
	const mapAbove = 8
	var seen map[string]bool
	if len(n.Content)/2 > mapAbove {
		seen = make(map[string]bool, len(n.Content)/2)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			d.Errorf(k, path, "field names must be strings")
			continue
		}
		fp := path + "." + k.Value
		switch {
		case k.ShortTag() == "!!merge":
			d.Errorf(k, fp, "merge keys are not supported")
		case seen[k.Value] || seen == nil && keyBefore(n, i, k.Value):
			d.Errorf(k, fp, "duplicate field")
		case !set(k.Value, v, fp):
			d.Errorf(k, fp, "unknown field")
		}
		if seen != nil {
			seen[k.Value] = true
		}
	}
}

// keyBefore reports whether mapping n has key among its keys before index i.
func keyBefore(n *yaml.Node, i int, key string) bool {
	for j := 0; j < i; j += 2 {
		if k := n.Content[j]; k.Kind == yaml.ScalarNode && k.Value == key {
			return true
		}
	}
	return false
}

// List calls each for every item of sequence n; a null n is an empty list.
func (d *Decoder) List(n *yaml.Node, path string, each func(i int, v *yaml.Node, path string)) {
	n = Resolve(n)
	if IsNull(n) {
		return
	}
	if n.Kind != yaml.SequenceNode {
		d.Errorf(n, path, "must be a list")
		return
	}
	// One buffer for every item's path: a list may hold 100,000 items.
	buf := append(make([]byte, 0, len(path)+12), path...)
	for i, v := range n.Content {
		buf = strconv.AppendInt(append(buf[:len(path)], '['), int64(i), 10)
		each(i, v, string(append(buf, ']')))
	}
}

// Str decodes a scalar into dst; null gives "".
func (d *Decoder) Str(n *yaml.Node, path string, dst *string) {
	n = Resolve(n)
	if IsNull(n) {
		*dst = ""
		return
	}
	if n.Kind != yaml.ScalarNode {
		d.Errorf(n, path, "must be a string")
		return
	}
	*dst = n.Value
}

// Int decodes an integer (a quoted one too, as Kubernetes tooling writes
// them); it reports whether n held one.
func (d *Decoder) Int(n *yaml.Node, path string, dst *int) bool {
	n = Resolve(n)
	if IsNull(n) {
		return false
	}
	if n.Kind != yaml.ScalarNode {
		d.Errorf(n, path, "must be an integer")
		return false
	}
	i, err := strconv.Atoi(n.Value)
	if err != nil {
		d.Errorf(n, path, "%q: must be an integer", n.Value)
		return false
	}
	*dst = i
	return true
}

// Bool decodes true or false (a quoted one too); it reports whether n
// held one. Null leaves dst as it is.
func (d *Decoder) Bool(n *yaml.Node, path string, dst *bool) bool {
	n = Resolve(n)
	if IsNull(n) {
		return false
	}
	b, err := strconv.ParseBool(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		d.Errorf(n, path, "%q: must be true or false", n.Value)
		return false
	}
	*dst = b
	return true
}

// Field returns the value of key in mapping n (documents and aliases
// followed), or nil when n is not a mapping or has no such key.
func Field(n *yaml.Node, key string) *yaml.Node {
	n = Resolve(n)
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return Resolve(n.Content[i+1])
		}
	}
	return nil
}

// Resolve follows documents and aliases to the node they stand for.
func Resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && i < 100; i++ { // bounded: alias cycles are not ours to loop on
		switch n.Kind {
		case yaml.DocumentNode:
			if len(n.Content) == 0 {
				return nil
			}
			n = n.Content[0]
		case yaml.AliasNode:
			n = n.Alias
		default:
			return n
		}
	}
	return n
}

// IsNull reports whether n is absent or YAML null.
func IsNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Documents decodes every document of a multi-document YAML file, read
// from r, into a fresh T, strictly (unknown fields are errors), and hands
// each to each with its 1-based number. A document that does not decode
// stops it with "<file>: document <n>: <error>"; an error from each stops
// it as is. The parser reads r as it goes (512 bytes at a time), so a
// reader that fails, say once a context is done, cuts a long parse short.
func Documents[T any](file string, r io.Reader, each func(n int, doc *T) error) error {
	dec := yaml.NewDecoder(r)
	dec.KnownFields(true)
	for n := 1; ; n++ {
		doc := new(T)
		err := dec.Decode(doc)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%s: document %d: %w", file, n, err)
		}
		if err := each(n, doc); err != nil {
			return err
		}
	}
}

// Nodes returns how many nodes n stands for with its aliases expanded (the
// anchored node counted at each alias), counting no further than limit+1. A
// few aliases can make a small document stand for billions of nodes, which
// a decoder following them (Mapping, List) would walk one by one: compare
// the result with a bound before decoding. Nodes does not allocate per node.
func Nodes(n *yaml.Node, limit int) int {
	count := 0
	stack := [][]*yaml.Node{{n}} // the nodes left at each depth
	for len(stack) > 0 && count <= limit {
		top := &stack[len(stack)-1]
		if len(*top) == 0 {
			stack = stack[:len(stack)-1]
			continue
		}
		c := (*top)[0]
		*top = (*top)[1:]
		for i := 0; c != nil && c.Kind == yaml.AliasNode && i < 100; i++ { // bounded as in Resolve
			c = c.Alias
		}
		if c == nil {
			continue
		}
		count++
		if len(c.Content) > 0 {
			stack = append(stack, c.Content)
		}
	}
	return count
}
