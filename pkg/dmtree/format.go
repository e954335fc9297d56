package dmtree

import (
	"strconv"
	"strings"
)

// Format is a node's Format property / Meta Format
// (OMA-TS-DM_TND §8.3 and DDF DFFormat §8.5.4.2.2, PROTOCOL.md §10.1).
type Format uint8

// The node formats of DM 1.2.1. FormatChr is the zero value because chr is
// the default when Meta/Format is absent (OMA-TS-DM_Protocol §2.3.4,
// PROTOCOL.md §2.2), so an unset Format already means the right thing.
const (
	FormatChr Format = iota
	FormatB64
	FormatBin
	FormatBool
	FormatInt
	FormatNode
	FormatNull
	FormatXML
	FormatDate
	FormatTime
	FormatFloat
	numFormats
)

// Defaults applied when Meta omits Format or Type (OMA-TS-DM_Protocol §2.3.4).
const (
	DefaultFormat = FormatChr
	DefaultType   = "text/plain"
)

var formatNames = [numFormats]string{
	FormatChr:   "chr",
	FormatB64:   "b64",
	FormatBin:   "bin",
	FormatBool:  "bool",
	FormatInt:   "int",
	FormatNode:  "node",
	FormatNull:  "null",
	FormatXML:   "xml",
	FormatDate:  "date",
	FormatTime:  "time",
	FormatFloat: "float",
}

// ParseFormat maps a Meta/Format value to a Format. Matching is
// case-insensitive and ignores surrounding white space because clients send
// e.g. "Chr" (hostapd, PROTOCOL.md §12.5); the empty string is the default
// chr. Anything else is a *Error with status 415.
func ParseFormat(s string) (Format, error) {
	v := strings.TrimSpace(s)
	if v == "" {
		return FormatChr, nil
	}
	for f, name := range formatNames {
		if strings.EqualFold(v, name) {
			return Format(f), nil
		}
	}
	return 0, newErr("parse format", s, -1, ErrUnsupportedFormat, StatusUnsupportedFormat, "unknown format")
}

// String returns the lower-case wire spelling ("chr", "node", ...), which is
// what a server must emit regardless of how the peer spelled it.
func (f Format) String() string {
	if f < numFormats {
		return formatNames[f]
	}
	return "format(" + strconv.Itoa(int(f)) + ")"
}

// Valid reports whether f is one of the defined formats.
func (f Format) Valid() bool { return f < numFormats }

// IsInterior reports whether f marks an interior node: only "node" does
// (OMA-TS-DM_TND §8.2).
func (f Format) IsInterior() bool { return f == FormatNode }
