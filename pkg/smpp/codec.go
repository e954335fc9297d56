package smpp

import (
	"encoding/binary"
	"fmt"
	"reflect"
	"strings"
)

// Encode returns the wire form of p: the header (§3.2) with command_length
// computed, command_id from the PDU type and p's status and sequence, then
// the body. Field limits are those of Decode, so anything Encode produces,
// Decode accepts.
func Encode(p PDU) ([]byte, error) {
	if p == nil || reflect.ValueOf(p).IsNil() {
		return nil, &EncodeError{Field: "pdu", Err: ErrInvalidField, Detail: "nil PDU"}
	}
	e := &encoder{cmd: p.CommandID(), b: make([]byte, HeaderLen, 64)}
	p.appendBody(e)
	if e.err != nil {
		return nil, e.err
	}
	if len(e.b) > MaxPDULength {
		return nil, &EncodeError{CommandID: e.cmd, Field: "command_length", Err: ErrInvalidLength,
			Detail: fmt.Sprintf("%d octets, max %d", len(e.b), MaxPDULength)}
	}
	h := p.Hdr()
	binary.BigEndian.PutUint32(e.b[0:], uint32(len(e.b)))
	binary.BigEndian.PutUint32(e.b[4:], uint32(e.cmd))
	binary.BigEndian.PutUint32(e.b[8:], uint32(h.Status))
	binary.BigEndian.PutUint32(e.b[12:], h.Sequence)
	return e.b, nil
}

// Decode parses exactly one PDU; b must hold command_length octets. The
// returned PDU does not alias b. Errors are *DecodeError.
func Decode(b []byte) (PDU, error) {
	if len(b) < HeaderLen {
		return nil, &DecodeError{Offset: len(b), Status: StatusInvCmdLen, Field: "header", Err: ErrTruncated}
	}
	n := binary.BigEndian.Uint32(b[0:])
	id := CommandID(binary.BigEndian.Uint32(b[4:]))
	h := Header{Status: Status(binary.BigEndian.Uint32(b[8:])), Sequence: binary.BigEndian.Uint32(b[12:])}
	derr := func(off int, field string, st Status, err error) *DecodeError {
		return &DecodeError{Offset: off, HeaderValid: true, CommandID: id, Sequence: h.Sequence,
			Status: st, Field: field, Err: err}
	}
	switch {
	case n < HeaderLen || n > MaxPDULength:
		return nil, derr(0, "command_length", StatusInvCmdLen, ErrInvalidLength)
	case int(n) > len(b):
		return nil, derr(len(b), "command_length", StatusInvCmdLen, ErrTruncated)
	case int(n) < len(b):
		return nil, derr(int(n), "command_length", StatusInvCmdLen, ErrTrailingBytes)
	}
	p := newPDU(id)
	if p == nil {
		return nil, derr(4, "command_id", StatusInvCmdID, ErrUnknownCommand)
	}
	*p.Hdr() = h
	d := &decoder{b: b, off: HeaderLen, id: id, seq: h.Sequence}
	p.decodeBody(d)
	if d.err != nil {
		return nil, d.err
	}
	return p, nil
}

// encoder appends body fields, remembering the first error.
type encoder struct {
	cmd CommandID
	b   []byte
	err error
}

func (e *encoder) fail(field string, err error, format string, args ...any) {
	if e.err == nil {
		e.err = &EncodeError{CommandID: e.cmd, Field: field, Err: err, Detail: fmt.Sprintf(format, args...)}
	}
}

func (e *encoder) u8(v uint8) { e.b = append(e.b, v) }

func (e *encoder) octets(v []byte) { e.b = append(e.b, v...) }

// cstr appends a C-octet string (§3.1): the characters and a NUL; max
// includes the NUL.
func (e *encoder) cstr(field, s string, max int) {
	if e.err != nil {
		return
	}
	if len(s)+1 > max {
		e.fail(field, ErrFieldTooLong, "%d characters, max %d", len(s), max-1)
		return
	}
	if strings.IndexByte(s, 0) >= 0 {
		e.fail(field, ErrInvalidField, "contains NUL")
		return
	}
	e.b = append(e.b, s...)
	e.b = append(e.b, 0)
}

// tlvs appends optional parameters (§3.2.4.1) in order.
func (e *encoder) tlvs(ts TLVs) {
	if e.err != nil {
		return
	}
	if len(ts) > MaxTLVs {
		e.fail("tlv", ErrInvalidTLV, "%d TLVs, max %d", len(ts), MaxTLVs)
		return
	}
	for _, t := range ts {
		if err := checkTLV(t); err != nil {
			e.fail("tlv", ErrInvalidTLV, "%v", err)
			return
		}
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(t.Tag))
		e.b = binary.BigEndian.AppendUint16(e.b, uint16(len(t.Value)))
		e.b = append(e.b, t.Value...)
	}
}

// decoder reads body fields from a whole PDU, remembering the first error.
// After an error every read returns a zero value.
type decoder struct {
	b   []byte
	off int
	id  CommandID
	seq uint32
	err *DecodeError
}

func (d *decoder) fail(off int, field string, st Status, err error) {
	if d.err == nil {
		d.err = &DecodeError{Offset: off, HeaderValid: true, CommandID: d.id, Sequence: d.seq,
			Status: st, Field: field, Err: err}
	}
}

func (d *decoder) empty() bool { return d.off == len(d.b) }

func (d *decoder) u8(field string) uint8 {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail(d.off, field, StatusInvCmdLen, ErrTruncated)
		return 0
	}
	v := d.b[d.off]
	d.off++
	return v
}

// cstr reads a C-octet string of at most max octets including the NUL. A
// string running past the PDU is ErrTruncated (ESME_RINVCMDLEN: the length
// does not cover the body); one without NUL within max is ErrFieldTooLong
// with the field's own status.
func (d *decoder) cstr(field string, max int, st Status) string {
	if d.err != nil {
		return ""
	}
	rest := d.b[d.off:]
	lim := min(len(rest), max)
	for i := 0; i < lim; i++ {
		if rest[i] == 0 {
			s := string(rest[:i])
			d.off += i + 1
			return s
		}
	}
	if lim == max {
		d.fail(d.off, field, st, ErrFieldTooLong)
	} else {
		d.fail(len(d.b), field, StatusInvCmdLen, ErrTruncated)
	}
	return ""
}

func (d *decoder) octets(field string, n int) []byte {
	if d.err != nil {
		return nil
	}
	if n > len(d.b)-d.off {
		d.fail(len(d.b), field, StatusInvCmdLen, ErrTruncated)
		return nil
	}
	if n == 0 {
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b[d.off:])
	d.off += n
	return v
}

// end requires the body to be fully consumed (PDUs without TLVs).
func (d *decoder) end() {
	if d.err == nil && d.off != len(d.b) {
		d.fail(d.off, "body", StatusInvCmdLen, ErrTrailingBytes)
	}
}

// tlvs reads the remaining bytes as TLVs (§3.2.4.1); known tags must have
// their specified length (§5.3.2).
func (d *decoder) tlvs() TLVs {
	var ts TLVs
	for d.err == nil && d.off < len(d.b) {
		if len(ts) == MaxTLVs {
			d.fail(d.off, "tlv", StatusInvOptParStream, ErrInvalidTLV)
			return nil
		}
		if len(d.b)-d.off < 4 {
			d.fail(d.off, "tlv", StatusInvOptParStream, ErrInvalidTLV)
			return nil
		}
		tag := Tag(binary.BigEndian.Uint16(d.b[d.off:]))
		n := int(binary.BigEndian.Uint16(d.b[d.off+2:]))
		if n > len(d.b)-d.off-4 {
			d.fail(d.off, "tlv", StatusInvOptParStream, ErrInvalidTLV)
			return nil
		}
		var v []byte
		if n > 0 {
			v = make([]byte, n)
			copy(v, d.b[d.off+4:])
		}
		t := TLV{Tag: tag, Value: v}
		if checkTLV(t) != nil {
			d.fail(d.off, "tlv", StatusInvParLen, ErrInvalidTLV)
			return nil
		}
		ts = append(ts, t)
		d.off += 4 + n
	}
	return ts
}
