package wbxml

import (
	"strings"
	"sync"
)

// Well-known public identifiers (PROTOCOL.md §8.1; numeric values as
// registered for SyncML and used by libwbxml and the SyncML RTK).
const (
	PublicIDUnknown  uint32 = 0x01 // "unknown or missing" (WAP-192-WBXML §7.2)
	PublicIDSyncML10 uint32 = 0x0FD1
	PublicIDSyncML11 uint32 = 0x0FD3
	PublicIDDevInf11 uint32 = 0x0FD4
	PublicIDSyncML12 uint32 = 0x1201
	PublicIDMetInf12 uint32 = 0x1202
	PublicIDDevInf12 uint32 = 0x1203
)

// Formal public identifiers of the same document types; DM DDF 1.2 has only
// an FPI (PROTOCOL.md §8.1, §11.8).
const (
	FPISyncML10 = "-//SYNCML//DTD SyncML 1.0//EN"
	FPISyncML11 = "-//SYNCML//DTD SyncML 1.1//EN"
	FPIDevInf11 = "-//SYNCML//DTD DevInf 1.1//EN"
	FPISyncML12 = "-//SYNCML//DTD SyncML 1.2//EN"
	FPIMetInf12 = "-//SYNCML//DTD MetInf 1.2//EN"
	FPIDevInf12 = "-//SYNCML//DTD DevInf 1.2//EN"
	FPIDDF12    = "-//OMA//DTD-DM-DDF 1.2//EN"
)

var wellKnown = [...]struct {
	id  uint32
	fpi string
}{
	{PublicIDSyncML12, FPISyncML12},
	{PublicIDMetInf12, FPIMetInf12},
	{PublicIDDevInf12, FPIDevInf12},
	{PublicIDSyncML11, FPISyncML11},
	{PublicIDDevInf11, FPIDevInf11},
	{PublicIDSyncML10, FPISyncML10},
	{0, FPIDDF12},
}

// PublicIDName returns the FPI of a well-known numeric public id, or "".
func PublicIDName(id uint32) string {
	if id == 0 {
		return ""
	}
	for _, w := range wellKnown {
		if w.id == id {
			return w.fpi
		}
	}
	return ""
}

// internFPI returns the FPI named by b, reusing the constant for well-known
// FPIs so that decoding the common string-table form (PROTOCOL.md §8.1)
// does not allocate; the comparisons string(b) == s do not allocate.
func internFPI(b []byte) string {
	for _, w := range wellKnown {
		if string(b) == w.fpi {
			return w.fpi
		}
	}
	return string(b)
}

// Page is one tag code page of a language.
type Page struct {
	Number    byte
	Namespace string
	// Tags maps a tag token (0x05..0x3F, flag bits removed) to the element's
	// local name; "" means the token is not defined.
	Tags [64]string
}

// Language is a WBXML document type: its identifiers and tag code pages.
// A Language must not be copied after first use (it caches a name index).
type Language struct {
	// Title is a human-readable name ("SyncML 1.2"). (Not called Name: that
	// is the tag-name method.)
	Title    string
	PublicID uint32 // 0 when the document type has only an FPI
	FPI      string
	Pages    []Page

	once  sync.Once
	index map[string][]tagRef
}

type tagRef struct{ page, tag byte }

func (l *Language) buildIndex() {
	l.index = make(map[string][]tagRef)
	for _, p := range l.Pages {
		for t, name := range p.Tags {
			if name != "" && t >= 5 {
				l.index[name] = append(l.index[name], tagRef{p.Number, byte(t)})
			}
		}
	}
}

// Lookup returns the code page and tag of the element with the given local
// name; if several pages define it, the first page in l.Pages wins (use
// LookupNS to disambiguate by namespace). It does not allocate.
func (l *Language) Lookup(name string) (page, tag byte, ok bool) {
	l.once.Do(l.buildIndex)
	refs := l.index[name]
	if len(refs) == 0 {
		return 0, 0, false
	}
	return refs[0].page, refs[0].tag, true
}

// LookupNS is Lookup with a namespace: among the pages that define name, the
// one whose Namespace equals ns (case-insensitively: peers send both
// SYNCML:SYNCML1.2 and syncml:syncml1.2, PROTOCOL.md §12.3) wins; if none
// matches, the first page that defines name is used, so MetInf elements
// written without their namespace are still found.
func (l *Language) LookupNS(ns, name string) (page, tag byte, ok bool) {
	l.once.Do(l.buildIndex)
	refs := l.index[name]
	if len(refs) == 0 {
		return 0, 0, false
	}
	if ns != "" && len(refs) > 1 {
		for _, r := range refs {
			if p := l.page(r.page); p != nil && strings.EqualFold(p.Namespace, ns) {
				return r.page, r.tag, true
			}
		}
	}
	return refs[0].page, refs[0].tag, true
}

func (l *Language) page(n byte) *Page {
	for i := range l.Pages {
		if l.Pages[i].Number == n {
			return &l.Pages[i]
		}
	}
	return nil
}

// Name returns the local name of tag on page, or "" if undefined.
func (l *Language) Name(page, tag byte) string {
	if tag >= 64 {
		return ""
	}
	if p := l.page(page); p != nil {
		return p.Tags[tag]
	}
	return ""
}

// Namespace returns the XML namespace of a code page, or "".
func (l *Language) Namespace(page byte) string {
	if p := l.page(page); p != nil {
		return p.Namespace
	}
	return ""
}

// Languages lists the languages known to LanguageFor.
var Languages = []*Language{SyncML12, SyncML11, DevInf12, DDF12}

// LanguageFor returns the language of a document header: by numeric public
// id first, else by FPI (case-insensitive; the FPI may come from the string
// table, PROTOCOL.md §8.1). It returns nil for unknown documents.
func LanguageFor(h Header) *Language {
	if h.PublicID > PublicIDUnknown {
		for _, l := range Languages {
			if l.PublicID != 0 && l.PublicID == h.PublicID {
				return l
			}
		}
	}
	if h.FPI != "" {
		for _, l := range Languages {
			if strings.EqualFold(l.FPI, h.FPI) {
				return l
			}
		}
	}
	return nil
}

// tags lays out names at consecutive tokens starting at 0x05 (the first
// non-global token, WAP-192-WBXML §7.1); "" marks an unassigned token.
func tags(names ...string) (t [64]string) {
	copy(t[5:], names)
	return t
}

// Namespaces of the code pages (PROTOCOL.md §8.1–8.5).
const (
	NamespaceSyncML12 = "SYNCML:SYNCML1.2"
	NamespaceSyncML11 = "SYNCML:SYNCML1.1"
	NamespaceMetInf   = "syncml:metinf"
	NamespaceDevInf   = "syncml:devinf"
	NamespaceDDF12    = "syncml:dmddf1.2"
)

// syncMLTags is code page 0 of SyncML 1.2, tokens 0x05..0x3C (PROTOCOL.md
// §8.2). SyncML 1.1 is the prefix up to MoreData (0x34).
var syncMLTags = []string{
	"Add", "Alert", "Archive", "Atomic", "Chal", "Cmd", "CmdID", "CmdRef", // 05-0C
	"Copy", "Cred", "Data", "Delete", "Exec", "Final", "Get", "Item", // 0D-14
	"Lang", "LocName", "LocURI", "Map", "MapItem", "Meta", "MsgID", "MsgRef", // 15-1C
	"NoResp", "NoResults", "Put", "Replace", "RespURI", "Results", "Search", "Sequence", // 1D-24
	"SessionID", "SftDel", "Source", "SourceRef", "Status", "Sync", "SyncBody", "SyncHdr", // 25-2C
	"SyncML", "Target", "TargetRef", "", "VerDTD", "VerProto", "NumberOfChanges", "MoreData", // 2D-34 (30 reserved)
	"Field", "Filter", "Record", "FilterType", "SourceParent", "TargetParent", "Move", "Correlator", // 35-3C, 1.2 only
}

// metInfTags is code page 1, MetInf, tokens 0x05..0x16 (PROTOCOL.md §8.3);
// FieldLevel (0x16) is 1.2 only.
var metInfTags = []string{
	"Anchor", "EMI", "Format", "FreeID", "FreeMem", "Last", "Mark", "MaxMsgSize", // 05-0C
	"Mem", "MetInf", "Next", "NextNonce", "SharedMem", "Size", "Type", "Version", // 0D-14
	"MaxObjSize", "FieldLevel", // 15-16
}

// ddfTags is code page 2, DM DDF 1.2, tokens 0x05..0x3C (PROTOCOL.md §8.5).
var ddfTags = []string{
	"AccessType", "ACL", "Add", "b64", "bin", "bool", "chr", "CaseSense", // 05-0C
	"CIS", "Copy", "CS", "date", "DDFName", "DefaultValue", "Delete", "Description", // 0D-14
	"DFFormat", "DFProperties", "DFTitle", "DFType", "Dynamic", "Exec", "float", "Format", // 15-1C
	"Get", "int", "Man", "MgmtTree", "MIME", "Mod", "Name", "Node", // 1D-24
	"node", "NodeName", "null", "Occurrence", "One", "OneOrMore", "OneOrN", "Path", // 25-2C
	"Permanent", "Replace", "RTProperties", "Scope", "Size", "time", "Title", "TStamp", // 2D-34
	"Type", "Value", "VerDTD", "VerNo", "xml", "ZeroOrMore", "ZeroOrN", "ZeroOrOne", // 35-3C
}

// devInfTags is DevInf 1.2 code page 0, tokens 0x05..0x34 (PROTOCOL.md §8.4);
// 0x2F is unassigned.
var devInfTags = []string{
	"CTCap", "CTType", "DataStore", "DataType", "DevID", "DevInf", "DevTyp", "DisplayName", // 05-0C
	"DSMem", "Ext", "FwV", "HwV", "Man", "MaxGUIDSize", "MaxID", "MaxMem", // 0D-14
	"Mod", "OEM", "ParamName", "PropName", "Rx", "Rx-Pref", "SharedMem", "MaxSize", // 15-1C
	"SourceRef", "SwV", "SyncCap", "SyncType", "Tx", "Tx-Pref", "ValEnum", "VerCT", // 1D-24
	"VerDTD", "XNam", "XVal", "UTC", "SupportNumberOfChanges", "SupportLargeObjs", "Property", "PropParam", // 25-2C
	"MaxOccur", "NoTruncate", "", "Filter-Rx", "FilterCap", "FilterKeyword", "FieldLevel", "SupportHierarchicalSync", // 2D-34
}

// Code page numbers of the SyncML language (PROTOCOL.md §8.1).
const (
	PageSyncML byte = 0
	PageMetInf byte = 1
	PageDDF    byte = 2
)

// The OMA DM languages.
var (
	// SyncML12 is SyncML 1.2 / DM 1.2: page 0 SyncML, page 1 MetInf, page 2
	// DM DDF (for DDF embedded in SyncML, PROTOCOL.md §8.1).
	SyncML12 = &Language{
		Title: "SyncML 1.2", PublicID: PublicIDSyncML12, FPI: FPISyncML12,
		Pages: []Page{
			{Number: PageSyncML, Namespace: NamespaceSyncML12, Tags: tags(syncMLTags...)},
			{Number: PageMetInf, Namespace: NamespaceMetInf, Tags: tags(metInfTags...)},
			{Number: PageDDF, Namespace: NamespaceDDF12, Tags: tags(ddfTags...)},
		},
	}
	// SyncML11 is SyncML 1.1 / DM 1.1.2: page 0 ends at MoreData (0x34, no
	// Correlator), MetInf without FieldLevel (PROTOCOL.md §8.2, §12.13).
	SyncML11 = &Language{
		Title: "SyncML 1.1", PublicID: PublicIDSyncML11, FPI: FPISyncML11,
		Pages: []Page{
			{Number: PageSyncML, Namespace: NamespaceSyncML11, Tags: tags(syncMLTags[:0x34-0x05+1]...)},
			{Number: PageMetInf, Namespace: NamespaceMetInf, Tags: tags(metInfTags[:0x15-0x05+1]...)},
		},
	}
	// DevInf12 is the DevInf 1.2 document (PROTOCOL.md §8.4).
	DevInf12 = &Language{
		Title: "DevInf 1.2", PublicID: PublicIDDevInf12, FPI: FPIDevInf12,
		Pages: []Page{
			{Number: 0, Namespace: NamespaceDevInf, Tags: tags(devInfTags...)},
		},
	}
	// DDF12 is a standalone DM DDF 1.2 (MgmtTree) document. It has no
	// numeric public id and uses code page 2, as libwbxml encodes it
	// (SWITCH_PAGE 2 before the root tag).
	DDF12 = &Language{
		Title: "DM DDF 1.2", PublicID: 0, FPI: FPIDDF12,
		Pages: []Page{
			{Number: PageDDF, Namespace: NamespaceDDF12, Tags: tags(ddfTags...)},
		},
	}
)
