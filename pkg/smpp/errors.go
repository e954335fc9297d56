package smpp

import (
	"errors"
	"fmt"
)

// Sentinel errors. Use errors.Is; the concrete errors are *DecodeError,
// *EncodeError and *StatusError, which wrap these.
var (
	// ErrThrottled matches a *StatusError whose command_status is
	// ESME_RTHROTTLED or ESME_RMSGQFUL (§5.1.3). The message was not
	// accepted; retry later.
	ErrThrottled = errors.New("smpp: throttled by SMSC")
	// ErrNotBound means no bound session existed when the request would have
	// been written (reconnect in progress); nothing was sent, so retrying is
	// safe.
	ErrNotBound = errors.New("smpp: not bound")
	// ErrConnectionLost means the connection dropped after the request was
	// (possibly) written and before its response arrived: the outcome is
	// unknown and a retry may duplicate the message.
	ErrConnectionLost = errors.New("smpp: connection lost before response")
	// ErrResponseTimeout means no response arrived within
	// Config.ResponseTimeout: the outcome is unknown.
	ErrResponseTimeout = errors.New("smpp: response timeout")
	// ErrClosed is returned by calls on, or interrupted by, Client.Close.
	ErrClosed = errors.New("smpp: client closed")

	// ErrInvalidLength: command_length is below HeaderLen, above
	// MaxPDULength, or disagrees with the bytes given (§3.2).
	ErrInvalidLength = errors.New("invalid command_length")
	// ErrUnknownCommand: command_id is not one this package implements.
	ErrUnknownCommand = errors.New("unknown command_id")
	// ErrTruncated: a mandatory field runs past the end of the PDU.
	ErrTruncated = errors.New("truncated")
	// ErrTrailingBytes: bytes follow the body of a PDU that has no TLVs.
	ErrTrailingBytes = errors.New("trailing bytes")
	// ErrFieldTooLong: a C-octet string has no NUL within its maximum size,
	// or short_message exceeds 254 octets.
	ErrFieldTooLong = errors.New("field too long")
	// ErrInvalidField: a value that cannot be encoded (NUL inside a C-octet
	// string, short_message and message_payload both set, ...).
	ErrInvalidField = errors.New("invalid field")
	// ErrInvalidTLV: a TLV header or value runs past the PDU, or a known tag
	// has the wrong length (§3.2.4.1, §5.3.2).
	ErrInvalidTLV = errors.New("invalid TLV")
	// ErrNotReceipt: ParseReceipt was given a deliver_sm whose esm_class is
	// not a delivery receipt or intermediate notification (§5.2.12).
	ErrNotReceipt = errors.New("not a delivery receipt")
	// ErrMalformedReceipt: a receipt without a usable message id.
	ErrMalformedReceipt = errors.New("malformed delivery receipt")
)

// DecodeError describes a PDU that could not be decoded. When HeaderValid is
// true, CommandID and Sequence are the values from the header, and Status is
// the command_status the PDU should be answered with — in a generic_nack
// for ESME_RINVCMDLEN / ESME_RINVCMDID (§4.3), otherwise in the command's
// own response.
type DecodeError struct {
	Offset      int       // byte offset from the start of the PDU
	HeaderValid bool      // the 16-octet header was read
	CommandID   CommandID // command_id, if HeaderValid
	Sequence    uint32    // sequence_number, if HeaderValid
	Status      Status    // command_status to answer with
	Field       string    // field being decoded, e.g. "source_addr"
	Err         error     // one of the Err* sentinels
}

func (e *DecodeError) Error() string {
	cmd := "pdu"
	if e.HeaderValid {
		cmd = e.CommandID.String()
	}
	if e.Field != "" {
		return fmt.Sprintf("smpp: decode %s: %s at offset %d: %v (%s)", cmd, e.Field, e.Offset, e.Err, e.Status.String())
	}
	return fmt.Sprintf("smpp: decode %s at offset %d: %v (%s)", cmd, e.Offset, e.Err, e.Status.String())
}

func (e *DecodeError) Unwrap() error { return e.Err }

// EncodeError describes a PDU value that cannot be encoded.
type EncodeError struct {
	CommandID CommandID
	Field     string
	Err       error // ErrFieldTooLong, ErrInvalidField, ErrInvalidTLV, ErrInvalidLength
	Detail    string
}

func (e *EncodeError) Error() string {
	s := fmt.Sprintf("smpp: encode %s: %s: %v", e.CommandID, e.Field, e.Err)
	if e.Detail != "" {
		s += " (" + e.Detail + ")"
	}
	return s
}

func (e *EncodeError) Unwrap() error { return e.Err }

// StatusError is a response with a non-zero command_status (§5.1.3), or a
// generic_nack answering a request. It matches its Status with errors.Is
// and, for ESME_RTHROTTLED / ESME_RMSGQFUL, also ErrThrottled.
type StatusError struct {
	Command CommandID // the request that was answered, e.g. CmdSubmitSM
	Nack    bool      // the answer was a generic_nack
	Status  Status
}

func (e *StatusError) Error() string {
	how := "rejected"
	if e.Nack {
		how = "answered with generic_nack"
	}
	return fmt.Sprintf("smpp: %s %s: %s (0x%08X)", e.Command, how, e.Status.String(), uint32(e.Status))
}

func (e *StatusError) Unwrap() error { return e.Status }

// Is makes errors.Is(err, ErrThrottled) true for throttling statuses.
func (e *StatusError) Is(target error) bool {
	return target == ErrThrottled && e.Status.Throttling()
}

// IsRetryable reports whether err says that the request was certainly not
// accepted and may be retried later without risking a duplicate:
// ErrThrottled (ESME_RTHROTTLED, ESME_RMSGQFUL) or ErrNotBound.
// ErrConnectionLost and ErrResponseTimeout are deliberately excluded: the
// SMSC may have accepted the message.
func IsRetryable(err error) bool {
	return errors.Is(err, ErrThrottled) || errors.Is(err, ErrNotBound)
}
