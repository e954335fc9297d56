package dmtree

import (
	"errors"
	"fmt"
)

// SyncML status codes returned by (*Error).Status (PROTOCOL.md §5).
const (
	StatusBadRequest        = 400 // malformed URI, query or ACL
	StatusNotSupported      = 406 // "Optional feature not supported": unknown ?prop= / ?list=
	StatusTooLarge          = 413 // value larger than this package accepts (ACL)
	StatusURITooLong        = 414 // URI beyond MaxDepth / MaxTotLen / MaxSegLen
	StatusUnsupportedFormat = 415 // "Unsupported media type or format"
)

// Sentinel kinds wrapped by *Error; test with errors.Is when the status code
// alone is not specific enough.
var (
	ErrSyntax            = errors.New("syntax error")
	ErrNotSupported      = errors.New("not supported")
	ErrTooLarge          = errors.New("too large")
	ErrURITooLong        = errors.New("URI too long")
	ErrUnsupportedFormat = errors.New("unsupported format")
)

// Error is the single error type of this package.
type Error struct {
	Op     string // what was being done, e.g. "parse URI"
	Input  string // the offending input (may be long; Error() truncates it)
	Pos    int    // byte index into Input where the problem is, -1 if not positional
	Reason string // detail
	Code   int    // SyncML status code, see Status
	Err    error  // one of the sentinel kinds above
}

// Status returns the SyncML status code a server should report for the
// command that carried the offending value.
func (e *Error) Status() int { return e.Code }

// Unwrap exposes the sentinel kind for errors.Is.
func (e *Error) Unwrap() error { return e.Err }

func (e *Error) Error() string {
	in := e.Input
	if len(in) > 80 {
		in = in[:80] + "..."
	}
	if e.Pos >= 0 {
		return fmt.Sprintf("dmtree: %s %q: %s at index %d (status %d)", e.Op, in, e.Reason, e.Pos, e.Code)
	}
	return fmt.Sprintf("dmtree: %s %q: %s (status %d)", e.Op, in, e.Reason, e.Code)
}

// StatusOf returns the SyncML status carried by err (via errors.As), 200 for
// a nil error and 500 for errors from elsewhere.
func StatusOf(err error) int {
	if err == nil {
		return 200
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return 500
}

func newErr(op, input string, pos int, kind error, code int, format string, args ...any) *Error {
	return &Error{Op: op, Input: input, Pos: pos, Reason: fmt.Sprintf(format, args...), Code: code, Err: kind}
}
