// Package dmauth implements OMA DM 1.2.1 application-level authentication
// (OMA-TS-DM_Security §5.1): the syncml:auth-basic and syncml:auth-md5
// credentials carried in SyncHdr/Cred, the syncml:auth-MAC integrity header
// (x-syncml-hmac) and nonce handling.
//
// The package is pure: it only hashes, encodes and compares. Looking up
// accounts, storing nonces and deciding on status codes (212/401/407) is the
// caller's business.
//
// Notation used throughout (PROTOCOL.md §7.2): H = MD5 (16 raw bytes),
// B64 = standard base64 with padding.
//
// A server never needs a plaintext secret: every formula below only uses
// Key(name, secret) = B64(H(name ":" secret)), so that pre-hashed key is what
// should be stored (OMA-TS-DM_Security §5.1.3.2).
//
// All Verify functions compare in constant time (crypto/subtle) and return
// false — never panic — on malformed input.
package dmauth
