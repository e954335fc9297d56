package wbxml

import (
	"bytes"
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// BenchmarkDecodeTokens iterates every vector with a recycled Decoder
// (Reset), the way the SyncML layer uses it from a sync.Pool, through both
// Next and NextInto. Target: 0 allocs/op.
func BenchmarkDecodeTokens(b *testing.B) {
	d := &Decoder{}
	vs := wbxmlVectors(b)
	for _, api := range []string{"Next", "NextInto"} {
		for _, v := range vs {
			n := countTokens(b, v.data)
			b.Run(api+"/"+v.name, func(b *testing.B) {
				b.SetBytes(int64(len(v.data)))
				b.ReportAllocs()
				var tk Token
				for b.Loop() {
					if err := d.Reset(v.data, Limits{}); err != nil {
						b.Fatal(err)
					}
					for {
						var err error
						if api == "Next" {
							tk, err = d.Next()
						} else {
							err = d.NextInto(&tk)
						}
						if err != nil {
							b.Fatal(err)
						}
						if tk.Kind == KindEOF {
							break
						}
					}
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/token")
			})
		}
	}
}

func countTokens(b *testing.B, in []byte) int {
	_, toks, err := collect(in, Limits{})
	if err != nil {
		b.Fatal(err)
	}
	return len(toks)
}

// BenchmarkEncodingXMLTokens is a reference point only: encoding/xml merely
// tokenising the same messages as XML (no Unmarshal).
func BenchmarkEncodingXMLTokens(b *testing.B) {
	seen := map[string]bool{}
	for _, v := range wbxmlVectors(b) {
		if seen[v.xml] {
			continue
		}
		seen[v.xml] = true
		src, err := os.ReadFile(v.xml)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(strings.TrimSuffix(filepath.Base(v.xml), ".xml"), func(b *testing.B) {
			b.SetBytes(int64(len(src)))
			b.ReportAllocs()
			for b.Loop() {
				xd := xml.NewDecoder(bytes.NewReader(src))
				for {
					if _, err := xd.Token(); err == io.EOF {
						break
					} else if err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}

// BenchmarkEncode re-encodes each plain vector's token stream into a reused
// buffer.
func BenchmarkEncode(b *testing.B) {
	for _, v := range wbxmlVectors(b) {
		if !plainVector(v) {
			continue
		}
		h, toks, err := collect(v.data, Limits{})
		if err != nil {
			b.Fatal(err)
		}
		b.Run(v.name, func(b *testing.B) {
			e := &Encoder{}
			buf := make([]byte, 0, 2*len(v.data))
			b.SetBytes(int64(len(v.data)))
			b.ReportAllocs()
			for b.Loop() {
				e.Reset(buf[:0], h)
				for i := 0; i < len(toks); i++ {
					t := toks[i]
					switch t.Kind {
					case KindStart:
						if i+1 < len(toks) && toks[i+1].Kind == KindEnd {
							e.Start(t.Page, t.Tag, false)
							i++
						} else {
							e.Start(t.Page, t.Tag, true)
						}
					case KindEnd:
						e.End()
					case KindText:
						e.TextString(t.Text)
					case KindOpaque:
						e.OpaqueString(t.Text)
					}
				}
				buf = e.Bytes()
			}
		})
	}
}
