package syncml

// Building the typed Message from the intermediate tree. Both decoders end here, so the two
// encodings cannot drift apart in what they accept. Element order inside a parent does not
// matter for header, item and status fields (spec examples put MsgRef before CmdID, Type
// before Format: PROTOCOL.md §12.4); command order in SyncBody, Atomic and Sequence is kept.
// Unknown elements are skipped.

type builder struct {
	t *tree
}

func (b *builder) message() (*Message, error) {
	t := b.t
	if len(t.nodes) == 0 || t.nodes[0].tag != tagSyncML {
		return nil, errAt(ErrNotSyncML, 0, "root element is not SyncML")
	}
	m := &Message{}
	for c := t.child(0); c != 0; c = t.next(c) {
		switch t.nodes[c].tag {
		case tagSyncHdr:
			b.header(c, &m.Header)
		case tagSyncBody:
			m.Body.Commands = b.commands(c, &m.Body.Final)
		}
	}
	return m, nil
}

func (b *builder) header(i int32, h *Header) {
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		n := &t.nodes[c]
		switch n.tag {
		case tagVerDTD:
			h.VerDTD = n.text
		case tagVerProto:
			h.VerProto = n.text
		case tagSessionID:
			h.SessionID = n.text
		case tagMsgID:
			h.MsgID = n.text
		case tagTarget:
			h.Target = b.locator(c)
		case tagSource:
			h.Source = b.locator(c)
		case tagRespURI:
			h.RespURI = n.text
		case tagNoResp:
			h.NoResp = true
		case tagCred:
			h.Cred = b.cred(c)
		case tagMeta:
			h.Meta = b.meta(c)
		}
	}
}

func (b *builder) locator(i int32) Locator {
	var l Locator
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		switch t.nodes[c].tag {
		case tagLocURI:
			l.LocURI = t.nodes[c].text
		case tagLocName:
			l.LocName = t.nodes[c].text
		}
	}
	return l
}

func (b *builder) locURI(i int32) string {
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		if t.nodes[c].tag == tagLocURI {
			return t.nodes[c].text
		}
	}
	return ""
}

func (b *builder) cred(i int32) *Cred {
	cr := &Cred{}
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		switch t.nodes[c].tag {
		case tagMeta:
			cr.Meta = b.meta(c)
		case tagData:
			cr.Data = t.nodes[c].text
		}
	}
	return cr
}

// meta reads MetInf children in any order, with or without a MetInf wrapper.
func (b *builder) meta(i int32) *Meta {
	var m Meta
	b.metaInto(i, &m)
	if m.IsZero() {
		return nil // an empty <Meta/> says nothing; nil keeps decode→encode→decode stable
	}
	return &m
}

func (b *builder) metaInto(i int32, m *Meta) {
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		n := &t.nodes[c]
		switch n.tag {
		case tagFormat:
			m.Format = n.text
		case tagType:
			m.Type = n.text
		case tagMark:
			m.Mark = n.text
		case tagSize:
			m.Size = n.text
		case tagNextNonce:
			m.NextNonce = n.text
		case tagVersion:
			m.Version = n.text
		case tagMaxMsgSize:
			m.MaxMsgSize = n.text
		case tagMaxObjSize:
			m.MaxObjSize = n.text
		case tagEMI:
			m.EMI = n.text
		case tagMetInf:
			b.metaInto(c, m)
		}
	}
}

func cmdKind(tg tag) Kind {
	switch tg {
	case tagAdd:
		return KindAdd
	case tagAlert:
		return KindAlert
	case tagAtomic:
		return KindAtomic
	case tagCopy:
		return KindCopy
	case tagDelete:
		return KindDelete
	case tagExec:
		return KindExec
	case tagGet:
		return KindGet
	case tagReplace:
		return KindReplace
	case tagResults:
		return KindResults
	case tagSequence:
		return KindSequence
	case tagStatus:
		return KindStatus
	}
	return KindUnknown
}

// commands reads the commands under SyncBody, Atomic or Sequence; final (may be nil) is set
// when a Final element is present.
func (b *builder) commands(i int32, final *bool) []Command {
	t := b.t
	n := 0
	for c := t.child(i); c != 0; c = t.next(c) {
		if cmdKind(t.nodes[c].tag) != KindUnknown {
			n++
		}
	}
	if n == 0 {
		if final != nil {
			for c := t.child(i); c != 0; c = t.next(c) {
				if t.nodes[c].tag == tagFinal {
					*final = true
				}
			}
		}
		return nil
	}
	cmds := make([]Command, 0, n)
	for c := t.child(i); c != 0; c = t.next(c) {
		tg := t.nodes[c].tag
		if tg == tagFinal && final != nil {
			*final = true
			continue
		}
		k := cmdKind(tg)
		if k == KindUnknown {
			continue
		}
		cmds = append(cmds, Command{Kind: k})
		b.command(c, &cmds[len(cmds)-1])
	}
	return cmds
}

func (b *builder) command(i int32, cmd *Command) {
	t := b.t
	nItems := 0
	for c := t.child(i); c != 0; c = t.next(c) {
		if t.nodes[c].tag == tagItem {
			nItems++
		}
	}
	if nItems > 0 {
		cmd.Items = make([]Item, 0, nItems)
	}
	for c := t.child(i); c != 0; c = t.next(c) {
		n := &t.nodes[c]
		switch n.tag {
		case tagCmdID:
			cmd.CmdID = n.text
		case tagNoResp:
			cmd.NoResp = true
		case tagCred:
			cmd.Cred = b.cred(c)
		case tagMeta:
			cmd.Meta = b.meta(c)
		case tagMsgRef:
			cmd.MsgRef = n.text
		case tagCmdRef:
			cmd.CmdRef = n.text
		case tagCmd:
			cmd.Cmd = n.text
		case tagTargetRef:
			cmd.TargetRefs = append(cmd.TargetRefs, n.text)
		case tagSourceRef:
			cmd.SourceRefs = append(cmd.SourceRefs, n.text)
		case tagChal:
			ch := &Chal{}
			for cc := t.child(c); cc != 0; cc = t.next(cc) {
				if t.nodes[cc].tag == tagMeta {
					ch.Meta = b.meta(cc)
				}
			}
			cmd.Chal = ch
		case tagData:
			cmd.Data = n.text
		case tagCorrelator:
			cmd.Correlator = n.text
		case tagLang:
			cmd.Lang = n.text
		case tagItem:
			cmd.Items = append(cmd.Items, Item{})
			b.item(c, &cmd.Items[len(cmd.Items)-1])
		}
	}
	if cmd.Kind == KindAtomic || cmd.Kind == KindSequence {
		cmd.Commands = b.commands(i, nil)
	}
}

func (b *builder) item(i int32, it *Item) {
	t := b.t
	for c := t.child(i); c != 0; c = t.next(c) {
		n := &t.nodes[c]
		switch n.tag {
		case tagTarget:
			l := b.locator(c)
			it.Target = &l
		case tagSource:
			l := b.locator(c)
			it.Source = &l
		case tagSourceParent:
			it.SourceParent = b.locURI(c)
		case tagTargetParent:
			it.TargetParent = b.locURI(c)
		case tagMeta:
			it.Meta = b.meta(c)
		case tagData:
			d := &Data{Value: n.text}
			switch {
			case n.flags&nfXML != 0:
				d.Kind = DataXML
			case n.flags&nfOpaque != 0:
				d.Kind = DataOpaque
			}
			it.Data = d
		case tagMoreData:
			it.MoreData = true
		}
	}
}
