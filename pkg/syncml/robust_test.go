package syncml

import (
	"errors"
	"runtime"
	"strings"
	"testing"
)

const hdr12 = `<SyncHdr><VerDTD>1.2</VerDTD><VerProto>DM/1.2</VerProto><SessionID>1</SessionID><MsgID>1</MsgID>` +
	`<Target><LocURI>https://s/dm</LocURI></Target><Source><LocURI>IMEI:1</LocURI></Source></SyncHdr>`

func doc(body string) string {
	return `<SyncML xmlns="SYNCML:SYNCML1.2">` + hdr12 + `<SyncBody>` + body + `</SyncBody></SyncML>`
}

func mustDecode(t *testing.T, s string) *Message {
	t.Helper()
	m, err := DecodeXML([]byte(s), Limits{})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	if err := Validate(m); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return m
}

// Each test below is named after the client divergence of PROTOCOL.md §12 (or the XML
// feature of the issue) that it proves we accept.

func TestAcceptsNamespacePrefixes(t *testing.T) {
	s := `<s:SyncML xmlns:s="SYNCML:SYNCML1.2" xmlns:mi="syncml:metinf">` +
		strings.ReplaceAll(strings.ReplaceAll(hdr12, "<", "<s:"), "<s:/", "</s:") +
		`<s:SyncBody><s:Get><s:CmdID>1</s:CmdID><s:Meta><mi:MaxObjSize>10</mi:MaxObjSize></s:Meta>` +
		`<s:Item><s:Target><s:LocURI>./A</s:LocURI></s:Target></s:Item></s:Get><s:Final/></s:SyncBody></s:SyncML>`
	m := mustDecode(t, s)
	if len(m.Body.Commands) != 1 || m.Body.Commands[0].Meta.MaxObjSize != "10" || !m.Body.Final {
		t.Fatalf("prefixed message decoded as %+v", m.Body)
	}
}

func TestAcceptsNamespaceCaseVariants(t *testing.T) {
	s := strings.Replace(doc(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`), "SYNCML:SYNCML1.2", "syncml:syncml1.2", 1)
	m := mustDecode(t, s)
	eq(t, "alert", m.Body.Commands[0].Data, "1201")
}

func TestAcceptsElementNameCaseVariants(t *testing.T) {
	s := doc(`<alert><cmdid>1</cmdid><data>1201</data></alert>`)
	m := mustDecode(t, s)
	eq(t, "alert", m.Body.Commands[0].Data, "1201")
}

func TestAcceptsMetInfWithoutNamespace(t *testing.T) {
	m := mustDecode(t, doc(`<Get><CmdID>1</CmdID><Item><Target><LocURI>./A</LocURI></Target><Meta><Format>chr</Format></Meta></Item></Get>`))
	eq(t, "format", m.Body.Commands[0].Items[0].Meta.Format, "chr")
}

func TestAcceptsMetaChildrenInAnyOrder(t *testing.T) {
	a := mustDecode(t, doc(`<Get><CmdID>1</CmdID><Meta><Type xmlns="syncml:metinf">t</Type><Format xmlns="syncml:metinf">f</Format></Meta><Item><Target><LocURI>./A</LocURI></Target></Item></Get>`))
	b := mustDecode(t, doc(`<Get><CmdID>1</CmdID><Meta><Format xmlns="syncml:metinf">f</Format><Type xmlns="syncml:metinf">t</Type></Meta><Item><Target><LocURI>./A</LocURI></Target></Item></Get>`))
	if *a.Body.Commands[0].Meta != *b.Body.Commands[0].Meta {
		t.Fatalf("%+v != %+v", a.Body.Commands[0].Meta, b.Body.Commands[0].Meta)
	}
}

func TestAcceptsMsgRefBeforeCmdID(t *testing.T) {
	m := mustDecode(t, doc(`<Status><MsgRef>1</MsgRef><CmdID>1</CmdID><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>`))
	c := m.Body.Commands[0]
	eq(t, "msgref", c.MsgRef, "1")
	eq(t, "cmdid", c.CmdID, "1")
}

func TestAcceptsCDATAAndEscapedData(t *testing.T) {
	m := mustDecode(t, doc(`<Replace><CmdID>1</CmdID>`+
		`<Item><Target><LocURI>./A</LocURI></Target><Data><![CDATA[ a<b>&c ]]></Data></Item>`+
		`<Item><Target><LocURI>./B</LocURI></Target><Data>  x &lt;y&gt; &amp;z &#65;&#x42;&quot;&apos; </Data></Item>`+
		`</Replace>`))
	eq(t, "cdata kept verbatim", m.Body.Commands[0].Items[0].Data.Value, " a<b>&c ")
	eq(t, "escaped and trimmed", m.Body.Commands[0].Items[1].Data.Value, `x <y> &z AB"'`)
}

func TestAcceptsLeadingWhitespaceAndBOM(t *testing.T) {
	mustDecode(t, "\xEF\xBB\xBF \n\t<?xml version=\"1.0\"?>\n<!-- c -->"+doc(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`)+"\n<!-- end -->\n")
	if Sniff([]byte("\r\n  <SyncML/>")) != EncodingXML {
		t.Error("Sniff missed XML after white space")
	}
}

func TestAcceptsExternalDOCTYPE(t *testing.T) {
	mustDecode(t, `<!DOCTYPE SyncML PUBLIC "-//SYNCML//DTD SyncML 1.2//EN" "http://www.syncml.org/docs/syncml_represent_v12_20040319.dtd">`+
		doc(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`))
}

func TestAcceptsSyncML11(t *testing.T) {
	s := strings.NewReplacer("SYNCML1.2", "SYNCML1.1", "<VerDTD>1.2", "<VerDTD>1.1", "DM/1.2", "DM/1.1").
		Replace(doc(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`))
	m := mustDecode(t, s)
	eq(t, "namespace", m.Namespace(), "SYNCML:SYNCML1.1")
	b, err := Encode(m, EncodingWBXML)
	if err != nil {
		t.Fatal(err)
	}
	if b[1] != 0x9F || b[2] != 0x53 {
		t.Errorf("DM 1.1 WBXML public id = % x, want 9f 53 (0x0FD3)", b[1:3])
	}
}

func TestAcceptsEmptyItems(t *testing.T) {
	m := mustDecode(t, doc(`<Alert><CmdID>1</CmdID><Data>1100</Data><Item></Item><Item/><Item><Data/></Item></Alert>`))
	items := m.Body.Commands[0].Items
	if len(items) != 3 || items[0].Data != nil || items[2].Data == nil || items[2].Data.Value != "" {
		t.Fatalf("items = %+v", items)
	}
}

func TestAcceptsStatusWithoutSourceRef(t *testing.T) {
	m := mustDecode(t, doc(`<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><TargetRef>IMEI:1</TargetRef><Data>212</Data></Status>`))
	if len(m.Body.Commands[0].SourceRefs) != 0 {
		t.Fatal("unexpected SourceRef")
	}
}

func TestSkipsUnknownElements(t *testing.T) {
	m := mustDecode(t, doc(`<Vendor><x>1</x></Vendor><Alert><CmdID>1</CmdID><Foo a="1">bar</Foo><Data>1201</Data></Alert><Sync><CmdID>9</CmdID></Sync>`))
	eq(t, "commands", kinds(m.Body.Commands), "Alert")
}

func TestEmbeddedXMLData(t *testing.T) {
	ddf := `<MgmtTree xmlns="syncml:dmddf1.2"><VerDTD>1.2</VerDTD><Node><NodeName>A</NodeName><DFProperties><AccessType><Get/></AccessType><DFFormat><chr/></DFFormat></DFProperties></Node></MgmtTree>`
	m := mustDecode(t, doc(`<Results><CmdID>1</CmdID><CmdRef>2</CmdRef><Item><Source><LocURI>./A</LocURI></Source>`+
		`<Meta><Format xmlns="syncml:metinf">xml</Format></Meta><Data>`+ddf+`</Data></Item></Results>`))
	d := m.Body.Commands[0].Items[0].Data
	if d.Kind != DataXML || d.Value != ddf {
		t.Fatalf("embedded data = %v %q", d.Kind, d.Value)
	}
	// Both encodings carry it and give the same markup back.
	for _, enc := range []Encoding{EncodingXML, EncodingWBXML} {
		b, err := Encode(m, enc)
		if err != nil {
			t.Fatal(err)
		}
		m2, _, err := Decode(b, enc, Limits{})
		if err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		d2 := m2.Body.Commands[0].Items[0].Data
		if d2.Kind != DataXML || !sameMarkup(t, d2.Value, ddf) {
			t.Errorf("%s round trip of embedded DDF: %v %q", enc, d2.Kind, d2.Value)
		}
	}
}

func TestParseContentType(t *testing.T) {
	for in, want := range map[string]Encoding{
		"application/vnd.syncml.dm+xml":                  EncodingXML,
		"application/vnd.syncml.dm+wbxml":                EncodingWBXML,
		"Application/VND.SyncML.DM+WBXML; charset=utf-8": EncodingWBXML,
		"application/vnd.syncml+xml":                     EncodingXML,
		"application/vnd.syncml+wbxml":                   EncodingWBXML,
		"text/xml":                                       EncodingUnknown,
		"":                                               EncodingUnknown,
	} {
		if got := ParseContentType(in); got != want {
			t.Errorf("ParseContentType(%q) = %v, want %v", in, got, want)
		}
	}
}

// Hostile and malformed input: every case returns the expected typed error.
func TestHostileXML(t *testing.T) {
	deep := strings.Repeat("<a>", 10000) + strings.Repeat("</a>", 10000)
	many := doc(strings.Repeat(`<Alert><CmdID>1</CmdID><Data>1201</Data></Alert>`, 30000))
	cases := []struct {
		name string
		in   string
		lim  Limits
		code Code
	}{
		{"empty", "", Limits{}, ErrTruncated},
		{"not xml", "hello", Limits{}, ErrMalformed},
		{"billion laughs", `<!DOCTYPE SyncML [<!ENTITY a "aaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><SyncML>&b;</SyncML>`, Limits{}, ErrForbiddenMarkup},
		{"external entity", `<SyncML>&xxe;</SyncML>`, Limits{}, ErrForbiddenMarkup},
		{"entity decl outside doctype", `<!ENTITY a "b"><SyncML/>`, Limits{}, ErrForbiddenMarkup},
		{"deep nesting", `<SyncML>` + deep + `</SyncML>`, Limits{}, ErrTooDeep},
		{"too many elements", many, Limits{MaxElements: 1000}, ErrTooManyElements},
		{"too large", doc(""), Limits{MaxBodyBytes: 100}, ErrTooLarge},
		{"mismatched end", `<SyncML><SyncHdr></SyncBody></SyncML>`, Limits{}, ErrMalformed},
		{"unterminated", `<SyncML><SyncHdr>`, Limits{}, ErrTruncated},
		{"unterminated cdata", `<SyncML><![CDATA[abc`, Limits{}, ErrTruncated},
		{"two roots", `<SyncML></SyncML><SyncML></SyncML>`, Limits{}, ErrMalformed},
		{"text after root", `<SyncML></SyncML>junk`, Limits{}, ErrMalformed},
		{"bad char ref", `<SyncML>&#0;</SyncML>`, Limits{}, ErrMalformed},
		{"surrogate char ref", `<SyncML>&#xD800;</SyncML>`, Limits{}, ErrMalformed},
		{"invalid utf8", "<SyncML>\xff\xfe</SyncML>", Limits{}, ErrMalformed},
		{"not SyncML", `<html><body/></html>`, Limits{}, ErrNotSyncML},
		{"unquoted attribute", `<SyncML a=b></SyncML>`, Limits{}, ErrMalformed},
		{"lt in attribute", `<SyncML a="<"></SyncML>`, Limits{}, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeXML([]byte(c.in), c.lim)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want *Error with code %v", err, c.code)
			}
			if e.Code != c.code {
				t.Fatalf("code = %v (%v), want %v", e.Code, err, c.code)
			}
			if e.Offset < 0 {
				t.Errorf("no offset in %v", err)
			}
		})
	}
}

// TestTruncatedEverywhere cuts every vector at every byte: each prefix must fail with a
// typed error (or, for a prefix that is itself complete, decode) and never panic.
func TestTruncatedEverywhere(t *testing.T) {
	dir, names := messageVectors(t)
	for _, name := range names {
		for _, ext := range []string{".xml", ".wbxml", ".st.wbxml"} {
			b := readFile(t, dir+"/"+name+ext)
			for i := 0; i < len(b); i++ {
				_, _, err := Decode(b[:i], EncodingUnknown, Limits{})
				if err == nil {
					// Only possible for XML whose root closed before the cut (trailing
					// white space removed).
					if strings.TrimSpace(string(b[i:])) != "" {
						t.Fatalf("%s%s cut at %d decoded without error", name, ext, i)
					}
					continue
				}
				var e *Error
				if !errors.As(err, &e) {
					t.Fatalf("%s%s cut at %d: untyped error %v", name, ext, i, err)
				}
			}
		}
	}
}

func TestValidate(t *testing.T) {
	get := `<Get><CmdID>2</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Get>`
	cases := []struct {
		name string
		in   string
		code Code
		path string
	}{
		{"ok", doc(get), 0, ""},
		{"missing VerDTD", strings.Replace(doc(""), "<VerDTD>1.2</VerDTD>", "", 1), ErrMissingElement, "SyncHdr/VerDTD"},
		{"DTD 1.0", strings.Replace(doc(""), "<VerDTD>1.2", "<VerDTD>1.0", 1), ErrUnsupportedDTD, "SyncHdr/VerDTD"},
		{"proto DS", strings.Replace(doc(""), "DM/1.2", "SyncML/1.2", 1), ErrUnsupportedProto, "SyncHdr/VerProto"},
		{"no SessionID", strings.Replace(doc(""), "<SessionID>1</SessionID>", "", 1), ErrMissingElement, "SyncHdr/SessionID"},
		{"MsgID zero", strings.Replace(doc(""), "<MsgID>1", "<MsgID>0", 1), ErrBadValue, "SyncHdr/MsgID"},
		{"MsgID text", strings.Replace(doc(""), "<MsgID>1", "<MsgID>x", 1), ErrBadValue, "SyncHdr/MsgID"},
		{"no Target", strings.Replace(doc(""), "<Target><LocURI>https://s/dm</LocURI></Target>", "", 1), ErrMissingElement, "SyncHdr/Target/LocURI"},
		{"bad MaxMsgSize", strings.Replace(doc(""), "</SyncHdr>", `<Meta><MaxMsgSize xmlns="syncml:metinf">big</MaxMsgSize></Meta></SyncHdr>`, 1), ErrBadValue, "SyncHdr/Meta/MaxMsgSize"},
		{"missing CmdID", doc(`<Alert><Data>1201</Data></Alert>`), ErrMissingElement, "SyncBody/Alert[1]/CmdID"},
		{"duplicate CmdID", doc(get + get), ErrDuplicateCmdID, "SyncBody/Get[2]/CmdID"},
		{"duplicate CmdID nested", doc(`<Atomic><CmdID>2</CmdID><Delete><CmdID>2</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Delete></Atomic>`), ErrDuplicateCmdID, "SyncBody/Atomic[1]/Delete[1]/CmdID"},
		{"nested Atomic", doc(`<Atomic><CmdID>1</CmdID><Atomic><CmdID>2</CmdID></Atomic></Atomic>`), ErrBadNesting, "SyncBody/Atomic[1]/Atomic[1]"},
		{"Get in Atomic", doc(`<Atomic><CmdID>1</CmdID>` + get + `</Atomic>`), ErrBadNesting, "SyncBody/Atomic[1]/Get[1]"},
		{"Get in Sequence ok", doc(`<Sequence><CmdID>1</CmdID>` + get + `</Sequence>`), 0, ""},
		{"Status in Sequence", doc(`<Sequence><CmdID>1</CmdID><Status><CmdID>2</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status></Sequence>`), ErrBadNesting, "SyncBody/Sequence[1]/Status[1]"},
		{"empty Atomic", doc(`<Atomic><CmdID>1</CmdID></Atomic>`), ErrMissingElement, "SyncBody/Atomic[1]"},
		{"Cred in command", doc(`<Get><CmdID>2</CmdID><Cred><Data>x</Data></Cred><Item><Target><LocURI>./A</LocURI></Target></Item></Get>`), ErrCredOutsideHeader, "SyncBody/Get[1]/Cred"},
		{"Status no MsgRef", doc(`<Status><CmdID>1</CmdID><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>`), ErrMissingElement, "SyncBody/Status[1]/MsgRef"},
		{"Status bad MsgRef", doc(`<Status><CmdID>1</CmdID><MsgRef>a</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>`), ErrBadValue, "SyncBody/Status[1]/MsgRef"},
		{"Status SyncHdr CmdRef", doc(`<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>3</CmdRef><Cmd>SyncHdr</Cmd><Data>200</Data></Status>`), ErrBadValue, "SyncBody/Status[1]/CmdRef"},
		{"Status bad code", doc(`<Status><CmdID>1</CmdID><MsgRef>1</MsgRef><CmdRef>0</CmdRef><Cmd>SyncHdr</Cmd><Data>20</Data></Status>`), ErrBadValue, "SyncBody/Status[1]/Data"},
		{"Results no CmdRef", doc(`<Results><CmdID>1</CmdID><Item><Source><LocURI>./A</LocURI></Source><Data>x</Data></Item></Results>`), ErrMissingElement, "SyncBody/Results[1]/CmdRef"},
		{"Alert no code", doc(`<Alert><CmdID>1</CmdID></Alert>`), ErrMissingElement, "SyncBody/Alert[1]/Data"},
		{"Get no Item", doc(`<Get><CmdID>1</CmdID></Get>`), ErrMissingElement, "SyncBody/Get[1]/Item"},
		{"Get Item no Target", doc(`<Get><CmdID>1</CmdID><Item><Data>x</Data></Item></Get>`), ErrMissingElement, "SyncBody/Get[1]/Item[1]/Target/LocURI"},
		{"Exec two Items", doc(`<Exec><CmdID>1</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item><Item><Target><LocURI>./B</LocURI></Target></Item></Exec>`), ErrBadValue, "SyncBody/Exec[1]/Item"},
		{"Copy without Source", doc(`<Copy><CmdID>1</CmdID><Item><Target><LocURI>./A</LocURI></Target></Item></Copy>`), ErrMissingElement, "SyncBody/Copy[1]/Item[1]"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m, err := DecodeXML([]byte(c.in), Limits{})
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			err = Validate(m)
			if c.code == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want code %v", err, c.code)
			}
			if e.Code != c.code || e.Path != c.path {
				t.Fatalf("got %v (code %v path %q), want code %v path %q", err, e.Code, e.Path, c.code, c.path)
			}
		})
	}
}

func TestEncodeRefusesBinaryInXML(t *testing.T) {
	m := mustDecode(t, doc(`<Replace><CmdID>1</CmdID><Item><Target><LocURI>./A</LocURI></Target><Data>x</Data></Item></Replace>`))
	m.Body.Commands[0].Items[0].Data = &Data{Value: "\x00\x01\xff", Kind: DataOpaque}
	_, err := Encode(m, EncodingXML)
	var e *Error
	if !errors.As(err, &e) || e.Code != ErrUnrepresentable {
		t.Fatalf("got %v, want ErrUnrepresentable", err)
	}
	// WBXML carries the same bytes as OPAQUE.
	b, err := Encode(m, EncodingWBXML)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := DecodeWBXML(b, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if got := m2.Body.Commands[0].Items[0].Data.Value; got != "\x00\x01\xff" {
		t.Fatalf("binary data = %q", got)
	}
}

// TestDeclaredLengthsDoNotAllocate: a WBXML body that declares huge lengths (string table,
// OPAQUE) it does not carry is refused without allocating anything near those lengths.
func TestDeclaredLengthsDoNotAllocate(t *testing.T) {
	cases := map[string][]byte{
		"string table 256 MiB": {0x02, 0xA4, 0x01, 0x6A, 0x80, 0x80, 0x80, 0x80, 0x01, 0x6D},
		"opaque 256 MiB":       {0x02, 0xA4, 0x01, 0x6A, 0x00, 0x6D, 0x6B, 0x4F, 0xC3, 0x80, 0x80, 0x80, 0x80, 0x01, 0x00},
		"mb_u_int32 overflow":  {0x02, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F, 0x6A, 0x00},
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := DecodeWBXML(b, Limits{})
			runtime.ReadMemStats(&after)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("got %v, want a typed error", err)
			}
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 64<<10 {
				t.Fatalf("decoding %d bytes allocated %d bytes", len(b), grew)
			}
		})
	}
}
