package wbxml

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// hdr12 is the libwbxml "-n -v 1.2" SyncML 1.2 header: version 1.2, public id
// 0x1201, UTF-8, empty string table (vectors/README.md).
var hdr12 = []byte{0x02, 0xA4, 0x01, 0x6A, 0x00}

func doc(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func TestHostileInput(t *testing.T) {
	deep := doc(hdr12, bytes.Repeat([]byte{0x6D}, 10000), bytes.Repeat([]byte{0x01}, 10000))
	tests := []struct {
		name string
		in   []byte
		lim  Limits
		want ErrKind
		off  int // expected error offset, -1 = don't care
	}{
		{"empty", nil, Limits{}, ErrTruncated, 0},
		{"version 0x04", doc([]byte{0x04}, hdr12[1:], []byte{0x12}), Limits{}, ErrUnsupportedVersion, 0},
		{"version 0x00 (WBXML 1.0)", doc([]byte{0x00}, hdr12[1:], []byte{0x12}), Limits{}, ErrUnsupportedVersion, 0},
		{"header only", hdr12, Limits{}, ErrTruncated, 5},
		{"public id 6-byte mb_u_int32", []byte{0x02, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x6A, 0x00, 0x12}, Limits{}, ErrBadInteger, 1},
		{"public id overflows 32 bits", []byte{0x02, 0x90, 0x80, 0x80, 0x80, 0x00, 0x6A, 0x00, 0x12}, Limits{}, ErrBadInteger, 1},
		{"public id string index out of table", []byte{0x02, 0x00, 0x05, 0x6A, 0x02, 'a', 0, 0x12}, Limits{}, ErrBadStringRef, 2},
		{"UTF-16 charset", []byte{0x02, 0xA4, 0x01, 0x87, 0x77, 0x00, 0x12}, Limits{}, ErrBadHeader, 3},
		{"string table longer than input", []byte{0x02, 0xA4, 0x01, 0x6A, 0x10, 'a', 'b', 0}, Limits{}, ErrTruncated, 4},
		{"string table 0xFFFFFFFF", []byte{0x02, 0xA4, 0x01, 0x6A, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0x12}, Limits{MaxStringTable: 1 << 40}, ErrTruncated, 4},
		{"string table over limit", doc([]byte{0x02, 0xA4, 0x01, 0x6A, 0x08}, []byte("abcdefg\x00"), []byte{0x12}), Limits{MaxStringTable: 4}, ErrTooLarge, 4},
		{"OPAQUE declaring 0xFFFFFFF bytes", doc(hdr12, []byte{0x6D, 0xC3, 0xFF, 0xFF, 0xFF, 0x7F, 'x', 0x01}), Limits{}, ErrTruncated, 6},
		{"OPAQUE length 6-byte mb_u_int32", doc(hdr12, []byte{0x6D, 0xC3, 0x81, 0x80, 0x80, 0x80, 0x80, 0x00, 0x01}), Limits{}, ErrBadInteger, 7},
		{"OPAQUE length overflow", doc(hdr12, []byte{0x6D, 0xC3, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x01}), Limits{}, ErrBadInteger, 7},
		{"STR_I unterminated", doc(hdr12, []byte{0x6D, 0x03, 'a', 'b'}), Limits{}, ErrTruncated, 6},
		{"STR_T out of range", doc([]byte{0x02, 0xA4, 0x01, 0x6A, 0x03, 'a', 'b', 0}, []byte{0x6D, 0x83, 0x05, 0x01}), Limits{}, ErrBadStringRef, 10},
		{"STR_T max offset", doc([]byte{0x02, 0xA4, 0x01, 0x6A, 0x03, 'a', 'b', 0}, []byte{0x6D, 0x83, 0x8F, 0xFF, 0xFF, 0xFF, 0x7F, 0x01}), Limits{}, ErrBadStringRef, 10},
		{"STR_T entry without NUL", doc([]byte{0x02, 0xA4, 0x01, 0x6A, 0x03, 'a', 0, 'b'}, []byte{0x6D, 0x83, 0x02, 0x01}), Limits{}, ErrBadStringRef, 10},
		{"LITERAL tag name out of range", doc(hdr12, []byte{0x44, 0x00, 0x01}), Limits{}, ErrBadStringRef, 6},
		{"10,000 nested tags", deep, Limits{}, ErrTooDeep, 5 + DefaultMaxDepth},
		{"nesting over custom limit", deep, Limits{MaxDepth: 3}, ErrTooDeep, 8},
		{"END at depth 0", doc(hdr12, []byte{0x01}), Limits{}, ErrUnbalanced, 5},
		{"END after root closed", doc(hdr12, []byte{0x6D, 0x01, 0x01}), Limits{}, ErrTrailingData, 7},
		{"second root", doc(hdr12, []byte{0x12, 0x12}), Limits{}, ErrTrailingData, 6},
		{"trailing garbage", doc(hdr12, []byte{0x6D, 0x01, 0xFF, 0xFF}), Limits{}, ErrTrailingData, 7},
		{"trailing SWITCH_PAGE", doc(hdr12, []byte{0x6D, 0x01, 0x00, 0x00}), Limits{}, ErrTrailingData, 7},
		{"open element at EOF", doc(hdr12, []byte{0x6D, 0x6C}), Limits{}, ErrTruncated, 7},
		{"text before root", doc(hdr12, []byte{0x03, 'a', 0, 0x12}), Limits{}, ErrBadToken, 5},
		{"opaque before root", doc(hdr12, []byte{0xC3, 0x00, 0x12}), Limits{}, ErrBadToken, 5},
		{"ENTITY NUL", doc(hdr12, []byte{0x6D, 0x02, 0x00, 0x01}), Limits{}, ErrBadToken, 6},
		{"ENTITY surrogate", doc(hdr12, []byte{0x6D, 0x02, 0x83, 0xB0, 0x00, 0x01}), Limits{}, ErrBadToken, 6},
		{"ENTITY beyond U+10FFFF", doc(hdr12, []byte{0x6D, 0x02, 0xC4, 0x80, 0x00, 0x01}), Limits{}, ErrBadToken, 6},
		{"PI inside attribute list", doc(hdr12, []byte{0xAD, 0x05, 0x43, 0x01, 0x01}), Limits{}, ErrBadToken, 7},
		{"attribute list unterminated", doc(hdr12, []byte{0xAD, 0x05, 0x85}), Limits{}, ErrTruncated, 8},
		{"attribute OPAQUE too long", doc(hdr12, []byte{0xAD, 0x05, 0xC3, 0x7F, 0x01}), Limits{}, ErrTruncated, 7},
		{"SWITCH_PAGE without page", doc(hdr12, []byte{0x6D, 0x00}), Limits{}, ErrTruncated, 6},
		{"too many tokens", doc(hdr12, []byte{0x6D, 0x12, 0x12, 0x12, 0x01}), Limits{MaxTokens: 3}, ErrTooManyTokens, 8},
		{"too many attribute tokens", doc(hdr12, []byte{0xAD, 0x05, 0x85, 0x85, 0x85, 0x01, 0x01}), Limits{MaxTokens: 3}, ErrTooManyTokens, 8},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := collect(tc.in, tc.lim)
			var we *Error
			if !errors.As(err, &we) {
				t.Fatalf("got %v, want *Error %v", err, tc.want)
			}
			if we.Kind != tc.want {
				t.Fatalf("got %v (%v), want %v", we.Kind, err, tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatal("errors.Is does not match the kind")
			}
			if tc.off >= 0 && we.Offset != tc.off {
				t.Fatalf("offset %d, want %d (%v)", we.Offset, tc.off, err)
			}
			if !strings.HasPrefix(err.Error(), "wbxml: offset ") {
				t.Fatalf("message %q", err.Error())
			}
		})
	}
}

func TestDeepButAllowed(t *testing.T) {
	in := doc(hdr12, bytes.Repeat([]byte{0x6D}, 10000), bytes.Repeat([]byte{0x01}, 10000))
	_, toks, err := collect(in, Limits{MaxDepth: 10000})
	if err != nil || len(toks) != 20000 {
		t.Fatalf("%v, %d tokens", err, len(toks))
	}
}

func TestErrorIsSticky(t *testing.T) {
	d, err := NewDecoder(doc(hdr12, []byte{0x01}), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	_, err1 := d.Next()
	_, err2 := d.Next()
	if err1 == nil || err1 != err2 {
		t.Fatalf("%v / %v", err1, err2)
	}
}

// TestGlobalTokens exercises every global token of WAP-192-WBXML §7.1 in one
// handcrafted document: LITERAL_AC root with an attribute list holding each
// attribute-value form, inline/table/entity text, PI, EXT_* (skipped),
// OPAQUE, an attribute-only tag, attribute SWITCH_PAGE (must not change the
// tag page) and tag SWITCH_PAGE.
func TestGlobalTokens(t *testing.T) {
	strtbl := []byte("name\x00val\x00")
	in := doc(
		[]byte{0x03, 0x01, 0x6A, byte(len(strtbl))}, strtbl,
		[]byte{0x43, 0x05, 0x03, 'p', 'i', 0x00, 0x01}, // PI before the root
		[]byte{0xC4, 0x00}, // LITERAL_AC "name"
		[]byte{0x05, 0x03, 'v', 0x00, 0x83, 0x05, 0x02, 0x41, 0x80, 0x05, 0xC0, 0x40, 'e', 0x00, 0xC3, 0x02, 0xFF, 0xFE,
			0x00, 0x01, 0x85, 0x04, 0x05, 0x06, 0x01}, // attributes, END
		[]byte{0x0B},                              // page-0 tag 0x0B, no content: attr page switch did not leak
		[]byte{0x03, 'h', 'i', 0x00},              // STR_I
		[]byte{0x02, 0x81, 0x69},                  // ENTITY U+00E9
		[]byte{0x02, 0x87, 0xE9, 0x2C},            // ENTITY U+1F4AC (4-byte UTF-8)
		[]byte{0x83, 0x05},                        // STR_T "val"
		[]byte{0x43, 0x05, 0x01},                  // PI
		[]byte{0x40, 'x', 0x00, 0x81, 0x03, 0xC2}, // EXT_I_0, EXT_T_1, EXT_2
		[]byte{0xC3, 0x03, 0x01, 0x00, 0x03},      // OPAQUE with a NUL inside
		[]byte{0x00, 0x01, 0x8E, 0x05, 0x01},      // page 1, tag 0x0E with attributes, no content
		[]byte{0x4E, 0x03, 0x00, 0x01},            // page 1, tag 0x0E with content: empty STR_I
		[]byte{0x01},                              // END of root (opened on page 0)
		[]byte{0x43, 0x05, 0x01},                  // PI after the root
	)
	want := []tok{
		{Kind: KindStart, Page: 0, Tag: LiteralTag, Literal: "name"},
		{Kind: KindStart, Page: 0, Tag: 0x0B},
		{Kind: KindEnd, Page: 0, Tag: 0x0B},
		{Kind: KindText, Text: "hi"},
		{Kind: KindText, Text: "é"},
		{Kind: KindText, Text: "\U0001F4AC"},
		{Kind: KindText, Text: "val"},
		{Kind: KindOpaque, Text: "\x01\x00\x03"},
		{Kind: KindStart, Page: 1, Tag: 0x0E},
		{Kind: KindEnd, Page: 1, Tag: 0x0E},
		{Kind: KindStart, Page: 1, Tag: 0x0E},
		{Kind: KindText, Text: ""},
		{Kind: KindEnd, Page: 1, Tag: 0x0E},
		{Kind: KindEnd, Page: 0, Tag: LiteralTag, Literal: "name"},
	}
	h, got, err := collect(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if h.Version != 3 || h.PublicID != PublicIDUnknown || h.FPI != "" || string(h.StringTable) != string(strtbl) {
		t.Fatalf("header %+v", h)
	}
	if len(got) != len(want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("token %d: got %v want %v", i, got[i], want[i])
		}
	}
}

func TestTokenOffsetsAndAliasing(t *testing.T) {
	in := doc(hdr12, []byte{0x6D, 0x03, 'a', 'b', 0x00, 0xC3, 0x02, 'c', 'd', 0x01})
	d, err := NewDecoder(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	wantOff := []int{5, 6, 10, 14, 15}
	for i, w := range wantOff {
		tk, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		if tk.Offset != w {
			t.Fatalf("token %d (%v) offset %d, want %d", i, tk.Kind, tk.Offset, w)
		}
		if tk.Kind == KindText || tk.Kind == KindOpaque {
			// Text must alias the input, not be a copy, and be capped so an
			// append by the caller cannot overwrite the input.
			if &tk.Text[0] != &in[tk.Offset+1+boolInt(tk.Kind == KindOpaque)] {
				t.Fatalf("token %d text is not a sub-slice of the input", i)
			}
			if cap(tk.Text) != len(tk.Text) {
				t.Fatalf("token %d text cap %d > len %d", i, cap(tk.Text), len(tk.Text))
			}
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestFPIHeaderForms(t *testing.T) {
	// Terminated FPI at a non-zero index, unknown FPI (copied), and a
	// known FPI that must be interned.
	st := []byte("xx\x00-//ACME//DTD Foo//EN\x00")
	in := doc([]byte{0x03, 0x00, 0x03, 0x6A, byte(len(st))}, st, []byte{0x05})
	d, err := NewDecoder(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if h := d.Header(); h.PublicID != 0 || h.FPI != "-//ACME//DTD Foo//EN" || LanguageFor(h) != nil {
		t.Fatalf("header %+v", h)
	}
	st = []byte(FPIDDF12 + "\x00")
	in = doc([]byte{0x03, 0x00, 0x00, 0x6A, byte(len(st))}, st, []byte{0x00, 0x02, 0x20})
	d, err = NewDecoder(in, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if h := d.Header(); h.FPI != FPIDDF12 || LanguageFor(h) != DDF12 {
		t.Fatalf("header %+v", h)
	}
	tk, err := d.Next()
	if err != nil || tk.Page != PageDDF || DDF12.Name(tk.Page, tk.Tag) != "MgmtTree" {
		t.Fatalf("%v %v", tk, err)
	}
}

func TestSkip(t *testing.T) {
	v := wbxmlVectors(t)[0] // 01_pkg1_client_init.fpi-strtbl.wbxml
	d, err := NewDecoder(v.data, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	next := func() Token {
		t.Helper()
		tk, err := d.Next()
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}
	if tk := next(); SyncML12.Name(tk.Page, tk.Tag) != "SyncML" {
		t.Fatal("root")
	}
	if tk := next(); SyncML12.Name(tk.Page, tk.Tag) != "SyncHdr" {
		t.Fatal("SyncHdr")
	}
	if err := d.Skip(); err != nil {
		t.Fatal(err)
	}
	if tk := next(); tk.Kind != KindStart || SyncML12.Name(tk.Page, tk.Tag) != "SyncBody" {
		t.Fatalf("after Skip: %v %s", tk.Kind, SyncML12.Name(tk.Page, tk.Tag))
	}
	// Skip inside SyncBody's first child's text skips the rest of it.
	next() // Alert
	next() // CmdID
	if err := d.Skip(); err != nil {
		t.Fatal(err)
	}
	if tk := next(); tk.Kind != KindStart || SyncML12.Name(tk.Page, tk.Tag) != "Data" {
		t.Fatalf("after Skip: %v %s", tk.Kind, SyncML12.Name(tk.Page, tk.Tag))
	}
	// Skip of an empty element consumes exactly its synthesized End.
	for {
		tk := next()
		if tk.Kind == KindStart && SyncML12.Name(tk.Page, tk.Tag) == "Final" {
			break
		}
	}
	if err := d.Skip(); err != nil {
		t.Fatal(err)
	}
	if tk := next(); tk.Kind != KindEnd || SyncML12.Name(tk.Page, tk.Tag) != "SyncBody" {
		t.Fatalf("after Skip(Final): %v %s", tk.Kind, SyncML12.Name(tk.Page, tk.Tag))
	}
}

// TestResetNoAlloc: decoding a whole message with a recycled Decoder
// allocates nothing, for every vector (including the string-table FPI form).
func TestResetNoAlloc(t *testing.T) {
	vs := wbxmlVectors(t)
	d := &Decoder{}
	for _, v := range vs {
		allocs := testing.AllocsPerRun(50, func() {
			if err := d.Reset(v.data, Limits{}); err != nil {
				t.Fatal(err)
			}
			for {
				tk, err := d.Next()
				if err != nil {
					t.Fatal(err)
				}
				if tk.Kind == KindEOF {
					break
				}
			}
		})
		if allocs != 0 {
			t.Errorf("%s: %.1f allocs per document", v.name, allocs)
		}
	}
}
