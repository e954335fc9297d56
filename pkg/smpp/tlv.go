package smpp

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// Tag is a TLV parameter tag (§5.3.2).
type Tag uint16

// Optional parameter tags this package knows (§5.3.2, table 5-7). Others are
// decoded generically and kept.
const (
	TagReceiptedMessageID   Tag = 0x001E // §5.3.2.12, C-octet string, 1-65
	TagUserMessageReference Tag = 0x0204 // §5.3.2.17, 2 octets
	TagSARMsgRefNum         Tag = 0x020C // §5.3.2.22, 2 octets
	TagSARTotalSegments     Tag = 0x020E // §5.3.2.23, 1 octet
	TagSARSegmentSeqnum     Tag = 0x020F // §5.3.2.24, 1 octet
	TagSCInterfaceVersion   Tag = 0x0210 // §5.3.2.25, 1 octet
	TagNetworkErrorCode     Tag = 0x0423 // §5.3.2.31, 3 octets
	TagMessagePayload       Tag = 0x0424 // §5.3.2.32, 0-64K octets
	TagMessageState         Tag = 0x0427 // §5.3.2.35, 1 octet
)

// MaxTLVs bounds the number of TLVs decoded from one PDU.
const MaxTLVs = 64

// tlvLen is the allowed value length range of known tags.
var tlvLen = map[Tag][2]int{
	TagReceiptedMessageID:   {1, maxMessageID},
	TagUserMessageReference: {2, 2},
	TagSARMsgRefNum:         {2, 2},
	TagSARTotalSegments:     {1, 1},
	TagSARSegmentSeqnum:     {1, 1},
	TagSCInterfaceVersion:   {1, 1},
	TagNetworkErrorCode:     {3, 3},
	TagMessageState:         {1, 1},
}

// TLV is one optional parameter (§3.2.4.1): a 2-octet tag, 2-octet length and
// the value.
type TLV struct {
	Tag   Tag
	Value []byte
}

// TLVs is an ordered TLV list; order and unknown tags survive a decode /
// encode round trip.
type TLVs []TLV

// Get returns the value of the first TLV with tag t.
func (ts TLVs) Get(t Tag) ([]byte, bool) {
	for _, tv := range ts {
		if tv.Tag == t {
			return tv.Value, true
		}
	}
	return nil, false
}

// Set replaces the value of the first TLV with tag t, or appends one.
func (ts *TLVs) Set(t Tag, v []byte) {
	for i := range *ts {
		if (*ts)[i].Tag == t {
			(*ts)[i].Value = v
			return
		}
	}
	*ts = append(*ts, TLV{Tag: t, Value: v})
}

// String returns the value of tag t as a C-octet string: a trailing NUL, if
// present, is removed (peers differ on whether they send it).
func (ts TLVs) String(t Tag) (string, bool) {
	v, ok := ts.Get(t)
	if !ok {
		return "", false
	}
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v), true
}

// Uint returns the big-endian value of a 1-, 2- or 4-octet integer TLV.
func (ts TLVs) Uint(t Tag) (uint32, bool) {
	v, ok := ts.Get(t)
	if !ok {
		return 0, false
	}
	switch len(v) {
	case 1:
		return uint32(v[0]), true
	case 2:
		return uint32(binary.BigEndian.Uint16(v)), true
	case 4:
		return binary.BigEndian.Uint32(v), true
	}
	return 0, false
}

// checkTLV validates the value length of a known tag; unknown tags accept
// any length that fits the 16-bit length field.
func checkTLV(t TLV) error {
	if len(t.Value) > 0xFFFF {
		return fmt.Errorf("tag 0x%04X: %d octets exceed the 16-bit length", uint16(t.Tag), len(t.Value))
	}
	if r, ok := tlvLen[t.Tag]; ok && (len(t.Value) < r[0] || len(t.Value) > r[1]) {
		return fmt.Errorf("tag 0x%04X: length %d not in [%d,%d]", uint16(t.Tag), len(t.Value), r[0], r[1])
	}
	return nil
}
