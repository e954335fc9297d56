package wbxml

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/beevik/etree"
)

func parseXML(t *testing.T, s string) *etree.Element {
	t.Helper()
	d := etree.NewDocument()
	if err := d.ReadFromString(s); err != nil {
		t.Fatal(err)
	}
	return d.Root()
}

func TestFromXMLToXMLRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		lang *Language
		xml  string
	}{
		{"DevInf", DevInf12, `<DevInf xmlns="syncml:devinf"><VerDTD>1.2</VerDTD><Man>Ex &amp; Co</Man><DevID>IMEI:1</DevID><Ext><XNam>x</XNam><XVal>1</XVal><XVal>2</XVal></Ext><SupportLargeObjs/></DevInf>`},
		{"DDF", DDF12, `<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Node><NodeName>FUMO</NodeName><DFProperties><AccessType><Get/><Replace/></AccessType><DFFormat><node/></DFFormat><Description>Firmware € update</Description></DFProperties></Node></MgmtTree>`},
		{"SyncML with prefixed MetInf", SyncML12, `<SyncML xmlns="SYNCML:SYNCML1.2" xmlns:mi="syncml:metinf"><SyncHdr><Meta><mi:MaxMsgSize>10000</mi:MaxMsgSize></Meta></SyncHdr><SyncBody><Final/></SyncBody></SyncML>`},
		{"SyncML 1.1", SyncML11, `<SyncML xmlns="SYNCML:SYNCML1.1"><SyncBody><Alert><Data>1201</Data></Alert><Final/></SyncBody></SyncML>`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := parseXML(t, tc.xml)
			b, err := FromXML(src, tc.lang, 0)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != DefaultVersion {
				t.Fatalf("version %#x", b[0])
			}
			doc, lang, err := ToXML(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if lang != tc.lang {
				t.Fatalf("language %s", lang.Title)
			}
			if d := treeDiff(src, doc.Root(), ""); d != "" {
				t.Fatal(d)
			}
		})
	}
}

func TestFromXMLNamespaceSelectsPage(t *testing.T) {
	src := parseXML(t, `<SyncML xmlns="SYNCML:SYNCML1.2"><Meta><Format xmlns="syncml:metinf">chr</Format></Meta><Data><MgmtTree xmlns="syncml:dmddf1.2"><Format/></MgmtTree></Data><Add/></SyncML>`)
	b, err := FromXML(src, SyncML12, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{0x02, 0xA4, 0x01, 0x6A, 0x00,
		0x6D,                                                          // SyncML
		0x5A, 0x00, 0x01, 0x47, 0x03, 'c', 'h', 'r', 0x00, 0x01, 0x01, // Meta, page 1, Format chr, END, END
		0x00, 0x00, 0x4F, // page 0, Data
		0x00, 0x02, 0x60, 0x1C, 0x01, 0x01, // page 2, MgmtTree, Format (DDF 0x1C), END, END(Data)
		0x00, 0x00, 0x05, 0x01} // page 0, Add, END(SyncML)
	if !bytes.Equal(b, want) {
		t.Fatalf("got % X\nwant % X", b, want)
	}
	doc, _, err := ToXML(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := doc.WriteToString()
	for _, frag := range []string{`<Format xmlns="syncml:metinf">chr</Format>`, `<MgmtTree xmlns="syncml:dmddf1.2"><Format/></MgmtTree>`, `<Data>`} {
		if !strings.Contains(s, frag) {
			t.Errorf("missing %s in %s", frag, s)
		}
	}
}

func TestFromXMLErrors(t *testing.T) {
	tests := []struct {
		xml  string
		lang *Language
		ver  byte
		want ErrKind
	}{
		{`<SyncML xmlns="SYNCML:SYNCML1.2"><Bogus/></SyncML>`, SyncML12, 2, ErrUnknownTag},
		{`<SyncML xmlns="SYNCML:SYNCML1.1"><Correlator>x</Correlator></SyncML>`, SyncML11, 2, ErrUnknownTag},
		{`<SyncML xmlns="SYNCML:SYNCML1.2"><Data id="1">x</Data></SyncML>`, SyncML12, 2, ErrBadToken},
		{`<SyncML/>`, SyncML12, 4, ErrUnsupportedVersion},
	}
	for _, tc := range tests {
		_, err := FromXML(parseXML(t, tc.xml), tc.lang, tc.ver)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.xml, err, tc.want)
		}
	}
	if _, err := FromXML(nil, SyncML12, 2); err == nil {
		t.Error("nil root accepted")
	}
}

func TestFromXMLWhitespaceAndMixedContent(t *testing.T) {
	src := parseXML(t, "<SyncML xmlns=\"SYNCML:SYNCML1.2\">\n  <Data> a b </Data>\n  <Data>\n  </Data>\n  <Item>x<Data>y</Data>z</Item>\n</SyncML>")
	b, err := FromXML(src, SyncML12, 2)
	if err != nil {
		t.Fatal(err)
	}
	_, toks, err := collect(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range toks {
		switch tk.Kind {
		case KindStart:
			got = append(got, "<"+SyncML12.Name(tk.Page, tk.Tag)+">")
		case KindEnd:
			got = append(got, "</>")
		case KindText:
			got = append(got, tk.Text)
		}
	}
	// Leaf text is kept verbatim, whitespace-only text is dropped
	// (whitespace-only <Data> becomes a bare empty tag).
	want := "<SyncML>|<Data>| a b |</>|<Data>|</>|<Item>|x|<Data>|y|</>|z|</>|</>"
	if strings.Join(got, "|") != want {
		t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
	}
}

func TestToXMLOpaqueAndCharsets(t *testing.T) {
	bin := []byte{0x00, 0x01, 0xFF, 0x80}
	ctrl := []byte("a\x01b") // valid UTF-8, but not an XML character
	e := NewEncoder(nil, Header{PublicID: PublicIDSyncML12})
	e.Start(0, 0x2D, true)
	e.Start(0, 0x0F, true)
	e.Opaque([]byte("plain €"))
	e.End()
	e.Start(0, 0x0F, true)
	e.Opaque(bin)
	e.End()
	e.Start(0, 0x0F, true)
	e.Opaque(ctrl)
	e.End()
	e.End()
	doc, _, err := ToXML(e.Bytes(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	data := doc.Root().ChildElements()
	want := []string{"plain €", base64.StdEncoding.EncodeToString(bin), base64.StdEncoding.EncodeToString(ctrl)}
	for i, w := range want {
		if data[i].Text() != w {
			t.Errorf("Data %d = %q, want %q", i, data[i].Text(), w)
		}
	}

	// ISO-8859-1 text is converted to UTF-8.
	e = NewEncoder(nil, Header{PublicID: PublicIDSyncML12, Charset: charsetLatin1})
	e.Start(0, 0x0F, true)
	e.Text([]byte{'c', 'a', 'f', 0xE9})
	e.End()
	doc, _, err = ToXML(e.Bytes(), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if doc.Root().Text() != "café" {
		t.Errorf("latin-1 text %q", doc.Root().Text())
	}
}

func TestToXMLErrors(t *testing.T) {
	strtbl := []byte("Foo\x00a b\x00")
	tests := []struct {
		name string
		in   []byte
		want ErrKind
	}{
		{"unknown language", []byte{0x02, 0x01, 0x6A, 0x00, 0x05}, ErrUnknownLanguage},
		{"SyncML 1.0", []byte{0x02, 0x9F, 0x51, 0x6A, 0x00, 0x05}, ErrUnknownLanguage},
		{"reserved tag 0x30", doc(hdr12, []byte{0x6D, 0x30, 0x01}), ErrUnknownTag},
		{"tag beyond table", doc(hdr12, []byte{0x6D, 0x3F, 0x01}), ErrUnknownTag},
		{"undefined page", doc(hdr12, []byte{0x6D, 0x00, 0x07, 0x05, 0x01}), ErrUnknownTag},
		{"Correlator in SyncML 1.1", []byte{0x02, 0x9F, 0x53, 0x6A, 0x00, 0x6D, 0x3C, 0x01}, ErrUnknownTag},
		{"literal that is not an XML name", doc([]byte{0x02, 0xA4, 0x01, 0x6A, byte(len(strtbl))}, strtbl, []byte{0x6D, 0x04, 0x04, 0x01}), ErrUnknownTag},
		{"decoder error", doc(hdr12, []byte{0x6D}), ErrTruncated},
	}
	for _, tc := range tests {
		if _, _, err := ToXML(tc.in, Limits{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
	}
	// A literal with a valid name is accepted and inherits the namespace.
	d, _, err := ToXML(doc([]byte{0x02, 0xA4, 0x01, 0x6A, byte(len(strtbl))}, strtbl, []byte{0x6D, 0x44, 0x00, 0x03, 'v', 0x00, 0x01, 0x01}), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	foo := d.Root().SelectElement("Foo")
	if foo == nil || foo.Text() != "v" || foo.NamespaceURI() != NamespaceSyncML12 || foo.SelectAttr("xmlns") != nil {
		t.Fatalf("literal element: %+v", foo)
	}
}
