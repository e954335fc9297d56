package wbxml

import (
	"bytes"
	"strconv"
	"unicode/utf8"
)

// Global tokens, identical in every code page (WAP-192-WBXML §7.1,
// PROTOCOL.md §8.1).
const (
	tokSwitchPage = 0x00
	tokEnd        = 0x01
	tokEntity     = 0x02
	tokStrI       = 0x03
	tokLiteral    = 0x04
	tokExtI0      = 0x40
	tokExtI1      = 0x41
	tokExtI2      = 0x42
	tokPI         = 0x43
	tokLiteralC   = 0x44
	tokExtT0      = 0x80
	tokExtT1      = 0x81
	tokExtT2      = 0x82
	tokStrT       = 0x83
	tokLiteralA   = 0x84
	tokExt0       = 0xC0
	tokExt1       = 0xC1
	tokExt2       = 0xC2
	tokOpaque     = 0xC3
	tokLiteralAC  = 0xC4

	// Tag token flag bits (WAP-192-WBXML §5.8.2): bit 6 = element has
	// content, bit 7 = element has attributes; the low 6 bits are the tag.
	flagContent = 0x40
	flagAttrs   = 0x80
	tagMask     = 0x3F

	// LiteralTag is the Token.Tag value of elements whose name is given as a
	// string-table reference (LITERAL, LITERAL_C, LITERAL_A, LITERAL_AC);
	// the name is in Token.Literal.
	LiteralTag = tokLiteral
)

// Limits bounds the work a Decoder does for one document. A zero field
// selects the default. The input size itself is bounded by the caller (the
// HTTP layer), which is why there is no MaxInput.
type Limits struct {
	MaxDepth       int // maximum element nesting (default 64)
	MaxTokens      int // maximum body tokens, attributes and page switches included (default 1<<20)
	MaxStringTable int // maximum string-table length in bytes (default 1<<20)
}

// Defaults applied to zero (or negative) Limits fields.
const (
	DefaultMaxDepth       = 64
	DefaultMaxTokens      = 1 << 20
	DefaultMaxStringTable = 1 << 20
)

func (l Limits) withDefaults() Limits {
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	if l.MaxTokens <= 0 {
		l.MaxTokens = DefaultMaxTokens
	}
	if l.MaxStringTable <= 0 {
		l.MaxStringTable = DefaultMaxStringTable
	}
	return l
}

// Header is the WBXML document header (WAP-192-WBXML §5.4–5.7).
type Header struct {
	// Version is the raw version byte: 0x01 = 1.1, 0x02 = 1.2, 0x03 = 1.3.
	Version byte
	// PublicID is the numeric public identifier, or 0 when the document gives
	// it as a string-table index (PROTOCOL.md §8.1: the form AOSP and Samsung
	// clients send).
	PublicID uint32
	// FPI is the formal public identifier: the string from the string table
	// when PublicID is 0, else the well-known name of PublicID (empty if the
	// id is not well known).
	FPI string
	// Charset is the IANA MIBenum of the document character set (106 = UTF-8).
	Charset uint32
	// StringTable is the raw string table, a sub-slice of the input.
	StringTable []byte
}

// Kind is the kind of a Token.
type Kind uint8

// Token kinds.
const (
	KindEOF Kind = iota
	KindStart
	KindEnd
	KindText
	KindOpaque
)

var kindNames = [...]string{"EOF", "Start", "End", "Text", "Opaque"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// Token is one decoded event. Its slices alias the input (or, for text that
// came from an ENTITY, a buffer inside the Decoder that is overwritten by the
// next ENTITY); copy them if they must outlive the input or the next call.
type Token struct {
	Kind Kind
	// Page is the tag code page of the element (KindStart, KindEnd).
	Page byte
	// Tag is the tag token without the content/attribute flag bits
	// (KindStart, KindEnd); LiteralTag for string-table named tags.
	Tag byte
	// Literal is the element name of a LITERAL* tag, from the string table.
	Literal []byte
	// Text is the string (KindText: STR_I without terminator, STR_T resolved
	// in the string table, ENTITY as UTF-8) or the opaque bytes (KindOpaque).
	Text []byte
	// Offset is the byte offset of the token in the input.
	Offset int
}

// frame is an open element. It is kept small and free of pointers (the
// literal name is an offset into the string table) because it is written for
// every element on the hot path.
type frame struct {
	litOff uint32 // LITERAL* name: offset and length in the string table
	litLen uint32
	page   byte
	tag    byte
}

const (
	stProlog = iota // before the root element (PIs and SWITCH_PAGE allowed)
	stBody          // inside the root element
	stEpilog        // root closed; only PIs may follow
)

// Decoder is a streaming WBXML token reader. It is not safe for concurrent
// use. The zero value is not usable; call NewDecoder or Reset.
type Decoder struct {
	in    []byte
	pos   int
	lim   Limits
	hdr   Header
	stack []frame
	ntok  int
	page  byte
	state uint8
	pend  bool  // a synthesized KindEnd for a content-less tag is due
	pendT Token // that KindEnd
	err   error // sticky
	ent   [utf8.UTFMax]byte
}

// NewDecoder parses the header of b and returns a Decoder positioned at the
// first body token.
func NewDecoder(b []byte, lim Limits) (*Decoder, error) {
	d := &Decoder{}
	if err := d.Reset(b, lim); err != nil {
		return nil, err
	}
	return d, nil
}

// Reset makes d decode b from the start, reusing its internal storage: after
// the first document of a given depth, Reset and Next allocate nothing (the
// only exception is an FPI string-table public id that is not one of the
// well-known FPIs, which is copied into Header.FPI).
func (d *Decoder) Reset(b []byte, lim Limits) error {
	stack := d.stack[:0]
	*d = Decoder{in: b, lim: lim.withDefaults(), stack: stack}
	if err := d.readHeader(); err != nil {
		d.err = err
		return err
	}
	return nil
}

// Header returns the parsed document header.
func (d *Decoder) Header() Header { return d.hdr }

// Depth returns the number of currently open elements (a content-less
// element counts as open between its KindStart and its synthesized KindEnd).
func (d *Decoder) Depth() int {
	if d.pend {
		return len(d.stack) + 1
	}
	return len(d.stack)
}

func (d *Decoder) fail(kind ErrKind, off int, msg string) error {
	e := &Error{Kind: kind, Offset: off, Msg: msg}
	d.err = e
	return e
}

// mbUint32 reads a WBXML multi-byte integer (WAP-192-WBXML §5.1): big-endian
// groups of 7 bits, continuation in bit 7. At most 5 bytes are accepted and
// the value must fit in 32 bits, so the loop is bounded regardless of input.
func (d *Decoder) mbUint32() (uint32, error) {
	start := d.pos
	var v uint32
	for i := 0; i < 5; i++ {
		if d.pos >= len(d.in) {
			return 0, d.fail(ErrTruncated, start, "truncated mb_u_int32")
		}
		c := d.in[d.pos]
		d.pos++
		if v > 0x1FFFFFF { // v<<7 would lose bits
			return 0, d.fail(ErrBadInteger, start, "mb_u_int32 overflows 32 bits")
		}
		v = v<<7 | uint32(c&0x7F)
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, d.fail(ErrBadInteger, start, "mb_u_int32 longer than 5 bytes")
}

// Charsets whose code units are wider than a byte; WBXML strings are
// NUL-terminated byte strings (WAP-192-WBXML §5.8.4.1) so these cannot be
// parsed with the single-byte terminator rule.
func wideCharset(cs uint32) bool {
	switch cs {
	case 1013, 1014, 1015, // UTF-16BE, UTF-16LE, UTF-16
		1017, 1018, 1019, // UTF-32, UTF-32BE, UTF-32LE
		1000, 1001: // ISO-10646-UCS-2, ISO-10646-UCS-4
		return true
	}
	return false
}

// readHeader parses version, publicid, charset and strtbl
// (WAP-192-WBXML §5.3–5.7).
func (d *Decoder) readHeader() error {
	if len(d.in) == 0 {
		return d.fail(ErrTruncated, 0, "empty document")
	}
	v := d.in[0]
	d.pos = 1
	// Version 0x00 (WBXML 1.0) has no charset field; >0x03 is unknown.
	if v < 0x01 || v > 0x03 {
		return d.fail(ErrUnsupportedVersion, 0, "unsupported WBXML version 0x"+hex2(v))
	}
	d.hdr.Version = v

	// publicid = mb_u_int32 | ( zero index ) (§5.5).
	if d.pos >= len(d.in) {
		return d.fail(ErrTruncated, d.pos, "truncated header")
	}
	pidIndex := false
	var pidOff int
	var idx uint32
	if d.in[d.pos] == 0 {
		d.pos++
		pidOff = d.pos
		var err error
		if idx, err = d.mbUint32(); err != nil {
			return err
		}
		pidIndex = true
	} else {
		pid, err := d.mbUint32()
		if err != nil {
			return err
		}
		d.hdr.PublicID = pid
	}

	csOff := d.pos
	cs, err := d.mbUint32()
	if err != nil {
		return err
	}
	if wideCharset(cs) {
		return d.fail(ErrBadHeader, csOff, "unsupported charset "+strconv.FormatUint(uint64(cs), 10))
	}
	d.hdr.Charset = cs

	stOff := d.pos
	n, err := d.mbUint32()
	if err != nil {
		return err
	}
	if uint64(n) > uint64(d.lim.MaxStringTable) {
		return d.fail(ErrTooLarge, stOff, "string table length "+strconv.FormatUint(uint64(n), 10)+" exceeds limit")
	}
	if uint64(n) > uint64(len(d.in)-d.pos) {
		return d.fail(ErrTruncated, stOff, "string table length "+strconv.FormatUint(uint64(n), 10)+" exceeds input")
	}
	d.hdr.StringTable = d.in[d.pos : d.pos+int(n) : d.pos+int(n)]
	d.pos += int(n)

	if pidIndex {
		st := d.hdr.StringTable
		if uint64(idx) >= uint64(len(st)) {
			return d.fail(ErrBadStringRef, pidOff, "public id string index out of range")
		}
		s := st[idx:]
		// Lenient on purpose: AOSP/Samsung write the 29-byte FPI as the whole
		// table without a terminator (PROTOCOL.md §8.1), so the FPI runs to
		// the first NUL or to the end of the table.
		if i := bytes.IndexByte(s, 0); i >= 0 {
			s = s[:i]
		}
		d.hdr.FPI = internFPI(s)
	} else {
		d.hdr.FPI = PublicIDName(d.hdr.PublicID)
	}
	return nil
}

func hex2(b byte) string {
	const digits = "0123456789ABCDEF"
	return string([]byte{digits[b>>4], digits[b&15]})
}

// str reads a NUL-terminated inline string starting at d.pos and returns it
// without the terminator (WAP-192-WBXML §5.8.4.1).
func (d *Decoder) str(off int) ([]byte, error) {
	rest := d.in[d.pos:]
	i := bytes.IndexByte(rest, 0)
	if i < 0 {
		return nil, d.fail(ErrTruncated, off, "inline string not terminated")
	}
	s := rest[:i:i]
	d.pos += i + 1
	return s, nil
}

// strRef reads an mb_u_int32 string-table offset and resolves it
// (WAP-192-WBXML §5.7, §5.8.4.1). The string must start inside the table and
// be NUL-terminated inside it.
func (d *Decoder) strRef() ([]byte, uint32, error) {
	off := d.pos
	idx, err := d.mbUint32()
	if err != nil {
		return nil, 0, err
	}
	st := d.hdr.StringTable
	if uint64(idx) >= uint64(len(st)) {
		return nil, 0, d.fail(ErrBadStringRef, off, "string table offset "+strconv.FormatUint(uint64(idx), 10)+" out of range")
	}
	s := st[idx:]
	i := bytes.IndexByte(s, 0)
	if i < 0 {
		return nil, 0, d.fail(ErrBadStringRef, off, "string table entry not terminated")
	}
	return s[:i:i], idx, nil
}

// opaque reads an mb_u_int32 length and that many bytes (WAP-192-WBXML
// §5.8.4.6). The length is compared with the remaining input before any
// slicing, so a huge declared length costs nothing.
func (d *Decoder) opaque(off int) ([]byte, error) {
	n, err := d.mbUint32()
	if err != nil {
		return nil, err
	}
	if uint64(n) > uint64(len(d.in)-d.pos) {
		return nil, d.fail(ErrTruncated, off, "opaque length "+strconv.FormatUint(uint64(n), 10)+" exceeds input")
	}
	b := d.in[d.pos : d.pos+int(n) : d.pos+int(n)]
	d.pos += int(n)
	return b, nil
}

// entity reads ENTITY's mb_u_int32 code point (WAP-192-WBXML §5.8.4.3) and
// encodes it as UTF-8 into d.ent. Code points that are not XML characters
// (NUL, surrogates, beyond U+10FFFF) are rejected: they cannot appear in the
// equivalent XML document.
func (d *Decoder) entity(off int) ([]byte, error) {
	cp, err := d.mbUint32()
	if err != nil {
		return nil, err
	}
	if cp == 0 || cp > utf8.MaxRune || (cp >= 0xD800 && cp <= 0xDFFF) {
		return nil, d.fail(ErrBadToken, off, "invalid ENTITY code point "+strconv.FormatUint(uint64(cp), 10))
	}
	n := utf8.EncodeRune(d.ent[:], rune(cp))
	return d.ent[:n:n], nil
}

func (d *Decoder) countToken(off int) error {
	d.ntok++
	if d.ntok > d.lim.MaxTokens {
		return d.fail(ErrTooManyTokens, off, "more than "+strconv.Itoa(d.lim.MaxTokens)+" tokens")
	}
	return nil
}

// skipAttrs consumes an attribute list or a PI body up to and including its
// END (WAP-192-WBXML §5.8.3: attribute = attrStart *attrValue; §5.3: a PI
// is PI attrStart *attrValue END). Attributes carry nothing in the OMA DM
// languages, so they are validated and dropped. SWITCH_PAGE here switches the
// attribute code page, which is separate from the tag code page (§5.8.1), so
// it must not touch d.page.
func (d *Decoder) skipAttrs() error {
	for {
		if d.pos >= len(d.in) {
			return d.fail(ErrTruncated, d.pos, "truncated attribute list")
		}
		off := d.pos
		b := d.in[off]
		d.pos++
		if err := d.countToken(off); err != nil {
			return err
		}
		switch b {
		case tokEnd:
			return nil
		case tokSwitchPage:
			if d.pos >= len(d.in) {
				return d.fail(ErrTruncated, off, "truncated SWITCH_PAGE")
			}
			d.pos++
		case tokStrI, tokExtI0, tokExtI1, tokExtI2:
			if _, err := d.str(off); err != nil {
				return err
			}
		case tokStrT, tokLiteral:
			if _, _, err := d.strRef(); err != nil {
				return err
			}
		case tokEntity:
			if _, err := d.entity(off); err != nil {
				return err
			}
		case tokExtT0, tokExtT1, tokExtT2:
			if _, err := d.mbUint32(); err != nil {
				return err
			}
		case tokExt0, tokExt1, tokExt2:
			// no payload
		case tokOpaque:
			if _, err := d.opaque(off); err != nil {
				return err
			}
		case tokPI, tokLiteralC, tokLiteralA, tokLiteralAC:
			return d.fail(ErrBadToken, off, "token 0x"+hex2(b)+" not allowed in attribute list")
		default:
			// attrStart (< 0x80) or attrValue (>= 0x80) from the
			// attribute code page: a single byte each.
		}
	}
}

// Next returns the next token. At the end of a well-formed document it
// returns a KindEOF token (repeatedly). After an error every call returns
// the same error.
//
// EXT_I_n, EXT_T_n and EXT_n tokens (WAP-192-WBXML §5.8.4.2) are validated
// and skipped: their meaning is defined per language and none of the OMA DM
// languages defines any, so reporting them as text would invent content.
// PIs are skipped likewise.
//
// Hot loops should prefer NextInto: Token is too large to be returned in
// registers, and copying it out of the return slot right after it was
// written field by field costs a store-forwarding stall (measured: ~12 ns
// per token with Next vs ~6 ns with NextInto).
func (d *Decoder) Next() (Token, error) {
	var t Token
	err := d.NextInto(&t)
	return t, err
}

// NextInto is Next writing the token into *t, overwriting every field; *t
// is unspecified after an error.
func (d *Decoder) NextInto(t *Token) error {
	if d.err != nil {
		return d.err
	}
	if d.pend {
		d.pend = false
		if len(d.stack) == 0 {
			d.state = stEpilog
		}
		p := &d.pendT
		t.set(p.Kind, p.Page, p.Tag, p.Literal, nil, p.Offset)
		return nil
	}
	for {
		off := d.pos
		if off >= len(d.in) {
			switch {
			case d.state == stEpilog:
				t.set(KindEOF, 0, 0, nil, nil, off)
				return nil
			case d.state == stProlog:
				return d.fail(ErrTruncated, off, "no root element")
			default:
				return d.fail(ErrTruncated, off, strconv.Itoa(len(d.stack))+" element(s) still open at end of input")
			}
		}
		b := d.in[off]
		d.pos++
		d.ntok++
		if d.ntok > d.lim.MaxTokens {
			return d.fail(ErrTooManyTokens, off, "more than "+strconv.Itoa(d.lim.MaxTokens)+" tokens")
		}
		if d.state == stEpilog && b != tokPI {
			return d.fail(ErrTrailingData, off, "data after the root element")
		}
		switch b {
		case tokSwitchPage:
			// The page byte applies to all following tags (WAP-192-WBXML
			// §5.8.1, code pages); END does not restore it (PROTOCOL.md §8.1).
			if d.pos >= len(d.in) {
				return d.fail(ErrTruncated, off, "truncated SWITCH_PAGE")
			}
			d.page = d.in[d.pos]
			d.pos++
		case tokEnd:
			n := len(d.stack)
			if n == 0 {
				return d.fail(ErrUnbalanced, off, "END without open element")
			}
			f := &d.stack[n-1]
			var lit []byte
			if f.tag == LiteralTag {
				lit = d.hdr.StringTable[f.litOff : f.litOff+f.litLen : f.litOff+f.litLen]
			}
			t.set(KindEnd, f.page, f.tag, lit, nil, off)
			d.stack = d.stack[:n-1]
			if n == 1 {
				d.state = stEpilog
			}
			return nil
		case tokStrI:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "text outside the root element")
			}
			s, err := d.str(off)
			if err != nil {
				return err
			}
			t.set(KindText, 0, 0, nil, s, off)
			return nil
		case tokStrT:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "text outside the root element")
			}
			s, _, err := d.strRef()
			if err != nil {
				return err
			}
			t.set(KindText, 0, 0, nil, s, off)
			return nil
		case tokOpaque:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "opaque data outside the root element")
			}
			s, err := d.opaque(off)
			if err != nil {
				return err
			}
			t.set(KindOpaque, 0, 0, nil, s, off)
			return nil
		case tokEntity:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "entity outside the root element")
			}
			s, err := d.entity(off)
			if err != nil {
				return err
			}
			t.set(KindText, 0, 0, nil, s, off)
			return nil
		case tokPI:
			if err := d.skipAttrs(); err != nil {
				return err
			}
		case tokExtI0, tokExtI1, tokExtI2:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "extension token outside the root element")
			}
			if _, err := d.str(off); err != nil {
				return err
			}
		case tokExtT0, tokExtT1, tokExtT2:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "extension token outside the root element")
			}
			if _, err := d.mbUint32(); err != nil {
				return err
			}
		case tokExt0, tokExt1, tokExt2:
			if d.state != stBody {
				return d.fail(ErrBadToken, off, "extension token outside the root element")
			}
		default:
			// A tag (WAP-192-WBXML §5.8.2). Tokens and frames are written
			// field by field in place rather than built and copied: copying
			// a freshly byte-stored struct costs a store-forwarding stall,
			// which was a measurable share of the per-token time.
			if len(d.stack) >= d.lim.MaxDepth {
				return d.fail(ErrTooDeep, off, "nesting deeper than "+strconv.Itoa(d.lim.MaxDepth))
			}
			var lit []byte
			var litOff uint32
			if b&tagMask == tokLiteral || b&flagAttrs != 0 {
				var err error
				if lit, litOff, err = d.tagExtras(b); err != nil {
					return err
				}
			}
			page, tag := d.page, b&tagMask
			t.set(KindStart, page, tag, lit, nil, off)
			d.state = stBody
			if b&flagContent != 0 {
				n := len(d.stack)
				if n < cap(d.stack) {
					d.stack = d.stack[:n+1]
				} else {
					d.stack = append(d.stack, frame{})
				}
				f := &d.stack[n]
				f.litOff, f.litLen = litOff, uint32(len(lit))
				f.page, f.tag = page, tag
			} else {
				// Emit a balanced pair for empty elements (<Final/> = 0x12).
				d.pend = true
				d.pendT.set(KindEnd, page, tag, lit, nil, off)
			}
			return nil
		}
	}
}

func (t *Token) set(k Kind, page, tag byte, lit, text []byte, off int) {
	t.Kind = k
	t.Page = page
	t.Tag = tag
	t.Literal = lit
	t.Text = text
	t.Offset = off
}

// tagExtras reads what follows a LITERAL* tag (its string-table name) and/or
// skips its attribute list (WAP-192-WBXML §5.8.2, §5.8.3).
func (d *Decoder) tagExtras(b byte) (lit []byte, litOff uint32, err error) {
	if b&tagMask == tokLiteral {
		if lit, litOff, err = d.strRef(); err != nil {
			return nil, 0, err
		}
	}
	if b&flagAttrs != 0 {
		if err = d.skipAttrs(); err != nil {
			return nil, 0, err
		}
	}
	return lit, litOff, nil
}

// Skip consumes the rest of the innermost open element, up to and including
// its KindEnd. Called right after a KindStart it skips that whole element.
func (d *Decoder) Skip() error {
	var t Token
	if d.pend {
		return d.NextInto(&t)
	}
	target := len(d.stack) - 1
	if target < 0 {
		return nil
	}
	for {
		if err := d.NextInto(&t); err != nil {
			return err
		}
		if t.Kind == KindEnd && len(d.stack) == target {
			return nil
		}
	}
}
