// Package pkg0 builds and parses the OMA DM 1.2.1 "General Package #0", the
// server-initiated management notification (OMA-TS-DM_Notification §6.2,
// PROTOCOL.md §9.1).
//
// A Package 0 is a 16-byte MD5 digest followed by the trigger: an 8-byte
// bit-packed big-endian header (version, ui-mode, initiator, future-use,
// session id, server id length), the server identifier and optional
// vendor-specific bytes:
//
//	digest  = H( B64(H(server-id ":" secret)) ":" nonce ":" B64(H(trigger)) )
//	package = digest || trigger
//
// H is MD5 (16 raw bytes), B64 standard base64 with padding, nonce the raw
// server nonce bytes (SRVCRED AAuthData). A server only needs the stored key
// B64(H(server-id ":" secret)) = dmauth.Key(serverID, secret).
//
// The package is pure: it hashes, encodes and compares. Carrying the bytes
// to the device (WAP Push over SMS, see package wappush) and storing nonces
// is the caller's business.
package pkg0

import (
	"crypto/md5"
	"crypto/subtle"
	"fmt"
	"strconv"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
)

// Sizes and limits of the format (OMA-TS-DM_Notification §6.2.1).
const (
	// DigestSize is the length of the MD5 digest in front of the trigger.
	DigestSize = md5.Size
	// HeaderSize is the fixed trigger header: 40 bits version/ui-mode/
	// initiator/future-use, 16 bits session id, 8 bits server id length.
	HeaderSize = 8
	// MinSize is the shortest possible Package 0 (digest + header, without
	// the server identifier, which must be at least one byte).
	MinSize = DigestSize + HeaderSize
	// MaxServerIDLen is the longest server identifier the 8-bit length field
	// can describe.
	MaxServerIDLen = 255
	// MaxVersion is the largest value of the 10-bit version field.
	MaxVersion = 1<<10 - 1
	// MaxSize bounds a whole Package 0 (digest + trigger). A concatenated
	// SMS carries at most 255 × 128 bytes, so real packages are far below it.
	MaxSize = 1 << 16
)

// DefaultVersion is the notification version the 1.2.1 text requires:
// 0b0000001011 = 11, i.e. "1.1" (OMA-TS-DM_Notification §6.2.2.6). Some
// deployments expect 12; the version is a Trigger field so callers can set
// it (PROTOCOL.md §9.1, vector p4).
const DefaultVersion = 11

// UIMode is the 2-bit ui-mode field (OMA-TS-DM_Notification §6.2.2.7).
type UIMode uint8

// UI modes.
const (
	UIModeNotSpecified    UIMode = 0
	UIModeBackground      UIMode = 1
	UIModeInformative     UIMode = 2
	UIModeUserInteraction UIMode = 3
)

// String returns the mode's name, e.g. "background".
func (m UIMode) String() string {
	switch m {
	case UIModeNotSpecified:
		return "not-specified"
	case UIModeBackground:
		return "background"
	case UIModeInformative:
		return "informative"
	case UIModeUserInteraction:
		return "user-interaction"
	}
	return "UIMode(" + strconv.Itoa(int(m)) + ")"
}

// Initiator is the 1-bit initiator field (OMA-TS-DM_Notification §6.2.2.8).
type Initiator uint8

// Initiators.
const (
	InitiatorClient Initiator = 0 // client or user initiated
	InitiatorServer Initiator = 1 // server initiated
)

// String returns "client", "server" or "Initiator(n)".
func (i Initiator) String() string {
	switch i {
	case InitiatorClient:
		return "client"
	case InitiatorServer:
		return "server"
	}
	return "Initiator(" + strconv.Itoa(int(i)) + ")"
}

// Trigger is the part of a Package 0 after the digest
// (OMA-TS-DM_Notification §6.2.1).
type Trigger struct {
	// Version is the notification version × 10 (10 bits, DefaultVersion 11).
	Version uint16
	// UIMode is the 2-bit ui-mode.
	UIMode UIMode
	// Initiator is the 1-bit initiator.
	Initiator Initiator
	// SessionID is the session the device opens; its Pkg1 SessionID is
	// SessionIDHex(SessionID) (OMA-TS-DM_Notification §6.2.2.10).
	SessionID uint16
	// ServerID is the DMAcc ServerID (1..255 bytes).
	ServerID string
	// Vendor holds the optional vendor-specific bytes after the server id.
	Vendor []byte
}

// Marshal encodes the trigger: header (big-endian, bit-packed: version 10
// bits, ui-mode 2, initiator 1, future-use 27 zero bits, session id 16,
// server id length 8), server identifier, vendor bytes
// (OMA-TS-DM_Notification §6.2.1). Field values that do not fit, an empty
// server id and a trigger whose package would exceed MaxSize are errors
// wrapping ErrInvalidTrigger or ErrTooLarge.
func (t Trigger) Marshal() ([]byte, error) {
	if err := t.check("marshal trigger"); err != nil {
		return nil, err
	}
	out := make([]byte, HeaderSize, HeaderSize+len(t.ServerID)+len(t.Vendor))
	hdr := uint64(t.Version)<<30 | uint64(t.UIMode)<<28 | uint64(t.Initiator)<<27
	out[0] = byte(hdr >> 32)
	out[1] = byte(hdr >> 24)
	out[2] = byte(hdr >> 16)
	out[3] = byte(hdr >> 8)
	out[4] = byte(hdr)
	out[5] = byte(t.SessionID >> 8)
	out[6] = byte(t.SessionID)
	out[7] = byte(len(t.ServerID))
	out = append(out, t.ServerID...)
	out = append(out, t.Vendor...)
	return out, nil
}

func (t Trigger) check(op string) error {
	invalid := func(format string, args ...any) error {
		return &Error{Op: op, Offset: -1, Reason: fmt.Sprintf(format, args...), Err: ErrInvalidTrigger}
	}
	switch {
	case t.Version > MaxVersion:
		return invalid("version %d does not fit 10 bits (max %d)", t.Version, MaxVersion)
	case t.UIMode > UIModeUserInteraction:
		return invalid("ui-mode %d does not fit 2 bits (max 3)", t.UIMode)
	case t.Initiator > InitiatorServer:
		return invalid("initiator %d does not fit 1 bit (max 1)", t.Initiator)
	case t.ServerID == "":
		return invalid("empty server identifier")
	case len(t.ServerID) > MaxServerIDLen:
		return invalid("server identifier is %d bytes (max %d)", len(t.ServerID), MaxServerIDLen)
	case DigestSize+HeaderSize+len(t.ServerID)+len(t.Vendor) > MaxSize:
		return &Error{Op: op, Offset: -1, Reason: fmt.Sprintf("%d vendor bytes make the package longer than %d bytes",
			len(t.Vendor), MaxSize), Err: ErrTooLarge}
	}
	return nil
}

// ParseTrigger decodes trigger bytes (everything after the digest). Offsets
// in errors are relative to b. Non-zero future-use bits are tolerated (they
// are reserved for later versions) but not kept: Marshal writes zeros, while
// Package.TriggerBytes keeps the original bytes for digest checks. Vendor is
// a copy, nil when absent.
func ParseTrigger(b []byte) (Trigger, error) {
	return parseTrigger(b, 0, "parse trigger")
}

// parseTrigger decodes b; base is added to offsets in errors.
func parseTrigger(b []byte, base int, op string) (Trigger, error) {
	fail := func(off int, err error, format string, args ...any) (Trigger, error) {
		return Trigger{}, &Error{Op: op, Offset: base + off, Reason: fmt.Sprintf(format, args...), Err: err}
	}
	if len(b) > MaxSize-DigestSize {
		return fail(MaxSize-DigestSize, ErrTooLarge, "trigger is %d bytes (max %d)", len(b), MaxSize-DigestSize)
	}
	if len(b) < HeaderSize {
		return fail(len(b), ErrTruncated, "trigger header needs %d bytes, have %d", HeaderSize, len(b))
	}
	hdr := uint64(b[0])<<32 | uint64(b[1])<<24 | uint64(b[2])<<16 | uint64(b[3])<<8 | uint64(b[4])
	n := int(b[7])
	if n == 0 {
		return fail(7, ErrMalformed, "server identifier length is 0")
	}
	if len(b) < HeaderSize+n {
		return fail(len(b), ErrTruncated, "server identifier of %d bytes needs %d more", n, HeaderSize+n-len(b))
	}
	t := Trigger{
		Version:   uint16(hdr >> 30 & MaxVersion),
		UIMode:    UIMode(hdr >> 28 & 3),
		Initiator: Initiator(hdr >> 27 & 1),
		SessionID: uint16(b[5])<<8 | uint16(b[6]),
		ServerID:  string(b[HeaderSize : HeaderSize+n]),
	}
	if rest := b[HeaderSize+n:]; len(rest) > 0 {
		t.Vendor = append([]byte(nil), rest...)
	}
	return t, nil
}

// Package is a parsed Package 0.
type Package struct {
	// Digest is the 16-byte MD5 digest in front of the trigger.
	Digest [DigestSize]byte
	// Trigger holds the decoded trigger fields.
	Trigger Trigger
	// TriggerBytes are the trigger bytes exactly as received (a copy), the
	// input of the digest.
	TriggerBytes []byte
}

// Parse decodes a Package 0: digest, then trigger (OMA-TS-DM_Notification
// §6.2.1). Input shorter than MinSize, a server identifier length that runs
// past the end, a zero identifier length or input longer than MaxSize is an
// *Error with the offset in b. The result does not alias b.
func Parse(b []byte) (Package, error) {
	if len(b) > MaxSize {
		return Package{}, &Error{Op: "parse", Offset: MaxSize, Reason: fmt.Sprintf("package is %d bytes (max %d)", len(b), MaxSize), Err: ErrTooLarge}
	}
	if len(b) < MinSize {
		return Package{}, &Error{Op: "parse", Offset: len(b), Reason: fmt.Sprintf("package needs at least %d bytes (digest + header), have %d", MinSize, len(b)), Err: ErrTruncated}
	}
	t, err := parseTrigger(b[DigestSize:], DigestSize, "parse")
	if err != nil {
		return Package{}, err
	}
	p := Package{Trigger: t, TriggerBytes: append([]byte(nil), b[DigestSize:]...)}
	copy(p.Digest[:], b)
	return p, nil
}

// Bytes returns digest || trigger bytes (TriggerBytes, or the marshalled
// Trigger when TriggerBytes is empty).
func (p Package) Bytes() ([]byte, error) {
	tb, err := p.triggerBytes()
	if err != nil {
		return nil, err
	}
	return append(p.Digest[:len(p.Digest):len(p.Digest)], tb...), nil
}

func (p Package) triggerBytes() ([]byte, error) {
	if len(p.TriggerBytes) > 0 {
		return p.TriggerBytes, nil
	}
	return p.Trigger.Marshal()
}

// Digest computes H( B64(H(serverID ":" serverSecret)) ":" nonce ":"
// B64(H(trigger)) ) over the raw nonce bytes and the exact trigger bytes
// (OMA-TS-DM_Notification §6.2.2.2, PROTOCOL.md §9.1).
func Digest(serverID, serverSecret string, nonce []byte, trigger []byte) [DigestSize]byte {
	return DigestFromKey(dmauth.Key(serverID, serverSecret), nonce, trigger)
}

// DigestFromKey is Digest from the stored key B64(H(serverID ":" secret))
// (dmauth.Key), the only form of the server secret a server needs to keep.
func DigestFromKey(key string, nonce, trigger []byte) [DigestSize]byte {
	return dmauth.MACDigest(key, nonce, trigger) // the same formula as the auth-MAC digest
}

// Build encodes t and prepends the digest made with key (dmauth.Key of the
// server id and secret) and the raw server nonce: digest || trigger.
func Build(t Trigger, key string, nonce []byte) ([]byte, error) {
	tb, err := t.Marshal()
	if err != nil {
		return nil, err
	}
	if key == "" {
		return nil, &Error{Op: "build", Offset: -1, Reason: "empty key", Err: ErrInvalidTrigger}
	}
	d := DigestFromKey(key, nonce, tb)
	out := make([]byte, 0, DigestSize+len(tb))
	out = append(out, d[:]...)
	return append(out, tb...), nil
}

// Verify reports whether p's digest matches key and the raw nonce, comparing
// in constant time. It is false for an empty key or an unencodable trigger.
func (p Package) Verify(key string, nonce []byte) bool {
	tb, err := p.triggerBytes()
	if err != nil || key == "" {
		return false
	}
	want := DigestFromKey(key, nonce, tb)
	return subtle.ConstantTimeCompare(p.Digest[:], want[:]) == 1
}

// VerifyWithResync is Verify that also tries the resynchronisation nonce,
// four zero bytes (OMA-TS-DM_Notification §6.2, PROTOCOL.md §7.4). ok is
// true when either nonce matches; resync is true only when the given nonce
// did not match and the zero nonce did, so the caller knows the device's
// nonce store is out of step. Both digests are always computed. Callers
// that want to accept libdmclient's 10-character text nonce can also try
// Verify(key, []byte(dmauth.LegacyResyncNonceText)).
func (p Package) VerifyWithResync(key string, nonce []byte) (ok bool, resync bool) {
	tb, err := p.triggerBytes()
	if err != nil || key == "" {
		return false, false
	}
	want := DigestFromKey(key, nonce, tb)
	wantZero := DigestFromKey(key, dmauth.ResyncNonce(), tb)
	direct := subtle.ConstantTimeCompare(p.Digest[:], want[:])
	zero := subtle.ConstantTimeCompare(p.Digest[:], wantZero[:])
	return direct|zero == 1, direct == 0 && zero == 1
}

// SessionIDHex returns the SessionID a device sends in the Pkg1 answering a
// Package 0: the session id in upper-case hex without leading zeros
// (0x1A2B → "1A2B", 1 → "1"; OMA-TS-DM_Notification §6.2.2.10,
// PROTOCOL.md §2.1).
func SessionIDHex(id uint16) string {
	const digits = "0123456789ABCDEF"
	var buf [4]byte
	i := len(buf)
	for {
		i--
		buf[i] = digits[id&0xF]
		id >>= 4
		if id == 0 {
			break
		}
	}
	return string(buf[i:])
}
