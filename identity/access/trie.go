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
	kids []*node    // config order; segs are distinct
	// wild holds the indexes in kids of the segments with '*', ascending,
	// and bySeg the index of every kid once there are more than
	// indexAbove: a node with many siblings (100,000 operations under one
	// prefix) is then built and searched without scanning them all.
	wild  []int
	bySeg map[string]int
}

// indexAbove is the number of children up to which a scan finds one faster
// than a map lookup.
const indexAbove = 8

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
	for rest, last := pattern, false; !last; {
		seg := rest
		if i := strings.IndexByte(rest, '/'); i >= 0 {
			seg, rest = rest[:i], rest[i+1:]
		} else {
			last = true
		}
		var sub *node
		if i := n.find(seg); i >= 0 {
			sub = n.kids[i]
		}
		switch {
		case sub == nil:
			sub = &node{seg: seg, kind: kindOf(seg)}
			if last {
				sub.op = op
			}
			n.add(sub)
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

// find returns the index in n.kids of the child whose segment is seg, or -1.
func (n *node) find(seg string) int {
	if n.bySeg != nil {
		if i, ok := n.bySeg[seg]; ok {
			return i
		}
		return -1
	}
	for i, k := range n.kids {
		if k.seg == seg {
			return i
		}
	}
	return -1
}

// add appends k, a child with a segment no other child has.
func (n *node) add(k *node) {
	i := len(n.kids)
	n.kids = append(n.kids, k)
	if k.kind != segLiteral {
		n.wild = append(n.wild, i)
	}
	switch {
	case n.bySeg != nil:
		n.bySeg[k.seg] = i
	case len(n.kids) > indexAbove:
		n.bySeg = make(map[string]int, 2*len(n.kids))
		for j, k := range n.kids {
			n.bySeg[k.seg] = j
		}
	}
}

// child returns the first child, in config order, matching seg: the one
// with equal text, unless a wildcard child before it matches. Only the
// wildcard children are scanned.
func (n *node) child(seg string, last bool) *node {
	eq := n.find(seg)
	for _, i := range n.wild {
		if eq >= 0 && i > eq {
			break
		}
		k := n.kids[i]
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
	if eq >= 0 {
		return n.kids[eq]
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
