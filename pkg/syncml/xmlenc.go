package syncml

import (
	"strings"
	"unicode/utf8"
)

// XMLOptions control the XML encoder.
type XMLOptions struct {
	// Indent, when not empty, pretty-prints with this indent per level (for people, e.g.
	// dmctl). Devices get the compact form.
	Indent string
	// OmitDeclaration drops the leading <?xml ...?> declaration.
	OmitDeclaration bool
}

type xmlWriter struct {
	buf    []byte
	indent string
	depth  int
	err    error // first value XML cannot carry; AppendXML returns it
}

func (x *xmlWriter) newline() {
	if x.indent == "" {
		return
	}
	x.buf = append(x.buf, '\n')
	for i := 0; i < x.depth; i++ {
		x.buf = append(x.buf, x.indent...)
	}
}

// startTag writes <Name> with the MetInf namespace on MetInf elements, as DM peers expect
// (PROTOCOL.md §2.2).
func (x *xmlWriter) startTag(t tag, empty bool) {
	x.newline()
	x.buf = append(x.buf, '<')
	x.buf = append(x.buf, tagNames[t]...)
	if t.page() == pageMetInf {
		x.buf = append(x.buf, ` xmlns="syncml:metinf"`...)
	}
	if empty {
		x.buf = append(x.buf, '/', '>')
	} else {
		x.buf = append(x.buf, '>')
	}
}

func (x *xmlWriter) endTag(t tag) {
	x.buf = append(x.buf, '<', '/')
	x.buf = append(x.buf, tagNames[t]...)
	x.buf = append(x.buf, '>')
}

func (x *xmlWriter) open(t tag) {
	x.startTag(t, false)
	x.depth++
}

func (x *xmlWriter) close(t tag) {
	x.depth--
	x.newline()
	x.endTag(t)
}

func (x *xmlWriter) leaf(t tag, s string) {
	if s == "" {
		x.startTag(t, true)
		return
	}
	x.startTag(t, false)
	x.text(s)
	x.endTag(t)
}

// text writes character data. Values with leading or trailing white space go in CDATA, which
// readers (ours included) do not trim; values XML cannot carry set x.err.
func (x *xmlWriter) text(s string) {
	if off, ok := xmlSafe(s); !ok {
		if x.err == nil {
			x.err = errAt(ErrUnrepresentable, off, "value holds bytes XML cannot carry; send binary as Format b64")
		}
		return
	}
	if isSpaceByte(s[0]) || isSpaceByte(s[len(s)-1]) {
		x.buf = append(x.buf, "<![CDATA["...)
		x.buf = append(x.buf, strings.ReplaceAll(s, "]]>", "]]]]><![CDATA[>")...)
		x.buf = append(x.buf, "]]>"...)
		return
	}
	x.buf = appendEscaped(x.buf, s)
}

func (x *xmlWriter) flag(t tag) { x.startTag(t, true) }

func (x *xmlWriter) data(d *Data, _ bool) error {
	if d.Value == "" {
		x.startTag(tagData, true)
		return nil
	}
	if d.Kind == DataXML {
		// Embedded markup is written as it came; it was checked for well-formedness when
		// it was decoded (or converted from WBXML by the wbxml package).
		x.startTag(tagData, false)
		x.buf = append(x.buf, d.Value...)
		x.endTag(tagData)
		return nil
	}
	x.startTag(tagData, false)
	x.text(d.Value)
	x.endTag(tagData)
	return x.err
}

// xmlSafe reports whether s is valid UTF-8 made only of XML 1.0 Chars (§2.2).
func xmlSafe(s string) (int, bool) {
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return i, false
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 || r == 0xFFFE || r == 0xFFFF {
			return i, false
		}
		i += n
	}
	return 0, true
}

func appendEscaped(b []byte, s string) []byte {
	last := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '<':
			esc = "&lt;"
		case '>':
			esc = "&gt;"
		case '&':
			esc = "&amp;"
		case '\r':
			esc = "&#13;" // a literal CR would be normalised away by the reader (XML 1.0 §2.11)
		default:
			continue
		}
		b = append(b, s[last:i]...)
		b = append(b, esc...)
		last = i + 1
	}
	return append(b, s[last:]...)
}

// AppendXML appends the XML encoding of m to dst.
func AppendXML(dst []byte, m *Message, opt XMLOptions) ([]byte, error) {
	x := &xmlWriter{buf: dst, indent: opt.Indent}
	if !opt.OmitDeclaration {
		x.buf = append(x.buf, `<?xml version="1.0" encoding="UTF-8"?>`...)
	}
	// The root carries the namespace; the walk writes the rest.
	w := &rootXMLWriter{xmlWriter: x, ns: m.Namespace()}
	if err := (&walker{w: w}).message(m); err != nil {
		return dst, err
	}
	if x.err != nil {
		return dst, x.err
	}
	if opt.Indent != "" {
		x.buf = append(x.buf, '\n')
	}
	return x.buf, nil
}

// rootXMLWriter adds the xmlns attribute to the SyncML root element.
type rootXMLWriter struct {
	*xmlWriter
	ns string
}

func (r *rootXMLWriter) open(t tag) {
	if t != tagSyncML {
		r.xmlWriter.open(t)
		return
	}
	if r.indent != "" && len(r.buf) > 0 {
		r.buf = append(r.buf, '\n')
	}
	r.buf = append(r.buf, `<SyncML xmlns="`...)
	r.buf = append(r.buf, r.ns...)
	r.buf = append(r.buf, `">`...)
	r.depth++
}
