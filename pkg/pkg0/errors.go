package pkg0

import (
	"errors"
	"strconv"
)

// Sentinel errors wrapped by *Error; test with errors.Is.
var (
	// ErrTruncated: the input ends before the digest, the 8-byte trigger
	// header or the server identifier whose length the header declares.
	ErrTruncated = errors.New("truncated")
	// ErrMalformed: a field has a value the notification format forbids
	// (e.g. an empty server identifier).
	ErrMalformed = errors.New("malformed")
	// ErrTooLarge: the input or the encoded trigger exceeds MaxSize.
	ErrTooLarge = errors.New("too large")
	// ErrInvalidTrigger: Marshal or Build was given a field value that does
	// not fit its bit field (OMA-TS-DM_Notification §6.2.1).
	ErrInvalidTrigger = errors.New("invalid trigger")
)

// Error is the error type returned by this package.
type Error struct {
	// Op is what failed: "parse", "parse trigger", "marshal trigger" or "build".
	Op string
	// Offset is the byte offset in the parsed input where the problem was
	// found; -1 when not positional (encoding).
	Offset int
	// Reason is a human-readable detail.
	Reason string
	// Err is one of the sentinels above.
	Err error
}

func (e *Error) Error() string {
	if e.Offset >= 0 {
		return "pkg0: " + e.Op + " at offset " + strconv.Itoa(e.Offset) + ": " + e.Reason + ": " + e.Err.Error()
	}
	return "pkg0: " + e.Op + ": " + e.Reason + ": " + e.Err.Error()
}

// Unwrap exposes the sentinel for errors.Is.
func (e *Error) Unwrap() error { return e.Err }
