// Package wappush carries an OMA DM Package 0 to a device as a connectionless
// WAP Push over SMS (OMA-TS-DM_Notification §6.3.1, PROTOCOL.md §9.2): the WSP
// push PDU (WAP-230-WSP §8.2.4), the WDP port addressing and the SMS user
// data header with concatenation (WAP-259-WDP, 3GPP TS 23.040 §9.2.3.24),
// and a bounded reassembler for the receiving side (tests, simulators).
//
// The package is pure: it builds and parses bytes. Submitting SMS (SMPP,
// modem, gateway API) is the caller's business.
package wappush

import (
	"fmt"
	"strings"
)

// WSP assigned numbers (WAP-230-WSP Appendix A, OMA naming authority).
const (
	// PDUTypePush is the Push PDU type (WAP-230-WSP table 34).
	PDUTypePush = 0x06
	// PDUTypeConfirmedPush is the ConfirmedPush PDU type.
	PDUTypeConfirmedPush = 0x07
	// ContentTypeSyncMLNotification is the well-known code of
	// "application/vnd.syncml.notification", encoded as 0xC4.
	ContentTypeSyncMLNotification = 0x44
	// ContentTypeSyncMLNotificationText is its text form.
	ContentTypeSyncMLNotificationText = "application/vnd.syncml.notification"
	// HeaderXWapApplicationID is the well-known field name of
	// X-Wap-Application-Id (WAP-230-WSP table 39), encoded as 0xAF.
	HeaderXWapApplicationID = 0x2F
	// HeaderXWapApplicationIDText is its text form (application header).
	HeaderXWapApplicationIDText = "X-Wap-Application-Id"
	// AppIDSyncMLDM is the application id of "x-wap-application:syncml.dm",
	// encoded as 0x87 (OMA-TS-DM_Notification §6.3.1).
	AppIDSyncMLDM = 0x07
	// AppIDSyncMLDMText is its URI form.
	AppIDSyncMLDMText = "x-wap-application:syncml.dm"
)

// Encoding limits (WAP-230-WSP §8.1.2, §8.4.2.1).
const (
	maxUintvarLen = 5  // a uintvar carries at most 32 bits in 5 octets
	maxShortLen   = 30 // Short-length is 0..30; 31 is Length-quote
	lengthQuote   = 31
	textQuote     = 127 // Quote before a Text-string whose first char is >= 128
	shiftDelim    = 127 // Shift-delimiter before a header code page
)

// PushPDU returns a connectionless WSP Push PDU (WAP-230-WSP §8.2.4.1): TID,
// PDU type 0x06, HeadersLen (uintvar, here always 3), Content-Type as a
// short integer, X-Wap-Application-Id as a short integer, then body. Codes
// are 0..0x7F; the short-integer bit 0x80 is set here, so an already encoded
// 0xC4 gives the same result as 0x44. With the defaults the PDU starts
// 01 06 03 C4 AF 87 (PROTOCOL.md §9.2).
func PushPDU(tid byte, contentType byte, appID byte, body []byte) []byte {
	out := make([]byte, 0, 6+len(body))
	out = append(out, tid, PDUTypePush, 3, contentType|0x80, HeaderXWapApplicationID|0x80, appID|0x80)
	return append(out, body...)
}

// DMNotificationPDU wraps a Package 0 in the push PDU the DM client listens
// for: content type application/vnd.syncml.notification (0x44), application
// id x-wap-application:syncml.dm (7) (OMA-TS-DM_Notification §6.3.1).
func DMNotificationPDU(tid byte, pkg0 []byte) []byte {
	return PushPDU(tid, ContentTypeSyncMLNotification, AppIDSyncMLDM, pkg0)
}

// Push is a parsed WSP Push or ConfirmedPush PDU. Headers and Body alias the
// parsed input.
type Push struct {
	// TID is the transaction id (connectionless WSP).
	TID byte
	// PDUType is PDUTypePush or PDUTypeConfirmedPush.
	PDUType byte
	// ContentType is the well-known content type code (short or long
	// integer); meaningful when ContentTypeText is empty.
	ContentType uint32
	// ContentTypeText is the content type when sent as text.
	ContentTypeText string
	// HasAppID reports whether an X-Wap-Application-Id header was found.
	HasAppID bool
	// AppID is the application id code; meaningful when HasAppID is true and
	// AppIDText is empty.
	AppID uint32
	// AppIDText is the application id when sent as a URI text.
	AppIDText string
	// Headers are the header bytes after Content-Type, within HeadersLen.
	Headers []byte
	// Body is the data after the headers (the Package 0).
	Body []byte
}

// IsDMNotification reports whether p is addressed to the DM client: content
// type application/vnd.syncml.notification and application id
// x-wap-application:syncml.dm, in binary or text form
// (OMA-TS-DM_Notification §6.3.1.1).
func (p Push) IsDMNotification() bool {
	ct := p.ContentTypeText == "" && p.ContentType == ContentTypeSyncMLNotification ||
		strings.EqualFold(p.ContentTypeText, ContentTypeSyncMLNotificationText)
	app := p.HasAppID && (p.AppIDText == "" && p.AppID == AppIDSyncMLDM ||
		strings.EqualFold(p.AppIDText, AppIDSyncMLDMText))
	return ct && app
}

// wspReader reads WSP encodings from b[:end]; offsets are indexes in b.
type wspReader struct {
	b  []byte
	op string
}

func (r wspReader) fail(off int, err error, format string, args ...any) error {
	return &Error{Op: r.op, Offset: off, Reason: fmt.Sprintf(format, args...), Err: err}
}

// uintvar decodes a WSP variable length unsigned integer at i, bounded by end
// (WAP-230-WSP §8.1.2): 7 bits per octet, high bit = continue, at most 5
// octets and 32 bits.
func (r wspReader) uintvar(i, end int) (uint32, int, error) {
	var v uint32
	for n := 0; n < maxUintvarLen; n++ {
		if i+n >= end {
			return 0, 0, r.fail(i+n, ErrTruncated, "uintvar")
		}
		c := r.b[i+n]
		if n == maxUintvarLen-1 && v > 0x1FFFFFF {
			return 0, 0, r.fail(i, ErrMalformed, "uintvar exceeds 32 bits")
		}
		v = v<<7 | uint32(c&0x7F)
		if c&0x80 == 0 {
			return v, i + n + 1, nil
		}
	}
	return 0, 0, r.fail(i, ErrMalformed, "uintvar longer than %d octets", maxUintvarLen)
}

// text reads a Text-string / Token-text at i (optional Quote, chars, NUL) and
// returns it without quote and terminator (WAP-230-WSP §8.4.2.1).
func (r wspReader) text(i, end int) (string, int, error) {
	s := i
	if s < end && r.b[s] == textQuote {
		s++
	}
	for j := s; j < end; j++ {
		if r.b[j] == 0 {
			return string(r.b[s:j]), j + 1, nil
		}
	}
	return "", 0, r.fail(i, ErrMalformed, "text string not terminated within the headers")
}

// valueLength reads a Value-length at i: Short-length (0..30) or
// Length-quote (31) followed by a uintvar (WAP-230-WSP §8.4.2.2). It returns
// the start and end of the value, checked against end.
func (r wspReader) valueLength(i, end int) (int, int, error) {
	c := r.b[i]
	var n uint32
	s := i + 1
	if c == lengthQuote {
		var err error
		n, s, err = r.uintvar(i+1, end)
		if err != nil {
			return 0, 0, err
		}
	} else {
		n = uint32(c)
	}
	if uint64(n) > uint64(end-s) {
		return 0, 0, r.fail(i, ErrMalformed, "value length %d runs past the headers (%d left)", n, end-s)
	}
	return s, s + int(n), nil
}

// skipValue returns the end of the field value at i (WAP-230-WSP §8.4.1.2):
// 0..30 short length, 31 length quote, 32..127 text, 128..255 one octet.
func (r wspReader) skipValue(i, end int) (int, error) {
	if i >= end {
		return 0, r.fail(i, ErrMalformed, "header value missing")
	}
	switch c := r.b[i]; {
	case c >= 0x80:
		return i + 1, nil
	case c <= lengthQuote:
		_, e, err := r.valueLength(i, end)
		return e, err
	default:
		_, e, err := r.text(i, end)
		return e, err
	}
}

// integer reads an Integer-value at i: Short-integer (one octet with the
// high bit) or Long-integer (Short-length 1..30, then that many big-endian
// octets; more than 4 do not fit uint32) (WAP-230-WSP §8.4.2.3).
func (r wspReader) integer(i, end int) (uint32, int, error) {
	if i >= end {
		return 0, 0, r.fail(i, ErrMalformed, "integer missing")
	}
	c := r.b[i]
	if c >= 0x80 {
		return uint32(c & 0x7F), i + 1, nil
	}
	if c == 0 || c > maxShortLen {
		return 0, 0, r.fail(i, ErrMalformed, "octet 0x%02X is not an integer value", c)
	}
	n := int(c)
	if n > 4 {
		return 0, 0, r.fail(i, ErrMalformed, "long integer of %d octets exceeds 32 bits", n)
	}
	if i+1+n > end {
		return 0, 0, r.fail(i, ErrMalformed, "long integer of %d octets runs past the headers", n)
	}
	var v uint32
	for _, o := range r.b[i+1 : i+1+n] {
		v = v<<8 | uint32(o)
	}
	return v, i + 1 + n, nil
}

// intOrText reads a value that is an Integer-value or a Text-string: the
// Content-Type media (WAP-230-WSP §8.4.2.24) and the application id
// (§8.4.2.54).
func (r wspReader) intOrText(i, end int) (uint32, string, int, error) {
	if i < end && r.b[i] > lengthQuote && r.b[i] < 0x80 {
		s, next, err := r.text(i, end)
		if err == nil && s == "" {
			err = r.fail(i, ErrMalformed, "empty text value")
		}
		return 0, s, next, err
	}
	v, next, err := r.integer(i, end)
	return v, "", next, err
}

// ParsePushPDU parses a connectionless WSP Push or ConfirmedPush PDU
// (WAP-230-WSP §8.2.4.1): TID, PDU type, HeadersLen (uintvar, bounded by the
// input), Content-Type (short integer, text, or general form with
// parameters, §8.4.2.24), then headers. X-Wap-Application-Id is recognised
// as well-known field 0x2F (on the default code page) with a short/long
// integer or URI text value, or as the text header "X-Wap-Application-Id";
// every other header, shift sequence and parameter is skipped within
// HeadersLen. Errors are *Error with the offset.
func ParsePushPDU(b []byte) (Push, error) {
	r := wspReader{b: b, op: "parse push PDU"}
	if len(b) < 3 {
		return Push{}, r.fail(len(b), ErrTruncated, "push PDU needs TID, type and HeadersLen")
	}
	p := Push{TID: b[0], PDUType: b[1]}
	if p.PDUType != PDUTypePush && p.PDUType != PDUTypeConfirmedPush {
		return Push{}, r.fail(1, ErrUnsupported, "PDU type 0x%02X is not Push (0x06) or ConfirmedPush (0x07)", p.PDUType)
	}
	hl, start, err := r.uintvar(2, len(b))
	if err != nil {
		return Push{}, err
	}
	if uint64(hl) > uint64(len(b)-start) {
		return Push{}, r.fail(len(b), ErrTruncated, "HeadersLen %d, only %d bytes left", hl, len(b)-start)
	}
	end := start + int(hl)
	if hl == 0 {
		return Push{}, r.fail(start, ErrMalformed, "HeadersLen 0 leaves no Content-Type")
	}
	i, err := r.contentType(&p, start, end)
	if err != nil {
		return Push{}, err
	}
	p.Headers = b[i:end:end]
	if err := r.headers(&p, i, end); err != nil {
		return Push{}, err
	}
	p.Body = b[end:]
	return p, nil
}

// contentType parses Content-type-value = Constrained-media |
// Content-general-form (WAP-230-WSP §8.4.2.24); parameters are skipped.
func (r wspReader) contentType(p *Push, i, end int) (int, error) {
	c := r.b[i]
	switch {
	case c >= 0x80:
		p.ContentType = uint32(c & 0x7F)
		return i + 1, nil
	case c <= lengthQuote:
		s, e, err := r.valueLength(i, end)
		if err != nil {
			return 0, err
		}
		if s == e {
			return 0, r.fail(i, ErrMalformed, "empty Content-Type")
		}
		v, txt, _, err := r.intOrText(s, e)
		if err != nil {
			return 0, err
		}
		p.ContentType, p.ContentTypeText = v, txt
		return e, nil
	default:
		txt, next, err := r.text(i, end)
		if err != nil {
			return 0, err
		}
		if txt == "" {
			return 0, r.fail(i, ErrMalformed, "empty Content-Type")
		}
		p.ContentTypeText = txt
		return next, nil
	}
}

// headers walks the header fields in b[i:end] (WAP-230-WSP §8.4.1.1, §8.4.2.6)
// and records the first X-Wap-Application-Id.
func (r wspReader) headers(p *Push, i, end int) error {
	page := byte(1)
	for i < end {
		c := r.b[i]
		switch {
		case c == shiftDelim:
			if i+1 >= end {
				return r.fail(i, ErrMalformed, "shift delimiter without page")
			}
			page = r.b[i+1]
			i += 2
		case c >= 0x01 && c <= 0x1F:
			page = c // short-cut shift
			i++
		case c >= 0x80:
			field := c & 0x7F
			next, err := r.skipValue(i+1, end)
			if err != nil {
				return err
			}
			if page == 1 && field == HeaderXWapApplicationID && !p.HasAppID {
				if err := r.appID(p, i+1, next); err != nil {
					return err
				}
			}
			i = next
		case c == 0:
			return r.fail(i, ErrMalformed, "empty header name")
		default: // Application-header: Token-text Application-specific-value
			name, vs, err := r.text(i, end)
			if err != nil {
				return err
			}
			if vs >= end {
				return r.fail(vs, ErrMalformed, "header %q has no value", truncate(name, 32))
			}
			next, err := r.skipValue(vs, end)
			if err != nil {
				return err
			}
			if strings.EqualFold(name, HeaderXWapApplicationIDText) && !p.HasAppID {
				if err := r.appID(p, vs, next); err != nil {
					return err
				}
			}
			i = next
		}
	}
	return nil
}

// appID parses Application-id-value = Uri-value | App-assigned-code in
// b[i:end] (WAP-230-WSP §8.4.2.54).
func (r wspReader) appID(p *Push, i, end int) error {
	v, txt, _, err := r.intOrText(i, end)
	if err != nil {
		return err
	}
	p.HasAppID, p.AppID, p.AppIDText = true, v, txt
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
