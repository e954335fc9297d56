package syncml

import (
	"fmt"
	"sort"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// xnode is an element tree reduced to what the encodings must preserve: local name,
// namespace (case-folded: peers differ in case), trimmed text and children. etree is an
// independent XML parser, so these comparisons do not trust our decoder.
type xnode struct {
	name, ns, text string
	kids           []xnode
}

func (n xnode) String() string {
	var b strings.Builder
	var walk func(n xnode, d int)
	walk = func(n xnode, d int) {
		fmt.Fprintf(&b, "%s{%s}%s %q\n", strings.Repeat("  ", d), n.ns, n.name, n.text)
		for _, k := range n.kids {
			walk(k, d+1)
		}
	}
	walk(n, 0)
	return b.String()
}

func toXNode(e *etree.Element, sortMeta bool) xnode {
	n := xnode{name: e.Tag, ns: strings.ToLower(e.NamespaceURI()), text: strings.TrimSpace(e.Text())}
	for _, c := range e.ChildElements() {
		n.kids = append(n.kids, toXNode(c, sortMeta))
	}
	// MetInf children may come in any order (PROTOCOL.md §2.2); compare them sorted.
	if sortMeta && e.Tag == "Meta" {
		sort.Slice(n.kids, func(i, j int) bool { return n.kids[i].name < n.kids[j].name })
	}
	return n
}

func parseXNode(t *testing.T, s string, sortMeta bool) xnode {
	t.Helper()
	d := etree.NewDocument()
	if err := d.ReadFromString(s); err != nil {
		t.Fatalf("etree: %v\n%s", err, s)
	}
	if d.Root() == nil {
		t.Fatalf("etree: no root in %q", s)
	}
	return toXNode(d.Root(), sortMeta)
}

func sameXNode(a, b xnode) bool {
	if a.name != b.name || a.ns != b.ns || a.text != b.text || len(a.kids) != len(b.kids) {
		return false
	}
	for i := range a.kids {
		if !sameXNode(a.kids[i], b.kids[i]) {
			return false
		}
	}
	return true
}

func sameMarkup(t *testing.T, a, b string) bool {
	t.Helper()
	return sameXNode(parseXNode(t, a, false), parseXNode(t, b, false))
}
