package dmtree

import (
	"strings"
	"unicode/utf8"
)

// Limits are the device URI limits published in ./DevDetail/URI/MaxDepth,
// MaxTotLen and MaxSegLen (OMA-TS-DM_StdObj §7.1.3.3). Zero (or negative)
// means unlimited, as in DevDetail. Lengths are counted in bytes of the
// canonical encoded form produced by URI.String, because that is what a
// server puts on the wire: MaxTotLen applies to the path without the query,
// MaxSegLen to one encoded segment. MaxDepth counts segments below the root
// ("." has depth 0, "./A/B" depth 2).
type Limits struct {
	MaxDepth  int
	MaxTotLen int
	MaxSegLen int
}

// DefaultLimits are sane bounds for input from unknown peers.
var DefaultLimits = Limits{MaxDepth: 32, MaxTotLen: 1024, MaxSegLen: 255}

// MaxRawURILen is a hard cap on the raw text ParseURI looks at, applied even
// with unlimited Limits so hostile input cannot cost unbounded work.
const MaxRawURILen = 64 << 10

// URI is a parsed, normalised management-tree address: the segments below
// the root "." (percent-decoded) plus an optional ?prop= or ?list= query.
// The zero value is the root ".". URIs are values: methods never modify the
// receiver and never share mutable state with their results.
type URI struct {
	segs  []string
	query Query
}

// Root returns the root URI ".".
func Root() URI { return URI{} }

// ParseURI parses a LocURI (OMA-TS-DM_TND §8.1–8.2, PROTOCOL.md §10).
//
// Accepted: "./A/B", "." (root), "A/B" (relative form seen in spec examples,
// normalised to "./A/B"), one trailing "/" (trimmed). Rejected with status
// 400: the empty string, a leading "/" (MS-MDM forbids it and it is not a
// DM URI), empty segments ("A//B"), "." or ".." segments other than the
// leading ".", control characters, bad percent escapes and invalid UTF-8.
// Segments are percent-decoded (UTF-8 names, as Windows sends them).
//
// A query may follow "?": "prop=<Name>" (OMA-TS-DM_TND §8.3, Name
// case-sensitive; unknown → 406) or "list=<attr>" (§8.4: Struct, StructData,
// TNDS with "+"/"-" property filters; unknown → 406). Any other query is a
// 400. Exceeding lim gives status 414.
func ParseURI(s string, lim Limits) (URI, error) {
	const op = "parse URI"
	if len(s) > MaxRawURILen {
		return URI{}, newErr(op, s, MaxRawURILen, ErrURITooLong, StatusURITooLong, "longer than %d bytes", MaxRawURILen)
	}
	path, rawQuery, hasQuery := strings.Cut(s, "?")
	var u URI
	segs, err := parsePath(s, path)
	if err != nil {
		return URI{}, err
	}
	u.segs = segs
	if hasQuery {
		q, err := parseQuery(s, len(path)+1, rawQuery)
		if err != nil {
			return URI{}, err
		}
		u.query = q
	}
	if err := lim.check(op, s, u); err != nil {
		return URI{}, err
	}
	return u, nil
}

// MustParseURI is ParseURI with DefaultLimits that panics on error; meant for
// constants in code and tests.
func MustParseURI(s string) URI {
	u, err := ParseURI(s, DefaultLimits)
	if err != nil {
		panic(err)
	}
	return u
}

func parsePath(s, path string) ([]string, error) {
	const op = "parse URI"
	if path == "" {
		return nil, newErr(op, s, 0, ErrSyntax, StatusBadRequest, "empty path")
	}
	if path[0] == '/' {
		return nil, newErr(op, s, 0, ErrSyntax, StatusBadRequest, "leading '/' (URIs are relative to \".\")")
	}
	// One trailing "/" is tolerated: clients write "./DevInfo/" for the
	// interior node. A second one would leave an empty segment and is
	// reported below.
	path = strings.TrimSuffix(path, "/")
	if path == "." {
		return nil, nil
	}
	off := 0
	if strings.HasPrefix(path, "./") {
		off = 2
	}
	var segs []string
	for start := off; start <= len(path); {
		end := strings.IndexByte(path[start:], '/')
		if end < 0 {
			end = len(path)
		} else {
			end += start
		}
		seg, err := decodeSegment(s, start, path[start:end])
		if err != nil {
			return nil, err
		}
		segs = append(segs, seg)
		start = end + 1
	}
	return segs, nil
}

// decodeSegment percent-decodes one raw segment found at byte index pos of
// s and validates it as a node name.
func decodeSegment(s string, pos int, raw string) (string, error) {
	const op = "parse URI"
	if raw == "" {
		return "", newErr(op, s, pos, ErrSyntax, StatusBadRequest, "empty segment")
	}
	var b []byte // allocated only when an escape is present
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case c == '%':
			if i+2 >= len(raw) || !isHex(raw[i+1]) || !isHex(raw[i+2]) {
				return "", newErr(op, s, pos+i, ErrSyntax, StatusBadRequest, "invalid percent escape")
			}
			d := unhex(raw[i+1])<<4 | unhex(raw[i+2])
			if isCtl(d) {
				return "", newErr(op, s, pos+i, ErrSyntax, StatusBadRequest, "escaped control character %%%02X", d)
			}
			if b == nil {
				b = append(make([]byte, 0, len(raw)), raw[:i]...)
			}
			b = append(b, d)
			i += 2
		case isCtl(c):
			return "", newErr(op, s, pos+i, ErrSyntax, StatusBadRequest, "control character 0x%02X", c)
		default:
			if b != nil {
				b = append(b, c)
			}
		}
	}
	seg := raw
	if b != nil {
		seg = string(b)
	}
	if !utf8.ValidString(seg) {
		return "", newErr(op, s, pos, ErrSyntax, StatusBadRequest, "segment is not valid UTF-8")
	}
	if seg == "." || seg == ".." {
		return "", newErr(op, s, pos, ErrSyntax, StatusBadRequest, "%q segment", seg)
	}
	return seg, nil
}

// validName checks a node name given in decoded form (Join, WithQuery
// callers): the same rules ParseURI applies after decoding.
func validName(op, name string) error {
	if name == "" {
		return newErr(op, name, 0, ErrSyntax, StatusBadRequest, "empty node name")
	}
	if name == "." || name == ".." {
		return newErr(op, name, 0, ErrSyntax, StatusBadRequest, "%q is not a node name", name)
	}
	for i := 0; i < len(name); i++ {
		if isCtl(name[i]) {
			return newErr(op, name, i, ErrSyntax, StatusBadRequest, "control character 0x%02X", name[i])
		}
	}
	if !utf8.ValidString(name) {
		return newErr(op, name, 0, ErrSyntax, StatusBadRequest, "node name is not valid UTF-8")
	}
	return nil
}

// Check reports whether u fits the limits (status 414 if not).
func (l Limits) Check(u URI) error { return l.check("check URI limits", u.String(), u) }

func (l Limits) check(op, input string, u URI) error {
	if l.MaxDepth > 0 && len(u.segs) > l.MaxDepth {
		return newErr(op, input, -1, ErrURITooLong, StatusURITooLong, "depth %d exceeds MaxDepth %d", len(u.segs), l.MaxDepth)
	}
	if l.MaxSegLen <= 0 && l.MaxTotLen <= 0 {
		return nil
	}
	total := 1 // "."
	for _, seg := range u.segs {
		n := encodedLen(seg)
		if l.MaxSegLen > 0 && n > l.MaxSegLen {
			return newErr(op, input, -1, ErrURITooLong, StatusURITooLong, "segment of %d bytes exceeds MaxSegLen %d", n, l.MaxSegLen)
		}
		total += 1 + n
	}
	if l.MaxTotLen > 0 && total > l.MaxTotLen {
		return newErr(op, input, -1, ErrURITooLong, StatusURITooLong, "length %d exceeds MaxTotLen %d", total, l.MaxTotLen)
	}
	return nil
}

// String returns the canonical form: "." followed by "/segment" for each
// segment, then the query. Only bytes that would change the parse are
// percent-encoded ("%", "?", "/", space and control characters, upper-case
// hex); everything else, including non-ASCII UTF-8, is written as is. So
// ParseURI(u.String()) yields u again and String is idempotent.
func (u URI) String() string {
	var b strings.Builder
	b.WriteByte('.')
	for _, seg := range u.segs {
		b.WriteByte('/')
		writeEscaped(&b, seg)
	}
	b.WriteString(u.query.String())
	return b.String()
}

func needsEscape(c byte) bool { return c == '%' || c == '?' || c == '/' || c == ' ' || isCtl(c) }

func writeEscaped(b *strings.Builder, seg string) {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if needsEscape(c) {
			b.WriteByte('%')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&0xF])
			continue
		}
		b.WriteByte(c)
	}
}

func encodedLen(seg string) int {
	n := len(seg)
	for i := 0; i < len(seg); i++ {
		if needsEscape(seg[i]) {
			n += 2
		}
	}
	return n
}

// Segments returns a copy of the decoded segments below the root (nil for
// the root).
func (u URI) Segments() []string {
	if len(u.segs) == 0 {
		return nil
	}
	return append([]string(nil), u.segs...)
}

// Depth is the number of segments below the root.
func (u URI) Depth() int { return len(u.segs) }

// IsRoot reports whether u addresses "." (ignoring any query).
func (u URI) IsRoot() bool { return len(u.segs) == 0 }

// Name returns the last decoded segment, "" for the root.
func (u URI) Name() string {
	if len(u.segs) == 0 {
		return ""
	}
	return u.segs[len(u.segs)-1]
}

// Parent returns the parent node's URI without query. The root is its own
// parent, so loops walking upwards must stop on IsRoot.
func (u URI) Parent() URI {
	if len(u.segs) == 0 {
		return URI{}
	}
	return URI{segs: u.segs[: len(u.segs)-1 : len(u.segs)-1]}
}

// Path returns u without its query.
func (u URI) Path() URI { return URI{segs: u.segs} }

// Query returns the ?prop= / ?list= part (Kind QueryNone if absent).
func (u URI) Query() Query { return u.query.clone() }

// HasPrefix reports whether prefix addresses u or one of its ancestors,
// comparing whole segments ("./A/BC" does not have prefix "./A/B"); queries
// are ignored.
func (u URI) HasPrefix(prefix URI) bool {
	if len(prefix.segs) > len(u.segs) {
		return false
	}
	for i, s := range prefix.segs {
		if u.segs[i] != s {
			return false
		}
	}
	return true
}

// Equal reports whether u and v have the same segments and query.
func (u URI) Equal(v URI) bool {
	return len(u.segs) == len(v.segs) && u.HasPrefix(v) && u.query.equal(v.query)
}

// Join returns the child URI u/name (without query). name is a decoded node
// name; it must be non-empty, not "." or "..", valid UTF-8 and free of
// control characters (400 otherwise). A "/" inside name is kept as part of
// the name and will be written as %2F.
func (u URI) Join(name string) (URI, error) {
	if err := validName("join URI", name); err != nil {
		return URI{}, err
	}
	segs := make([]string, len(u.segs), len(u.segs)+1)
	copy(segs, u.segs)
	return URI{segs: append(segs, name)}, nil
}

// WithQuery returns u's path with query q. q is validated as ParseURI would
// (400/406 on an invalid query); the zero Query removes the query.
func (u URI) WithQuery(q Query) (URI, error) {
	if err := q.validate(); err != nil {
		return URI{}, err
	}
	return URI{segs: u.segs, query: q.canonical()}, nil
}

func isCtl(c byte) bool { return c < 0x20 || c == 0x7f }

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}
