package wbxml

import (
	"errors"
	"os"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

// FuzzDecoder: the decoder never panics and reports errors as *Error with
// an offset inside the input; a cleanly decoded stream re-encoded through
// Encoder decodes to the same token stream (LITERAL tags excepted: the
// Encoder has no string-table API). ToXML must not panic either.
func FuzzDecoder(f *testing.F) {
	for _, p := range vectors.Glob(f, "messages/*.wbxml") {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add(doc(hdr12, []byte{0x6D, 0xAD, 0x05, 0x85, 0x01, 0x03, 'a', 0x00, 0x02, 0x81, 0x69, 0xC3, 0x01, 0x00, 0x00, 0x01, 0x53, 0x01, 0x12, 0x01}))
	f.Add([]byte{0x03, 0x00, 0x00, 0x6A, 0x05, 'a', 0x00, 'b', 0x00, 0x00, 0x44, 0x02, 0x83, 0x00, 0x43, 0x05, 0x01, 0x40, 'x', 0x00, 0x01})
	lim := Limits{MaxDepth: 64, MaxTokens: 1 << 16}
	f.Fuzz(func(t *testing.T, b []byte) {
		h, toks, err := collect(b, lim)
		if err != nil {
			var we *Error
			if !errors.As(err, &we) || we.Kind == 0 || we.Offset < 0 || we.Offset > len(b) {
				t.Fatalf("bad error %#v", err)
			}
			return
		}
		_, _, _ = ToXML(b, lim)
		out, ok := reencode(h, toks)
		if !ok {
			return
		}
		_, toks2, err := collect(out, lim)
		if err != nil {
			t.Fatalf("re-encoded stream does not decode: %v\nin  % X\nout % X", err, b, out)
		}
		if len(toks2) != len(toks) {
			t.Fatalf("%d tokens after round trip, want %d", len(toks2), len(toks))
		}
		for i := range toks {
			if toks[i] != toks2[i] {
				t.Fatalf("token %d: %v after round trip, want %v", i, toks2[i], toks[i])
			}
		}
	})
}
