package dmauth

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// HMACHeaderName is the HTTP header that carries syncml:auth-MAC integrity
// data (OMA-TS-DM_Security §5.1.4.1). HTTP header names are
// case-insensitive; this is the spelling used when sending.
const HMACHeaderName = "x-syncml-hmac"

// MaxHMACHeaderLen bounds the header value ParseHMACHeader accepts. A real
// value is well under 200 bytes.
const MaxHMACHeaderLen = 1024

// BodyHash returns B64(H(body)), the body digest inside the MAC formula. It
// is exported because it is handy for logging and test vectors.
func BodyHash(body []byte) string {
	sum := md5.Sum(body)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// MACDigest is H(key ":" nonce ":" B64(H(body))) — the OMA formula of
// OMA-TS-DM_Security §5.1.4.2. It is a plain MD5 over the concatenation,
// deliberately NOT RFC 2104 HMAC (PROTOCOL.md §12.9).
func MACDigest(key string, nonce, body []byte) [md5.Size]byte {
	return macDigestHash(key, nonce, BodyHash(body))
}

// macDigestHash is MACDigest given B64(H(body)) instead of the body: the gateway hashes the
// body once where it receives it and forwards only the hash to the session worker.
func macDigestHash(key string, nonce []byte, bodyHash string) [md5.Size]byte {
	h := md5.New()
	h.Write([]byte(key))
	h.Write([]byte{':'})
	h.Write(nonce)
	h.Write([]byte{':'})
	h.Write([]byte(bodyHash))
	var out [md5.Size]byte
	h.Sum(out[:0])
	return out
}

// MAC returns the mac parameter B64(H(key ":" nonce ":" B64(H(body)))) for
// the exact HTTP body bytes (XML text or WBXML) and the raw nonce
// (OMA-TS-DM_Security §5.1.4.2).
func MAC(key string, nonce, body []byte) string {
	d := MACDigest(key, nonce, body)
	return base64.StdEncoding.EncodeToString(d[:])
}

// HMACHeader is a parsed x-syncml-hmac value (OMA-TS-DM_Security §5.1.4.1).
type HMACHeader struct {
	// Algorithm is always "MD5" after a successful parse (the default when
	// the parameter is absent); it is the only algorithm the spec defines.
	Algorithm string
	// Username is the sender's Source/LocName; callers use it to look up
	// the Key.
	Username string
	// MAC is the base64 digest as received (padding may be missing).
	MAC string
}

// Sentinel errors wrapped by *HeaderError; test with errors.Is.
var (
	ErrMalformedHeader      = errors.New("malformed x-syncml-hmac header")
	ErrHeaderTooLong        = errors.New("x-syncml-hmac header too long")
	ErrUnsupportedAlgorithm = errors.New("unsupported x-syncml-hmac algorithm")
)

// HeaderError reports why an x-syncml-hmac value was rejected.
type HeaderError struct {
	Offset int    // byte index in the input where the problem was found, -1 if not positional
	Reason string // human-readable detail
	Err    error  // ErrMalformedHeader, ErrHeaderTooLong or ErrUnsupportedAlgorithm
}

func (e *HeaderError) Error() string {
	if e.Offset >= 0 {
		return fmt.Sprintf("dmauth: parse %s at index %d: %s: %v", HMACHeaderName, e.Offset, e.Reason, e.Err)
	}
	return fmt.Sprintf("dmauth: parse %s: %s: %v", HMACHeaderName, e.Reason, e.Err)
}

// Unwrap exposes the sentinel for errors.Is.
func (e *HeaderError) Unwrap() error { return e.Err }

func malformed(off int, format string, args ...any) *HeaderError {
	return &HeaderError{Offset: off, Reason: fmt.Sprintf(format, args...), Err: ErrMalformedHeader}
}

// ParseHMACHeader parses `algorithm=MD5, username="name", mac=<b64>`
// (OMA-TS-DM_Security §5.1.4.1). Parameters are comma-separated in any
// order, white space around "=" and "," is optional and parameter names are
// case-insensitive. algorithm is optional (default MD5); username (quoted,
// unquoted accepted) and mac are mandatory and must be non-empty; mac must be
// base64 (padding optional). Unknown parameters are ignored for forward
// compatibility; duplicated known parameters are an error. Values may be
// quoted strings with backslash escapes.
func ParseHMACHeader(v string) (HMACHeader, error) {
	var h HMACHeader
	if len(v) > MaxHMACHeaderLen {
		return h, &HeaderError{Offset: -1, Reason: fmt.Sprintf("%d bytes, max %d", len(v), MaxHMACHeaderLen), Err: ErrHeaderTooLong}
	}
	var haveAlg, haveUser, haveMAC bool
	i := 0
	for {
		i = skipWS(v, i)
		if i == len(v) {
			break
		}
		if v[i] == ',' { // empty list element, allowed by HTTP list syntax
			i++
			continue
		}
		nameStart := i
		for i < len(v) && isNameChar(v[i]) {
			i++
		}
		if i == nameStart {
			return HMACHeader{}, malformed(i, "expected parameter name, found %q", v[i])
		}
		name := strings.ToLower(v[nameStart:i])
		i = skipWS(v, i)
		if i == len(v) || v[i] != '=' {
			return HMACHeader{}, malformed(i, "expected '=' after %q", name)
		}
		i = skipWS(v, i+1)
		valStart := i
		val, next, err := parseValue(v, i)
		if err != nil {
			return HMACHeader{}, err
		}
		i = skipWS(v, next)
		if i < len(v) && v[i] != ',' {
			return HMACHeader{}, malformed(i, "expected ',' after value of %q", name)
		}
		switch name {
		case "algorithm":
			if haveAlg {
				return HMACHeader{}, malformed(nameStart, "duplicate parameter %q", name)
			}
			haveAlg = true
			if !strings.EqualFold(val, "MD5") {
				return HMACHeader{}, &HeaderError{Offset: valStart, Reason: fmt.Sprintf("algorithm %q", truncate(val, 32)), Err: ErrUnsupportedAlgorithm}
			}
		case "username":
			if haveUser {
				return HMACHeader{}, malformed(nameStart, "duplicate parameter %q", name)
			}
			haveUser = true
			if val == "" {
				return HMACHeader{}, malformed(valStart, "empty username")
			}
			h.Username = val
		case "mac":
			if haveMAC {
				return HMACHeader{}, malformed(nameStart, "duplicate parameter %q", name)
			}
			haveMAC = true
			if b, err := decodeLenient(val); err != nil || len(b) == 0 {
				return HMACHeader{}, malformed(valStart, "mac is not base64")
			}
			h.MAC = strings.TrimSpace(val)
		}
	}
	if !haveUser {
		return HMACHeader{}, malformed(-1, "missing username")
	}
	if !haveMAC {
		return HMACHeader{}, malformed(-1, "missing mac")
	}
	h.Algorithm = "MD5"
	return h, nil
}

// parseValue reads a quoted string or a bare token starting at i and returns
// the value and the index just past it.
func parseValue(v string, i int) (string, int, error) {
	if i < len(v) && v[i] == '"' {
		start := i
		var b strings.Builder
		for i++; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '"':
				return b.String(), i + 1, nil
			case c == '\\':
				i++
				if i == len(v) {
					return "", 0, malformed(start, "unterminated quoted string")
				}
				c = v[i]
				if isCtl(c) {
					return "", 0, malformed(i, "control character in quoted string")
				}
				b.WriteByte(c)
			case isCtl(c):
				return "", 0, malformed(i, "control character in quoted string")
			default:
				b.WriteByte(c)
			}
		}
		return "", 0, malformed(start, "unterminated quoted string")
	}
	start := i
	for i < len(v) && v[i] != ',' && !isWS(v[i]) {
		if v[i] == '"' || isCtl(v[i]) {
			return "", 0, malformed(i, "unexpected %q in token", v[i])
		}
		i++
	}
	if i == start {
		return "", 0, malformed(i, "empty value")
	}
	return v[start:i], i, nil
}

func skipWS(v string, i int) int {
	for i < len(v) && isWS(v[i]) {
		i++
	}
	return i
}

func isWS(c byte) bool  { return c == ' ' || c == '\t' }
func isCtl(c byte) bool { return c < 0x20 || c == 0x7f }

func isNameChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
}

// String formats h as FormatHMACHeader does.
func (h HMACHeader) String() string { return FormatHMACHeader(h.Username, h.MAC) }

// FormatHMACHeader returns exactly `algorithm=MD5, username="<name>", mac=<mac>`
// (OMA-TS-DM_Security §5.1.4.1). A '"' or '\' inside the name is
// backslash-escaped so that ParseHMACHeader gets the same name back; real
// names never contain them.
func FormatHMACHeader(username, mac string) string {
	var b strings.Builder
	b.Grow(len(username) + len(mac) + 32)
	b.WriteString(`algorithm=MD5, username="`)
	for i := 0; i < len(username); i++ {
		if c := username[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(username[i])
	}
	b.WriteString(`", mac=`)
	b.WriteString(mac)
	return b.String()
}

// VerifyHMAC checks h.MAC against the MAC of body under key and the raw
// nonce, in constant time. The mac is compared as decoded digest bytes, so it
// may come with or without "=" padding (PROTOCOL.md §12.9). The username is
// not checked here: the caller used it to pick key.
func VerifyHMAC(h HMACHeader, key string, nonce, body []byte) bool {
	return VerifyHMACBodyHash(h, key, nonce, BodyHash(body))
}

// VerifyHMACBodyHash is VerifyHMAC given bodyHash = B64(H(body)) (see BodyHash) instead of
// the body itself.
func VerifyHMACBodyHash(h HMACHeader, key string, nonce []byte, bodyHash string) bool {
	if key == "" || !algorithmOK(h.Algorithm) {
		return false
	}
	got, ok := decodeDigest(h.MAC)
	if !ok {
		return false
	}
	want := macDigestHash(key, nonce, bodyHash)
	return subtle.ConstantTimeCompare(got, want[:]) == 1
}

// VerifyHMACLenient is VerifyHMAC trying the decoded nonce and then the
// nonce's base64 text as bytes, like VerifyMD5Lenient (PROTOCOL.md §12.8).
func VerifyHMACLenient(h HMACHeader, key, nonceB64 string, body []byte) (bool, NonceVariant) {
	if key == "" || !algorithmOK(h.Algorithm) {
		return false, NonceNoMatch
	}
	got, ok := decodeDigest(h.MAC)
	if !ok {
		return false, NonceNoMatch
	}
	decOK := 0
	if nonce, err := DecodeNonce(nonceB64); err == nil {
		want := MACDigest(key, nonce, body)
		decOK = subtle.ConstantTimeCompare(got, want[:])
	}
	wantText := MACDigest(key, []byte(nonceB64), body)
	textOK := subtle.ConstantTimeCompare(got, wantText[:])
	return pickVariant(decOK, textOK)
}

// algorithmOK accepts the zero value too, so a hand-built HMACHeader without
// Algorithm still verifies (MD5 is the default, §5.1.4.1).
func algorithmOK(a string) bool { return a == "" || strings.EqualFold(a, "MD5") }
