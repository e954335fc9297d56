package syncml

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The XML decoder is a small scanner for the subset of XML 1.0 that SyncML uses: elements,
// attributes (read and discarded: SyncML carries meaning only in element names and text),
// character data with the five predefined entities and character references, CDATA,
// comments, processing instructions and an external DOCTYPE. It refuses DTD internal
// subsets and any other entity reference, so entity-expansion tricks cannot work.
//
// Namespaces: elements are matched by local name (prefixes are dropped), case-sensitively
// first and then case-insensitively, because real clients vary the namespace's case and
// prefix (PROTOCOL.md §12.3). Everything inside a <Data> element that contains child
// elements is kept verbatim as embedded markup (Format xml, DevInf, DDF).

type xmlFrame struct {
	node      int32  // tree node, or -1 inside embedded markup / unknown subtrees
	name      string // qualified name as written, to match the end tag
	contentAt int    // offset just after the start tag (Data only)
	sawChild  bool   // Data only: child elements seen, so the content is markup
}

type xmlDecoder struct {
	src      string
	pos      int
	lim      Limits
	t        *tree
	stack    []xmlFrame
	elements int
	rawDepth int // >0: inside the Data element at stack depth rawDepth (1-based)
}

func (d *xmlDecoder) err(c Code, off int, format string, args ...any) *Error {
	return errAt(c, off, format, args...)
}

// decodeXMLTree parses src into t.
func decodeXMLTree(src string, lim Limits, t *tree) error {
	d := xmlDecoder{src: src, lim: lim, t: t}
	if d.stack == nil {
		d.stack = make([]xmlFrame, 0, 16)
	}
	if !utf8.ValidString(src) {
		off := 0
		for off < len(src) {
			r, n := utf8.DecodeRuneInString(src[off:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			off += n
		}
		return d.err(ErrMalformed, off, "invalid UTF-8")
	}
	return d.run()
}

func (d *xmlDecoder) run() error {
	src := d.src
	// A UTF-8 byte order mark and leading white space are tolerated (PROTOCOL.md §12).
	if strings.HasPrefix(src, "\xEF\xBB\xBF") {
		d.pos = 3
	}
	rootSeen := false
	for d.pos < len(src) {
		if src[d.pos] != '<' {
			// Character data.
			end := strings.IndexByte(src[d.pos:], '<')
			if end < 0 {
				end = len(src)
			} else {
				end += d.pos
			}
			seg := src[d.pos:end]
			if len(d.stack) == 0 {
				if !isSpace(seg) {
					return d.err(ErrMalformed, d.pos, "text outside the root element")
				}
			} else if err := d.text(seg, d.pos); err != nil {
				return err
			}
			d.pos = end
			continue
		}
		if d.pos+1 >= len(src) {
			return d.err(ErrTruncated, d.pos, "document ends inside markup")
		}
		switch c := src[d.pos+1]; {
		case c == '?':
			end := strings.Index(src[d.pos+2:], "?>")
			if end < 0 {
				return d.err(ErrTruncated, d.pos, "unterminated processing instruction")
			}
			d.pos += 2 + end + 2
		case c == '!':
			if err := d.bang(rootSeen); err != nil {
				return err
			}
		case c == '/':
			if err := d.endTag(); err != nil {
				return err
			}
			if len(d.stack) == 0 {
				return d.trailer()
			}
		default:
			if len(d.stack) == 0 && rootSeen {
				return d.err(ErrMalformed, d.pos, "second root element")
			}
			rootSeen = true
			closed, err := d.startTag()
			if err != nil {
				return err
			}
			if closed && len(d.stack) == 0 {
				return d.trailer()
			}
		}
	}
	if len(d.stack) > 0 {
		return d.err(ErrTruncated, len(src), "document ends inside <%s>", d.stack[len(d.stack)-1].name)
	}
	return d.err(ErrTruncated, len(src), "no root element")
}

// trailer accepts only white space, comments and PIs after the root element.
func (d *xmlDecoder) trailer() error {
	src := d.src
	for d.pos < len(src) {
		switch {
		case isSpaceByte(src[d.pos]):
			d.pos++
		case strings.HasPrefix(src[d.pos:], "<!--"):
			end := strings.Index(src[d.pos+4:], "-->")
			if end < 0 {
				return d.err(ErrTruncated, d.pos, "unterminated comment")
			}
			d.pos += 4 + end + 3
		case strings.HasPrefix(src[d.pos:], "<?"):
			end := strings.Index(src[d.pos+2:], "?>")
			if end < 0 {
				return d.err(ErrTruncated, d.pos, "unterminated processing instruction")
			}
			d.pos += 2 + end + 2
		default:
			return d.err(ErrMalformed, d.pos, "content after the root element")
		}
	}
	return nil
}

func isSpaceByte(c byte) bool { return c == ' ' || c == '\t' || c == '\r' || c == '\n' }

// bang handles comments, CDATA sections and DOCTYPE.
func (d *xmlDecoder) bang(rootSeen bool) error {
	src := d.src
	rest := src[d.pos:]
	switch {
	case strings.HasPrefix(rest, "<!--"):
		end := strings.Index(rest[4:], "-->")
		if end < 0 {
			return d.err(ErrTruncated, d.pos, "unterminated comment")
		}
		d.pos += 4 + end + 3
	case strings.HasPrefix(rest, "<![CDATA["):
		if len(d.stack) == 0 {
			return d.err(ErrMalformed, d.pos, "CDATA outside the root element")
		}
		end := strings.Index(rest[9:], "]]>")
		if end < 0 {
			return d.err(ErrTruncated, d.pos, "unterminated CDATA section")
		}
		d.cdata(rest[9:9+end], d.pos)
		d.pos += 9 + end + 3
	case strings.HasPrefix(rest, "<!DOCTYPE"):
		if rootSeen {
			return d.err(ErrMalformed, d.pos, "DOCTYPE after the root element started")
		}
		// Only an external identifier is allowed; an internal subset could declare entities.
		var quote byte
		for i := 9; i < len(rest); i++ {
			c := rest[i]
			switch {
			case quote != 0:
				if c == quote {
					quote = 0
				}
			case c == '"' || c == '\'':
				quote = c
			case c == '[':
				return d.err(ErrForbiddenMarkup, d.pos+i, "DTD internal subset not allowed")
			case c == '>':
				d.pos += i + 1
				return nil
			}
		}
		return d.err(ErrTruncated, d.pos, "unterminated DOCTYPE")
	default:
		return d.err(ErrForbiddenMarkup, d.pos, "markup declaration not allowed")
	}
	return nil
}

func isNameByte(c byte) bool {
	return !(c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '/' || c == '>' || c == '=' || c == '<' || c == '"' || c == '\'')
}

func localName(q string) string {
	if i := strings.LastIndexByte(q, ':'); i >= 0 {
		return q[i+1:]
	}
	return q
}

// startTag parses "<name attr='v' ...>" or ".../>"; closed reports a self-closing tag.
func (d *xmlDecoder) startTag() (closed bool, err error) {
	src := d.src
	start := d.pos
	i := d.pos + 1
	for i < len(src) && isNameByte(src[i]) {
		i++
	}
	name := src[d.pos+1 : i]
	if name == "" {
		return false, d.err(ErrMalformed, start, "empty element name")
	}
	// Attributes: name, optional space, '=', optional space, quoted value.
	for {
		for i < len(src) && isSpaceByte(src[i]) {
			i++
		}
		if i >= len(src) {
			return false, d.err(ErrTruncated, start, "unterminated start tag <%s>", name)
		}
		if src[i] == '>' {
			i++
			break
		}
		if src[i] == '/' {
			if i+1 >= len(src) {
				return false, d.err(ErrTruncated, start, "unterminated start tag <%s>", name)
			}
			if src[i+1] != '>' {
				return false, d.err(ErrMalformed, i, "expected '>' after '/'")
			}
			i += 2
			closed = true
			break
		}
		a := i
		for i < len(src) && isNameByte(src[i]) {
			i++
		}
		if a == i {
			return false, d.err(ErrMalformed, i, "bad attribute in <%s>", name)
		}
		for i < len(src) && isSpaceByte(src[i]) {
			i++
		}
		if i >= len(src) || src[i] != '=' {
			return false, d.err(ErrMalformed, i, "attribute without value in <%s>", name)
		}
		i++
		for i < len(src) && isSpaceByte(src[i]) {
			i++
		}
		if i >= len(src) || (src[i] != '"' && src[i] != '\'') {
			return false, d.err(ErrMalformed, i, "unquoted attribute value in <%s>", name)
		}
		q := src[i]
		end := strings.IndexByte(src[i+1:], q)
		if end < 0 {
			return false, d.err(ErrTruncated, i, "unterminated attribute value")
		}
		if strings.IndexByte(src[i+1:i+1+end], '<') >= 0 {
			return false, d.err(ErrMalformed, i, "'<' in attribute value")
		}
		i += 1 + end + 1
	}
	d.pos = i

	d.elements++
	if d.elements > d.lim.MaxElements {
		return false, d.err(ErrTooManyElements, start, "more than %d elements", d.lim.MaxElements)
	}
	if len(d.stack) >= d.lim.MaxDepth {
		return false, d.err(ErrTooDeep, start, "nesting deeper than %d", d.lim.MaxDepth)
	}

	fr := xmlFrame{node: -1, name: name, contentAt: i}
	var parent int32 = -1
	if n := len(d.stack); n > 0 {
		parent = d.stack[n-1].node
	}
	switch {
	case d.rawDepth > 0:
		// Inside embedded markup: only remember that Data has element content.
		d.stack[d.rawDepth-1].sawChild = true
	case len(d.stack) == 0:
		fr.node = d.t.add(-1, lookupTag(localName(name)), start)
	case parent >= 0:
		tg := lookupTag(localName(name))
		if tg != tagUnknown {
			fr.node = d.t.add(parent, tg, start)
		}
	}
	if closed {
		if fr.node >= 0 {
			d.t.nodes[fr.node].flags |= nfEmpty
		}
		return true, nil
	}
	d.stack = append(d.stack, fr)
	if d.rawDepth == 0 && fr.node >= 0 && d.t.nodes[fr.node].tag == tagData {
		d.rawDepth = len(d.stack)
	}
	return false, nil
}

func (d *xmlDecoder) endTag() error {
	src := d.src
	start := d.pos
	i := d.pos + 2
	for i < len(src) && isNameByte(src[i]) {
		i++
	}
	name := src[d.pos+2 : i]
	for i < len(src) && isSpaceByte(src[i]) {
		i++
	}
	if i >= len(src) {
		return d.err(ErrTruncated, start, "unterminated end tag")
	}
	if src[i] != '>' {
		return d.err(ErrMalformed, i, "expected '>' in end tag")
	}
	n := len(d.stack)
	if n == 0 {
		return d.err(ErrMalformed, start, "end tag </%s> without start tag", name)
	}
	fr := d.stack[n-1]
	if fr.name != name {
		return d.err(ErrMalformed, start, "end tag </%s> does not match <%s>", name, fr.name)
	}
	d.pos = i + 1
	d.stack = d.stack[:n-1]
	if d.rawDepth == n {
		d.rawDepth = 0
		if fr.sawChild {
			nd := &d.t.nodes[fr.node]
			nd.text = strings.TrimSpace(src[fr.contentAt:start])
			nd.flags |= nfXML
		}
	}
	if fr.node >= 0 {
		d.t.finish(fr.node)
	}
	return nil
}

// text adds character data to the innermost element that keeps text.
func (d *xmlDecoder) text(seg string, off int) error {
	fr := &d.stack[len(d.stack)-1]
	if fr.node < 0 {
		// Unknown element or embedded markup: entities must still be well-formed.
		if strings.IndexByte(seg, '&') >= 0 {
			_, err := unescape(seg, off)
			return err
		}
		return nil
	}
	if strings.IndexByte(seg, '&') >= 0 {
		s, err := unescape(seg, off)
		if err != nil {
			return err
		}
		seg = s
	}
	d.t.appendText(fr.node, seg, false)
	return nil
}

func (d *xmlDecoder) cdata(seg string, off int) {
	fr := &d.stack[len(d.stack)-1]
	if fr.node >= 0 && (d.rawDepth == 0 || d.rawDepth == len(d.stack)) {
		d.t.appendText(fr.node, seg, true)
	}
}

// unescape resolves the predefined entities and character references of XML 1.0 §4.6 and
// §4.1. Any other entity is refused: SyncML declares none, and expanding declared entities
// is how billion-laughs attacks work.
func unescape(s string, off int) (string, error) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c != '&' {
			j := strings.IndexByte(s[i:], '&')
			if j < 0 {
				b.WriteString(s[i:])
				break
			}
			b.WriteString(s[i : i+j])
			i += j
			continue
		}
		end := strings.IndexByte(s[i:], ';')
		if end < 0 || end > 12 {
			return "", errAt(ErrMalformed, off+i, "unterminated entity reference")
		}
		ent := s[i+1 : i+end]
		switch ent {
		case "lt":
			b.WriteByte('<')
		case "gt":
			b.WriteByte('>')
		case "amp":
			b.WriteByte('&')
		case "quot":
			b.WriteByte('"')
		case "apos":
			b.WriteByte('\'')
		default:
			if len(ent) < 2 || ent[0] != '#' {
				return "", errAt(ErrForbiddenMarkup, off+i, "entity &%s; not allowed", ent)
			}
			var v uint64
			var err error
			if ent[1] == 'x' {
				v, err = strconv.ParseUint(ent[2:], 16, 32)
			} else {
				v, err = strconv.ParseUint(ent[1:], 10, 32)
			}
			r := rune(v)
			if err != nil || v == 0 || v > utf8.MaxRune || (r >= 0xD800 && r <= 0xDFFF) {
				return "", errAt(ErrMalformed, off+i, "bad character reference &%s;", ent)
			}
			b.WriteRune(r)
		}
		i += end + 1
	}
	return b.String(), nil
}
