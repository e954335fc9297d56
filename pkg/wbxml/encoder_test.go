package wbxml

import (
	"bytes"
	"errors"
	"testing"
)

func TestAppendMB(t *testing.T) {
	tests := []struct {
		v    uint32
		want []byte
	}{
		{0, []byte{0x00}},
		{0x7F, []byte{0x7F}},
		{0x80, []byte{0x81, 0x00}},
		{0x1201, []byte{0xA4, 0x01}}, // SyncML 1.2 public id (PROTOCOL.md §8.1)
		{0x0FD3, []byte{0x9F, 0x53}}, // SyncML 1.1
		{0xFFFFFFFF, []byte{0x8F, 0xFF, 0xFF, 0xFF, 0x7F}},
	}
	for _, tc := range tests {
		got := appendMB(nil, tc.v)
		if !bytes.Equal(got, tc.want) {
			t.Errorf("appendMB(%#x) = % X, want % X", tc.v, got, tc.want)
		}
		d := &Decoder{in: got}
		if v, err := d.mbUint32(); err != nil || v != tc.v || d.pos != len(got) {
			t.Errorf("mbUint32(% X) = %#x, %v", got, v, err)
		}
	}
}

func TestEncoderHeader(t *testing.T) {
	fpiTable := []byte(FPISyncML12) // AOSP form: no terminator
	tests := []struct {
		name string
		h    Header
		want []byte
	}{
		{"defaults", Header{}, []byte{0x02, 0x01, 0x6A, 0x00}},
		{"numeric", Header{Version: 3, PublicID: PublicIDSyncML12}, []byte{0x03, 0xA4, 0x01, 0x6A, 0x00}},
		{"FPI", Header{FPI: FPIDDF12}, append(append([]byte{0x02, 0x00, 0x00, 0x6A, 0x1B}, FPIDDF12...), 0)},
		{"FPI table given verbatim", Header{FPI: FPISyncML12, StringTable: fpiTable},
			append([]byte{0x02, 0x00, 0x00, 0x6A, 0x1D}, fpiTable...)},
		{"FPI prefixed to other table", Header{FPI: "F", StringTable: []byte("ab\x00")},
			[]byte{0x02, 0x00, 0x00, 0x6A, 0x05, 'F', 0, 'a', 'b', 0}},
		{"charset", Header{Version: 1, PublicID: PublicIDSyncML11, Charset: 4}, []byte{0x01, 0x9F, 0x53, 0x04, 0x00}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := NewEncoder(nil, tc.h).Bytes()
			if !bytes.Equal(got, tc.want) {
				t.Fatalf("got % X\nwant % X", got, tc.want)
			}
			// The decoder reads the FPI back.
			d, err := NewDecoder(append(got, 0x05), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.h.FPI != "" && d.Header().FPI != tc.h.FPI {
				t.Fatalf("FPI %q", d.Header().FPI)
			}
		})
	}
}

func TestEncoderAppendsToDst(t *testing.T) {
	dst := []byte("prefix")
	e := NewEncoder(dst, Header{PublicID: PublicIDSyncML12})
	e.Start(0, 0x2D, false)
	if got := e.Bytes(); string(got[:6]) != "prefix" || !bytes.Equal(got[6:], []byte{0x02, 0xA4, 0x01, 0x6A, 0x00, 0x2D}) {
		t.Fatalf("% X", got)
	}
}

// TestEncoderPageSwitching pins the libwbxml layout of PROTOCOL.md §8.1:
// SWITCH_PAGE right before the first tag of another page, END never
// switches back.
func TestEncoderPageSwitching(t *testing.T) {
	e := NewEncoder(nil, Header{PublicID: PublicIDSyncML12})
	e.Start(0, 0x1A, true)  // Meta
	e.Start(1, 0x13, true)  // MetInf Type
	e.TextString("a")       //
	e.End()                 //
	e.Start(1, 0x07, true)  // MetInf Format: no switch
	e.Text([]byte("b"))     //
	e.End()                 //
	e.End()                 // Meta: no switch
	e.Start(0, 0x12, false) // Final: switch back now
	want := []byte{0x02, 0xA4, 0x01, 0x6A, 0x00,
		0x5A, 0x00, 0x01, 0x53, 0x03, 'a', 0x00, 0x01, 0x47, 0x03, 'b', 0x00, 0x01, 0x01, 0x00, 0x00, 0x12}
	if got := e.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got % X\nwant % X", got, want)
	}
	if e.Err() != nil || e.Depth() != 0 {
		t.Fatal(e.Err(), e.Depth())
	}
}

func TestEncoderTextWithNUL(t *testing.T) {
	e := NewEncoder(nil, Header{PublicID: PublicIDSyncML12})
	e.Start(0, 0x0F, true)
	e.Text([]byte("a\x00b"))
	e.TextString("c\x00")
	e.OpaqueString("xy")
	e.Opaque([]byte{0xFF})
	e.End()
	want := []byte{0x02, 0xA4, 0x01, 0x6A, 0x00, 0x4F,
		0xC3, 0x03, 'a', 0x00, 'b', 0xC3, 0x02, 'c', 0x00, 0xC3, 0x02, 'x', 'y', 0xC3, 0x01, 0xFF, 0x01}
	if got := e.Bytes(); !bytes.Equal(got, want) {
		t.Fatalf("got % X\nwant % X", got, want)
	}
}

func TestEncoderMisuse(t *testing.T) {
	e := NewEncoder(nil, Header{})
	e.End()
	if !errors.Is(e.Err(), ErrUnbalanced) {
		t.Fatalf("End at depth 0: %v", e.Err())
	}
	e = NewEncoder(nil, Header{})
	n := len(e.Bytes())
	e.Start(0, 0x04, true)
	e.Start(0, 0x40, true)
	if !errors.Is(e.Err(), ErrBadToken) || len(e.Bytes()) != n || e.Depth() != 0 {
		t.Fatalf("bad tag: %v, % X", e.Err(), e.Bytes())
	}
}

func TestEncoderNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	e := &Encoder{}
	data := []byte("IMEI:493005100592800")
	allocs := testing.AllocsPerRun(100, func() {
		e.Reset(buf[:0], Header{PublicID: PublicIDSyncML12})
		e.Start(0, 0x2D, true)
		e.Start(0, 0x0F, true)
		e.TextString("1200")
		e.End()
		e.Start(1, 0x13, true)
		e.Text(data)
		e.End()
		e.Start(0, 0x0F, true)
		e.Opaque(data)
		e.End()
		e.Start(0, 0x12, false)
		e.End()
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs", allocs)
	}
}
