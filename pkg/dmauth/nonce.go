package dmauth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// NonceSize is the length of nonces made by NewNonce: 128 bits, the minimum
// OMA-TS-DM_Security §5.1.3.3 recommends.
const NonceSize = 16

// ResyncNonceB64 is the base64 form of the Package 0 resynchronisation nonce
// (four zero bytes, OMA-TS-DM_Notification §6.2, PROTOCOL.md §7.4).
const ResyncNonceB64 = "AAAAAA=="

// LegacyResyncNonceText is the 10-character ASCII string that Intel
// libdmclient uses as its resynchronisation nonce instead of four zero bytes
// (PROTOCOL.md §7.4, marked [!]). It is not the spec value; callers that want
// to accept such clients can try it as a raw nonce:
// VerifyMD5(cred, key, []byte(LegacyResyncNonceText)).
const LegacyResyncNonceText = "0x00000000"

// ErrMalformedNonce is wrapped by DecodeNonce errors.
var ErrMalformedNonce = errors.New("malformed nonce")

// maxNonceText bounds the NextNonce text accepted from a peer.
const maxNonceText = 1024

// ResyncNonce returns a fresh copy of the resynchronisation nonce: four zero
// bytes (OMA-TS-DM_Notification §6.2). A new slice is returned on every call
// so no caller can corrupt a shared value.
func ResyncNonce() []byte { return make([]byte, 4) }

// IsResyncNonce reports whether n is the four-zero-byte resync nonce.
func IsResyncNonce(n []byte) bool { return len(n) == 4 && bytes.Equal(n, []byte{0, 0, 0, 0}) }

// NewNonce returns NonceSize bytes from crypto/rand. A fresh nonce is needed
// per session and after every failed authentication
// (OMA-TS-DM_Security §5.1.3.3–5.1.3.4).
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, fmt.Errorf("dmauth: read random nonce: %w", err)
	}
	return n, nil
}

// EncodeNonce returns the base64 text for Chal/Meta/NextNonce.
func EncodeNonce(n []byte) string { return base64.StdEncoding.EncodeToString(n) }

// DecodeNonce decodes a NextNonce (standard base64). Surrounding white space
// and missing "=" padding are tolerated because peers differ; anything else
// is an error wrapping ErrMalformedNonce. The empty string decodes to an
// empty nonce (vector M6 shows the formula still applies).
func DecodeNonce(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if len(t) > maxNonceText {
		return nil, fmt.Errorf("dmauth: decode nonce (%d bytes, max %d): %w", len(t), maxNonceText, ErrMalformedNonce)
	}
	b, err := decodeLenient(t)
	if err != nil {
		return nil, fmt.Errorf("dmauth: decode nonce %q: %w (%v)", truncate(t, 64), ErrMalformedNonce, err)
	}
	return b, nil
}
