package wbxml

import "strconv"

// ErrKind classifies decoding and encoding failures so callers (the SyncML
// layer, metrics) can react without parsing messages. An ErrKind is itself an
// error, so errors.Is(err, ErrTruncated) works on any *Error.
type ErrKind uint8

// Error kinds.
const (
	// ErrTruncated: the input ends inside the header, a token, a string, an
	// opaque block, or while elements are still open; also used when a declared
	// length (string table, OPAQUE) exceeds the remaining input.
	ErrTruncated ErrKind = iota + 1
	// ErrBadHeader: the header is malformed (e.g. unsupported charset).
	ErrBadHeader
	// ErrUnsupportedVersion: version byte is not 0x01..0x03 (WBXML 1.1–1.3).
	ErrUnsupportedVersion
	// ErrBadInteger: an mb_u_int32 is longer than 5 bytes or exceeds 32 bits
	// (WAP-192-WBXML §5.1).
	ErrBadInteger
	// ErrBadStringRef: a string-table reference (STR_T, LITERAL*, public id
	// index) points outside the table or to a string without NUL terminator.
	ErrBadStringRef
	// ErrTooDeep: element nesting exceeds Limits.MaxDepth.
	ErrTooDeep
	// ErrTooManyTokens: the body holds more than Limits.MaxTokens tokens.
	ErrTooManyTokens
	// ErrTooLarge: the string table exceeds Limits.MaxStringTable.
	ErrTooLarge
	// ErrBadToken: a token that is not allowed where it appears (text outside
	// the root element, LITERAL_C inside an attribute list, invalid ENTITY
	// code point, ...).
	ErrBadToken
	// ErrUnbalanced: END without an open element, or encoder End without Start.
	ErrUnbalanced
	// ErrTrailingData: bytes other than processing instructions after the root
	// element has been closed (WAP-192-WBXML §5.3: body = *pi element *pi).
	ErrTrailingData
	// ErrUnknownLanguage: the public id / FPI has no code-page table here.
	ErrUnknownLanguage
	// ErrUnknownTag: a tag (or XML element name) that the language's code
	// pages do not define.
	ErrUnknownTag
)

var errKindNames = [...]string{
	ErrTruncated:          "truncated",
	ErrBadHeader:          "bad header",
	ErrUnsupportedVersion: "unsupported version",
	ErrBadInteger:         "bad mb_u_int32",
	ErrBadStringRef:       "bad string table reference",
	ErrTooDeep:            "too deep",
	ErrTooManyTokens:      "too many tokens",
	ErrTooLarge:           "too large",
	ErrBadToken:           "bad token",
	ErrUnbalanced:         "unbalanced",
	ErrTrailingData:       "trailing data",
	ErrUnknownLanguage:    "unknown language",
	ErrUnknownTag:         "unknown tag",
}

// String returns a short name of the kind.
func (k ErrKind) String() string {
	if int(k) < len(errKindNames) && errKindNames[k] != "" {
		return errKindNames[k]
	}
	return "ErrKind(" + strconv.Itoa(int(k)) + ")"
}

// Error makes an ErrKind usable as an errors.Is target.
func (k ErrKind) Error() string { return "wbxml: " + k.String() }

// Error is the error type returned by everything in this package.
type Error struct {
	Kind   ErrKind
	Offset int // byte offset in the input; -1 when not applicable (encoding)
	Msg    string
}

func (e *Error) Error() string {
	if e.Offset < 0 {
		return "wbxml: " + e.Msg
	}
	return "wbxml: offset " + strconv.Itoa(e.Offset) + ": " + e.Msg
}

// Is reports whether target is this error's ErrKind, so that
// errors.Is(err, wbxml.ErrTooDeep) works.
func (e *Error) Is(target error) bool {
	k, ok := target.(ErrKind)
	return ok && k == e.Kind
}
