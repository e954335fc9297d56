package wappush

import "fmt"

// WDP ports for WAP over GSM SMS (WAP-259-WDP, PROTOCOL.md §9.2).
const (
	// PortWAPPush is the connectionless WAP Push port (wap-push, 2948 = 0x0B84).
	PortWAPPush = 2948
	// PortWSPConnectionless is the connectionless WSP session port
	// (9200 = 0x23F0), the usual source port of a push.
	PortWSPConnectionless = 9200
	// DefaultDstPort and DefaultSrcPort are the ports a DM notification uses.
	DefaultDstPort = PortWAPPush
	DefaultSrcPort = PortWSPConnectionless
)

// SMS parameters (3GPP TS 23.040 §9.2.3, TS 23.038 §4).
const (
	// MaxUserData is the largest TP-User-Data of one SMS with 8-bit data.
	MaxUserData = 140
	// DCS8Bit is TP-Data-Coding-Scheme "8-bit data, no message class"
	// (TS 23.038 §4). WAP push is binary, so it is always sent 8-bit.
	DCS8Bit = 0x04
	// TPUDHI is the TP-User-Data-Header-Indicator bit of the first octet of
	// SMS-SUBMIT/SMS-DELIVER (TS 23.040 §9.2.3.23); it must be set because
	// the user data starts with a header.
	TPUDHI = 0x40
	// MaxSegments is the most parts a concatenated message can have (8-bit
	// total field).
	MaxSegments = 255
	// SinglePayload is the payload room of an unsegmented push: 140 minus
	// the 7-byte port UDH.
	SinglePayload = MaxUserData - 7
	// SegmentPayload is the payload per concatenated segment: 140 minus the
	// 12-byte UDH with port and concatenation IEs.
	SegmentPayload = MaxUserData - 12
)

// Information element identifiers (3GPP TS 23.040 §9.2.3.24).
const (
	IEIConcat8  = 0x00 // concatenated short messages, 8-bit reference (§9.2.3.24.1)
	IEIPorts8   = 0x04 // application port addressing, 8-bit (§9.2.3.24.3)
	IEIPorts16  = 0x05 // application port addressing, 16-bit (§9.2.3.24.4)
	IEIConcat16 = 0x08 // concatenated short messages, 16-bit reference (§9.2.3.24.8)
)

// Segment is the user data of one SMS.
type Segment struct {
	// UDH is the user data header, starting with its length octet (UDHL).
	UDH []byte
	// UD is the whole TP-User-Data: UDH followed by this segment's payload.
	// UDH is a prefix of UD.
	UD []byte
}

// Segments splits a WDP payload (a WSP push PDU) into SMS user data for 8-bit
// DCS with TP-UDHI set (WAP-259-WDP, 3GPP TS 23.040 §9.2.3.24,
// PROTOCOL.md §9.2). If the 7-byte port UDH 06 05 04 <dst> <src> and the
// payload fit 140 bytes the result is one segment; otherwise every segment
// carries UDH 0B 05 04 <dst> <src> 00 03 <ref> <total> <seq> and up to 128
// payload bytes. ref identifies the message for the recipient: use a
// different value for each concatenated message to the same device. A
// payload needing more than 255 segments is an error wrapping ErrTooLarge.
func Segments(payload []byte, ref byte, dstPort, srcPort uint16) ([]Segment, error) {
	ports := []byte{IEIPorts16, 4, byte(dstPort >> 8), byte(dstPort), byte(srcPort >> 8), byte(srcPort)}
	if len(payload) <= SinglePayload {
		ud := make([]byte, 0, 1+len(ports)+len(payload))
		ud = append(ud, byte(len(ports)))
		ud = append(ud, ports...)
		n := len(ud)
		ud = append(ud, payload...)
		return []Segment{{UDH: ud[:n:n], UD: ud}}, nil
	}
	total := (len(payload) + SegmentPayload - 1) / SegmentPayload
	if total > MaxSegments {
		return nil, &Error{Op: "segment", Offset: -1, Err: ErrTooLarge,
			Reason: fmt.Sprintf("%d payload bytes need %d segments (max %d)", len(payload), total, MaxSegments)}
	}
	segs := make([]Segment, 0, total)
	for seq := 1; seq <= total; seq++ {
		part := payload[(seq-1)*SegmentPayload : min(seq*SegmentPayload, len(payload))]
		ud := make([]byte, 0, 12+len(part))
		ud = append(ud, 11)
		ud = append(ud, ports...)
		ud = append(ud, IEIConcat8, 3, ref, byte(total), byte(seq))
		ud = append(ud, part...)
		segs = append(segs, Segment{UDH: ud[:12:12], UD: ud})
	}
	return segs, nil
}

// UDH holds what ParseUDH understood of a user data header.
type UDH struct {
	// HasPorts reports an application port addressing IE (8- or 16-bit).
	HasPorts bool
	// DstPort and SrcPort are the WDP ports (8-bit ports widened).
	DstPort, SrcPort uint16
	// Concatenated reports a valid concatenation IE (8- or 16-bit ref).
	Concatenated bool
	// Ref is the concatenation reference (8-bit refs widened).
	Ref uint16
	// Total is the number of parts, Seq this part's number (1..Total).
	Total, Seq byte
}

// ParseUDH parses the user data header at the start of TP-User-Data (UDHI
// set) and returns it with the payload that follows (aliasing ud)
// (3GPP TS 23.040 §9.2.3.24). It understands IEI 0x00/0x08 (concatenation,
// 8/16-bit reference) and 0x04/0x05 (ports, 8/16-bit); other IEs are
// skipped. As the specification says, the last occurrence of a repeated or
// mutually exclusive IE wins, and a concatenation IE with total 0, sequence
// 0 or sequence > total is ignored (§9.2.3.24.1). A known IE with the wrong
// length or an IE running past the UDHL is an *Error.
func ParseUDH(ud []byte) (UDH, []byte, error) {
	fail := func(off int, err error, format string, args ...any) (UDH, []byte, error) {
		return UDH{}, nil, &Error{Op: "parse UDH", Offset: off, Reason: fmt.Sprintf(format, args...), Err: err}
	}
	if len(ud) == 0 {
		return fail(0, ErrTruncated, "no UDHL octet")
	}
	end := 1 + int(ud[0])
	if end > len(ud) {
		return fail(len(ud), ErrTruncated, "UDHL %d, only %d bytes follow", ud[0], len(ud)-1)
	}
	var h UDH
	for i := 1; i < end; {
		if i+2 > end {
			return fail(i, ErrMalformed, "information element header runs past the UDH")
		}
		iei, l := ud[i], int(ud[i+1])
		d := i + 2
		if d+l > end {
			return fail(i, ErrMalformed, "IE 0x%02X of %d bytes runs past the UDH", iei, l)
		}
		v := ud[d : d+l]
		if w, known := knownIELen(iei); known && l != w {
			return fail(i, ErrMalformed, "IE 0x%02X has length %d, want %d", iei, l, w)
		}
		switch iei {
		case IEIConcat8:
			if v[1] != 0 && v[2] != 0 && v[2] <= v[1] {
				h.Concatenated, h.Ref, h.Total, h.Seq = true, uint16(v[0]), v[1], v[2]
			}
		case IEIConcat16:
			if v[2] != 0 && v[3] != 0 && v[3] <= v[2] {
				h.Concatenated, h.Ref, h.Total, h.Seq = true, uint16(v[0])<<8|uint16(v[1]), v[2], v[3]
			}
		case IEIPorts8:
			h.HasPorts, h.DstPort, h.SrcPort = true, uint16(v[0]), uint16(v[1])
		case IEIPorts16:
			h.HasPorts, h.DstPort, h.SrcPort = true, uint16(v[0])<<8|uint16(v[1]), uint16(v[2])<<8|uint16(v[3])
		}
		i = d + l
	}
	return h, ud[end:], nil
}

// knownIELen returns the fixed data length of the IEs ParseUDH interprets.
func knownIELen(iei byte) (int, bool) {
	switch iei {
	case IEIConcat8:
		return 3, true
	case IEIPorts8:
		return 2, true
	case IEIPorts16, IEIConcat16:
		return 4, true
	}
	return 0, false
}
