package dmtree

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Cmd is a command that an ACL entry can grant (OMA-TS-DM_TND §8.3.7.1).
//
// There is deliberately no Copy: the ACL grammar has no Copy entry. A
// server should authorise Copy as Get on the source plus, on the target,
// Add when the target does not exist yet (the effective ACL of a new node is
// its parent's) or Replace when it does; AllowsCopy does exactly that.
type Cmd uint8

// ACL commands, in canonical output order.
const (
	CmdAdd Cmd = iota
	CmdDelete
	CmdExec
	CmdGet
	CmdReplace
	numCmds
)

var cmdNames = [numCmds]string{"Add", "Delete", "Exec", "Get", "Replace"}

func (c Cmd) String() string {
	if c < numCmds {
		return cmdNames[c]
	}
	return "Cmd(invalid)"
}

// ParseCmd maps an ACL command name to a Cmd. The spec spells them
// "Add", "Delete", "Exec", "Get", "Replace"; other casings are accepted
// because tolerating them costs nothing and String re-emits the canonical
// spelling.
func ParseCmd(s string) (Cmd, error) {
	for i, n := range cmdNames {
		if strings.EqualFold(s, n) {
			return Cmd(i), nil
		}
	}
	return 0, newErr("parse ACL command", s, 0, ErrSyntax, StatusBadRequest, "unknown command")
}

// Bounds on ACL values accepted by ParseACL and With. Real ACLs name a
// handful of server IDs; the bounds stop a hostile Replace from storing an
// arbitrarily large value.
const (
	MaxACLLen = 4096 // bytes of the textual value
	MaxACLIDs = 256  // server identifiers across all entries
)

// Wildcard is the ACL identifier that matches every server.
const Wildcard = "*"

// ACL is the value of a node's ACL property (OMA-TS-DM_TND §8.3.7.1): for
// each command the set of server identifiers allowed to use it. The zero
// value is the empty ACL, which means "no value here, inherit from the
// parent" — see Effective. ACLs are values; methods never modify the
// receiver.
type ACL struct {
	ids [numCmds][]string // sorted, unique; ["*"] alone when the wildcard is present
}

// DefaultRootACL returns Add=*&Get=*, the ACL the root has when nothing
// else was set (OMA-TS-DM_TND §8.3.7.1).
func DefaultRootACL() ACL {
	var a ACL
	a.ids[CmdAdd] = []string{Wildcard}
	a.ids[CmdGet] = []string{Wildcard}
	return a
}

// ParseACL parses an ACL property value:
//
//	acl   = "" | entry *("&" entry)
//	entry = cmd "=" id *("+" id)
//	cmd   = "Add" | "Delete" | "Exec" | "Get" | "Replace"
//	id    = "*" | 1*(printable character except "=", "&", "*", "+" and white space)
//
// (OMA-TS-DM_TND §8.3.7.1). Surrounding white space is ignored (XML text);
// the empty string is the empty ACL. Repeated commands are merged, duplicate
// ids removed, and an id list containing "*" collapses to "*" since the
// wildcard already covers every server. Errors are *Error with status 400
// (syntax, position = byte index in s) or 413 (beyond MaxACLLen/MaxACLIDs).
func ParseACL(s string) (ACL, error) {
	const op = "parse ACL"
	if len(s) > MaxACLLen {
		return ACL{}, newErr(op, s, MaxACLLen, ErrTooLarge, StatusTooLarge, "longer than %d bytes", MaxACLLen)
	}
	lead := len(s) - len(strings.TrimLeftFunc(s, unicode.IsSpace))
	body := strings.TrimSpace(s)
	var a ACL
	if body == "" {
		return a, nil
	}
	nIDs := 0
	for pos := 0; pos <= len(body); {
		end := strings.IndexByte(body[pos:], '&')
		if end < 0 {
			end = len(body)
		} else {
			end += pos
		}
		entry := body[pos:end]
		eq := strings.IndexByte(entry, '=')
		if eq < 0 {
			return ACL{}, newErr(op, s, lead+pos, ErrSyntax, StatusBadRequest, "entry %q has no '='", clip(entry))
		}
		cmd, err := ParseCmd(entry[:eq])
		if err != nil {
			return ACL{}, newErr(op, s, lead+pos, ErrSyntax, StatusBadRequest, "unknown command %q", clip(entry[:eq]))
		}
		ids := a.ids[cmd]
		for ipos := eq + 1; ipos <= len(entry); {
			iend := strings.IndexByte(entry[ipos:], '+')
			if iend < 0 {
				iend = len(entry)
			} else {
				iend += ipos
			}
			id := entry[ipos:iend]
			if off, reason := checkID(id); reason != "" {
				return ACL{}, newErr(op, s, lead+pos+ipos+off, ErrSyntax, StatusBadRequest, "%s", reason)
			}
			if nIDs++; nIDs > MaxACLIDs {
				return ACL{}, newErr(op, s, lead+pos+ipos, ErrTooLarge, StatusTooLarge, "more than %d identifiers", MaxACLIDs)
			}
			ids = append(ids, id)
			ipos = iend + 1
		}
		a.ids[cmd] = ids
		pos = end + 1
	}
	for c := range a.ids {
		a.ids[c] = normIDs(a.ids[c])
	}
	return a, nil
}

// checkID validates one identifier; it returns the offset of the problem
// and a reason, or "" when the id is valid.
func checkID(id string) (int, string) {
	if id == "" {
		return 0, "empty identifier"
	}
	if id == Wildcard {
		return 0, ""
	}
	if !utf8.ValidString(id) {
		return 0, "identifier is not valid UTF-8"
	}
	for i, r := range id {
		switch {
		case r == '=' || r == '&' || r == '*' || r == '+':
			return i, "reserved character " + string(r) + " in identifier"
		case unicode.IsSpace(r) || !unicode.IsPrint(r):
			return i, "white space or non-printable character in identifier"
		}
	}
	return 0, ""
}

// normIDs sorts and de-duplicates, collapsing to the wildcard if present.
func normIDs(ids []string) []string {
	if len(ids) == 0 {
		return nil
	}
	if slices.Contains(ids, Wildcard) {
		return []string{Wildcard}
	}
	ids = slices.Clone(ids)
	slices.Sort(ids)
	return slices.Compact(ids)
}

func clip(s string) string {
	if len(s) > 32 {
		return s[:32] + "..."
	}
	return s
}

// String returns the canonical value: commands in the order Add, Delete,
// Exec, Get, Replace, ids sorted, "" for the empty ACL. ParseACL(a.String())
// equals a.
func (a ACL) String() string {
	var b strings.Builder
	for c, ids := range a.ids {
		if len(ids) == 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(cmdNames[c])
		b.WriteByte('=')
		b.WriteString(strings.Join(ids, "+"))
	}
	return b.String()
}

// IsEmpty reports whether a has no entries, i.e. the node has no ACL value
// and inherits its parent's.
func (a ACL) IsEmpty() bool {
	for _, ids := range a.ids {
		if len(ids) > 0 {
			return false
		}
	}
	return true
}

// Equal reports whether a and b grant the same rights to the same ids.
func (a ACL) Equal(b ACL) bool {
	for c := range a.ids {
		if !slices.Equal(a.ids[c], b.ids[c]) {
			return false
		}
	}
	return true
}

// IDs returns a copy of the identifiers granted cmd (nil if none).
func (a ACL) IDs(cmd Cmd) []string {
	if cmd >= numCmds {
		return nil
	}
	return slices.Clone(a.ids[cmd])
}

// Allows reports whether serverID may use cmd on the node whose effective
// ACL is a: the entry for cmd lists "*" or serverID (exact,
// case-sensitive). Use Effective first; Allows does not inherit.
func (a ACL) Allows(cmd Cmd, serverID string) bool {
	if cmd >= numCmds {
		return false
	}
	for _, id := range a.ids[cmd] {
		if id == Wildcard || (serverID != "" && id == serverID) {
			return true
		}
	}
	return false
}

// With returns a copy of a in which cmd additionally grants ids, e.g. the
// automatic Add/Delete/Replace a server receives on an interior node it
// created without Replace right on the parent (OMA-TS-DM_RepPro §4.1.6.1).
// Invalid ids or exceeding MaxACLIDs give a *Error (400/413).
func (a ACL) With(cmd Cmd, ids ...string) (ACL, error) {
	const op = "extend ACL"
	if cmd >= numCmds {
		return ACL{}, newErr(op, cmd.String(), -1, ErrSyntax, StatusBadRequest, "invalid command")
	}
	total := len(ids)
	for _, l := range a.ids {
		total += len(l)
	}
	if total > MaxACLIDs {
		return ACL{}, newErr(op, strings.Join(ids, "+"), -1, ErrTooLarge, StatusTooLarge, "more than %d identifiers", MaxACLIDs)
	}
	for _, id := range ids {
		if off, reason := checkID(id); reason != "" {
			return ACL{}, newErr(op, id, off, ErrSyntax, StatusBadRequest, "%s", reason)
		}
	}
	var out ACL
	for c := range a.ids {
		out.ids[c] = a.ids[c] // shared read-only; normIDs below copies the one that changes
	}
	out.ids[cmd] = normIDs(append(slices.Clone(a.ids[cmd]), ids...))
	if len(out.String()) > MaxACLLen {
		return ACL{}, newErr(op, strings.Join(ids, "+"), -1, ErrTooLarge, StatusTooLarge, "longer than %d bytes", MaxACLLen)
	}
	return out, nil
}

// Effective returns the ACL that governs uri: the ACL of uri itself or of
// its nearest ancestor that has a non-empty value, falling back to
// DefaultRootACL (OMA-TS-DM_TND §8.3.7.1: "inherited from the parent").
// lookup reports a node's own ACL value; ok=false or an empty ACL both mean
// "no value here". The query of uri is ignored.
func Effective(uri URI, lookup func(URI) (ACL, bool)) ACL {
	for u := uri.Path(); ; u = u.Parent() {
		if acl, ok := lookup(u); ok && !acl.IsEmpty() {
			return acl
		}
		if u.IsRoot() {
			return DefaultRootACL()
		}
	}
}

// AllowsCopy applies the rule documented on Cmd: Get on the source and, on
// the target, Replace if it exists or Add if it does not. src and dst are
// effective ACLs (for a new target, the effective ACL of its location, which
// Effective derives from the parent).
func AllowsCopy(src, dst ACL, targetExists bool, serverID string) bool {
	if !src.Allows(CmdGet, serverID) {
		return false
	}
	if targetExists {
		return dst.Allows(CmdReplace, serverID)
	}
	return dst.Allows(CmdAdd, serverID)
}
