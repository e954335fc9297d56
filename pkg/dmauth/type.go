package dmauth

import (
	"errors"
	"fmt"
	"strings"
)

// Type is an authentication type as carried in Cred/Meta/Type and
// Chal/Meta/Type (OMA-TS-DM_Security §5.1, PROTOCOL.md §7.1).
type Type string

// Authentication types known to OMA DM 1.2.1. Only Basic, MD5 and MAC are
// implemented by this package; the others are recognised so that callers can
// answer with a meaningful challenge instead of treating them as garbage.
const (
	TypeBasic    Type = "syncml:auth-basic"
	TypeMD5      Type = "syncml:auth-md5"
	TypeMAC      Type = "syncml:auth-MAC"
	TypeX509     Type = "syncml:auth-X509"
	TypeSecurID  Type = "syncml:auth-securid"
	TypeSafeWord Type = "syncml:auth-safeword"
	TypeDigipass Type = "syncml:auth-digipass"
)

// knownTypes lists every type ParseType recognises, in canonical spelling.
var knownTypes = []Type{TypeBasic, TypeMD5, TypeMAC, TypeX509, TypeSecurID, TypeSafeWord, TypeDigipass}

// Supported reports whether this package can build and verify credentials of
// type t.
func (t Type) Supported() bool {
	return t == TypeBasic || t == TypeMD5 || t == TypeMAC
}

// String returns the canonical spelling, e.g. "syncml:auth-MAC".
func (t Type) String() string { return string(t) }

// Sentinel errors wrapped by *TypeError; test with errors.Is.
var (
	// ErrUnknownType means the string is not an OMA DM authentication type.
	ErrUnknownType = errors.New("unknown authentication type")
	// ErrUnsupportedType means the type exists in OMA DM but this package
	// cannot verify it (X.509, SecurID, SafeWord, Digipass). A server would
	// typically answer 401/407 with a Chal for a type it does support.
	ErrUnsupportedType = errors.New("unsupported authentication type")
)

// TypeError reports a Cred/Chal Meta Type that cannot be used.
type TypeError struct {
	Input string // the value as received
	Type  Type   // canonical type when recognised (ErrUnsupportedType), else ""
	Err   error  // ErrUnknownType or ErrUnsupportedType
}

func (e *TypeError) Error() string {
	return fmt.Sprintf("dmauth: parse auth type %q: %v", truncate(e.Input, 64), e.Err)
}

// Unwrap exposes the sentinel for errors.Is.
func (e *TypeError) Unwrap() error { return e.Err }

// ParseType maps a received Meta/Type value to a Type. Matching is
// case-insensitive and ignores surrounding white space because peers differ
// in the case of "MAC" and XML text often carries indentation (PROTOCOL.md
// §12.3). Recognised but unimplemented types return their canonical Type
// together with a *TypeError wrapping ErrUnsupportedType.
func ParseType(s string) (Type, error) {
	v := strings.TrimSpace(s)
	for _, t := range knownTypes {
		if strings.EqualFold(v, string(t)) {
			if !t.Supported() {
				return t, &TypeError{Input: s, Type: t, Err: ErrUnsupportedType}
			}
			return t, nil
		}
	}
	return "", &TypeError{Input: s, Err: ErrUnknownType}
}

// truncate bounds attacker-controlled text placed in error messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
