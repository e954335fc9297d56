package syncml

import (
	"strconv"
	"strings"
)

// Validate checks a decoded message against the DM rules that decoding does not enforce
// (OMA-TS-DM_RepPro §4.1, PROTOCOL.md §2 and §4): required header fields, supported
// versions, CmdID present and unique within the message, MsgRef/CmdRef shape, Status and
// Alert codes, Items where commands need them, what Atomic and Sequence may contain, and
// Cred only in SyncHdr. It returns the first problem in document order as *Error with the
// element's path, or nil.
//
// Validate checks the message's form, not the session: whether a client may send a given
// command in a given package is the session engine's business.
func Validate(m *Message) error {
	// Every device message is validated, so the common (valid) case builds no element
	// paths: a failing message is validated again with paths, for the error.
	if (&validator{ids: make(map[string]struct{}, 16)}).message(m) == nil {
		return nil
	}
	return (&validator{ids: make(map[string]struct{}, 16), paths: true}).message(m)
}

func (v *validator) message(m *Message) error {
	if err := v.header(&m.Header); err != nil {
		return err
	}
	return v.commands(m.Body.Commands, "SyncBody", KindUnknown)
}

type validator struct {
	ids   map[string]struct{}
	paths bool // build element paths (only when reporting an error)
}

// at joins path parts when paths are wanted.
func (v *validator) at(parts ...string) string {
	if !v.paths {
		return ""
	}
	return strings.Join(parts, "")
}

func isUint(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (v *validator) header(h *Header) error {
	const p = "SyncHdr"
	switch {
	case h.VerDTD == "":
		return errPath(ErrMissingElement, v.at(p, "/VerDTD"), "VerDTD is required")
	case h.VerDTD != "1.2" && h.VerDTD != "1.1":
		return errPath(ErrUnsupportedDTD, v.at(p, "/VerDTD"), "VerDTD %q not supported (1.2, 1.1)", h.VerDTD)
	case h.VerProto == "":
		return errPath(ErrMissingElement, v.at(p, "/VerProto"), "VerProto is required")
	case h.VerProto != "DM/1.2" && h.VerProto != "DM/1.1":
		return errPath(ErrUnsupportedProto, v.at(p, "/VerProto"), "VerProto %q not supported (DM/1.2, DM/1.1)", h.VerProto)
	case h.SessionID == "":
		return errPath(ErrMissingElement, v.at(p, "/SessionID"), "SessionID is required")
	case len(h.SessionID) > 64:
		return errPath(ErrBadValue, v.at(p, "/SessionID"), "SessionID longer than 64 bytes")
	case h.MsgID == "":
		return errPath(ErrMissingElement, v.at(p, "/MsgID"), "MsgID is required")
	case !isUint(h.MsgID, 10) || h.MsgID == "0" || h.MsgID[0] == '0':
		return errPath(ErrBadValue, v.at(p, "/MsgID"), "MsgID %q is not a positive integer", h.MsgID)
	case h.Target.LocURI == "":
		return errPath(ErrMissingElement, v.at(p, "/Target/LocURI"), "Target LocURI is required")
	case h.Source.LocURI == "":
		return errPath(ErrMissingElement, v.at(p, "/Source/LocURI"), "Source LocURI is required")
	}
	if h.Cred != nil && h.Cred.Data == "" {
		return errPath(ErrMissingElement, v.at(p, "/Cred/Data"), "Cred without Data")
	}
	return v.meta(h.Meta, v.at(p, "/Meta"))
}

func (v *validator) meta(m *Meta, p string) error {
	if m == nil {
		return nil
	}
	for _, f := range [...]struct {
		name, val string
	}{{"MaxMsgSize", m.MaxMsgSize}, {"MaxObjSize", m.MaxObjSize}, {"Size", m.Size}} {
		if f.val != "" && !isUint(f.val, 19) {
			return errPath(ErrBadValue, v.at(p, "/", f.name), "%s %q is not a non-negative integer", f.name, f.val)
		}
	}
	return nil
}

// allowedIn says which commands may appear inside Atomic and Sequence in DM
// (RepPro §4.1.6.3 and §4.1.6.14; PROTOCOL.md §4). Atomic inside Sequence is accepted as in
// the SyncML DTD; nested Atomic and Get inside Atomic are refused (status 500).
func allowedIn(parent, child Kind) bool {
	switch parent {
	case KindUnknown: // SyncBody
		return true
	case KindAtomic:
		switch child {
		case KindAdd, KindAlert, KindDelete, KindCopy, KindReplace:
			return true
		}
	case KindSequence:
		switch child {
		case KindAdd, KindReplace, KindDelete, KindCopy, KindGet, KindExec, KindAlert, KindAtomic:
			return true
		}
	}
	return false
}

func (v *validator) commands(cmds []Command, p string, parent Kind) error {
	for i := range cmds {
		c := &cmds[i]
		cp := v.at(p, "/", c.Kind.String(), "[", strconv.Itoa(i+1), "]")
		if !allowedIn(parent, c.Kind) {
			return errPath(ErrBadNesting, cp, "%s not allowed inside %s", c.Kind, parent)
		}
		if err := v.command(c, cp); err != nil {
			return err
		}
	}
	return nil
}

func (v *validator) command(c *Command, p string) error {
	if c.CmdID == "" {
		return errPath(ErrMissingElement, v.at(p, "/CmdID"), "CmdID is required")
	}
	if len(c.CmdID) > 32 {
		return errPath(ErrBadValue, v.at(p, "/CmdID"), "CmdID longer than 32 bytes")
	}
	if _, dup := v.ids[c.CmdID]; dup {
		return errPath(ErrDuplicateCmdID, v.at(p, "/CmdID"), "CmdID %q used twice in one message", c.CmdID)
	}
	v.ids[c.CmdID] = struct{}{}
	if c.Cred != nil {
		return errPath(ErrCredOutsideHeader, v.at(p, "/Cred"), "Cred is allowed only in SyncHdr")
	}
	if err := v.meta(c.Meta, v.at(p, "/Meta")); err != nil {
		return err
	}
	switch c.Kind {
	case KindStatus:
		switch {
		case c.MsgRef == "":
			return errPath(ErrMissingElement, v.at(p, "/MsgRef"), "Status needs MsgRef")
		case !isUint(c.MsgRef, 10):
			return errPath(ErrBadValue, v.at(p, "/MsgRef"), "MsgRef %q is not a message number", c.MsgRef)
		case c.CmdRef == "":
			return errPath(ErrMissingElement, v.at(p, "/CmdRef"), "Status needs CmdRef")
		case c.Cmd == "":
			return errPath(ErrMissingElement, v.at(p, "/Cmd"), "Status needs Cmd")
		case c.Cmd == "SyncHdr" && c.CmdRef != "0":
			return errPath(ErrBadValue, v.at(p, "/CmdRef"), "Status for SyncHdr must have CmdRef 0, not %q", c.CmdRef)
		case len(c.CmdRef) > 32:
			return errPath(ErrBadValue, v.at(p, "/CmdRef"), "CmdRef longer than 32 bytes")
		case c.Data == "":
			return errPath(ErrMissingElement, v.at(p, "/Data"), "Status needs a status code")
		case len(c.Data) != 3 || !isUint(c.Data, 3):
			return errPath(ErrBadValue, v.at(p, "/Data"), "status code %q is not three digits", c.Data)
		}
	case KindResults:
		switch {
		case c.CmdRef == "":
			return errPath(ErrMissingElement, v.at(p, "/CmdRef"), "Results needs CmdRef")
		case len(c.CmdRef) > 32:
			return errPath(ErrBadValue, v.at(p, "/CmdRef"), "CmdRef longer than 32 bytes")
		case c.MsgRef != "" && !isUint(c.MsgRef, 10):
			return errPath(ErrBadValue, v.at(p, "/MsgRef"), "MsgRef %q is not a message number", c.MsgRef)
		case len(c.Items) == 0:
			return errPath(ErrMissingElement, v.at(p, "/Item"), "Results needs at least one Item")
		}
	case KindAlert:
		switch {
		case c.Data == "":
			return errPath(ErrMissingElement, v.at(p, "/Data"), "Alert needs an alert code")
		case len(c.Data) != 4 || !isUint(c.Data, 4):
			return errPath(ErrBadValue, v.at(p, "/Data"), "alert code %q is not four digits", c.Data)
		}
	case KindAtomic, KindSequence:
		if len(c.Commands) == 0 {
			return errPath(ErrMissingElement, p, "%s needs at least one command", c.Kind)
		}
		return v.commands(c.Commands, p, c.Kind)
	case KindExec:
		if len(c.Items) != 1 {
			return errPath(ErrBadValue, v.at(p, "/Item"), "Exec needs exactly one Item, has %d", len(c.Items))
		}
	}
	switch c.Kind {
	case KindAdd, KindCopy, KindDelete, KindExec, KindGet, KindReplace:
		if len(c.Items) == 0 {
			return errPath(ErrMissingElement, v.at(p, "/Item"), "%s needs at least one Item", c.Kind)
		}
		for j := range c.Items {
			it := &c.Items[j]
			ip := v.at(p, "/Item[", strconv.Itoa(j+1), "]")
			// A Replace in Pkg1 names DevInfo nodes by Source (RepPro §4.1.6.11); every
			// other command addresses its node by Target.
			hasTarget := it.Target != nil && it.Target.LocURI != ""
			hasSource := it.Source != nil && it.Source.LocURI != ""
			switch {
			case c.Kind == KindCopy && (!hasTarget || !hasSource):
				return errPath(ErrMissingElement, ip, "Copy needs Target and Source LocURI")
			case c.Kind == KindReplace && !hasTarget && !hasSource:
				return errPath(ErrMissingElement, v.at(ip, "/Target/LocURI"), "Replace Item needs a Target or Source LocURI")
			case c.Kind != KindReplace && c.Kind != KindCopy && !hasTarget:
				return errPath(ErrMissingElement, v.at(ip, "/Target/LocURI"), "%s Item needs a Target LocURI", c.Kind)
			}
			if err := v.meta(it.Meta, v.at(ip, "/Meta")); err != nil {
				return err
			}
		}
	}
	return nil
}
