package access

import "strings"

// The operation trie reproduces Dapr's matching (contract §4.5), including
// its surprises, with each segment pattern classified at compile time.
//
// A pattern is split on '/'; each segment is a child of the previous one, in
// the order the config first names it. Searching walks the request's
// segments; at each level the first child in config order that matches wins:
//   - equal text always matches;
//   - "*" matches only the last request segment (so "/a/*/c" never matches);
//   - "**" matches any one segment; as the last pattern segment it matches
//     the rest of the path too;
//   - any other segment with '*' matches like a shell glob within the segment.
//
// The first node on the way that ends an operation decides, except a "*"
// passed before the end, so "/a" matches "/a/b" (and wins over a later
// "/a/b"). A request that ends on a node ending no operation matches its
// child "*" (or "**"), so "/a/*" matches "/a".

// segKind classifies a pattern segment.
type segKind uint8

const (
	segLiteral segKind = iota // no '*': equality only
	segGlob                   // '*' within other characters, or "***"...
	segSingle                 // exactly "*"
	segMulti                  // exactly "**"
)

type node struct {
	seg  string // pattern segment, without '/'
	kind segKind
	op   *operation // non-nil: an operation ends here
	kids []*node    // config order
}

func kindOf(seg string) segKind {
	switch {
	case seg == "*":
		return segSingle
	case seg == "**":
		return segMulti
	case strings.IndexByte(seg, '*') >= 0:
		return segGlob
	}
	return segLiteral
}

// put adds op under pattern (without its leading '/'). As in Dapr, a path
// that already ends an operation keeps the first one.
func (n *node) put(pattern string, op *operation) {
	segs := strings.Split(pattern, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		var sub *node
		for _, k := range n.kids {
			if k.seg == seg {
				sub = k
				break
			}
		}
		switch {
		case sub == nil:
			sub = &node{seg: seg, kind: kindOf(seg)}
			if last {
				sub.op = op
			}
			n.kids = append(n.kids, sub)
		case last && sub.op == nil:
			sub.op = op
		}
		n = sub
	}
}

// search returns the operation matching rest, a clean operation without its
// leading '/', or nil. It does not allocate.
func (n *node) search(rest string) *operation {
	for {
		seg, last := rest, true
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest, last = rest[:i], rest[i+1:], false
		}
		n = n.child(seg, last)
		if n == nil {
			return nil
		}
		if n.op != nil {
			if last || n.seg != "*" {
				return n.op
			}
			// A "*" reached before the end (the request holds a literal
			// "*" segment) does not decide; keep walking below it.
		} else if last {
			if k := n.child("*", true); k != nil && k.op != nil {
				return k.op
			}
		}
		if last {
			return nil
		}
	}
}

// child returns the first child, in config order, matching seg.
func (n *node) child(seg string, last bool) *node {
	for _, k := range n.kids {
		if k.seg == seg {
			return k
		}
		switch k.kind {
		case segSingle:
			if last {
				return k
			}
		case segMulti:
			return k
		case segGlob:
			if glob(k.seg, seg) {
				return k
			}
		}
	}
	return nil
}

// glob reports whether s matches pattern p, where '*' matches any run of
// bytes, including none, and every other byte only itself. It backtracks to
// the last '*' only, which suffices for this syntax; it does not allocate.
func glob(p, s string) bool {
	px, sx := 0, 0
	nextPx, nextSx := 0, 0
	for px < len(p) || sx < len(s) {
		if px < len(p) {
			if c := p[px]; c == '*' {
				nextPx, nextSx = px, sx+1
				px++
				continue
			} else if sx < len(s) && s[sx] == c {
				px++
				sx++
				continue
			}
		}
		if 0 < nextSx && nextSx <= len(s) {
			px, sx = nextPx, nextSx
			continue
		}
		return false
	}
	return true
}
