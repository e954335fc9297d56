package wbxml

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/beevik/etree"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

// vectorsDir returns the vectors directory (internal/vectors: $DMGRID_VECTORS or
// shared/omadm/vectors above the working directory; a skip outside CI, a failure in CI).
func vectorsDir(t testing.TB) string {
	t.Helper()
	return vectors.Dir(t)
}

type vector struct {
	name string // file base name
	path string
	data []byte
	xml  string // path of the source XML
}

// wbxmlVectors returns every messages/*.wbxml (both flavours and the FPI
// variant), sorted, with the XML each was generated from.
func wbxmlVectors(t testing.TB) []vector {
	t.Helper()
	dir := filepath.Join(vectorsDir(t), "messages")
	files, err := filepath.Glob(filepath.Join(dir, "*.wbxml"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) < 20 {
		t.Fatalf("expected the vector set in %s, found %d .wbxml files", dir, len(files))
	}
	var vs []vector
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(f)
		stem := base[:strings.IndexByte(base, '.')]
		vs = append(vs, vector{name: base, path: f, data: b, xml: filepath.Join(dir, stem+".xml")})
	}
	return vs
}

// plainVector reports whether v is a "-n" encoding (no string table use in
// the body), whose bytes the encoder must reproduce exactly.
func plainVector(v vector) bool {
	return strings.HasSuffix(v.name, ".wbxml") && !strings.HasSuffix(v.name, ".st.wbxml")
}

func readXML(t testing.TB, path string) *etree.Element {
	t.Helper()
	doc := etree.NewDocument()
	if err := doc.ReadFromFile(path); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if doc.Root() == nil {
		t.Fatalf("%s: no root", path)
	}
	return doc.Root()
}

// treeDiff compares two element trees by local name, namespace URI
// (case-insensitive, PROTOCOL.md §12.3), trimmed text (CDATA or not) and
// children, recursively. It returns "" when equal.
func treeDiff(a, b *etree.Element, path string) string {
	p := path + "/" + a.Tag
	if a.Tag != b.Tag {
		return fmt.Sprintf("%s: name %q vs %q", p, a.Tag, b.Tag)
	}
	if !strings.EqualFold(a.NamespaceURI(), b.NamespaceURI()) {
		return fmt.Sprintf("%s: namespace %q vs %q", p, a.NamespaceURI(), b.NamespaceURI())
	}
	if ta, tb := strings.TrimSpace(allText(a)), strings.TrimSpace(allText(b)); ta != tb {
		return fmt.Sprintf("%s: text %q vs %q", p, ta, tb)
	}
	ca, cb := a.ChildElements(), b.ChildElements()
	if len(ca) != len(cb) {
		return fmt.Sprintf("%s: %d children vs %d", p, len(ca), len(cb))
	}
	for i := range ca {
		if d := treeDiff(ca[i], cb[i], p); d != "" {
			return d
		}
	}
	return ""
}

// allText concatenates the element's own character data (all CharData
// children, so text split into several tokens compares equal).
func allText(e *etree.Element) string {
	var sb strings.Builder
	for _, c := range e.Child {
		if cd, ok := c.(*etree.CharData); ok {
			sb.WriteString(cd.Data)
		}
	}
	return sb.String()
}

// libwbxml returns the path of a libwbxml tool or skips (fails in CI).
func libwbxml(t testing.TB, tool string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("%s not on PATH (libwbxml2-utils required in CI)", tool)
		}
		t.Skip("libwbxml2-utils not installed; skipping outside CI")
	}
	return p
}

// tok is a Token with owned slices, for comparing streams.
type tok struct {
	Kind    Kind
	Page    byte
	Tag     byte
	Literal string
	Text    string
}

func (t tok) String() string {
	switch t.Kind {
	case KindStart, KindEnd:
		return fmt.Sprintf("%v(%d,0x%02X%s)", t.Kind, t.Page, t.Tag, t.Literal)
	default:
		return fmt.Sprintf("%v(%q)", t.Kind, t.Text)
	}
}

// collect decodes b completely.
func collect(b []byte, lim Limits) (Header, []tok, error) {
	d, err := NewDecoder(b, lim)
	if err != nil {
		return Header{}, nil, err
	}
	var out []tok
	for {
		t, err := d.Next()
		if err != nil {
			return d.Header(), out, err
		}
		if t.Kind == KindEOF {
			return d.Header(), out, nil
		}
		out = append(out, tok{t.Kind, t.Page, t.Tag, string(t.Literal), string(t.Text)})
	}
}

// reencode writes a token stream back through the Encoder. Empty elements
// (Start immediately followed by End) are written content-less, as libwbxml
// does. ok is false if the stream contains LITERAL tags, which the Encoder
// cannot write.
func reencode(h Header, toks []tok) (out []byte, ok bool) {
	e := NewEncoder(nil, h)
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch t.Kind {
		case KindStart:
			if t.Tag == LiteralTag {
				return nil, false
			}
			if i+1 < len(toks) && toks[i+1].Kind == KindEnd {
				e.Start(t.Page, t.Tag, false)
				i++
			} else {
				e.Start(t.Page, t.Tag, true)
			}
		case KindEnd:
			e.End()
		case KindText:
			e.TextString(t.Text)
		case KindOpaque:
			e.OpaqueString(t.Text)
		}
	}
	if e.Err() != nil || e.Depth() != 0 {
		return nil, false
	}
	return e.Bytes(), true
}
