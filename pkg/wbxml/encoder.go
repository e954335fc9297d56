package wbxml

import (
	"bytes"
	"strings"
)

// DefaultVersion is the WBXML version byte written when Header.Version is 0:
// 1.2, what the SyncML RTK and the libwbxml "-v 1.2" vectors use (any 1.x is
// acceptable to DM peers, PROTOCOL.md §8.1).
const DefaultVersion = 0x02

// CharsetUTF8 is the IANA MIBenum of UTF-8, the default charset.
const CharsetUTF8 = 0x6A

// Encoder appends a WBXML document to a byte slice. It never fails on I/O;
// misuse (tag out of range, End without Start) is recorded and reported by
// Err. Elements opened with content=false are complete: do not call End.
type Encoder struct {
	buf   []byte
	page  byte
	depth int
	err   error
}

// NewEncoder starts a document by appending the header to dst
// (WAP-192-WBXML §5.3–5.7):
//   - version: h.Version, or DefaultVersion when 0;
//   - public id: h.PublicID when non-zero; else, when h.FPI != "", the form
//     00 + index 0 with the FPI at offset 0 of the string table
//     (PROTOCOL.md §8.1); else 0x01 (unknown);
//   - charset: h.Charset, or UTF-8 (0x6A) when 0;
//   - string table: h.StringTable. In the FPI form, a table that already
//     starts with the FPI is written unchanged (so decoded headers round-trip
//     byte for byte); otherwise the FPI and a NUL are put in front of it.
func NewEncoder(dst []byte, h Header) *Encoder {
	e := &Encoder{}
	e.Reset(dst, h)
	return e
}

// Reset discards the encoder state and starts a new document appended to dst.
func (e *Encoder) Reset(dst []byte, h Header) {
	*e = Encoder{buf: dst}
	v := h.Version
	if v == 0 {
		v = DefaultVersion
	}
	e.buf = append(e.buf, v)
	st := h.StringTable
	prefixFPI := false
	switch {
	case h.PublicID != 0:
		e.buf = appendMB(e.buf, h.PublicID)
	case h.FPI != "":
		e.buf = append(e.buf, 0x00, 0x00) // zero, index 0 (§5.5)
		n := len(h.FPI)
		prefixFPI = !(len(st) >= n && string(st[:n]) == h.FPI &&
			(len(st) == n || st[n] == 0))
	default:
		e.buf = append(e.buf, byte(PublicIDUnknown))
	}
	cs := h.Charset
	if cs == 0 {
		cs = CharsetUTF8
	}
	e.buf = appendMB(e.buf, cs)
	if prefixFPI {
		e.buf = appendMB(e.buf, uint32(len(h.FPI)+1+len(st)))
		e.buf = append(e.buf, h.FPI...)
		e.buf = append(e.buf, 0)
	} else {
		e.buf = appendMB(e.buf, uint32(len(st)))
	}
	e.buf = append(e.buf, st...)
}

// appendMB appends v as an mb_u_int32 (WAP-192-WBXML §5.1).
func appendMB(b []byte, v uint32) []byte {
	var tmp [5]byte
	i := len(tmp) - 1
	tmp[i] = byte(v & 0x7F)
	for v >>= 7; v != 0; v >>= 7 {
		i--
		tmp[i] = byte(v&0x7F) | 0x80
	}
	return append(b, tmp[i:]...)
}

func (e *Encoder) setErr(kind ErrKind, msg string) {
	if e.err == nil {
		e.err = &Error{Kind: kind, Offset: -1, Msg: msg}
	}
}

// Start writes a tag. A SWITCH_PAGE is written only when page differs from
// the current tag page; END never switches back, exactly like libwbxml
// (PROTOCOL.md §8.1), so output matches its byte layout. With content=false
// the bare token is written (libwbxml writes <Final/> as 0x12) and the
// element is complete; with content=true the 0x40 flag is set and a matching
// End must follow.
func (e *Encoder) Start(page, tag byte, content bool) {
	if tag < 0x05 || tag > tagMask {
		e.setErr(ErrBadToken, "tag 0x"+hex2(tag)+" out of range 0x05..0x3F")
		return
	}
	if page != e.page {
		e.buf = append(e.buf, tokSwitchPage, page)
		e.page = page
	}
	if content {
		tag |= flagContent
		e.depth++
	}
	e.buf = append(e.buf, tag)
}

// End closes the innermost element opened with content=true.
func (e *Encoder) End() {
	if e.depth == 0 {
		e.setErr(ErrUnbalanced, "End without open element")
		return
	}
	e.depth--
	e.buf = append(e.buf, tokEnd)
}

// Text writes s as an inline string (STR_I, WAP-192-WBXML §5.8.4.1). STR_I
// is NUL-terminated, so a string containing NUL is written as OPAQUE
// instead to keep it intact.
func (e *Encoder) Text(s []byte) {
	if bytes.IndexByte(s, 0) >= 0 {
		e.Opaque(s)
		return
	}
	e.buf = append(e.buf, tokStrI)
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, 0)
}

// TextString is Text for a string, without a conversion copy.
func (e *Encoder) TextString(s string) {
	if strings.IndexByte(s, 0) >= 0 {
		e.OpaqueString(s)
		return
	}
	e.buf = append(e.buf, tokStrI)
	e.buf = append(e.buf, s...)
	e.buf = append(e.buf, 0)
}

// Opaque writes b as OPAQUE (length-prefixed, WAP-192-WBXML §5.8.4.6);
// libwbxml writes Item/Data this way (PROTOCOL.md §8.6).
func (e *Encoder) Opaque(b []byte) {
	e.buf = append(e.buf, tokOpaque)
	e.buf = appendMB(e.buf, uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// OpaqueString is Opaque for a string, without a conversion copy.
func (e *Encoder) OpaqueString(s string) {
	e.buf = append(e.buf, tokOpaque)
	e.buf = appendMB(e.buf, uint32(len(s)))
	e.buf = append(e.buf, s...)
}

// Bytes returns the encoded document (dst with everything appended).
func (e *Encoder) Bytes() []byte { return e.buf }

// Depth returns the number of elements opened with content=true and not yet
// closed.
func (e *Encoder) Depth() int { return e.depth }

// Err returns the first misuse recorded (nil if none); it does not report
// elements left open — check Depth for that.
func (e *Encoder) Err() error { return e.err }
