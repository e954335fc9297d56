package syncml

import (
	"strings"
	"sync"
)

// Encoding is a SyncML DM wire encoding.
type Encoding uint8

// The two encodings of OMA DM (PROTOCOL.md §1).
const (
	EncodingUnknown Encoding = iota
	EncodingXML
	EncodingWBXML
)

// Media types (OMA-TS-DM_RepPro §4.1.2.1).
const (
	ContentTypeXML   = "application/vnd.syncml.dm+xml"
	ContentTypeWBXML = "application/vnd.syncml.dm+wbxml"
)

// ContentType returns the media type to answer with.
func (e Encoding) ContentType() string {
	switch e {
	case EncodingXML:
		return ContentTypeXML
	case EncodingWBXML:
		return ContentTypeWBXML
	}
	return ""
}

func (e Encoding) String() string {
	switch e {
	case EncodingXML:
		return "xml"
	case EncodingWBXML:
		return "wbxml"
	}
	return "unknown"
}

// ParseContentType maps a Content-Type header to an encoding. It accepts the DM types, the
// SyncML DS types some clients send (application/vnd.syncml+xml|+wbxml, as libdmclient's
// test client does) and parameters such as "; charset=utf-8", case-insensitively
// (PROTOCOL.md §12.1).
func ParseContentType(ct string) Encoding {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	switch ct {
	case ContentTypeXML, "application/vnd.syncml+xml":
		return EncodingXML
	case ContentTypeWBXML, "application/vnd.syncml+wbxml":
		return EncodingWBXML
	}
	return EncodingUnknown
}

// Sniff guesses the encoding from the first bytes: WBXML starts with its version byte
// (0x01–0x03), XML with '<' after an optional BOM and white space (PROTOCOL.md §12.1).
func Sniff(b []byte) Encoding {
	if len(b) == 0 {
		return EncodingUnknown
	}
	if b[0] >= 0x01 && b[0] <= 0x03 {
		return EncodingWBXML
	}
	i := 0
	if len(b) >= 3 && b[0] == 0xEF && b[1] == 0xBB && b[2] == 0xBF {
		i = 3
	}
	for i < len(b) && isSpaceByte(b[i]) {
		i++
	}
	if i < len(b) && b[i] == '<' {
		return EncodingXML
	}
	return EncodingUnknown
}

var treePool = sync.Pool{New: func() any { return &tree{} }}

// checkSize enforces MaxBodyBytes before any parsing.
func checkSize(b []byte, lim Limits) error {
	if len(b) > lim.MaxBodyBytes {
		return errAt(ErrTooLarge, lim.MaxBodyBytes, "body of %d bytes exceeds the limit of %d", len(b), lim.MaxBodyBytes)
	}
	if len(b) == 0 {
		return errAt(ErrTruncated, 0, "empty body")
	}
	return nil
}

// DecodeXML decodes an XML SyncML message. The message's strings share one copy of b, so b
// may be reused by the caller afterwards.
func DecodeXML(b []byte, lim Limits) (*Message, error) {
	lim = lim.withDefaults()
	if err := checkSize(b, lim); err != nil {
		return nil, err
	}
	t := treePool.Get().(*tree)
	defer putTree(t)
	t.reset(len(b)/24 + 16)
	if err := decodeXMLTree(string(b), lim, t); err != nil {
		return nil, err
	}
	return (&builder{t: t}).message()
}

// Decode decodes b in the given encoding; EncodingUnknown sniffs it.
func Decode(b []byte, enc Encoding, lim Limits) (*Message, Encoding, error) {
	if enc == EncodingUnknown {
		enc = Sniff(b)
	}
	switch enc {
	case EncodingXML:
		m, err := DecodeXML(b, lim)
		return m, enc, err
	case EncodingWBXML:
		m, err := DecodeWBXML(b, lim)
		return m, enc, err
	}
	if err := checkSize(b, lim.withDefaults()); err != nil {
		return nil, enc, err
	}
	return nil, enc, errAt(ErrUnsupportedMedia, 0, "body is neither XML nor WBXML")
}

// Encode writes m in the given encoding with default options.
func Encode(m *Message, enc Encoding) ([]byte, error) {
	switch enc {
	case EncodingXML:
		return AppendXML(nil, m, XMLOptions{})
	case EncodingWBXML:
		return AppendWBXML(nil, m, WBXMLOptions{})
	}
	return nil, errAt(ErrUnsupportedMedia, -1, "unknown encoding")
}
