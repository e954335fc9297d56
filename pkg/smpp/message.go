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
