package syncml

import (
	"errors"
	"strings"
	"unsafe"

	"github.com/beevik/etree"

	"github.com/dmgrid/dmgrid/pkg/wbxml"
)

// WBXML glue: the generic token codec lives in pkg/wbxml; this file maps its tokens onto the
// same intermediate tree the XML decoder builds (code page 0 = SyncML, 1 = MetInf,
// PROTOCOL.md §8) and writes the model through the wbxml encoder.

// WBXMLOptions control the WBXML encoder.
type WBXMLOptions struct {
	// Version is the WBXML version byte: 0x01–0x03 (default 0x02, WBXML 1.2).
	Version byte
	// FPIInStringTable sends the public identifier as a string-table reference holding
	// "-//SYNCML//DTD SyncML 1.2//EN" instead of the numeric 0x1201, as AOSP and Samsung
	// clients do (PROTOCOL.md §8.1). Replies may mirror what the client sent.
	FPIInStringTable bool
}

// DecodeWBXML decodes a WBXML SyncML message.
func DecodeWBXML(b []byte, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	if err := checkSize(b, lim); err != nil {
		return nil, err
	}
	t := treePool.Get().(*tree)
	defer putTree(t)
	t.reset(len(b)/8 + 16)
	src := string(b)
	// Tokens are sub-slices of the decoder's input; decoding from the private copy lets text
	// become substrings of src without a copy per token.
	in := unsafe.Slice(unsafe.StringData(src), len(src))
	if err := decodeWBXMLTree(in, src, lim, t); err != nil {
		return nil, err
	}
	m, err := (&builder{t: t}).message()
	if err != nil {
		return nil, err
	}
	if err := expandEmbedded(m.Body.Commands, nil, lim); err != nil {
		return nil, err
	}
	return m, nil
}

func putTree(t *tree) {
	clear(t.nodes)
	treePool.Put(t)
}

func wbxmlErr(err error) error {
	var we *wbxml.Error
	if !errors.As(err, &we) {
		return errAt(ErrMalformed, -1, "%v", err)
	}
	c := ErrMalformed
	switch we.Kind {
	case wbxml.ErrTruncated:
		c = ErrTruncated
	case wbxml.ErrTooDeep:
		c = ErrTooDeep
	case wbxml.ErrTooManyTokens:
		c = ErrTooManyElements
	}
	return &Error{Code: c, Offset: we.Offset, Msg: we.Msg}
}

type wbFrame struct {
	node  int32 // tree node, or -1
	page  byte
	inRaw bool
}

func decodeWBXMLTree(in []byte, src string, lim Limits, t *tree) error {
	d, err := wbxml.NewDecoder(in, wbxml.Limits{MaxDepth: lim.MaxDepth, MaxTokens: 8 * lim.MaxElements})
	if err != nil {
		return wbxmlErr(err)
	}
	if lang := wbxml.LanguageFor(d.Header()); lang != nil && lang != wbxml.SyncML12 && lang != wbxml.SyncML11 {
		return errAt(ErrNotSyncML, 0, "WBXML document is %s, not SyncML", lang.Title)
	}
	// str turns a token's bytes into a substring of src when they lie inside the input
	// (inline strings, string-table strings, opaque data) and copies them otherwise.
	base := uintptr(unsafe.Pointer(unsafe.SliceData(in)))
	str := func(b []byte) string {
		if len(b) == 0 {
			return ""
		}
		p := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if p >= base && p+uintptr(len(b)) <= base+uintptr(len(in)) {
			off := int(p - base)
			return src[off : off+len(b)]
		}
		return string(b)
	}

	stack := make([]wbFrame, 0, 16)
	var raw *rawXML // markup of Data element content given as tokens instead of OPAQUE
	rawDepth := 0
	elements := 0
	var tok wbxml.Token
	for {
		if err := d.NextInto(&tok); err != nil {
			return wbxmlErr(err)
		}
		switch tok.Kind {
		case wbxml.KindEOF:
			if len(t.nodes) == 0 {
				return errAt(ErrTruncated, len(in), "no root element")
			}
			return nil
		case wbxml.KindStart:
			elements++
			if elements > lim.MaxElements {
				return errAt(ErrTooManyElements, tok.Offset, "more than %d elements", lim.MaxElements)
			}
			if rawDepth > 0 {
				if tok.Literal != nil || wbxml.SyncML12.Name(tok.Page, tok.Tag) == "" {
					return errAt(ErrMalformed, tok.Offset, "undefined tag 0x%02x on page %d inside Data", tok.Tag, tok.Page)
				}
				raw.start(tok)
				stack = append(stack, wbFrame{node: -1, page: tok.Page, inRaw: true})
				continue
			}
			tg := tagUnknown
			if tok.Page <= pageMetInf && tok.Literal == nil {
				tg = tag(uint16(tok.Page)<<8 | uint16(tok.Tag))
				if _, known := tagNames[tg]; !known {
					tg = tagUnknown
				}
			}
			fr := wbFrame{node: -1, page: tok.Page}
			switch {
			case len(stack) == 0:
				fr.node = t.add(-1, tg, tok.Offset)
			case stack[len(stack)-1].node >= 0 && tg != tagUnknown:
				fr.node = t.add(stack[len(stack)-1].node, tg, tok.Offset)
			}
			stack = append(stack, fr)
			if fr.node >= 0 && tg == tagData {
				rawDepth = len(stack)
				if raw == nil {
					raw = &rawXML{}
				}
				raw.reset()
			}
		case wbxml.KindEnd:
			n := len(stack)
			if n == 0 {
				return errAt(ErrMalformed, tok.Offset, "END without element")
			}
			fr := stack[n-1]
			stack = stack[:n-1]
			if fr.inRaw {
				raw.end(tok)
				continue
			}
			if rawDepth == n {
				rawDepth = 0
				if raw.used {
					nd := &t.nodes[fr.node]
					nd.text = raw.String()
					nd.flags = nd.flags&^nfOpaque | nfXML
				}
			}
			if fr.node >= 0 {
				t.finish(fr.node)
			}
		case wbxml.KindText, wbxml.KindOpaque:
			n := len(stack)
			if n == 0 {
				return errAt(ErrMalformed, tok.Offset, "text outside the root element")
			}
			fr := stack[n-1]
			if fr.inRaw {
				if !raw.text(tok.Text) {
					return errAt(ErrMalformed, tok.Offset, "text inside embedded markup is not XML character data")
				}
				continue
			}
			if fr.node < 0 {
				continue
			}
			s := str(tok.Text)
			if tok.Kind == wbxml.KindOpaque {
				t.nodes[fr.node].flags |= nfOpaque
				// Opaque content is data, never ignorable white space.
				nd := &t.nodes[fr.node]
				nd.text += s
				continue
			}
			// WBXML strings carry no formatting white space, so they are kept as sent.
			t.appendText(fr.node, s, true)
		}
	}
}

// rawXML renders tokens found inside a WBXML Data element (an inline DevInf or DDF tree,
// PROTOCOL.md §8.5) as XML markup, naming elements from the SyncML 1.2 language tables and
// declaring a page's namespace where it changes.
type rawXML struct {
	b     strings.Builder
	pages []byte
	open  bool // last start tag not yet closed with '>'
	used  bool
}

func (r *rawXML) reset() {
	r.b.Reset()
	r.pages = r.pages[:0]
	r.open = false
	r.used = false
}

func (r *rawXML) closeStart() {
	if r.open {
		r.b.WriteByte('>')
		r.open = false
	}
}

func (r *rawXML) start(tok wbxml.Token) {
	r.used = true
	r.closeStart()
	name := wbxml.SyncML12.Name(tok.Page, tok.Tag)
	r.b.WriteByte('<')
	r.b.WriteString(name)
	if len(r.pages) == 0 || r.pages[len(r.pages)-1] != tok.Page {
		if ns := wbxml.SyncML12.Namespace(tok.Page); ns != "" {
			r.b.WriteString(` xmlns="`)
			r.b.WriteString(ns)
			r.b.WriteByte('"')
		}
	}
	r.pages = append(r.pages, tok.Page)
	r.open = true
}

func (r *rawXML) end(tok wbxml.Token) {
	name := wbxml.SyncML12.Name(tok.Page, tok.Tag)
	if r.open {
		r.b.WriteString("/>")
		r.open = false
	} else {
		r.b.WriteString("</")
		r.b.WriteString(name)
		r.b.WriteByte('>')
	}
	if len(r.pages) > 0 {
		r.pages = r.pages[:len(r.pages)-1]
	}
}

// text adds character data; white space alone is ignorable between embedded elements (the
// encoder drops it too, keeping decode→encode→decode stable).
func (r *rawXML) text(b []byte) bool {
	s := string(b)
	if isSpace(s) {
		return true
	}
	if _, ok := xmlSafe(s); !ok {
		return false
	}
	r.closeStart()
	r.b.Write(appendEscaped(nil, s))
	return true
}

func (r *rawXML) String() string { r.closeStart(); return r.b.String() }

// expandEmbedded turns OPAQUE Data that holds a whole WBXML document (DevInf, DDF) into
// markup when the data is declared as XML (Meta Format xml), so callers see the same model
// from both encodings (PROTOCOL.md §8.6).
func expandEmbedded(cmds []Command, parent *Meta, lim Limits) error {
	for i := range cmds {
		c := &cmds[i]
		cm := c.Meta
		if cm == nil {
			cm = parent
		}
		if err := expandEmbedded(c.Commands, cm, lim); err != nil {
			return err
		}
		for j := range c.Items {
			it := &c.Items[j]
			if it.Data == nil || it.Data.Kind != DataOpaque || len(it.Data.Value) < 4 {
				continue
			}
			format := ""
			if it.Meta != nil {
				format = it.Meta.Format
			}
			if format == "" && cm != nil {
				format = cm.Format
			}
			if !strings.EqualFold(format, "xml") || it.Data.Value[0] < 1 || it.Data.Value[0] > 3 {
				continue
			}
			doc, lang, err := wbxml.ToXML([]byte(it.Data.Value), wbxml.Limits{MaxDepth: lim.MaxDepth, MaxTokens: 8 * lim.MaxElements})
			if err != nil || lang == nil {
				continue // not an embedded document after all: keep the bytes
			}
			doc.Indent(etree.NoIndent)
			s, err := doc.WriteToString()
			if err != nil {
				continue
			}
			it.Data.Value = stripXMLDecl(s)
			it.Data.Kind = DataXML
		}
	}
	return nil
}

func stripXMLDecl(s string) string {
	s = strings.TrimSpace(s)
	if strings.HasPrefix(s, "<?xml") {
		if i := strings.Index(s, "?>"); i >= 0 {
			s = strings.TrimSpace(s[i+2:])
		}
	}
	return s
}

type wbxmlWriter struct {
	e       *wbxml.Encoder
	version byte
}

func (w *wbxmlWriter) open(t tag)  { w.e.Start(t.page(), t.token(), true) }
func (w *wbxmlWriter) close(t tag) { w.e.End() }
func (w *wbxmlWriter) flag(t tag)  { w.e.Start(t.page(), t.token(), false) }

func (w *wbxmlWriter) leaf(t tag, s string) {
	if s == "" {
		w.e.Start(t.page(), t.token(), false)
		return
	}
	w.e.Start(t.page(), t.token(), true)
	w.e.TextString(s)
	w.e.End()
}

// data writes the Item/Data of Add and Replace as OPAQUE (as libwbxml does; binary-safe),
// binary data anywhere as OPAQUE, and other text (item data of other commands, status and
// alert codes, credentials) as inline strings. Embedded DevInf and DDF
// documents become nested WBXML documents in OPAQUE (PROTOCOL.md §8.6).
func (w *wbxmlWriter) data(d *Data, opaque bool) error {
	if d.Value == "" {
		w.e.Start(pageSyncML, tagData.token(), false)
		return nil
	}
	w.e.Start(pageSyncML, tagData.token(), true)
	switch {
	case d.Kind == DataXML:
		if doc := embeddedWBXML(d.Value, w.version); doc != nil {
			w.e.Opaque(doc)
		} else if !inlineMarkup(w.e, d.Value) {
			// Markup outside the SyncML/MetInf/DDF vocabularies has no tokens: it travels
			// as OPAQUE text (and is read back as opaque data).
			w.e.OpaqueString(d.Value)
		}
	case opaque || d.Kind == DataOpaque:
		w.e.OpaqueString(d.Value)
	default:
		w.e.TextString(d.Value)
	}
	w.e.End()
	return nil
}

// inlineMarkup writes a markup fragment as tokens of the SyncML 1.2 code pages (how inline
// DDF or SyncML elements inside Data arrive from some clients). It writes nothing and returns
// false when a name has no token, so the caller can fall back to OPAQUE.
func inlineMarkup(e *wbxml.Encoder, markup string) bool {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(markup); err != nil {
		return false
	}
	for _, c := range doc.Child {
		switch c := c.(type) {
		case *etree.Element:
			if _, _, ok := wbxml.SyncML12.LookupNS(c.NamespaceURI(), c.Tag); !ok {
				return false
			}
		case *etree.CharData:
			if !isSpace(c.Data) {
				return false
			}
		}
	}
	var probe wbxml.Encoder
	for _, c := range doc.ChildElements() {
		probe.Reset(nil, wbxml.Header{})
		if wbxml.EncodeElement(&probe, c, wbxml.SyncML12) != nil {
			return false
		}
	}
	for _, c := range doc.ChildElements() {
		if wbxml.EncodeElement(e, c, wbxml.SyncML12) != nil {
			return false
		}
	}
	return true
}

// embeddedWBXML encodes markup whose root is a DevInf or DDF MgmtTree document; other
// markup returns nil and travels as text.
func embeddedWBXML(markup string, version byte) []byte {
	doc := etree.NewDocument()
	if err := doc.ReadFromString(markup); err != nil {
		return nil
	}
	root := doc.Root()
	if root == nil {
		return nil
	}
	var lang *wbxml.Language
	switch root.Tag {
	case "DevInf":
		lang = wbxml.DevInf12
	case "MgmtTree":
		lang = wbxml.DDF12
	default:
		return nil
	}
	b, err := wbxml.FromXML(root, lang, version)
	if err != nil {
		return nil
	}
	return b
}

// AppendWBXML appends the WBXML encoding of m to dst.
func AppendWBXML(dst []byte, m *Message, opt WBXMLOptions) ([]byte, error) {
	if opt.Version == 0 {
		opt.Version = 0x02
	}
	if opt.Version > 0x03 {
		return dst, errAt(ErrUnrepresentable, -1, "WBXML version 0x%02x", opt.Version)
	}
	lang := wbxml.SyncML12
	if m.Header.VerDTD == "1.1" {
		lang = wbxml.SyncML11
	}
	h := wbxml.Header{Version: opt.Version, PublicID: lang.PublicID, Charset: 0x6A}
	if opt.FPIInStringTable {
		h.PublicID = 0
		h.FPI = lang.FPI
	}
	w := &wbxmlWriter{e: wbxml.NewEncoder(dst, h), version: opt.Version}
	if err := (&walker{w: w}).message(m); err != nil {
		return dst, err
	}
	return w.e.Bytes(), nil
}
