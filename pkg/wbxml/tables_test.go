package wbxml

import (
	"strings"
	"testing"

	"github.com/beevik/etree"
)

func TestLookup(t *testing.T) {
	tests := []struct {
		lang       *Language
		ns, name   string
		page, tag  byte
		ok         bool
		byNameOnly bool // also expect Lookup(name) to give this
	}{
		{SyncML12, "", "SyncML", 0, 0x2D, true, true},
		{SyncML12, "", "Correlator", 0, 0x3C, true, true},
		{SyncML12, "", "MoreData", 0, 0x34, true, true},
		{SyncML12, "", "MaxMsgSize", 1, 0x0C, true, true},
		{SyncML12, "", "FieldLevel", 1, 0x16, true, true},
		{SyncML12, "", "MgmtTree", 2, 0x20, true, true},
		{SyncML12, "", "Add", 0, 0x05, true, true},
		{SyncML12, "syncml:dmddf1.2", "Add", 2, 0x07, true, false},
		{SyncML12, "SYNCML:DMDDF1.2", "Format", 2, 0x1C, true, false},
		{SyncML12, "syncml:metinf", "Format", 1, 0x07, true, true},
		{SyncML12, "SYNCML:SYNCML1.2", "Format", 1, 0x07, true, true}, // inherited SyncML ns: first page with the name
		{SyncML12, "syncml:syncml1.2", "Replace", 0, 0x20, true, true},
		{SyncML12, "", "Nope", 0, 0, false, true},
		{SyncML11, "", "Correlator", 0, 0, false, true},
		{SyncML11, "", "FieldLevel", 0, 0, false, true},
		{SyncML11, "", "MoreData", 0, 0x34, true, true},
		{SyncML11, "", "MaxObjSize", 1, 0x15, true, true},
		{DevInf12, "", "SupportHierarchicalSync", 0, 0x34, true, true},
		{DevInf12, "", "Filter-Rx", 0, 0x30, true, true},
		{DevInf12, "", "Rx-Pref", 0, 0x1A, true, true},
		{DDF12, "", "ZeroOrOne", 2, 0x3C, true, true},
		{DDF12, "", "node", 2, 0x25, true, true},
		{DDF12, "", "Node", 2, 0x24, true, true},
	}
	for _, tc := range tests {
		p, tg, ok := tc.lang.LookupNS(tc.ns, tc.name)
		if ok != tc.ok || p != tc.page || tg != tc.tag {
			t.Errorf("%s LookupNS(%q,%q) = %d,0x%02X,%v want %d,0x%02X,%v", tc.lang.Title, tc.ns, tc.name, p, tg, ok, tc.page, tc.tag, tc.ok)
		}
		if tc.byNameOnly {
			p, tg, ok = tc.lang.Lookup(tc.name)
			if ok != tc.ok || p != tc.page || tg != tc.tag {
				t.Errorf("%s Lookup(%q) = %d,0x%02X,%v", tc.lang.Title, tc.name, p, tg, ok)
			}
		}
		if tc.ok && tc.lang.Name(tc.page, tc.tag) != tc.name {
			t.Errorf("%s Name(%d,0x%02X) = %q", tc.lang.Title, tc.page, tc.tag, tc.lang.Name(tc.page, tc.tag))
		}
	}
	if SyncML12.Name(0, 0x30) != "" || SyncML12.Name(0, 0x3D) != "" || SyncML12.Name(0, 0xFF) != "" || SyncML12.Name(7, 0x05) != "" {
		t.Error("undefined tokens must have no name")
	}
	// Every defined name maps back to its own token.
	for _, l := range Languages {
		n := 0
		for _, p := range l.Pages {
			for tg, name := range p.Tags {
				if name == "" {
					continue
				}
				n++
				if tg < 5 {
					t.Errorf("%s: name %q on global token 0x%02X", l.Title, name, tg)
				}
				pp, tt, ok := l.LookupNS(p.Namespace, name)
				if !ok || pp != p.Number || int(tt) != tg {
					t.Errorf("%s: %q on %d/0x%02X looks up as %d/0x%02X", l.Title, name, p.Number, tg, pp, tt)
				}
			}
		}
		want := map[*Language]int{SyncML12: 55 + 18 + 56, SyncML11: 47 + 17, DevInf12: 47, DDF12: 56}[l]
		if n != want {
			t.Errorf("%s: %d names, want %d", l.Title, n, want)
		}
	}
}

func TestLookupNoAlloc(t *testing.T) {
	SyncML12.Lookup("SyncML")
	allocs := testing.AllocsPerRun(100, func() {
		SyncML12.Lookup("LocURI")
		SyncML12.LookupNS("syncml:metinf", "Type")
		SyncML12.Name(1, 0x13)
	})
	if allocs != 0 {
		t.Fatalf("%.1f allocs", allocs)
	}
}

func TestLanguageFor(t *testing.T) {
	tests := []struct {
		h    Header
		want *Language
	}{
		{Header{PublicID: PublicIDSyncML12}, SyncML12},
		{Header{PublicID: PublicIDSyncML11}, SyncML11},
		{Header{PublicID: PublicIDDevInf12}, DevInf12},
		{Header{FPI: FPISyncML12}, SyncML12},
		{Header{FPI: "-//syncml//dtd syncml 1.1//en"}, SyncML11},
		{Header{FPI: FPIDevInf12}, DevInf12},
		{Header{PublicID: PublicIDUnknown, FPI: FPIDDF12}, DDF12},
		{Header{FPI: FPIDDF12}, DDF12},
		{Header{PublicID: PublicIDSyncML10, FPI: FPISyncML10}, nil},
		{Header{PublicID: PublicIDMetInf12}, nil},
		{Header{}, nil},
	}
	for _, tc := range tests {
		if got := LanguageFor(tc.h); got != tc.want {
			t.Errorf("LanguageFor(%+v) = %v", tc.h, got)
		}
	}
	for _, id := range []uint32{PublicIDSyncML12, PublicIDMetInf12, PublicIDDevInf12, PublicIDSyncML11, PublicIDDevInf11, PublicIDSyncML10} {
		if !strings.HasPrefix(PublicIDName(id), "-//SYNCML//DTD ") {
			t.Errorf("PublicIDName(%#x) = %q", id, PublicIDName(id))
		}
	}
	if PublicIDName(0) != "" || PublicIDName(1) != "" || PublicIDName(0x9999) != "" {
		t.Error("unknown ids must have no name")
	}
}

// allTagsXML builds a document that uses every tag of lang once: the root,
// then one empty child per name; names of secondary pages go inside a
// container element of the main page with xmlns set, like MetInf in Meta.
func allTagsXML(lang *Language, doctype, root, container string, pages ...byte) string {
	var sb strings.Builder
	sb.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if doctype != "" {
		sb.WriteString(doctype + "\n")
	}
	main := lang.page(pages[0])
	sb.WriteString("<" + root + ` xmlns="` + main.Namespace + `">`)
	for _, name := range main.Tags {
		if name != "" && name != root {
			sb.WriteString("<" + name + "/>")
		}
	}
	for _, pn := range pages[1:] {
		p := lang.page(pn)
		sb.WriteString("<" + container + ">")
		for _, name := range p.Tags {
			if name != "" {
				sb.WriteString("<" + name + ` xmlns="` + p.Namespace + `">x</` + name + ">")
			}
		}
		sb.WriteString("</" + container + ">")
	}
	sb.WriteString("</" + root + ">")
	return sb.String()
}

// TestTablesAgainstLibwbxml checks every token value of every table against
// libwbxml (an independent implementation): libwbxml encodes a document
// using each tag, we decode it with our tables (and vice versa).
func TestTablesAgainstLibwbxml(t *testing.T) {
	x2w := libwbxml(t, "xml2wbxml")
	w2x := libwbxml(t, "wbxml2xml")
	tests := []struct {
		lang *Language
		xml  string
	}{
		// libwbxml encodes DDF inside SyncML as a nested document, so page 2
		// of SyncML12 is checked through DDF12 (same tag values).
		{SyncML12, allTagsXML(SyncML12, "", "SyncML", "Meta", 0, 1)},
		{SyncML11, allTagsXML(SyncML11, "", "SyncML", "Meta", 0, 1)},
		{DevInf12, allTagsXML(DevInf12, `<!DOCTYPE DevInf PUBLIC "`+FPIDevInf12+`" "http://www.syncml.org/docs/devinf_v12.dtd">`, "DevInf", "", 0)},
		{DDF12, allTagsXML(DDF12, `<!DOCTYPE MgmtTree PUBLIC "`+FPIDDF12+`" "http://www.openmobilealliance.org/tech/DTD/DM_DDF-V1_2.dtd">`, "MgmtTree", "", 2)},
	}
	for _, tc := range tests {
		t.Run(tc.lang.Title, func(t *testing.T) {
			src := etree.NewDocument()
			if err := src.ReadFromString(tc.xml); err != nil {
				t.Fatal(err)
			}
			// libwbxml → us.
			b := runXml2wbxml(t, x2w, tc.xml, "-n")
			doc, lang, err := ToXML(b, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if lang != tc.lang {
				t.Fatalf("libwbxml output detected as %s", lang.Title)
			}
			if d := treeDiff(src.Root(), doc.Root(), ""); d != "" {
				t.Fatalf("libwbxml→ToXML: %s", d)
			}
			// us → libwbxml.
			ours, err := FromXML(src.Root(), tc.lang, 0x03)
			if err != nil {
				t.Fatal(err)
			}
			if d := treeDiff(src.Root(), runWbxml2xml(t, w2x, ours), ""); d != "" {
				t.Fatalf("FromXML→libwbxml: %s", d)
			}
		})
	}
}
