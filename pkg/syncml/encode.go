package syncml

// One walk over the model writes both encodings: it visits elements in SyncML 1.2 DTD order
// (PROTOCOL.md §2.1, §2.2, §4) and calls a writer, which is either the XML or the WBXML
// writer. Required elements are always written (even when empty) so that an encoded
// message shows exactly what the model holds; optional ones only when set.

type writer interface {
	open(t tag)
	close(t tag)
	leaf(t tag, s string)            // element with text; written empty (<X/>) when s == ""
	flag(t tag)                      // empty marker element (Final, MoreData, NoResp)
	data(d *Data, opaque bool) error // opaque: WBXML writes it as OPAQUE
}

type walker struct {
	w writer
}

func (e *walker) opt(t tag, s string) {
	if s != "" {
		e.w.leaf(t, s)
	}
}

func (e *walker) message(m *Message) error {
	w := e.w
	w.open(tagSyncML)
	h := &m.Header
	w.open(tagSyncHdr)
	w.leaf(tagVerDTD, h.VerDTD)
	w.leaf(tagVerProto, h.VerProto)
	w.leaf(tagSessionID, h.SessionID)
	w.leaf(tagMsgID, h.MsgID)
	e.locator(tagTarget, &h.Target)
	e.locator(tagSource, &h.Source)
	e.opt(tagRespURI, h.RespURI)
	if h.NoResp {
		w.flag(tagNoResp)
	}
	if err := e.cred(h.Cred); err != nil {
		return err
	}
	e.meta(h.Meta)
	w.close(tagSyncHdr)

	w.open(tagSyncBody)
	for i := range m.Body.Commands {
		if err := e.command(&m.Body.Commands[i]); err != nil {
			return err
		}
	}
	if m.Body.Final {
		w.flag(tagFinal)
	}
	w.close(tagSyncBody)
	w.close(tagSyncML)
	return nil
}

func (e *walker) locator(t tag, l *Locator) {
	e.w.open(t)
	e.w.leaf(tagLocURI, l.LocURI)
	e.opt(tagLocName, l.LocName)
	e.w.close(t)
}

func (e *walker) cred(c *Cred) error {
	if c == nil {
		return nil
	}
	e.w.open(tagCred)
	e.meta(c.Meta)
	if err := e.w.data(&Data{Value: c.Data}, false); err != nil {
		return err
	}
	e.w.close(tagCred)
	return nil
}

// meta writes MetInf children in the MetInf DTD order: FieldLevel?, Format?, Type?, Mark?,
// Size?, Anchor?, Version?, NextNonce?, MaxMsgSize?, MaxObjSize?, EMI*, Mem?.
func (e *walker) meta(m *Meta) {
	if m.IsZero() {
		return
	}
	e.w.open(tagMeta)
	e.opt(tagFormat, m.Format)
	e.opt(tagType, m.Type)
	e.opt(tagMark, m.Mark)
	e.opt(tagSize, m.Size)
	e.opt(tagVersion, m.Version)
	e.opt(tagNextNonce, m.NextNonce)
	e.opt(tagMaxMsgSize, m.MaxMsgSize)
	e.opt(tagMaxObjSize, m.MaxObjSize)
	e.opt(tagEMI, m.EMI)
	e.w.close(tagMeta)
}

var kindTags = [...]tag{
	KindAdd: tagAdd, KindAlert: tagAlert, KindAtomic: tagAtomic, KindCopy: tagCopy,
	KindDelete: tagDelete, KindExec: tagExec, KindGet: tagGet, KindReplace: tagReplace,
	KindResults: tagResults, KindSequence: tagSequence, KindStatus: tagStatus,
}

func (e *walker) command(c *Command) error {
	if c.Kind == KindUnknown || int(c.Kind) >= len(kindTags) {
		return errPath(ErrUnrepresentable, "SyncBody", "command of unknown kind %d", c.Kind)
	}
	w := e.w
	t := kindTags[c.Kind]
	status, results := c.Kind == KindStatus, c.Kind == KindResults
	// One order serves every kind and is the DTD order for the fields each kind has:
	// Status (CmdID, MsgRef, CmdRef, Cmd, TargetRef*, SourceRef*, Cred?, Chal?, Data, Item*),
	// Results (CmdID, MsgRef?, CmdRef, Meta?, TargetRef?, SourceRef?, Item+), Get (CmdID,
	// NoResp?, Lang?, Cred?, Meta?, Item+), Exec (..., Cred?, Meta?, Correlator?, Item),
	// Alert (..., Cred?, Data?, Correlator?, Item*), Atomic/Sequence (CmdID, NoResp?, Meta?,
	// commands). Fields a kind does not have are still written when set, so nothing the
	// model holds is dropped.
	w.open(t)
	w.leaf(tagCmdID, c.CmdID)
	if c.NoResp {
		w.flag(tagNoResp)
	}
	if status {
		w.leaf(tagMsgRef, c.MsgRef)
	} else {
		e.opt(tagMsgRef, c.MsgRef)
	}
	if status || results {
		w.leaf(tagCmdRef, c.CmdRef)
	} else {
		e.opt(tagCmdRef, c.CmdRef)
	}
	if status {
		w.leaf(tagCmd, c.Cmd)
	} else {
		e.opt(tagCmd, c.Cmd)
	}
	e.opt(tagLang, c.Lang)
	if results {
		e.meta(c.Meta)
	}
	for _, r := range c.TargetRefs {
		w.leaf(tagTargetRef, r)
	}
	for _, r := range c.SourceRefs {
		w.leaf(tagSourceRef, r)
	}
	if err := e.cred(c.Cred); err != nil {
		return err
	}
	if !results {
		e.meta(c.Meta)
	}
	if c.Chal != nil {
		w.open(tagChal)
		e.meta(c.Chal.Meta)
		w.close(tagChal)
	}
	if status || c.Data != "" {
		if err := w.data(&Data{Value: c.Data}, false); err != nil {
			return err
		}
	}
	e.opt(tagCorrelator, c.Correlator)
	// Like libwbxml, item data of Add and Replace goes as OPAQUE (node values, possibly
	// binary); other item data as inline strings. TestWBXMLBytesMatchLibwbxml pins this.
	opaque := c.Kind == KindAdd || c.Kind == KindReplace
	for i := range c.Items {
		if err := e.item(&c.Items[i], opaque); err != nil {
			return err
		}
	}
	for i := range c.Commands {
		if err := e.command(&c.Commands[i]); err != nil {
			return err
		}
	}
	w.close(t)
	return nil
}

func (e *walker) item(it *Item, opaque bool) error {
	w := e.w
	w.open(tagItem)
	if it.Target != nil {
		e.locator(tagTarget, it.Target)
	}
	if it.Source != nil {
		e.locator(tagSource, it.Source)
	}
	if it.SourceParent != "" {
		e.locator(tagSourceParent, &Locator{LocURI: it.SourceParent})
	}
	if it.TargetParent != "" {
		e.locator(tagTargetParent, &Locator{LocURI: it.TargetParent})
	}
	e.meta(it.Meta)
	if it.Data != nil {
		if err := w.data(it.Data, opaque); err != nil {
			return err
		}
	}
	if it.MoreData {
		w.flag(tagMoreData)
	}
	w.close(tagItem)
	return nil
}
