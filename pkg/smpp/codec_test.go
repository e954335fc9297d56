package smpp

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	var clean strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		clean.WriteString(strings.NewReplacer(" ", "", "\t", "").Replace(line))
	}
	b, err := hex.DecodeString(clean.String())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// samplePDUs covers every PDU type, TLVs (known and unknown) included.
func samplePDUs() []PDU {
	return []PDU{
		&Bind{Header: Header{Sequence: 1}, Mode: BindTransmitter, SystemID: "dmgrid", Password: "secret",
			SystemType: "OMADM", InterfaceVersion: 0x34, AddrTON: 1, AddrNPI: 1, AddressRange: "^49"},
		&Bind{Header: Header{Sequence: 2}, Mode: BindTransceiver, SystemID: "123456789012345", Password: "12345678",
			SystemType: "123456789012", InterfaceVersion: 0x34, AddressRange: strings.Repeat("r", 40)},
		&Bind{Header: Header{Sequence: 3}, Mode: BindReceiver},
		&BindResp{Header: Header{Sequence: 1}, Mode: BindTransmitter, SystemID: "SMSC",
			TLVs: TLVs{{Tag: TagSCInterfaceVersion, Value: []byte{0x34}}}},
		&BindResp{Header: Header{Sequence: 2, Status: StatusInvPaswd}, Mode: BindTransceiver},
		&Unbind{Header{Sequence: 7}},
		&UnbindResp{Header{Sequence: 7}},
		&EnquireLink{Header{Sequence: 0x7FFFFFFF}},
		&EnquireLinkResp{Header{Sequence: 0x7FFFFFFF}},
		&GenericNack{Header{Status: StatusInvCmdID, Sequence: 99}},
		&SubmitSM{Header: Header{Sequence: 42}, ServiceType: "WAP",
			Source:   Address{TON: TONAlphanumeric, Addr: "DMGRID"},
			Dest:     Address{TON: TONInternational, NPI: NPIISDN, Addr: "491511234567890123"},
			ESMClass: ESMFeatureUDHI, DataCoding: DataCodingBinary, RegisteredDelivery: RegDeliveryReceipt,
			ValidityPeriod: "000001000000000R",
			ShortMessage:   mustHexNoT("0B05040B8423F00003010201" + strings.Repeat("AB", 128)),
			TLVs: TLVs{{Tag: TagSARMsgRefNum, Value: []byte{0, 1}}, {Tag: 0x1401, Value: []byte("vendor")},
				{Tag: 0x1402}}},
		&SubmitSM{Header: Header{Sequence: 43}, Dest: Address{Addr: "1"},
			TLVs: TLVs{{Tag: TagMessagePayload, Value: bytes.Repeat([]byte{0xEE}, 1000)}}},
		&SubmitSMResp{Header: Header{Sequence: 42}, MessageID: strings.Repeat("f", 64)},
		&SubmitSMResp{Header: Header{Sequence: 44, Status: StatusThrottled}},
		&DeliverSM{Header: Header{Sequence: 5}, Source: Address{TON: 1, NPI: 1, Addr: "4915112345678"},
			Dest: Address{TON: 5, Addr: "DMGRID"}, ESMClass: ESMTypeDeliveryRcpt,
			ShortMessage: []byte("id:abc sub:001 dlvrd:001 submit date:2401011200 done date:2401011201 stat:DELIVRD err:000 text:"),
			TLVs:         TLVs{{Tag: TagReceiptedMessageID, Value: []byte("abc\x00")}, {Tag: TagMessageState, Value: []byte{2}}}},
		&DeliverSMResp{Header: Header{Sequence: 5}},
	}
}

func mustHexNoT(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// TestRoundTrip encodes, decodes and re-encodes every sample PDU.
func TestRoundTrip(t *testing.T) {
	for _, p := range samplePDUs() {
		t.Run(p.CommandID().String(), func(t *testing.T) {
			b, err := Encode(p)
			if err != nil {
				t.Fatal(err)
			}
			if got := binary.BigEndian.Uint32(b); int(got) != len(b) {
				t.Fatalf("command_length %d, len %d", got, len(b))
			}
			if got := CommandID(binary.BigEndian.Uint32(b[4:])); got != p.CommandID() {
				t.Fatalf("command_id %v, want %v", got, p.CommandID())
			}
			q, err := Decode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p, q) {
				t.Fatalf("round trip:\n got %#v\nwant %#v", q, p)
			}
			b2, err := Encode(q)
			if err != nil || !bytes.Equal(b, b2) {
				t.Fatalf("re-encode differs: %v\n%x\n%x", err, b, b2)
			}
		})
	}
}

// TestGoldenSubmitSM checks the encoder against bytes written out by hand
// from the §4.4.1 field table.
func TestGoldenSubmitSM(t *testing.T) {
	p := &SubmitSM{Header: Header{Sequence: 0x0102},
		Source: Address{TON: 5, NPI: 0, Addr: "DM"}, Dest: Address{TON: 1, NPI: 1, Addr: "4917"},
		ESMClass: 0x40, DataCoding: 0x04, RegisteredDelivery: 1,
		ShortMessage: []byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0x01},
		TLVs:         TLVs{{Tag: 0x020C, Value: []byte{0x00, 0x07}}}}
	want := mustHex(t, `
		00000035 00000004 00000000 00000102 # 16+1+5+7+3+2+4+9+6 = 53
		00               # service_type NULL
		05 00 444D00     # source ton npi "DM"
		01 01 3439313700 # dest ton npi "4917"
		40 00 00         # esm_class protocol_id priority_flag
		00 00            # schedule validity NULL
		01 00 04 00      # registered_delivery replace data_coding default_msg_id
		08 0605040B8423F001 # sm_length short_message
		020C 0002 0007   # sar_msg_ref_num`)
	got, err := Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("encode:\n got %x\nwant %x", got, want)
	}
}

func TestDecodeTruncatedEveryOffset(t *testing.T) {
	for _, p := range samplePDUs() {
		b, err := Encode(p)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(b); i++ {
			// As received: command_length says more than is there.
			_, err := Decode(b[:i])
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, ErrTruncated) || de.Status != StatusInvCmdLen {
				t.Fatalf("%v cut at %d: %v", p.CommandID(), i, err)
			}
			if de.Offset > i {
				t.Fatalf("%v cut at %d: offset %d beyond input", p.CommandID(), i, de.Offset)
			}
			// command_length patched to the cut: a consistent but short PDU
			// must fail or decode, never panic, never report a wild offset.
			if i >= HeaderLen {
				c := bytes.Clone(b[:i])
				binary.BigEndian.PutUint32(c, uint32(i))
				if _, err := Decode(c); err != nil {
					if !errors.As(err, &de) || de.Offset > i || !de.HeaderValid || de.Sequence != p.Hdr().Sequence {
						t.Fatalf("%v length-patched cut at %d: %#v", p.CommandID(), i, err)
					}
				}
			}
		}
	}
}

func TestDecodeCommandLength(t *testing.T) {
	el, _ := Encode(&EnquireLink{Header{Sequence: 9}})
	for _, n := range []uint32{0, 1, 15, MaxPDULength + 1, 0x7FFFFFFF, 0xFFFFFFFF} {
		b := bytes.Clone(el)
		binary.BigEndian.PutUint32(b, n)
		_, err := Decode(b)
		var de *DecodeError
		if !errors.As(err, &de) || !errors.Is(err, ErrInvalidLength) || de.Status != StatusInvCmdLen || de.Sequence != 9 || de.Offset != 0 {
			t.Errorf("command_length %d: %v", n, err)
		}
	}
	// Longer input than command_length.
	_, err := Decode(append(bytes.Clone(el), 0))
	if !errors.Is(err, ErrTrailingBytes) {
		t.Errorf("extra byte: %v", err)
	}
	// A body on a body-less PDU.
	b := append(bytes.Clone(el), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	if _, err := Decode(b); !errors.Is(err, ErrTrailingBytes) {
		t.Errorf("enquire_link with body: %v", err)
	}
	// Exactly MaxPDULength is accepted.
	big := &SubmitSM{Dest: Address{Addr: "1"}, TLVs: TLVs{{Tag: 0x1400}}}
	raw, _ := Encode(big)
	big.TLVs[0].Value = make([]byte, MaxPDULength-len(raw))
	raw, err = Encode(big)
	if err != nil || len(raw) != MaxPDULength {
		t.Fatalf("max-size PDU: %d %v", len(raw), err)
	}
	if _, err := Decode(raw); err != nil {
		t.Fatalf("decode max-size PDU: %v", err)
	}
	big.TLVs[0].Value = append(big.TLVs[0].Value, 0)
	if _, err := Encode(big); !errors.Is(err, ErrInvalidLength) {
		t.Fatalf("oversize encode: %v", err)
	}
}

func TestDecodeUnknownCommand(t *testing.T) {
	b := mustHex(t, "00000014 000000AA 00000000 7F000001 DEADBEEF")
	_, err := Decode(b)
	var de *DecodeError
	if !errors.As(err, &de) || !errors.Is(err, ErrUnknownCommand) || de.Status != StatusInvCmdID ||
		de.Sequence != 0x7F000001 || de.CommandID != 0xAA || de.Offset != 4 {
		t.Fatalf("%#v", err)
	}
}

func TestDecodeFieldErrors(t *testing.T) {
	sm := func(mut func([]byte) []byte) []byte {
		b, err := Encode(&SubmitSM{Header: Header{Sequence: 3}, Source: Address{Addr: "123"}, Dest: Address{Addr: "456"}, ShortMessage: []byte("hi")})
		if err != nil {
			t.Fatal(err)
		}
		b = mut(b)
		binary.BigEndian.PutUint32(b, uint32(len(b)))
		return b
	}
	const srcOff = HeaderLen + 1 + 2 // service_type NUL, ton, npi
	cases := []struct {
		name   string
		b      []byte
		status Status
		err    error
		field  string
		offset int
	}{
		{"source_addr too long", sm(func(b []byte) []byte {
			return append(append(bytes.Clone(b[:srcOff]), strings.Repeat("9", 25)...), b[srcOff+3:]...)
		}), StatusInvSrcAdr, ErrFieldTooLong, "source_addr", srcOff},
		{"sm_length 255", sm(func(b []byte) []byte {
			b = b[:len(b)-3]
			return append(append(b, 255), make([]byte, 255)...)
		}), StatusInvMsgLen, ErrFieldTooLong, "sm_length", -1},
		{"sm_length beyond body", sm(func(b []byte) []byte { b[len(b)-3] = 50; return b }),
			StatusInvCmdLen, ErrTruncated, "short_message", -1},
		{"tlv header cut", sm(func(b []byte) []byte { return append(b, 0x04, 0x24, 0x00) }),
			StatusInvOptParStream, ErrInvalidTLV, "tlv", -1},
		{"tlv value cut", sm(func(b []byte) []byte { return append(b, 0x04, 0x24, 0x00, 0x05, 1, 2) }),
			StatusInvOptParStream, ErrInvalidTLV, "tlv", -1},
		{"message_state length 2", sm(func(b []byte) []byte { return append(b, 0x04, 0x27, 0x00, 0x02, 1, 2) }),
			StatusInvParLen, ErrInvalidTLV, "tlv", -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode(tc.b)
			var de *DecodeError
			if !errors.As(err, &de) || !errors.Is(err, tc.err) || de.Status != tc.status || de.Field != tc.field {
				t.Fatalf("got %v", err)
			}
			if tc.offset >= 0 && de.Offset != tc.offset {
				t.Fatalf("offset %d, want %d", de.Offset, tc.offset)
			}
		})
	}
}

func TestDecodeTooManyTLVs(t *testing.T) {
	p := &SubmitSMResp{MessageID: "x"}
	b, _ := Encode(p)
	for i := 0; i <= MaxTLVs; i++ {
		b = append(b, 0x14, 0x00, 0, 0)
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)))
	if _, err := Decode(b); !errors.Is(err, ErrInvalidTLV) {
		t.Fatal(err)
	}
}

func TestEncodeErrors(t *testing.T) {
	cases := []struct {
		name string
		p    PDU
		err  error
	}{
		{"nil", (*SubmitSM)(nil), ErrInvalidField},
		{"system_id 16", &Bind{SystemID: strings.Repeat("s", 16)}, ErrFieldTooLong},
		{"password 9", &Bind{Password: "123456789"}, ErrFieldTooLong},
		{"NUL in system_type", &Bind{SystemType: "a\x00b"}, ErrInvalidField},
		{"dest 21", &SubmitSM{Dest: Address{Addr: strings.Repeat("1", 21)}}, ErrFieldTooLong},
		{"short_message 255", &SubmitSM{ShortMessage: make([]byte, 255)}, ErrFieldTooLong},
		{"payload and short_message", &SubmitSM{ShortMessage: []byte{1},
			TLVs: TLVs{{Tag: TagMessagePayload, Value: []byte{2}}}}, ErrInvalidField},
		{"message_state 0 octets", &DeliverSM{TLVs: TLVs{{Tag: TagMessageState}}}, ErrInvalidTLV},
		{"receipted_message_id 66", &DeliverSM{TLVs: TLVs{{Tag: TagReceiptedMessageID, Value: make([]byte, 66)}}}, ErrInvalidTLV},
		{"message_id 65", &SubmitSMResp{MessageID: strings.Repeat("m", 65)}, ErrFieldTooLong},
		{"tlv 64K", &SubmitSM{TLVs: TLVs{{Tag: 0x1400, Value: make([]byte, 0x10000)}}}, ErrInvalidTLV},
	}
	for _, tc := range cases {
		_, err := Encode(tc.p)
		var ee *EncodeError
		if !errors.Is(err, tc.err) || (tc.name != "nil" && !errors.As(err, &ee)) {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

func TestEmptyResponseBody(t *testing.T) {
	// §4.4.2: no body when command_status is not zero.
	b := mustHex(t, "00000010 80000004 00000058 00000005")
	p, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	r := p.(*SubmitSMResp)
	if r.Status != StatusThrottled || r.Sequence != 5 || r.MessageID != "" {
		t.Fatalf("%#v", r)
	}
}

func TestTLVAccessors(t *testing.T) {
	var ts TLVs
	ts.Set(TagMessageState, []byte{5})
	ts.Set(TagReceiptedMessageID, []byte("abc\x00"))
	ts.Set(TagMessageState, []byte{2})
	ts.Set(TagSARMsgRefNum, []byte{1, 2})
	if v, _ := ts.Uint(TagMessageState); v != 2 || len(ts) != 3 {
		t.Fatal(ts)
	}
	if v, _ := ts.Uint(TagSARMsgRefNum); v != 0x0102 {
		t.Fatal(v)
	}
	if s, ok := ts.String(TagReceiptedMessageID); !ok || s != "abc" {
		t.Fatal(s)
	}
	if _, ok := ts.Get(TagMessagePayload); ok {
		t.Fatal("absent tag found")
	}
}

func TestStatusErrors(t *testing.T) {
	for _, st := range []Status{StatusThrottled, StatusMsgQFul} {
		err := error(&StatusError{Command: CmdSubmitSM, Status: st})
		if !errors.Is(err, ErrThrottled) || !errors.Is(err, st) || !IsRetryable(err) {
			t.Errorf("%v not throttling", st)
		}
	}
	err := error(&StatusError{Command: CmdSubmitSM, Status: StatusInvDstAdr})
	if errors.Is(err, ErrThrottled) || IsRetryable(err) || !errors.Is(err, StatusInvDstAdr) {
		t.Error("ESME_RINVDSTADR treated as throttling")
	}
	if !IsRetryable(ErrNotBound) || IsRetryable(ErrConnectionLost) || IsRetryable(ErrResponseTimeout) {
		t.Error("IsRetryable")
	}
	if StatusThrottled.String() != "ESME_RTHROTTLED" || CmdSubmitSM.String() != "submit_sm" {
		t.Error("names")
	}
}

func FuzzDecode(f *testing.F) {
	for _, p := range samplePDUs() {
		b, _ := Encode(p)
		f.Add(b)
	}
	f.Add(mustHexNoT("00000014000000AA000000007F000001DEADBEEF"))
	f.Add(mustHexNoT("0000000F800000000000000000000001"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Decode(b)
		if err != nil {
			var de *DecodeError
			if !errors.As(err, &de) || de.Offset < 0 || de.Offset > len(b) || de.Status == StatusOK {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		// Anything Decode accepts, Encode reproduces, and decoding that gives
		// the same PDU.
		b2, err := Encode(p)
		if err != nil {
			t.Fatalf("re-encode %#v: %v", p, err)
		}
		q, err := Decode(b2)
		if err != nil || !reflect.DeepEqual(p, q) {
			t.Fatalf("unstable round trip: %v\n%#v\n%#v", err, p, q)
		}
		if len(b2) > len(b)+1 { // +1: an absent response body becomes a NULL message_id
			t.Fatalf("re-encoding grew %d -> %d", len(b), len(b2))
		}
	})
}
