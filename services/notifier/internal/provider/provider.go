// Package provider holds the notifier's SMS provider adapters: each one hands the SMS
// segments of one WAP Push (OMA-TS-DM_Notification §6.3.1, PROTOCOL.md §9.2) to a carrier
// interface (SMPP 3.4, Kannel's smsbox, an HTTP webhook) or to the log, and the Router that
// picks an adapter for a device by label or MSISDN prefix.
package provider

import (
	"context"
	"errors"
	"fmt"
)

// Message is one notification to send: the SMS user data of every segment, each starting
// with its user data header (TP-UDHI set, 8-bit data coding; 3GPP TS 23.040 §9.2.3.24).
type Message struct {
	// NotificationID identifies the notification (logs, webhook payload).
	NotificationID string
	// MSISDN is the destination in E.164 form, e.g. "+491701234567".
	MSISDN string
	// UDHSegments is the TP-User-Data of each SMS: UDH (length octet first) then payload.
	UDHSegments [][]byte
}

// Provider sends messages. Send returns the provider's id of each segment it accepted (ids
// may be empty when the provider has none). An error wrapping ErrPermanent means retrying
// cannot help (e.g. an invalid destination); any other error is worth a retry later.
type Provider interface {
	Send(ctx context.Context, m Message) (ids []string, err error)
}

// Receipt is a delivery report for one segment (SMPP §5.2.12 delivery receipt).
type Receipt struct {
	// MessageID is an id Send returned.
	MessageID string
	// Delivered is true for a final "delivered" report.
	Delivered bool
	// Failed is true for a final failure (undeliverable, expired, rejected, deleted).
	Failed bool
	// Status is the provider's state text, e.g. "DELIVRD" or "UNDELIV".
	Status string
}

// ReceiptSource is implemented by providers that report delivery. The channel is closed
// when the provider is closed.
type ReceiptSource interface {
	Receipts() <-chan Receipt
}

// ErrPermanent marks a send failure that no retry can fix.
var ErrPermanent = errors.New("permanent failure")

// Error is a send failure of one provider.
type Error struct {
	Provider string // adapter name, e.g. "smpp"
	Op       string // what failed, e.g. "submit segment 2/3"
	Err      error
}

func (e *Error) Error() string { return e.Provider + ": " + e.Op + ": " + e.Err.Error() }

// Unwrap exposes the cause.
func (e *Error) Unwrap() error { return e.Err }

// permanent wraps err so that errors.Is(err, ErrPermanent) holds.
func permanent(err error) error { return fmt.Errorf("%w: %w", ErrPermanent, err) }

// IsPermanent reports whether err says that retrying is pointless.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }
