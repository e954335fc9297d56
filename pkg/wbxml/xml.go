package wbxml

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/beevik/etree"
)

// Charsets ToXML transcodes itself (IANA MIBenum).
const (
	charsetASCII  = 3
	charsetLatin1 = 4
)

// ToXML decodes a complete WBXML document of a known language (LanguageFor)
// into an etree document. It is meant for embedded documents (DevInf, DDF in
// OPAQUE Data, PROTOCOL.md §8.6) and tooling, not the per-message path.
//
//   - Element names come from the language's code pages; LITERAL tags use
//     their string-table name if it is a plausible XML name. Any tag the
//     tables do not define is an ErrUnknownTag error.
//   - xmlns is set on the root and on every element whose code page
//     namespace differs from its parent's (e.g. MetInf inside Meta), the way
//     wbxml2xml writes it.
//   - STR_I/STR_T/ENTITY become text; ISO-8859-1 and US-ASCII documents are
//     converted to UTF-8, other charsets are taken as UTF-8.
//   - OPAQUE becomes text when it is valid UTF-8 made only of XML characters
//     (libwbxml writes Item/Data as OPAQUE even for plain text); otherwise
//     (binary data, nested WBXML) it is base64-encoded (standard alphabet,
//     padded), since raw bytes cannot be represented in XML.
func ToXML(doc []byte, lim Limits) (*etree.Document, *Language, error) {
	d, err := NewDecoder(doc, lim)
	if err != nil {
		return nil, nil, err
	}
	h := d.Header()
	lang := LanguageFor(h)
	if lang == nil {
		return nil, nil, &Error{Kind: ErrUnknownLanguage, Offset: 0,
			Msg: "unknown document type (public id 0x" + strconv.FormatUint(uint64(h.PublicID), 16) + ", FPI " + strconv.Quote(h.FPI) + ")"}
	}
	latin1 := h.Charset == charsetLatin1 || h.Charset == charsetASCII

	out := etree.NewDocument()
	out.CreateProcInst("xml", `version="1.0" encoding="UTF-8"`)
	type open struct {
		el *etree.Element
		ns string
	}
	var stack []open
	for {
		t, err := d.Next()
		if err != nil {
			return nil, nil, err
		}
		switch t.Kind {
		case KindEOF:
			return out, lang, nil
		case KindStart:
			var name, ns string
			if t.Tag == LiteralTag {
				if !xmlName(t.Literal) {
					return nil, nil, &Error{Kind: ErrUnknownTag, Offset: t.Offset, Msg: "literal tag name " + strconv.Quote(string(t.Literal)) + " is not an XML name"}
				}
				name = string(t.Literal)
			} else {
				name = lang.Name(t.Page, t.Tag)
				if name == "" {
					return nil, nil, &Error{Kind: ErrUnknownTag, Offset: t.Offset,
						Msg: "tag 0x" + hex2(t.Tag) + " on code page " + strconv.Itoa(int(t.Page)) + " is not defined in " + lang.Title}
				}
				ns = lang.Namespace(t.Page)
			}
			var el *etree.Element
			parentNS := ""
			if len(stack) == 0 {
				el = out.CreateElement(name)
			} else {
				top := stack[len(stack)-1]
				el = top.el.CreateElement(name)
				parentNS = top.ns
			}
			if ns == "" {
				ns = parentNS // literal tags inherit the default namespace
			}
			if ns != "" && (len(stack) == 0 || ns != parentNS) {
				el.CreateAttr("xmlns", ns)
			}
			stack = append(stack, open{el, ns})
		case KindEnd:
			stack = stack[:len(stack)-1]
		case KindText:
			var s string
			if latin1 {
				s = latin1ToUTF8(t.Text)
			} else {
				s = string(t.Text)
			}
			stack[len(stack)-1].el.CreateText(s)
		case KindOpaque:
			var s string
			if xmlText(t.Text) {
				s = string(t.Text)
			} else {
				s = base64.StdEncoding.EncodeToString(t.Text)
			}
			stack[len(stack)-1].el.CreateText(s)
		}
	}
}

func latin1ToUTF8(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(rune(c))
	}
	return sb.String()
}

// xmlText reports whether b is UTF-8 consisting only of characters allowed
// in XML 1.0 (no C0 controls other than TAB, LF, CR; no U+FFFE/U+FFFF).
func xmlText(b []byte) bool {
	for len(b) > 0 {
		c := b[0]
		if c < 0x80 {
			if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
				return false
			}
			b = b[1:]
			continue
		}
		r, n := utf8.DecodeRune(b)
		if r == utf8.RuneError && n <= 1 || r == 0xFFFE || r == 0xFFFF {
			return false
		}
		b = b[n:]
	}
	return true
}

// xmlName is a conservative check for an XML element name (ASCII subset of
// the Name production): letters, '_' or ':' first, then also digits, '-', '.'.
func xmlName(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for i, c := range b {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_', c == ':':
		case i > 0 && (c >= '0' && c <= '9' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return true
}

// FromXML encodes an element tree with lang's code pages.
//
//   - Elements are matched by local name; the namespace (xmlns, inherited,
//     compared case-insensitively) selects the page when the name exists on
//     several pages, else the first page defining it is used
//     (Language.LookupNS). An undefined name is an ErrUnknownTag error.
//   - Attributes other than namespace declarations are rejected (the OMA DM
//     languages define no attribute tokens).
//   - Character data is written as STR_I (OPAQUE if it contains NUL);
//     whitespace-only character data is dropped as ignorable, like libwbxml's
//     default. Comments and processing instructions are dropped.
//   - Elements without children or text are written as the bare tag.
//   - The header carries lang.PublicID, or the FPI in the string table when
//     the language has none (DDF); version is the WBXML version byte (0 →
//     DefaultVersion); charset UTF-8.
func FromXML(root *etree.Element, lang *Language, version byte) ([]byte, error) {
	if root == nil || lang == nil {
		return nil, &Error{Kind: ErrUnknownLanguage, Offset: -1, Msg: "nil root or language"}
	}
	if version > 0x03 {
		return nil, &Error{Kind: ErrUnsupportedVersion, Offset: -1, Msg: "unsupported WBXML version 0x" + hex2(version)}
	}
	e := NewEncoder(nil, Header{Version: version, PublicID: lang.PublicID, FPI: lang.FPI, Charset: CharsetUTF8})
	if err := fromXMLElement(e, root, lang, 0); err != nil {
		return nil, err
	}
	if err := e.Err(); err != nil {
		return nil, err
	}
	return e.Bytes(), nil
}

// EncodeElement writes el and its subtree as tokens into an encoder that is already inside
// a document (for markup carried inline, e.g. a DDF fragment inside SyncML Data), naming
// tags from lang's code pages as FromXML does.
func EncodeElement(e *Encoder, el *etree.Element, lang *Language) error {
	if err := fromXMLElement(e, el, lang, 0); err != nil {
		return err
	}
	return e.Err()
}

// maxXMLDepth keeps FromXML's recursion bounded like the decoder's default.
const maxXMLDepth = 1024

func fromXMLElement(e *Encoder, el *etree.Element, lang *Language, depth int) error {
	if depth > maxXMLDepth {
		return &Error{Kind: ErrTooDeep, Offset: -1, Msg: "element nesting deeper than " + strconv.Itoa(maxXMLDepth)}
	}
	page, tag, ok := lang.LookupNS(el.NamespaceURI(), el.Tag)
	if !ok {
		return &Error{Kind: ErrUnknownTag, Offset: -1, Msg: "element " + strconv.Quote(el.FullTag()) + " is not defined in " + lang.Title}
	}
	for _, a := range el.Attr {
		if a.Space == "xmlns" || (a.Space == "" && a.Key == "xmlns") {
			continue
		}
		return &Error{Kind: ErrBadToken, Offset: -1, Msg: "attribute " + strconv.Quote(a.FullKey()) + " on " + strconv.Quote(el.Tag) + " cannot be encoded"}
	}
	content := false
	for _, c := range el.Child {
		switch c := c.(type) {
		case *etree.Element:
			content = true
		case *etree.CharData:
			if !isXMLSpace(c.Data) {
				content = true
			}
		}
		if content {
			break
		}
	}
	e.Start(page, tag, content)
	if !content {
		return nil
	}
	for _, c := range el.Child {
		switch c := c.(type) {
		case *etree.Element:
			if err := fromXMLElement(e, c, lang, depth+1); err != nil {
				return err
			}
		case *etree.CharData:
			if !isXMLSpace(c.Data) {
				e.TextString(c.Data)
			}
		}
	}
	e.End()
	return nil
}

func isXMLSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\n', '\r':
		default:
			return false
		}
	}
	return true
}
