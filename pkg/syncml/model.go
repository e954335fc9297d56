// Package syncml is the typed, ordered model of an OMA DM 1.2.1 (SyncML DM) message and its
// two wire encodings: XML (application/vnd.syncml.dm+xml) and WBXML
// (application/vnd.syncml.dm+wbxml).
//
// The package is pure: it does no I/O and imports no network, Redis, NATS or gRPC code.
// Decoding and validation are separate steps: Decode* turns bytes into a Message and only
// fails on input that is not a well-formed SyncML document within the configured Limits;
// Validate then checks the DM rules (required header fields, CmdID uniqueness, nesting).
// Both return *Error, whose Code maps to a SyncML status and an HTTP status through one
// table (errors_table.go).
//
// Element order inside SyncBody is preserved exactly; the encoders write every element in
// the order of the SyncML 1.2 DTD (OMA-TS-DM_RepPro §4.1, PROTOCOL.md §2.1 and §4).
package syncml

import "strconv"

// Message is one SyncML DM message: a header and a body (OMA-TS-DM_RepPro §4.1.1).
type Message struct {
	Header Header
	Body   Body
}

// Header is the SyncHdr element. Fields hold the trimmed element text as received.
type Header struct {
	VerDTD    string // "1.2" (DM 1.2) or "1.1" (DM 1.1.2)
	VerProto  string // "DM/1.2" or "DM/1.1"
	SessionID string // kept as text: clients send hex, decimal or padded forms (PROTOCOL.md §12.10)
	MsgID     string
	Target    Locator
	Source    Locator // Source.LocName carries the user name for MD5/HMAC auth
	RespURI   string
	NoResp    bool
	Cred      *Cred // only place where Cred is allowed (RepPro §4.1.1.6)
	Meta      *Meta // MaxMsgSize / MaxObjSize of the sender
}

// Locator is a Target or Source: LocURI and optional LocName.
type Locator struct {
	LocURI  string
	LocName string
}

// Cred carries credentials (RepPro §4.1.1.6); Meta holds Type and Format.
type Cred struct {
	Meta *Meta
	Data string
}

// Chal is an authentication challenge inside a Status (RepPro §4.1.1.5).
type Chal struct {
	Meta *Meta
}

// Meta holds the MetInf children of a Meta element (OMA SyncML MetInf 1.2). Values are the
// trimmed text; use the Int accessors for the numeric ones. Unknown MetInf children are
// skipped on decode.
type Meta struct {
	Format     string
	Type       string
	Mark       string
	Size       string
	NextNonce  string
	Version    string
	MaxMsgSize string
	MaxObjSize string
	EMI        string
}

// Body is the SyncBody: commands in document order and the Final flag.
type Body struct {
	Commands []Command
	Final    bool
}

// Kind identifies a SyncML DM command.
type Kind uint8

// The DM commands (RepPro §4.1.6, PROTOCOL.md §4).
const (
	KindUnknown Kind = iota
	KindAdd
	KindAlert
	KindAtomic
	KindCopy
	KindDelete
	KindExec
	KindGet
	KindReplace
	KindResults
	KindSequence
	KindStatus
)

var kindNames = [...]string{
	KindUnknown:  "Unknown",
	KindAdd:      "Add",
	KindAlert:    "Alert",
	KindAtomic:   "Atomic",
	KindCopy:     "Copy",
	KindDelete:   "Delete",
	KindExec:     "Exec",
	KindGet:      "Get",
	KindReplace:  "Replace",
	KindResults:  "Results",
	KindSequence: "Sequence",
	KindStatus:   "Status",
}

// String returns the element name of the command ("Get", "Status", ...).
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// ParseKind maps an element name (as used in Status/Cmd) to a Kind.
func ParseKind(s string) Kind {
	for k, n := range kindNames {
		if k != 0 && n == s {
			return Kind(k)
		}
	}
	return KindUnknown
}

// Command is one element of SyncBody (or of an Atomic/Sequence). One struct serves every
// command kind; the comment on each field says which kinds use it. The encoders write only
// the fields that the command's DTD content model allows.
type Command struct {
	Kind   Kind
	CmdID  string
	NoResp bool
	Cred   *Cred // not allowed by DM (Cred only in SyncHdr); kept so Validate can reject it
	Meta   *Meta

	// Status and Results.
	MsgRef     string
	CmdRef     string
	Cmd        string   // Status only: the name of the command answered ("SyncHdr", "Get", ...)
	TargetRefs []string // Status: any number; Results: at most one
	SourceRefs []string
	Chal       *Chal // Status only

	// Data is the alert code (Alert) or the status code (Status).
	Data string
	// Correlator ties an asynchronous Exec result to its Exec (Alert, Exec).
	Correlator string
	// Lang is Get's optional language tag.
	Lang string

	Items []Item

	// Commands holds the children of Atomic and Sequence, in document order.
	Commands []Command
}

// Item is the data description element (RepPro §4.1.3.3).
type Item struct {
	Target       *Locator
	Source       *Locator
	SourceParent string // LocURI
	TargetParent string // LocURI
	Meta         *Meta
	Data         *Data // nil when the Item has no Data element; non-nil and empty for <Data/>
	MoreData     bool
}

// DataKind says how Data's bytes are to be read and written.
type DataKind uint8

const (
	// DataText is character data (XML text or CDATA, WBXML inline or table string).
	DataText DataKind = iota
	// DataOpaque came as WBXML OPAQUE; it may be binary. The XML encoder refuses bytes that
	// XML cannot carry (use Format b64 for those).
	DataOpaque
	// DataXML is an embedded XML document or fragment (Format xml, DevInf, DDF MgmtTree):
	// Value holds the markup exactly as it appeared inside <Data> in XML, or as converted
	// from an embedded WBXML document.
	DataXML
)

// Data is an Item's Data: the value of a node, a chunk of a large object, or markup.
type Data struct {
	Value string // may hold arbitrary bytes for DataOpaque
	Kind  DataKind
}

// TextData returns a Data holding text.
func TextData(s string) *Data { return &Data{Value: s} }

// metaInt parses a numeric MetInf value; ok is false when it is absent or not a non-negative
// decimal integer.
func metaInt(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}

// MaxMsgSizeInt returns Meta MaxMsgSize as a number.
func (m *Meta) MaxMsgSizeInt() (int64, bool) {
	if m == nil {
		return 0, false
	}
	return metaInt(m.MaxMsgSize)
}

// MaxObjSizeInt returns Meta MaxObjSize as a number.
func (m *Meta) MaxObjSizeInt() (int64, bool) {
	if m == nil {
		return 0, false
	}
	return metaInt(m.MaxObjSize)
}

// SizeInt returns Meta Size as a number.
func (m *Meta) SizeInt() (int64, bool) {
	if m == nil {
		return 0, false
	}
	return metaInt(m.Size)
}

// IsZero reports whether no MetInf value is set.
func (m *Meta) IsZero() bool {
	return m == nil || *m == Meta{}
}

// Namespace returns the SyncML namespace for the message's VerDTD: DM 1.1.2 uses SYNCML:SYNCML1.1,
// everything else SYNCML:SYNCML1.2 (PROTOCOL.md §2.1).
func (m *Message) Namespace() string {
	if m.Header.VerDTD == "1.1" {
		return "SYNCML:SYNCML1.1"
	}
	return "SYNCML:SYNCML1.2"
}
