package wappush

import (
	"errors"
	"strconv"
)

// Sentinel errors wrapped by *Error; test with errors.Is.
var (
	// ErrTruncated: the input ends inside a field or before the length a
	// field declares.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: a value the encoding forbids (bad uintvar, integer too
	// long, wrong information element length, missing terminator).
	ErrMalformed = errors.New("malformed")
	// ErrUnsupported: a valid PDU this package does not handle (a WSP PDU
	// type other than Push or ConfirmedPush).
	ErrUnsupported = errors.New("unsupported")
	// ErrTooLarge: a payload needs more than MaxSegments SMS, or a
	// Reassembler bound (Limits) would be exceeded.
	ErrTooLarge = errors.New("too large")
)

// Error is the error type returned by this package.
type Error struct {
	// Op is what failed, e.g. "parse push PDU", "parse UDH", "segment", "reassemble".
	Op string
	// Offset is the byte offset in the parsed input; -1 when not positional.
	Offset int
	// Reason is a human-readable detail.
	Reason string
	// Err is one of the sentinels above.
	Err error
}

func (e *Error) Error() string {
	if e.Offset >= 0 {
		return "wappush: " + e.Op + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Reason + ": " + e.Err.Error()
	}
	return "wappush: " + e.Op + ": " + e.Reason + ": " + e.Err.Error()
}

// Unwrap exposes the sentinel for errors.Is.
func (e *Error) Unwrap() error { return e.Err }
