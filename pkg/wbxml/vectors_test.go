package wbxml

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

// TestDecodeVectors decodes every libwbxml vector with the iterator: the
// header is what vectors/README.md says, events are balanced, the stream
// ends with KindEOF, and every tag is defined in SyncML 1.2.
func TestDecodeVectors(t *testing.T) {
	for _, v := range wbxmlVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			d, err := NewDecoder(v.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			h := d.Header()
			switch {
			case strings.Contains(v.name, ".fpi-strtbl."):
				// 02 00 00 6A 1D + FPI without terminator (PROTOCOL.md §8.1).
				if h.Version != 0x02 || h.PublicID != 0 || h.FPI != FPISyncML12 || len(h.StringTable) != 29 {
					t.Fatalf("header %+v", h)
				}
			case strings.HasSuffix(v.name, ".st.wbxml"):
				if h.Version != 0x03 || h.PublicID != PublicIDSyncML12 || len(h.StringTable) == 0 {
					t.Fatalf("header %+v", h)
				}
			default:
				if h.Version != 0x02 || h.PublicID != PublicIDSyncML12 || h.FPI != FPISyncML12 || len(h.StringTable) != 0 {
					t.Fatalf("header %+v", h)
				}
			}
			if h.Charset != CharsetUTF8 {
				t.Fatalf("charset %d", h.Charset)
			}
			if LanguageFor(h) != SyncML12 {
				t.Fatalf("LanguageFor = %v", LanguageFor(h))
			}
			var stack []Token
			starts, texts, opaques := 0, 0, 0
			first := true
			for {
				tk, err := d.Next()
				if err != nil {
					t.Fatal(err)
				}
				if tk.Kind == KindEOF {
					break
				}
				switch tk.Kind {
				case KindStart:
					if first && (tk.Page != PageSyncML || SyncML12.Name(tk.Page, tk.Tag) != "SyncML") {
						t.Fatalf("root is %d/0x%02X", tk.Page, tk.Tag)
					}
					if SyncML12.Name(tk.Page, tk.Tag) == "" {
						t.Fatalf("undefined tag %d/0x%02X at %d", tk.Page, tk.Tag, tk.Offset)
					}
					stack = append(stack, tk)
					starts++
				case KindEnd:
					if len(stack) == 0 {
						t.Fatalf("End without Start at %d", tk.Offset)
					}
					top := stack[len(stack)-1]
					if top.Page != tk.Page || top.Tag != tk.Tag {
						t.Fatalf("End %d/0x%02X closes %d/0x%02X", tk.Page, tk.Tag, top.Page, top.Tag)
					}
					stack = stack[:len(stack)-1]
				case KindText:
					texts++
				case KindOpaque:
					// libwbxml writes only some Data content as OPAQUE
					// (vectors/README.md); never anything else.
					if len(stack) < 2 || SyncML12.Name(PageSyncML, stack[len(stack)-1].Tag) != "Data" {
						t.Fatalf("OPAQUE outside Data at %d", tk.Offset)
					}
					opaques++
				}
				if len(stack) != d.Depth() {
					t.Fatalf("Depth() = %d, stack %d", d.Depth(), len(stack))
				}
				first = false
			}
			if len(stack) != 0 || starts < 10 || texts == 0 {
				t.Fatalf("stack %d, starts %d, texts %d", len(stack), starts, texts)
			}
			// Replace/Item/Data is written as OPAQUE by libwbxml.
			if bytes.Contains(v.data, []byte("./DevInfo/")) && opaques == 0 {
				t.Fatalf("no OPAQUE token")
			}
			// EOF is sticky.
			if tk, err := d.Next(); err != nil || tk.Kind != KindEOF {
				t.Fatalf("after EOF: %v %v", tk, err)
			}
		})
	}
}

// TestStringTableVectorsMatchPlain: the .st flavour (STR_T references) and
// the FPI flavour yield the token stream of the plain flavour once adjacent
// text tokens are merged (libwbxml splits strings into STR_T + STR_I when a
// prefix is in the string table, e.g. RespURI = STR_T "https://…omadm" +
// STR_I "?s=1A2B-7f3c").
func TestStringTableVectorsMatchPlain(t *testing.T) {
	byStem := map[string]map[string][]tok{}
	for _, v := range wbxmlVectors(t) {
		_, toks, err := collect(v.data, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", v.name, err)
		}
		toks = mergeText(toks)
		stem, flavour, _ := strings.Cut(v.name, ".")
		if byStem[stem] == nil {
			byStem[stem] = map[string][]tok{}
		}
		byStem[stem][flavour] = toks
	}
	sawStrT := false
	for stem, fl := range byStem {
		plain := fl["wbxml"]
		for name, toks := range fl {
			if name == "wbxml" {
				continue
			}
			if name == "st.wbxml" {
				sawStrT = true
			}
			if len(toks) != len(plain) {
				t.Fatalf("%s.%s: %d tokens vs %d", stem, name, len(toks), len(plain))
			}
			for i := range toks {
				if toks[i] != plain[i] {
					t.Fatalf("%s.%s token %d: %v vs %v", stem, name, i, toks[i], plain[i])
				}
			}
		}
	}
	if !sawStrT {
		t.Fatal("no .st.wbxml vectors")
	}
}

// TestToXMLVectors: ToXML of every vector has the element tree of the XML it
// was generated from.
func TestToXMLVectors(t *testing.T) {
	for _, v := range wbxmlVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			doc, lang, err := ToXML(v.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if lang != SyncML12 {
				t.Fatalf("language %v", lang.Title)
			}
			want := readXML(t, v.xml)
			if d := treeDiff(want, doc.Root(), ""); d != "" {
				t.Fatal(d)
			}
			// And the etree document survives serialisation.
			s, err := doc.WriteToString()
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(s, `<SyncML xmlns="SYNCML:SYNCML1.2">`) ||
				strings.Contains(s, "<Meta>") != strings.Contains(s, `xmlns="syncml:metinf"`) {
				t.Fatalf("unexpected XML: %.200s", s)
			}
		})
	}
}

// TestEncoderReproducesVectors: re-encoding the decoded tokens of every "-n"
// vector through Encoder gives libwbxml's bytes exactly (lazy SWITCH_PAGE,
// bare empty tags, OPAQUE kept as OPAQUE).
func TestEncoderReproducesVectors(t *testing.T) {
	n := 0
	for _, v := range wbxmlVectors(t) {
		if !plainVector(v) {
			continue
		}
		n++
		t.Run(v.name, func(t *testing.T) {
			h, toks, err := collect(v.data, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			out, ok := reencode(h, toks)
			if !ok {
				t.Fatal("re-encode failed")
			}
			if !bytes.Equal(out, v.data) {
				i := 0
				for i < len(out) && i < len(v.data) && out[i] == v.data[i] {
					i++
				}
				t.Fatalf("bytes differ at offset %d (len %d vs %d)", i, len(out), len(v.data))
			}
		})
	}
	if n < 11 {
		t.Fatalf("only %d plain vectors", n)
	}
}

// TestFromXMLLibwbxml: FromXML of each vector's XML decodes with libwbxml's
// wbxml2xml to the same tree, and our own ToXML agrees too.
func TestFromXMLLibwbxml(t *testing.T) {
	vs := wbxmlVectors(t)
	w2x := libwbxml(t, "wbxml2xml")
	seen := map[string]bool{}
	for _, v := range vs {
		if seen[v.xml] {
			continue
		}
		seen[v.xml] = true
		t.Run(filepath.Base(v.xml), func(t *testing.T) {
			src := readXML(t, v.xml)
			for _, ver := range []byte{0x01, 0x02, 0x03} {
				b, err := FromXML(src, SyncML12, ver)
				if err != nil {
					t.Fatal(err)
				}
				if b[0] != ver || !bytes.HasPrefix(b[1:], []byte{0xA4, 0x01, 0x6A, 0x00}) {
					t.Fatalf("header % X", b[:5])
				}
				got := runWbxml2xml(t, w2x, b)
				if d := treeDiff(src, got, ""); d != "" {
					t.Fatalf("v%d libwbxml: %s", ver, d)
				}
				doc, _, err := ToXML(b, Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if d := treeDiff(src, doc.Root(), ""); d != "" {
					t.Fatalf("v%d ToXML: %s", ver, d)
				}
			}
		})
	}
}

func runWbxml2xml(t *testing.T, tool string, b []byte) *etree.Element {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.wbxml"), filepath.Join(dir, "out.xml")
	if err := os.WriteFile(in, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if msg, err := exec.Command(tool, "-o", out, in).CombinedOutput(); err != nil {
		t.Fatalf("wbxml2xml: %v: %s", err, msg)
	}
	return readXML(t, out)
}

func runXml2wbxml(t *testing.T, tool, xml string, args ...string) []byte {
	t.Helper()
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.xml"), filepath.Join(dir, "out.wbxml")
	if err := os.WriteFile(in, []byte(xml), 0o600); err != nil {
		t.Fatal(err)
	}
	args = append(args, "-o", out, in)
	if msg, err := exec.Command(tool, args...).CombinedOutput(); err != nil {
		t.Fatalf("xml2wbxml: %v: %s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestTruncatedVectors cuts every vector at every byte offset: each prefix
// must fail with ErrTruncated (never panic, never succeed), because the
// root's END is the last byte of every vector.
func TestTruncatedVectors(t *testing.T) {
	for _, v := range wbxmlVectors(t) {
		for n := 0; n < len(v.data); n++ {
			_, _, err := collect(v.data[:n], Limits{})
			var we *Error
			if !errors.As(err, &we) || we.Kind != ErrTruncated {
				t.Fatalf("%s[:%d]: got %v, want ErrTruncated", v.name, n, err)
			}
			if we.Offset < 0 || we.Offset > n {
				t.Fatalf("%s[:%d]: offset %d out of range", v.name, n, we.Offset)
			}
		}
	}
}

// mergeText joins adjacent KindText tokens.
func mergeText(toks []tok) []tok {
	var out []tok
	for _, t := range toks {
		if t.Kind == KindText && len(out) > 0 && out[len(out)-1].Kind == KindText {
			out[len(out)-1].Text += t.Text
			continue
		}
		out = append(out, t)
	}
	return out
}
