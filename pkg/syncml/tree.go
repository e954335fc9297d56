package syncml

import "strings"

// Limits bound the work a decoder does for one message. They are checked before or while
// parsing, never after: a body over MaxBodyBytes is refused before the first byte is read
// as XML or WBXML.
type Limits struct {
	MaxBodyBytes int // default 4 MiB
	MaxDepth     int // element nesting, default 48 (DDF documents inside Data nest deeply)
	MaxElements  int // total elements, default 65536
}

// DefaultLimits are used for zero fields.
var DefaultLimits = Limits{MaxBodyBytes: 4 << 20, MaxDepth: 48, MaxElements: 1 << 16}

func (l Limits) withDefaults() Limits {
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultLimits.MaxBodyBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultLimits.MaxDepth
	}
	if l.MaxElements <= 0 {
		l.MaxElements = DefaultLimits.MaxElements
	}
	return l
}

// node flags.
const (
	nfCDATA  = 1 << iota // text came (partly) from CDATA: keep it untrimmed
	nfXML                // Data holding child markup (text is the raw inner XML)
	nfOpaque             // text came from WBXML OPAQUE
	nfEmpty              // element had no content at all
)

// node is one element of the intermediate tree both decoders build. Children are linked
// through first/next; index 0 is the root element, so 0 also means "none" for links.
type node struct {
	tag         tag
	flags       uint8
	first, last int32
	next        int32
	off         int32
	text        string
}

// tree is an arena of nodes; it is reset and reused between messages.
type tree struct {
	nodes []node
}

func (t *tree) reset(hint int) {
	if cap(t.nodes) < hint {
		t.nodes = make([]node, 0, hint)
	}
	t.nodes = t.nodes[:0]
}

// add appends a child to parent (or the root when parent < 0) and returns its index.
func (t *tree) add(parent int32, tg tag, off int) int32 {
	i := int32(len(t.nodes))
	t.nodes = append(t.nodes, node{tag: tg, off: int32(off)})
	if parent >= 0 {
		p := &t.nodes[parent]
		if p.first == 0 {
			p.first = i
		} else {
			t.nodes[p.last].next = i
		}
		p.last = i
	}
	return i
}

// appendText adds a text segment to a node. Whitespace-only segments between elements are
// ignorable (they are what pretty-printing adds) unless they come from CDATA.
func (t *tree) appendText(i int32, s string, cdata bool) {
	n := &t.nodes[i]
	if cdata {
		n.flags |= nfCDATA
	} else if isSpace(s) {
		return
	}
	if n.text == "" {
		n.text = s
	} else {
		n.text += s
	}
}

// finish trims non-CDATA text when an element closes.
func (t *tree) finish(i int32) {
	n := &t.nodes[i]
	if n.flags&(nfCDATA|nfXML|nfOpaque) == 0 && n.text != "" {
		n.text = strings.TrimSpace(n.text)
	}
}

func isSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
		default:
			return false
		}
	}
	return true
}

// children iterates over the children of node i.
func (t *tree) child(i int32) int32 { return t.nodes[i].first }
func (t *tree) next(i int32) int32  { return t.nodes[i].next }
