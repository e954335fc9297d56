package syncml

import (
	"errors"
	"os"
	"reflect"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

// Fuzz targets for both decoders, seeded with every message vector. Properties: decoding
// never panics and only returns *Error; a message that decodes re-encodes (in both
// encodings) and decodes to the same model.

func seed(f *testing.F, pattern string) {
	for _, p := range vectors.Glob(f, pattern) {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

func checkStable(t *testing.T, b []byte, enc Encoding) {
	m, _, err := Decode(b, enc, Limits{})
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("untyped error %T: %v", err, err)
		}
		return
	}
	for _, out := range []Encoding{EncodingXML, EncodingWBXML} {
		b2, err := Encode(m, out)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Code == ErrUnrepresentable && out == EncodingXML {
				continue // binary WBXML data has no XML form without Format b64
			}
			t.Fatalf("encode %s: %v", out, err)
		}
		m2, _, err := Decode(b2, out, Limits{})
		if err != nil {
			t.Fatalf("re-decode %s: %v\n%q", out, err, b2)
		}
		if !reflect.DeepEqual(normalised(m2), normalised(m)) {
			t.Fatalf("%s round trip changed the model\n got %+v\nwant %+v", out, m2, m)
		}
	}
}

func FuzzDecodeXML(f *testing.F) {
	seed(f, "messages/*.xml")
	f.Fuzz(func(t *testing.T, b []byte) { checkStable(t, b, EncodingXML) })
}

func FuzzDecodeWBXML(f *testing.F) {
	seed(f, "messages/*.wbxml")
	f.Fuzz(func(t *testing.T, b []byte) { checkStable(t, b, EncodingWBXML) })
}
