package syncml

import (
	"fmt"
	"strconv"
)

// Code classifies why a message was refused. Each code maps to a SyncML status and an HTTP
// status through errorTable; callers branch on the code, never on the text.
type Code uint8

// Error codes. Keep errorTable in step (TestErrorTableComplete checks it).
const (
	ErrMalformed         Code = iota + 1 // not well-formed XML/WBXML
	ErrTruncated                         // input ends inside the document
	ErrTooLarge                          // body larger than Limits.MaxBodyBytes
	ErrTooDeep                           // nesting deeper than Limits.MaxDepth
	ErrTooManyElements                   // more elements than Limits.MaxElements
	ErrForbiddenMarkup                   // DTD internal subset, entity declarations, unknown entities
	ErrNotSyncML                         // root element is not SyncML / unknown WBXML public id
	ErrUnsupportedDTD                    // VerDTD other than 1.1 or 1.2
	ErrUnsupportedProto                  // VerProto other than DM/1.1 or DM/1.2
	ErrMissingElement                    // a required element is absent or empty
	ErrBadValue                          // an element's text has the wrong shape (e.g. non-numeric MsgID)
	ErrDuplicateCmdID                    // CmdID used twice in one message
	ErrBadNesting                        // a command where the DTD does not allow it
	ErrCredOutsideHeader                 // Cred at command level (only SyncHdr may carry it)
	ErrUnsupportedMedia                  // content type neither SyncML DM XML nor WBXML
	ErrUnrepresentable                   // the encoder cannot write a value in the chosen encoding
)

// Error is the typed error every decoder, validator and encoder in this package returns.
// Offset is the byte offset in the input where the problem was found (-1 when not known);
// Path names the element (e.g. "SyncBody/Atomic[CmdID=3]/Get").
type Error struct {
	Code   Code
	Offset int
	Path   string
	Msg    string
}

func (e *Error) Error() string {
	s := "syncml: " + e.Code.String()
	if e.Offset >= 0 {
		s += " at offset " + strconv.Itoa(e.Offset)
	}
	if e.Path != "" {
		s += " in " + e.Path
	}
	if e.Msg != "" {
		s += ": " + e.Msg
	}
	return s
}

// Status is the SyncML status code to answer with when the header could be read.
func (e *Error) Status() int { return e.Code.spec().Status }

// HTTPStatus is the HTTP status for the reply.
func (e *Error) HTTPStatus() int { return e.Code.spec().HTTP }

func errAt(c Code, off int, format string, args ...any) *Error {
	return &Error{Code: c, Offset: off, Msg: fmt.Sprintf(format, args...)}
}

func errPath(c Code, path string, format string, args ...any) *Error {
	return &Error{Code: c, Offset: -1, Path: path, Msg: fmt.Sprintf(format, args...)}
}
