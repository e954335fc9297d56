package dmauth

import (
	"crypto/md5"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"strings"
)

var errPaddingOnly = errors.New("base64 text is only padding")

// maxCredLen bounds the base64 text accepted from a peer. Real credentials
// are a few dozen characters; the bound keeps decoding cost trivial for
// hostile input.
const maxCredLen = 4096

// Key returns B64(H(name ":" secret)), the pre-hashed credential that the
// md5 and MAC formulas are built on (OMA-TS-DM_Security §5.1.3.2). It is the
// only form of a secret a server needs to store: Basic, MD5 and MAC can all
// be verified from it.
func Key(name, secret string) string {
	sum := md5.Sum([]byte(name + ":" + secret))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// BasicCred returns the syncml:auth-basic Cred/Data B64(name ":" secret)
// (OMA-TS-DM_Protocol §2.4, PROTOCOL.md §7.2; spec example Bruce2/OhBehave).
func BasicCred(name, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(name + ":" + secret))
}

// VerifyBasic checks a syncml:auth-basic Cred/Data against the expected
// account name and its stored Key. The name is the part before the first
// ":" (as in HTTP Basic, a name cannot contain ":"; the secret can).
// Name and key are both compared in constant time and both comparisons are
// always evaluated. Any malformed input yields false.
func VerifyBasic(credData, wantName, storedKey string) bool {
	if wantName == "" || storedKey == "" {
		return false
	}
	raw, ok := decodeB64(credData)
	if !ok {
		return false
	}
	cred := string(raw)
	i := strings.IndexByte(cred, ':')
	if i < 0 {
		return false
	}
	name, secret := cred[:i], cred[i+1:]
	nameOK := subtle.ConstantTimeCompare([]byte(name), []byte(wantName))
	keyOK := subtle.ConstantTimeCompare([]byte(Key(name, secret)), []byte(storedKey))
	return nameOK&keyOK == 1
}

// md5Digest is H(key ":" nonce), the raw syncml:auth-md5 digest
// (OMA-TS-DM_Security §5.1.3.2). The nonce is used as raw bytes.
func md5Digest(key string, nonce []byte) [md5.Size]byte {
	h := md5.New()
	h.Write([]byte(key))
	h.Write([]byte{':'})
	h.Write(nonce)
	var out [md5.Size]byte
	h.Sum(out[:0])
	return out
}

// MD5Cred returns the syncml:auth-md5 Cred/Data B64(H(key ":" nonce)) where
// key = Key(name, secret) and nonce is the RAW nonce (the base64-decoded
// NextNonce), per OMA-TS-DM_Security §5.1.3.2 and PROTOCOL.md §7.2.
func MD5Cred(key string, nonce []byte) string {
	d := md5Digest(key, nonce)
	return base64.StdEncoding.EncodeToString(d[:])
}

// VerifyMD5 checks a syncml:auth-md5 Cred/Data built with the raw nonce.
// The credential is compared as the 16 decoded digest bytes, so padding and
// surrounding white space do not matter.
func VerifyMD5(credData, key string, nonce []byte) bool {
	if key == "" {
		return false
	}
	got, ok := decodeDigest(credData)
	if !ok {
		return false
	}
	want := md5Digest(key, nonce)
	return subtle.ConstantTimeCompare(got, want[:]) == 1
}

// NonceVariant says which interpretation of a nonce made a lenient check
// succeed.
type NonceVariant uint8

// Nonce interpretations tried by the lenient verifiers (PROTOCOL.md §12.8).
const (
	// NonceNoMatch: neither interpretation matched.
	NonceNoMatch NonceVariant = iota
	// NonceDecoded: the base64-decoded nonce bytes (the only correct form).
	NonceDecoded
	// NonceText: the nonce's base64 text used as bytes, a client bug
	// observed in the Android/Motorola DM engine (dmServerAuthentication.cc).
	NonceText
)

func (v NonceVariant) String() string {
	switch v {
	case NonceNoMatch:
		return "no-match"
	case NonceDecoded:
		return "decoded"
	case NonceText:
		return "b64-text"
	}
	return "invalid"
}

// VerifyMD5Lenient checks an md5 Cred/Data against the nonce that was sent
// as nonceB64 (the NextNonce text), trying (a) the decoded nonce bytes and
// (b) the base64 text itself as bytes. PROTOCOL.md §12.8 describes clients
// that get this wrong. Both candidates are always computed so the timing
// does not reveal which one matched. Callers decide whether NonceText is
// acceptable (e.g. log it, or allow it only for known device models); the
// strict alternative is VerifyMD5 with the decoded nonce.
func VerifyMD5Lenient(credData, key, nonceB64 string) (bool, NonceVariant) {
	if key == "" {
		return false, NonceNoMatch
	}
	got, ok := decodeDigest(credData)
	if !ok {
		return false, NonceNoMatch
	}
	decOK := 0
	if nonce, err := DecodeNonce(nonceB64); err == nil {
		want := md5Digest(key, nonce)
		decOK = subtle.ConstantTimeCompare(got, want[:])
	}
	wantText := md5Digest(key, []byte(nonceB64))
	textOK := subtle.ConstantTimeCompare(got, wantText[:])
	return pickVariant(decOK, textOK)
}

func pickVariant(decOK, textOK int) (bool, NonceVariant) {
	switch {
	case decOK == 1:
		return true, NonceDecoded
	case textOK == 1:
		return true, NonceText
	}
	return false, NonceNoMatch
}

// decodeB64 decodes peer-supplied base64 text within maxCredLen.
func decodeB64(s string) ([]byte, bool) {
	if len(s) > maxCredLen {
		return nil, false
	}
	b, err := decodeLenient(s)
	if err != nil || len(b) == 0 {
		return nil, false
	}
	return b, true
}

// decodeLenient decodes standard base64, tolerating surrounding white space
// (XML indentation) and missing or partial "=" padding: PROTOCOL.md §12.9
// documents peers that strip it.
func decodeLenient(s string) ([]byte, error) {
	t := strings.TrimSpace(s)
	if strings.HasSuffix(t, "==") {
		t = t[:len(t)-2]
	} else if strings.HasSuffix(t, "=") {
		t = t[:len(t)-1]
	}
	if t == "" && strings.TrimSpace(s) != "" {
		return nil, errPaddingOnly
	}
	return base64.RawStdEncoding.DecodeString(t)
}

// decodeDigest decodes a base64 MD5 digest and insists on 16 bytes.
func decodeDigest(s string) ([]byte, bool) {
	b, ok := decodeB64(s)
	if !ok || len(b) != md5.Size {
		return nil, false
	}
	return b, true
}
