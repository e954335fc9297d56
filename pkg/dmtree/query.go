package dmtree

import "strings"

// Property is a node property name (OMA-TS-DM_TND §8.3). Names are
// case-sensitive as in the spec.
type Property string

// Properties addressable with ?prop= (OMA-TS-DM_TND §8.3, PROTOCOL.md
// §10.1), plus Value which only appears in TNDS filters (§9).
const (
	PropACL    Property = "ACL"
	PropFormat Property = "Format"
	PropName   Property = "Name"
	PropSize   Property = "Size"
	PropTitle  Property = "Title"
	PropTStamp Property = "TStamp"
	PropType   Property = "Type"
	PropVerNo  Property = "VerNo"
	// PropValue is not a ?prop= property; it names the node value in a
	// TNDS filter such as "TNDS+Value+ACL".
	PropValue Property = "Value"
)

// propOrder is the canonical order of TNDS filter properties.
var propOrder = []Property{PropACL, PropFormat, PropName, PropSize, PropTitle, PropTStamp, PropType, PropVerNo, PropValue}

func propRank(p Property) int {
	for i, q := range propOrder {
		if q == p {
			return i
		}
	}
	return -1
}

// IsNodeProperty reports whether p can be addressed with ?prop= (every
// property except Value).
func (p Property) IsNodeProperty() bool { return p != PropValue && propRank(p) >= 0 }

// ListAttr is a ?list= attribute (OMA-TS-DM_TND §8.4.1).
type ListAttr string

// Tree exchange attributes.
const (
	ListStruct     ListAttr = "Struct"
	ListStructData ListAttr = "StructData"
	ListTNDS       ListAttr = "TNDS"
)

// QueryKind says which query a URI carries.
type QueryKind uint8

// Query kinds.
const (
	QueryNone QueryKind = iota
	QueryProp           // ?prop=<Property>
	QueryList           // ?list=<ListAttr>[filter]
)

// TNDSFilter is the property filter of ?list=TNDS: "+A+B" asks only for
// the listed properties, "-A-B" for all but them (OMA-TS-DM_TND §8.4,
// PROTOCOL.md §10.2). The zero value means no filter.
type TNDSFilter struct {
	Exclude bool       // true for "-" lists, false for "+" lists
	Props   []Property // canonical order, no duplicates
}

// Query is the part of a URI after "?".
type Query struct {
	Kind   QueryKind
	Prop   Property   // QueryProp only
	List   ListAttr   // QueryList only
	Filter TNDSFilter // QueryList with List == ListTNDS only
}

// String returns "" for no query, else "?prop=..." or "?list=...".
func (q Query) String() string {
	switch q.Kind {
	case QueryProp:
		return "?prop=" + string(q.Prop)
	case QueryList:
		var b strings.Builder
		b.WriteString("?list=")
		b.WriteString(string(q.List))
		sign := "+"
		if q.Filter.Exclude {
			sign = "-"
		}
		for _, p := range q.Filter.Props {
			b.WriteString(sign)
			b.WriteString(string(p))
		}
		return b.String()
	}
	return ""
}

func (q Query) clone() Query {
	if q.Filter.Props != nil {
		q.Filter.Props = append([]Property(nil), q.Filter.Props...)
	}
	return q
}

func (q Query) equal(r Query) bool {
	if q.Kind != r.Kind || q.Prop != r.Prop || q.List != r.List || q.Filter.Exclude != r.Filter.Exclude ||
		len(q.Filter.Props) != len(r.Filter.Props) {
		return false
	}
	for i := range q.Filter.Props {
		if q.Filter.Props[i] != r.Filter.Props[i] {
			return false
		}
	}
	return true
}

// validate applies ParseURI's rules to a hand-built Query.
func (q Query) validate() error {
	const op = "validate query"
	s := q.String()
	switch q.Kind {
	case QueryNone:
		return nil
	case QueryProp:
		if !q.Prop.IsNodeProperty() {
			return newErr(op, s, -1, ErrNotSupported, StatusNotSupported, "unsupported property %q", q.Prop)
		}
		return nil
	case QueryList:
		if q.List != ListStruct && q.List != ListStructData && q.List != ListTNDS {
			return newErr(op, s, -1, ErrNotSupported, StatusNotSupported, "unsupported list attribute %q", q.List)
		}
		if len(q.Filter.Props) > 0 && q.List != ListTNDS {
			return newErr(op, s, -1, ErrNotSupported, StatusNotSupported, "property filter only applies to TNDS")
		}
		for _, p := range q.Filter.Props {
			if propRank(p) < 0 {
				return newErr(op, s, -1, ErrNotSupported, StatusNotSupported, "unsupported TNDS property %q", p)
			}
		}
		return nil
	}
	return newErr(op, s, -1, ErrSyntax, StatusBadRequest, "invalid query kind %d", q.Kind)
}

// canonical sorts and de-duplicates the filter; an empty filter is nil.
func (q Query) canonical() Query {
	if len(q.Filter.Props) == 0 {
		q.Filter = TNDSFilter{}
		return q
	}
	var seen [16]bool
	props := make([]Property, 0, len(q.Filter.Props))
	for _, p := range propOrder {
		for _, r := range q.Filter.Props {
			if r == p && !seen[propRank(p)] {
				seen[propRank(p)] = true
				props = append(props, p)
			}
		}
	}
	q.Filter.Props = props
	return q
}

// parseQuery parses the text after "?"; base is its byte index in s.
func parseQuery(s string, base int, raw string) (Query, error) {
	const op = "parse URI"
	name, val, ok := strings.Cut(raw, "=")
	if !ok || name == "" {
		return Query{}, newErr(op, s, base, ErrSyntax, StatusBadRequest, "query must be prop=<name> or list=<attr>")
	}
	if i := strings.IndexAny(raw, "&?"); i >= 0 {
		return Query{}, newErr(op, s, base+i, ErrSyntax, StatusBadRequest, "only one query parameter is allowed")
	}
	if i := strings.IndexByte(val, '='); i >= 0 {
		return Query{}, newErr(op, s, base+len(name)+1+i, ErrSyntax, StatusBadRequest, "unexpected '=' in query value")
	}
	for i := 0; i < len(raw); i++ {
		if isCtl(raw[i]) || raw[i] == ' ' {
			return Query{}, newErr(op, s, base+i, ErrSyntax, StatusBadRequest, "invalid character 0x%02X in query", raw[i])
		}
	}
	vpos := base + len(name) + 1
	switch name {
	case "prop":
		p := Property(val)
		if !p.IsNodeProperty() {
			return Query{}, newErr(op, s, vpos, ErrNotSupported, StatusNotSupported, "unsupported property %q", val)
		}
		return Query{Kind: QueryProp, Prop: p}, nil
	case "list":
		return parseList(s, vpos, val)
	}
	return Query{}, newErr(op, s, base, ErrSyntax, StatusBadRequest, "unknown query parameter %q", name)
}

// parseList parses a ?list= value at byte index pos of s.
func parseList(s string, pos int, val string) (Query, error) {
	const op = "parse URI"
	end := strings.IndexAny(val, "+-")
	if end < 0 {
		end = len(val)
	}
	attr := ListAttr(val[:end])
	switch attr {
	case ListStruct, ListStructData, ListTNDS:
	default:
		return Query{}, newErr(op, s, pos, ErrNotSupported, StatusNotSupported, "unsupported list attribute %q", val[:end])
	}
	q := Query{Kind: QueryList, List: attr}
	if end == len(val) {
		return q, nil
	}
	if attr != ListTNDS {
		return Query{}, newErr(op, s, pos+end, ErrNotSupported, StatusNotSupported, "property filter only applies to TNDS")
	}
	sign := val[end]
	q.Filter.Exclude = sign == '-'
	for i := end; i < len(val); {
		if val[i] != sign {
			return Query{}, newErr(op, s, pos+i, ErrSyntax, StatusBadRequest, "mixed '+' and '-' in TNDS filter")
		}
		j := strings.IndexAny(val[i+1:], "+-")
		if j < 0 {
			j = len(val)
		} else {
			j += i + 1
		}
		name := val[i+1 : j]
		if name == "" {
			return Query{}, newErr(op, s, pos+i+1, ErrSyntax, StatusBadRequest, "empty property in TNDS filter")
		}
		if propRank(Property(name)) < 0 {
			return Query{}, newErr(op, s, pos+i+1, ErrNotSupported, StatusNotSupported, "unsupported TNDS property %q", name)
		}
		q.Filter.Props = append(q.Filter.Props, Property(name))
		i = j
	}
	return q.canonical(), nil
}
