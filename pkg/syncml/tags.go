package syncml

// tag identifies an element by its WBXML code page and token (PROTOCOL.md §8.2–8.3): the
// XML decoder maps local names to the same values, so both decoders feed one tree builder.
type tag uint16

const (
	pageSyncML = 0
	pageMetInf = 1
)

func (t tag) page() byte  { return byte(t >> 8) }
func (t tag) token() byte { return byte(t) }

// Code page 0, SyncML (WBXML tokens, PROTOCOL.md §8.2).
const (
	tagUnknown      tag = 0
	tagAdd          tag = 0x05
	tagAlert        tag = 0x06
	tagArchive      tag = 0x07
	tagAtomic       tag = 0x08
	tagChal         tag = 0x09
	tagCmd          tag = 0x0A
	tagCmdID        tag = 0x0B
	tagCmdRef       tag = 0x0C
	tagCopy         tag = 0x0D
	tagCred         tag = 0x0E
	tagData         tag = 0x0F
	tagDelete       tag = 0x10
	tagExec         tag = 0x11
	tagFinal        tag = 0x12
	tagGet          tag = 0x13
	tagItem         tag = 0x14
	tagLang         tag = 0x15
	tagLocName      tag = 0x16
	tagLocURI       tag = 0x17
	tagMap          tag = 0x18
	tagMapItem      tag = 0x19
	tagMeta         tag = 0x1A
	tagMsgID        tag = 0x1B
	tagMsgRef       tag = 0x1C
	tagNoResp       tag = 0x1D
	tagNoResults    tag = 0x1E
	tagPut          tag = 0x1F
	tagReplace      tag = 0x20
	tagRespURI      tag = 0x21
	tagResults      tag = 0x22
	tagSearch       tag = 0x23
	tagSequence     tag = 0x24
	tagSessionID    tag = 0x25
	tagSftDel       tag = 0x26
	tagSource       tag = 0x27
	tagSourceRef    tag = 0x28
	tagStatus       tag = 0x29
	tagSync         tag = 0x2A
	tagSyncBody     tag = 0x2B
	tagSyncHdr      tag = 0x2C
	tagSyncML       tag = 0x2D
	tagTarget       tag = 0x2E
	tagTargetRef    tag = 0x2F
	tagVerDTD       tag = 0x31
	tagVerProto     tag = 0x32
	tagNumberOfChg  tag = 0x33
	tagMoreData     tag = 0x34
	tagField        tag = 0x35
	tagFilter       tag = 0x36
	tagRecord       tag = 0x37
	tagFilterType   tag = 0x38
	tagSourceParent tag = 0x39
	tagTargetParent tag = 0x3A
	tagMove         tag = 0x3B
	tagCorrelator   tag = 0x3C
)

// Code page 1, MetInf (PROTOCOL.md §8.3).
const (
	tagAnchor     tag = 0x105
	tagEMI        tag = 0x106
	tagFormat     tag = 0x107
	tagFreeID     tag = 0x108
	tagFreeMem    tag = 0x109
	tagLast       tag = 0x10A
	tagMark       tag = 0x10B
	tagMaxMsgSize tag = 0x10C
	tagMem        tag = 0x10D
	tagMetInf     tag = 0x10E
	tagNext       tag = 0x10F
	tagNextNonce  tag = 0x110
	tagSharedMem  tag = 0x111
	tagSize       tag = 0x112
	tagType       tag = 0x113
	tagVersion    tag = 0x114
	tagMaxObjSize tag = 0x115
	tagFieldLevel tag = 0x116
)

var tagNames = map[tag]string{
	tagAdd: "Add", tagAlert: "Alert", tagArchive: "Archive", tagAtomic: "Atomic", tagChal: "Chal",
	tagCmd: "Cmd", tagCmdID: "CmdID", tagCmdRef: "CmdRef", tagCopy: "Copy", tagCred: "Cred",
	tagData: "Data", tagDelete: "Delete", tagExec: "Exec", tagFinal: "Final", tagGet: "Get",
	tagItem: "Item", tagLang: "Lang", tagLocName: "LocName", tagLocURI: "LocURI", tagMap: "Map",
	tagMapItem: "MapItem", tagMeta: "Meta", tagMsgID: "MsgID", tagMsgRef: "MsgRef",
	tagNoResp: "NoResp", tagNoResults: "NoResults", tagPut: "Put", tagReplace: "Replace",
	tagRespURI: "RespURI", tagResults: "Results", tagSearch: "Search", tagSequence: "Sequence",
	tagSessionID: "SessionID", tagSftDel: "SftDel", tagSource: "Source", tagSourceRef: "SourceRef",
	tagStatus: "Status", tagSync: "Sync", tagSyncBody: "SyncBody", tagSyncHdr: "SyncHdr",
	tagSyncML: "SyncML", tagTarget: "Target", tagTargetRef: "TargetRef", tagVerDTD: "VerDTD",
	tagVerProto: "VerProto", tagNumberOfChg: "NumberOfChanges", tagMoreData: "MoreData",
	tagField: "Field", tagFilter: "Filter", tagRecord: "Record", tagFilterType: "FilterType",
	tagSourceParent: "SourceParent", tagTargetParent: "TargetParent", tagMove: "Move",
	tagCorrelator: "Correlator",

	tagAnchor: "Anchor", tagEMI: "EMI", tagFormat: "Format", tagFreeID: "FreeID",
	tagFreeMem: "FreeMem", tagLast: "Last", tagMark: "Mark", tagMaxMsgSize: "MaxMsgSize",
	tagMem: "Mem", tagMetInf: "MetInf", tagNext: "Next", tagNextNonce: "NextNonce",
	tagSharedMem: "SharedMem", tagSize: "Size", tagType: "Type", tagVersion: "Version",
	tagMaxObjSize: "MaxObjSize", tagFieldLevel: "FieldLevel",
}

// tagByName and tagByFold are built once from tagNames; SyncML and MetInf share no local
// names, so a local name alone identifies the page. tagByFold serves clients that send
// element names in the wrong case (PROTOCOL.md §12.3).
var (
	tagByName = map[string]tag{}
	tagByFold = map[string]tag{}
)

func init() {
	for t, n := range tagNames {
		tagByName[n] = t
		tagByFold[lowerASCII(n)] = t
	}
}

func (t tag) String() string {
	if n, ok := tagNames[t]; ok {
		return n
	}
	return "?"
}

// lookupTag maps an XML local name to its tag without allocating on the common path.
func lookupTag(name string) tag {
	if t, ok := tagByName[name]; ok {
		return t
	}
	if len(name) > 32 {
		return tagUnknown
	}
	var buf [32]byte
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return tagByFold[string(buf[:len(name)])]
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}
