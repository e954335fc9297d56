package smpp

import (
	"errors"
	"fmt"
)

// ParseAddress turns a phone number or sender id into an Address (§5.2.5,
// §5.2.6, §5.2.8):
//
//   - "+" followed by 1-20 digits: international (TON 1), E.164 (NPI 1),
//     digits without the "+";
//   - 1-20 digits: unknown TON (0), E.164 (NPI 1);
//   - otherwise 1-11 printable ASCII characters: alphanumeric (TON 5),
//     unknown NPI (0) — the GSM limit for alphanumeric originators.
func ParseAddress(s string) (Address, error) {
	if s == "" {
		return Address{}, errors.New("smpp: parse address: empty")
	}
	digits := s
	intl := s[0] == '+'
	if intl {
		digits = s[1:]
	}
	if isDigits(digits) {
		if len(digits) > maxAddr-1 {
			return Address{}, fmt.Errorf("smpp: parse address %q: %d digits, max %d", s, len(digits), maxAddr-1)
		}
		if intl {
			return Address{TON: TONInternational, NPI: NPIISDN, Addr: digits}, nil
		}
		return Address{TON: TONUnknown, NPI: NPIISDN, Addr: digits}, nil
	}
	if intl {
		return Address{}, fmt.Errorf("smpp: parse address %q: non-digit after '+'", s)
	}
	if len(s) > 11 {
		return Address{}, fmt.Errorf("smpp: parse address %q: alphanumeric originator longer than 11", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7E {
			return Address{}, fmt.Errorf("smpp: parse address %q: non-printable character at %d", s, i)
		}
	}
	return Address{TON: TONAlphanumeric, NPI: NPIUnknown, Addr: s}, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// NewBinarySubmit returns a submit_sm carrying userData, which starts with a
// User Data Header: esm_class UDHI (0x40, §5.2.12), data_coding 8-bit
// binary (0x04, §5.2.19), and registered_delivery 1 (SMSC receipt, §5.2.17)
// when receipt is true.
func NewBinarySubmit(src, dst Address, userData []byte, receipt bool) SubmitSM {
	sm := SubmitSM{
		Source:       src,
		Dest:         dst,
		ESMClass:     ESMFeatureUDHI,
		DataCoding:   DataCodingBinary,
		ShortMessage: userData,
	}
	if receipt {
		sm.RegisteredDelivery = RegDeliveryReceipt
	}
	return sm
}

// WDP ports for connectionless WAP Push over SMS (WAP-259-WDP, WAP-235-
// PushOTA): destination 2948 (WAP Push), source 9200 (WAP connectionless
// session service).
const (
	WAPPushPort   = 2948
	WAPSourcePort = 9200
	// maxUserData is the SMS TP-User-Data size for 8-bit data (3GPP TS
	// 23.040 §9.2.3.16 / §9.2.3.24: 140 octets including the UDH).
	maxUserData = 140
)

// ErrPayloadTooLarge is returned by WAPPushSegments when the payload needs
// more than 255 segments.
var ErrPayloadTooLarge = errors.New("smpp: payload needs more than 255 segments")

// WAPPushSegments splits a WSP push PDU into SMS user data (UDH included),
// one per submit_sm. Each segment starts with a UDH holding the 16-bit
// application port IE (IEI 0x05, 3GPP TS 23.040 §9.2.3.24.4: destination
// 2948, source 9200); when more than one segment is needed it also holds
// the 8-bit concatenation IE (IEI 0x00, §9.2.3.24.1: ref, total, sequence):
//
//	0B 05 04 0B 84 23 F0 00 03 ref total seq | payload (max 128 octets)
//	06 05 04 0B 84 23 F0 | payload (single segment, max 133 octets)
func WAPPushSegments(wsp []byte, ref uint8) ([][]byte, error) {
	port := []byte{0x05, 0x04, WAPPushPort >> 8, WAPPushPort & 0xFF, WAPSourcePort >> 8, WAPSourcePort & 0xFF}
	if 1+len(port)+len(wsp) <= maxUserData {
		seg := make([]byte, 0, 1+len(port)+len(wsp))
		seg = append(seg, byte(len(port)))
		seg = append(seg, port...)
		return [][]byte{append(seg, wsp...)}, nil
	}
	const udhLen = 1 + 6 + 5
	per := maxUserData - udhLen
	total := (len(wsp) + per - 1) / per
	if total > 255 {
		return nil, ErrPayloadTooLarge
	}
	segs := make([][]byte, 0, total)
	for i := 0; i < total; i++ {
		chunk := wsp[i*per : min((i+1)*per, len(wsp))]
		seg := make([]byte, 0, udhLen+len(chunk))
		seg = append(seg, udhLen-1)
		seg = append(seg, port...)
		seg = append(seg, 0x00, 0x03, ref, byte(total), byte(i+1))
		segs = append(segs, append(seg, chunk...))
	}
	return segs, nil
}
