package syncml

// ErrorSpec is one row of the error table: how a refused message is answered.
//
// HTTP status: a body that cannot be read as a SyncML message at all is answered with an
// HTTP error (400/413/415) because there is no header to address a SyncML Status to. Once the
// header could be read, every SyncML-level outcome is answered with HTTP 200 and a SyncML
// Status carrying Status below (PROTOCOL.md §1: AOSP re-POSTs on 408/5xx and aborts on other
// HTTP errors, so SyncML errors must not be HTTP errors).
type ErrorSpec struct {
	Code   Code
	Name   string
	Status int // SyncML status code (OMA-TS-DM_RepPro §4.1.5, PROTOCOL.md §5)
	HTTP   int // HTTP status code
	Doc    string
}

// errorTable is kept as data; TestErrorTable checks it is complete and consistent.
var errorTable = []ErrorSpec{
	{ErrMalformed, "malformed", 400, 400, "the body is not well-formed XML or WBXML"},
	{ErrTruncated, "truncated", 400, 400, "the body ends inside the document"},
	{ErrTooLarge, "too large", 413, 413, "the body exceeds the configured maximum size"},
	{ErrTooDeep, "too deep", 400, 400, "elements nest deeper than the configured limit"},
	{ErrTooManyElements, "too many elements", 413, 413, "more elements than the configured limit"},
	{ErrForbiddenMarkup, "forbidden markup", 400, 400, "DTD subsets, entity declarations and unknown entities are refused"},
	{ErrNotSyncML, "not SyncML", 400, 400, "the document is not a SyncML message"},
	{ErrUnsupportedDTD, "unsupported DTD version", 505, 200, "VerDTD is neither 1.2 nor 1.1 (SyncML 505 DTD version not supported)"},
	{ErrUnsupportedProto, "unsupported protocol version", 513, 200, "VerProto is neither DM/1.2 nor DM/1.1 (SyncML 513 incompatible protocol version)"},
	{ErrMissingElement, "missing element", 400, 200, "a required element is absent"},
	{ErrBadValue, "bad value", 400, 200, "an element's value has the wrong form"},
	{ErrDuplicateCmdID, "duplicate CmdID", 400, 200, "CmdID must be unique within a message"},
	{ErrBadNesting, "bad nesting", 500, 200, "a command inside Atomic/Sequence that the DM DTD forbids (nested Atomic answers 500, RepPro §4.1.6.3)"},
	{ErrCredOutsideHeader, "Cred outside SyncHdr", 400, 200, "Cred is allowed only in SyncHdr (RepPro §4.1.1.6)"},
	{ErrUnsupportedMedia, "unsupported media type", 415, 415, "content type is neither application/vnd.syncml.dm+xml nor +wbxml"},
	{ErrUnrepresentable, "unrepresentable", 500, 500, "a value cannot be written in the requested encoding"},
}

var errorIndex = func() map[Code]ErrorSpec {
	m := make(map[Code]ErrorSpec, len(errorTable))
	for _, s := range errorTable {
		m[s.Code] = s
	}
	return m
}()

func (c Code) spec() ErrorSpec {
	if s, ok := errorIndex[c]; ok {
		return s
	}
	return ErrorSpec{Code: c, Name: "unknown", Status: 500, HTTP: 500}
}

// String returns the code's short name.
func (c Code) String() string { return c.spec().Name }

// ErrorTable returns a copy of the error table (for documentation and the gateway).
func ErrorTable() []ErrorSpec { return append([]ErrorSpec(nil), errorTable...) }
