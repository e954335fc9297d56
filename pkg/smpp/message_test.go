package smpp

import (
	"errors"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/wappush"
)

func TestParseAddress(t *testing.T) {
	cases := []struct {
		in   string
		want Address
		ok   bool
	}{
		{"+4915112345678", Address{TON: TONInternational, NPI: NPIISDN, Addr: "4915112345678"}, true},
		{"015112345678", Address{TON: TONUnknown, NPI: NPIISDN, Addr: "015112345678"}, true},
		{"DMGRID", Address{TON: TONAlphanumeric, NPI: NPIUnknown, Addr: "DMGRID"}, true},
		{"+" + strings.Repeat("1", 20), Address{TON: 1, NPI: 1, Addr: strings.Repeat("1", 20)}, true},
		{"+" + strings.Repeat("1", 21), Address{}, false},
		{"", Address{}, false},
		{"+", Address{}, false},
		{"+49a", Address{}, false},
		{"TWELVECHARSX", Address{}, false},
		{"bad\x00", Address{}, false},
	}
	for _, tc := range cases {
		got, err := ParseAddress(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseAddress(%q) = %+v, %v", tc.in, got, err)
		}
	}
}

// TestNewBinarySubmit: a WAP Push segment (wappush.Segments, which the notifier uses) goes
// out as 8-bit data with UDHI and a receipt request.
func TestNewBinarySubmit(t *testing.T) {
	segs, err := wappush.Segments(make([]byte, 200), 0x5A, wappush.PortWAPPush, wappush.PortWSPConnectionless)
	if err != nil || len(segs) != 2 {
		t.Fatalf("%d %v", len(segs), err)
	}
	sm := NewBinarySubmit(Address{Addr: "a"}, Address{Addr: "b"}, segs[0].UD, true)
	if sm.ESMClass != 0x40 || sm.DataCoding != 0x04 || sm.RegisteredDelivery != 1 {
		t.Fatalf("%+v", sm)
	}
	if _, err := Encode(&sm); err != nil {
		t.Fatal(err)
	}
}

func TestParseReceipt(t *testing.T) {
	text := "id:0123456789 sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 Text:hello world stat:FAKE"
	d := &DeliverSM{ESMClass: ESMTypeDeliveryRcpt, Source: Address{TON: 1, NPI: 1, Addr: "49151"}, ShortMessage: []byte(text)}
	r, err := ParseReceipt(d)
	if err != nil {
		t.Fatal(err)
	}
	want := Receipt{MessageID: "0123456789", State: StateDelivered, Stat: "DELIVRD", Err: "000", Submitted: "001",
		Delivered: "001", SubmitDate: "2401311200", DoneDate: "2401311201", Text: "hello world stat:FAKE",
		Source: Address{TON: 1, NPI: 1, Addr: "49151"}}
	if r.MessageID != want.MessageID || r.State != want.State || r.Stat != want.Stat || r.Err != want.Err ||
		r.Submitted != want.Submitted || r.Delivered != want.Delivered || r.SubmitDate != want.SubmitDate ||
		r.DoneDate != want.DoneDate || r.Text != want.Text || r.Source != want.Source {
		t.Fatalf("got  %+v\nwant %+v", r, want)
	}

	// TLVs win over the text; TLV id without NUL; payload instead of short_message.
	d = &DeliverSM{ESMClass: ESMTypeDeliveryRcpt | ESMModeStoreForward,
		TLVs: TLVs{{Tag: TagMessagePayload, Value: []byte("id:text-id stat:UNDELIV err:001")},
			{Tag: TagReceiptedMessageID, Value: []byte("tlv-id")}, {Tag: TagMessageState, Value: []byte{5}}}}
	r, err = ParseReceipt(d)
	if err != nil || r.MessageID != "tlv-id" || r.State != StateUndeliverable || r.Stat != "UNDELIV" || r.Err != "001" {
		t.Fatalf("%+v %v", r, err)
	}

	// TLV only.
	d = &DeliverSM{ESMClass: ESMTypeIntermediate, TLVs: TLVs{{Tag: TagReceiptedMessageID, Value: []byte("x\x00")}}}
	r, err = ParseReceipt(d)
	if err != nil || r.MessageID != "x" || !r.Intermediate || r.State != StateUnset {
		t.Fatalf("%+v %v", r, err)
	}

	// Lower-case keys, extra spaces, unknown words.
	d = &DeliverSM{ESMClass: ESMTypeDeliveryRcpt, ShortMessage: []byte("ID:ab  SUB:1 foo:bar STAT:expired")}
	r, err = ParseReceipt(d)
	if err != nil || r.MessageID != "ab" || r.State != StateExpired || r.Submitted != "1 foo:bar" {
		t.Fatalf("%+v %v", r, err)
	}

	if _, err := ParseReceipt(&DeliverSM{ShortMessage: []byte("id:1")}); !errors.Is(err, ErrNotReceipt) {
		t.Fatal(err)
	}
	if _, err := ParseReceipt(&DeliverSM{ESMClass: ESMTypeDeliveryRcpt, ShortMessage: []byte("hello")}); !errors.Is(err, ErrMalformedReceipt) {
		t.Fatal(err)
	}
	// "id:" inside another word is not a key.
	if _, err := ParseReceipt(&DeliverSM{ESMClass: ESMTypeDeliveryRcpt, ShortMessage: []byte("msgid:5")}); !errors.Is(err, ErrMalformedReceipt) {
		t.Fatal(err)
	}
}

func FuzzParseReceipt(f *testing.F) {
	f.Add("id:1 sub:001 dlvrd:001 submit date:2401311200 done date:2401311201 stat:DELIVRD err:000 text:x")
	f.Add("text:id:")
	f.Fuzz(func(t *testing.T, s string) {
		_, _ = ParseReceipt(&DeliverSM{ESMClass: ESMTypeDeliveryRcpt, ShortMessage: []byte(s)})
	})
}
