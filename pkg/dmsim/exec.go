package dmsim

import (
	"encoding/base64"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// execOut is what executing one server command produced: the Status (and Results) commands
// to send, the report records, and the overall outcome used by Atomic and Sequence.
type execOut struct {
	cmds []syncml.Command
	recs []CommandRecord
	code int // first failing status, else the command's own status
}

// failed reports whether a status makes an enclosing Atomic roll back or a Sequence stop:
// any error, and a cancelled or refused user interaction (OMA-TS-DM_Protocol §2.5.2).
func failed(code int) bool {
	return code >= 300 || code == StatusCancelled || code == StatusNotExecuted
}

// where says where a command sits: SyncBody, inside Atomic or inside Sequence.
type where uint8

const (
	inBody where = iota
	inAtomic
	inSequence
)

func locURI(l *syncml.Locator) string {
	if l == nil {
		return ""
	}
	return l.LocURI
}

func (s *session) record(msgRef string, c *syncml.Command, target string, code int) CommandRecord {
	n, _ := strconv.Atoi(msgRef)
	return CommandRecord{MsgID: n, CmdID: c.CmdID, Kind: c.Kind.String(), Target: target, Status: code}
}

func statusCmd(msgRef string, c *syncml.Command, code int, targets, sources []string) syncml.Command {
	return syncml.Command{
		Kind:       syncml.KindStatus,
		MsgRef:     msgRef,
		CmdRef:     c.CmdID,
		Cmd:        c.Kind.String(),
		TargetRefs: targets,
		SourceRefs: sources,
		Data:       strconv.Itoa(code),
	}
}

// answerAll answers a command (and, for Atomic/Sequence, its children) with one code
// without running it: 215 after an aborted Sequence, 401/407 for an unauthenticated server.
func (s *session) answerAll(msgRef string, c *syncml.Command, code int) execOut {
	var o execOut
	o.code = code
	var targets, sources []string
	for _, it := range c.Items {
		if t := locURI(it.Target); t != "" {
			targets = append(targets, t)
		}
		if v := locURI(it.Source); v != "" {
			sources = append(sources, v)
		}
	}
	if !c.NoResp {
		o.cmds = append(o.cmds, statusCmd(msgRef, c, code, targets, sources))
	}
	target := strings.Join(targets, ",")
	if c.Kind == syncml.KindAlert {
		target = c.Data
	}
	o.recs = append(o.recs, s.record(msgRef, c, target, code))
	for i := range c.Commands {
		ch := s.answerAll(msgRef, &c.Commands[i], code)
		o.cmds = append(o.cmds, ch.cmds...)
		o.recs = append(o.recs, ch.recs...)
	}
	return o
}

// execTop runs one SyncBody command, routing chunked Add/Replace through the large-object
// buffer (§3.2).
func (s *session) execTop(msgRef string, c *syncml.Command) {
	if s.in != nil && !s.in.continues(c) {
		// A new command before the last chunk: Alert 1225, nothing committed (§3.2).
		s.warn("chunked item for %s interrupted by %s", s.in.target, c.Kind)
		s.queueNoEndOfData()
	}
	if (c.Kind == syncml.KindAdd || c.Kind == syncml.KindReplace) && (s.in != nil || hasMoreData(c)) {
		s.emit(s.chunkIn(msgRef, c))
		return
	}
	s.emit(s.exec(msgRef, c, inBody))
}

func hasMoreData(c *syncml.Command) bool {
	for _, it := range c.Items {
		if it.MoreData {
			return true
		}
	}
	return false
}

// exec runs one command; the caller holds the tree lock.
func (s *session) exec(msgRef string, c *syncml.Command, w where) execOut {
	switch c.Kind {
	case syncml.KindAtomic:
		return s.execAtomic(msgRef, c, w)
	case syncml.KindSequence:
		return s.execSequence(msgRef, c, w)
	case syncml.KindAlert:
		return s.execAlert(msgRef, c)
	case syncml.KindAdd, syncml.KindReplace, syncml.KindDelete, syncml.KindCopy, syncml.KindGet, syncml.KindExec:
		if w == inAtomic && (c.Kind == syncml.KindGet || c.Kind == syncml.KindExec) {
			return s.answerAll(msgRef, c, StatusCommandFailed) // not allowed in Atomic (RepPro §4.1.6.3)
		}
		return s.execItems(msgRef, c)
	}
	return s.answerAll(msgRef, c, StatusOptionalFeature)
}

type itemResult struct {
	target, source string
	code           int
	results        []syncml.Item
}

// execItems runs an item command. Items with one outcome share one Status listing every
// TargetRef (as in vector 03); otherwise each Item gets its own Status (PROTOCOL.md §12.18).
// A Get's Results follow the statuses.
func (s *session) execItems(msgRef string, c *syncml.Command) execOut {
	rs := make([]itemResult, 0, len(c.Items))
	for i := range c.Items {
		it := &c.Items[i]
		r := itemResult{target: locURI(it.Target), source: locURI(it.Source)}
		switch {
		case it.MoreData:
			r.code = StatusBadRequest // chunks only in SyncBody Add/Replace with one Item
		case c.Kind == syncml.KindGet:
			r.code, r.results = s.get(r.target)
		case c.Kind == syncml.KindAdd:
			r.code = s.add(c, it)
		case c.Kind == syncml.KindReplace:
			r.code = s.replace(c, it)
		case c.Kind == syncml.KindDelete:
			r.code = s.del(r.target)
		case c.Kind == syncml.KindCopy:
			r.code = s.copyNode(c, it)
		case c.Kind == syncml.KindExec:
			r.code = s.execNode(c, r.target)
		}
		rs = append(rs, r)
	}
	var o execOut
	o.code = StatusOK
	if len(rs) > 0 {
		o.code = rs[0].code
	}
	same := true
	for _, r := range rs {
		if r.code != rs[0].code {
			same = false
		}
		if failed(r.code) && !failed(o.code) {
			o.code = r.code // the first failure decides for Atomic and Sequence
		}
		o.recs = append(o.recs, s.record(msgRef, c, r.target, r.code))
	}
	refs := func(rs []itemResult) (t, src []string) {
		for _, r := range rs {
			if r.target != "" {
				t = append(t, r.target)
			}
			if r.source != "" && c.Kind == syncml.KindCopy {
				src = append(src, r.source)
			}
		}
		return t, src
	}
	if !c.NoResp {
		if same && len(rs) > 0 {
			t, src := refs(rs)
			o.cmds = append(o.cmds, statusCmd(msgRef, c, rs[0].code, t, src))
		} else {
			for i := range rs {
				t, src := refs(rs[i : i+1])
				o.cmds = append(o.cmds, statusCmd(msgRef, c, rs[i].code, t, src))
			}
		}
	}
	if c.Kind == syncml.KindGet {
		res := syncml.Command{Kind: syncml.KindResults, MsgRef: msgRef, CmdRef: c.CmdID}
		for _, r := range rs {
			res.Items = append(res.Items, r.results...)
		}
		if len(res.Items) > 0 {
			o.cmds = append(o.cmds, res)
		}
	}
	return o
}

// parse parses a LocURI within the device's URI limits (400/406/414 from dmtree).
func (s *session) parse(uri string) (dmtree.URI, int) {
	u, err := dmtree.ParseURI(uri, s.d.tree.limits)
	if err != nil {
		return dmtree.URI{}, dmtree.StatusOf(err)
	}
	return u, 0
}

func (s *session) allowed(u dmtree.URI, cmd dmtree.Cmd) bool {
	return s.d.tree.effectiveACL(u).Allows(cmd, s.cfg.ServerID)
}

// leafMeta is the Item Meta for a value: Format and Type only when they differ from the
// defaults chr and text/plain (OMA-TS-DM_Protocol §2.3.4).
func leafMeta(f dmtree.Format, typ, wireFormat string) *syncml.Meta {
	m := &syncml.Meta{}
	if wireFormat == "" {
		wireFormat = f.String()
	}
	if wireFormat != dmtree.DefaultFormat.String() {
		m.Format = wireFormat
	}
	if typ != "" && typ != dmtree.DefaultType {
		m.Type = typ
	}
	if m.IsZero() {
		return nil
	}
	return m
}

// xmlText reports whether v can travel as XML character data.
func xmlText(v []byte) bool {
	if !utf8.Valid(v) {
		return false
	}
	for _, r := range string(v) {
		if r < 0x20 && r != '\t' && r != '\n' && r != '\r' || r == 0xFFFE || r == 0xFFFF {
			return false
		}
	}
	return true
}

// wireValue is how a leaf value travels: binary goes as base64 text with Format b64 over
// XML and as raw OPAQUE with Format bin over WBXML (TND §8.3.7.2, PROTOCOL.md §8.6).
func (s *session) wireValue(n *node) (*syncml.Data, string) {
	binary := n.format == dmtree.FormatBin || n.format == dmtree.FormatB64
	if s.enc == syncml.EncodingXML {
		if binary || !xmlText(n.value) {
			return syncml.TextData(base64.StdEncoding.EncodeToString(n.value)), metaFormatB64
		}
		return syncml.TextData(string(n.value)), n.format.String()
	}
	if binary || !utf8.Valid(n.value) {
		return &syncml.Data{Value: string(n.value), Kind: syncml.DataOpaque}, dmtree.FormatBin.String()
	}
	return syncml.TextData(string(n.value)), n.format.String()
}

func (s *session) valueItem(loc string, n *node, withData bool) syncml.Item {
	it := syncml.Item{Source: &syncml.Locator{LocURI: loc}}
	if n.interior() {
		it.Meta = &syncml.Meta{Format: dmtree.FormatNode.String(), Type: n.typ}
		if withData {
			it.Data = syncml.TextData(childList(n))
		}
		return it
	}
	data, wf := s.wireValue(n)
	it.Meta = leafMeta(n.format, n.typ, wf)
	if withData {
		it.Data = data
	}
	return it
}

// objectTooLarge applies the server's MaxObjSize: the device must not send a larger object
// (OMA-TS-DM_Protocol §2.2); the Get is answered 413 instead.
func (s *session) objectTooLarge(items []syncml.Item) bool {
	if s.srvMaxObj <= 0 {
		return false
	}
	for _, it := range items {
		if it.Data != nil && len(it.Data.Value) > s.srvMaxObj {
			return true
		}
	}
	return false
}

// get answers a Get: a leaf's value, an interior node's child list, a ?prop= property or a
// ?list=Struct|StructData listing (OMA-TS-DM_TND §8.3–8.4, PROTOCOL.md §10).
func (s *session) get(target string) (int, []syncml.Item) {
	u, code := s.parse(target)
	if code != 0 {
		return code, nil
	}
	t := s.d.tree
	n := t.lookup(u.Path())
	if n == nil {
		return StatusNotFound, nil
	}
	if !s.allowed(u, dmtree.CmdGet) {
		return StatusPermissionDenied, nil
	}
	var items []syncml.Item
	q := u.Query()
	switch q.Kind {
	case dmtree.QueryNone:
		items = []syncml.Item{s.valueItem(target, n, true)}
	case dmtree.QueryProp:
		v, code := s.property(n, q.Prop)
		if code != 0 {
			return code, nil
		}
		items = []syncml.Item{{Source: &syncml.Locator{LocURI: target}, Data: syncml.TextData(v)}}
	case dmtree.QueryList:
		if q.List == dmtree.ListTNDS {
			return StatusOptionalFeature, nil // no TNDS support (406, TND §8.4)
		}
		withData := q.List == dmtree.ListStructData
		walk(u.Path(), n, func(v dmtree.URI, m *node) bool {
			if !s.allowed(v, dmtree.CmdGet) {
				return true // nodes the server may not read are left out
			}
			it := s.valueItem(v.String(), m, withData && !m.interior())
			items = append(items, it)
			return true
		})
	}
	if s.objectTooLarge(items) {
		return StatusTooLarge, nil
	}
	return StatusOK, items
}

// property returns a ?prop= value (OMA-TS-DM_TND §8.3); unsupported → 406.
func (s *session) property(n *node, p dmtree.Property) (string, int) {
	switch p {
	case dmtree.PropACL:
		return n.acl.String(), 0
	case dmtree.PropFormat:
		return n.format.String(), 0
	case dmtree.PropName:
		return n.name, 0
	case dmtree.PropType:
		if n.typ == "" && !n.interior() {
			return dmtree.DefaultType, 0
		}
		return n.typ, 0
	case dmtree.PropSize:
		if n.interior() {
			return "", StatusOptionalFeature
		}
		return strconv.Itoa(len(n.value)), 0
	case dmtree.PropTitle:
		return n.title, 0
	case dmtree.PropTStamp:
		return n.tstamp.UTC().Format("20060102T150405Z"), 0
	case dmtree.PropVerNo:
		return strconv.Itoa(int(n.verNo)), 0
	}
	return "", StatusOptionalFeature
}

// itemValue decodes an Item's Data per its Meta (Item Meta first, then the command's;
// defaults chr, text/plain). b64 data is decoded and stored as bin (TND §8.3.7.2).
func itemValue(cmdMeta, itemMeta *syncml.Meta, data string) ([]byte, dmtree.Format, string, int) {
	pick := func(f func(*syncml.Meta) string) string {
		if itemMeta != nil && f(itemMeta) != "" {
			return f(itemMeta)
		}
		if cmdMeta != nil {
			return f(cmdMeta)
		}
		return ""
	}
	format, err := dmtree.ParseFormat(pick(func(m *syncml.Meta) string { return m.Format }))
	if err != nil {
		return nil, 0, "", dmtree.StatusOf(err)
	}
	typ := pick(func(m *syncml.Meta) string { return m.Type })
	if format == dmtree.FormatB64 {
		v, err := decodeB64(data)
		if err != nil {
			return nil, 0, "", StatusBadRequest
		}
		return v, dmtree.FormatBin, typ, 0
	}
	return []byte(data), format, typ, 0
}

// decodeB64 decodes base64 text ignoring white space (XML line breaks) and missing padding.
func decodeB64(s string) ([]byte, error) {
	s = strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n':
			return -1
		}
		return r
	}, s)
	return base64.RawStdEncoding.DecodeString(strings.TrimRight(s, "="))
}

func itemData(it *syncml.Item) string {
	if it.Data == nil {
		return ""
	}
	return it.Data.Value
}

// replace sets an existing leaf (404 if missing, 405 for interior nodes) or a writable
// property (ACL, Name, Title) (OMA-TS-DM_RepPro §4.1.6.11, TND §8.3).
func (s *session) replace(c *syncml.Command, it *syncml.Item) int {
	target := locURI(it.Target)
	if target == "" {
		return StatusBadRequest
	}
	u, code := s.parse(target)
	if code != 0 {
		return code
	}
	n := s.d.tree.lookup(u.Path())
	if n == nil {
		return StatusNotFound
	}
	switch q := u.Query(); q.Kind {
	case dmtree.QueryProp:
		return s.replaceProp(u, n, q.Prop, itemData(it))
	case dmtree.QueryList:
		return StatusOptionalFeature
	}
	if n.interior() {
		return StatusNotAllowed
	}
	if !s.allowed(u, dmtree.CmdReplace) {
		return StatusPermissionDenied
	}
	v, f, typ, code := itemValue(c.Meta, it.Meta, itemData(it))
	if code != 0 {
		return code
	}
	if f == dmtree.FormatNode {
		return StatusNotAllowed
	}
	n.value, n.format, n.typ = v, f, typ
	n.touch(s.d.tree.stamp())
	return StatusOK
}

func (s *session) replaceProp(u dmtree.URI, n *node, p dmtree.Property, v string) int {
	switch p {
	case dmtree.PropACL:
		// Changing an ACL needs Replace on the node (interior) or its parent (leaf) (§8.3.7.1).
		at := u.Path()
		if !n.interior() {
			at = at.Parent()
		}
		if !s.allowed(at, dmtree.CmdReplace) {
			return StatusPermissionDenied
		}
		a, err := dmtree.ParseACL(v)
		if err != nil {
			return dmtree.StatusOf(err)
		}
		n.acl = a
	case dmtree.PropName:
		if n.permanent || u.IsRoot() {
			return StatusNotAllowed
		}
		if !s.allowed(u, dmtree.CmdReplace) {
			return StatusPermissionDenied
		}
		nu, err := u.Path().Parent().Join(v)
		if err != nil {
			return dmtree.StatusOf(err)
		}
		if s.d.tree.lookup(nu) != nil {
			return StatusAlreadyExists
		}
		n.name = v
	case dmtree.PropTitle:
		if !s.allowed(u, dmtree.CmdReplace) {
			return StatusPermissionDenied
		}
		if len(v) > 255 {
			return StatusTooLarge
		}
		n.title = v
	default:
		return StatusNotAllowed // read-only property (TND §8.3)
	}
	n.touch(s.d.tree.stamp())
	return StatusOK
}

// add creates a node: 418 if it exists, parents created implicitly (RepPro §4.1.6.1). A
// server adding an interior node (explicitly or as an implicit parent) without Replace right
// on its parent gets Add, Delete and Replace on it.
func (s *session) add(c *syncml.Command, it *syncml.Item) int {
	target := locURI(it.Target)
	u, code := s.parse(target)
	if code != 0 {
		return code
	}
	if u.Query().Kind != dmtree.QueryNone {
		return StatusNotAllowed // no Add on properties (TND §8.3)
	}
	t := s.d.tree
	if t.lookup(u) != nil {
		return StatusAlreadyExists
	}
	if !s.allowed(u.Parent(), dmtree.CmdAdd) {
		return StatusPermissionDenied
	}
	v, f, typ, code := itemValue(c.Meta, it.Meta, itemData(it))
	if code != 0 {
		return code
	}
	// top is the highest node this Add creates (itself or an implicit parent).
	top := u
	for p := u.Parent(); !p.IsRoot() && t.lookup(p) == nil; p = p.Parent() {
		top = p
	}
	parentReplace := s.allowed(top.Parent(), dmtree.CmdReplace)
	if _, err := t.create(u, NodeSpec{Format: f, Type: typ, Value: v}); err != nil {
		return StatusOf(err)
	}
	if n := t.lookup(top); n != nil && n.interior() && !parentReplace {
		id := s.cfg.ServerID
		if a, err := dmtree.ParseACL("Add=" + id + "&Delete=" + id + "&Replace=" + id); err == nil {
			n.acl = a
		}
	}
	return StatusOK
}

// del deletes a subtree: 404 unknown, 405 permanent or root, 425 without Delete right
// (RepPro §4.1.6.5).
func (s *session) del(target string) int {
	u, code := s.parse(target)
	if code != 0 {
		return code
	}
	if u.Query().Kind != dmtree.QueryNone {
		return StatusNotAllowed
	}
	t := s.d.tree
	n := t.lookup(u)
	if n == nil {
		return StatusNotFound
	}
	if u.IsRoot() || hasPermanent(n) {
		return StatusNotAllowed
	}
	if !s.allowed(u, dmtree.CmdDelete) {
		return StatusPermissionDenied
	}
	return StatusOf(t.remove(u))
}

// copyNode copies a leaf onto a leaf (RepPro §4.1.6.4): 404 without source, 405 for interior
// sources, 403 when the target is interior, 425 per dmtree.AllowsCopy.
func (s *session) copyNode(c *syncml.Command, it *syncml.Item) int {
	su, code := s.parse(locURI(it.Source))
	if code != 0 {
		return code
	}
	tu, code := s.parse(locURI(it.Target))
	if code != 0 {
		return code
	}
	t := s.d.tree
	src := t.lookup(su)
	if src == nil {
		return StatusNotFound
	}
	if src.interior() {
		return StatusNotAllowed
	}
	dst := t.lookup(tu)
	if dst != nil && dst.interior() {
		return StatusForbidden
	}
	dstACL := t.effectiveACL(tu)
	if dst == nil {
		dstACL = t.effectiveACL(tu.Parent())
	}
	if !dmtree.AllowsCopy(t.effectiveACL(su), dstACL, dst != nil, s.cfg.ServerID) {
		return StatusPermissionDenied
	}
	if dst == nil {
		_, err := t.create(tu, NodeSpec{Format: src.format, Type: src.typ, Value: src.value})
		return StatusOf(err)
	}
	dst.value, dst.format, dst.typ = slices.Clone(src.value), src.format, src.typ
	dst.touch(t.stamp())
	return StatusOK
}

// execNode runs an Exec. FUMO operations answer 202 and report their result in a Generic
// Alert 1226 in the next session (OMA-TS-DM-FUMO §10.2.2); other executable nodes answer
// 200, anything else 405.
func (s *session) execNode(c *syncml.Command, target string) int {
	u, code := s.parse(target)
	if code != 0 {
		return code
	}
	n := s.d.tree.lookup(u)
	if n == nil {
		return StatusNotFound
	}
	if !s.allowed(u, dmtree.CmdExec) {
		return StatusPermissionDenied
	}
	var typ string
	var okState, failState string
	switch n.exec {
	case execNone:
		return StatusNotAllowed
	case execGeneric:
		return StatusOK
	case execFUMODownload:
		typ, okState, failState = FUMOTypeDownload, "40", "20" // Download Complete / Failed
	case execFUMOUpdate:
		typ, okState, failState = FUMOTypeUpdate, "100", "80" // Update Successful / Failed
	case execFUMODownloadAndUpdate:
		typ, okState, failState = FUMOTypeDownloadAndUpdate, "100", "20"
	}
	root := u.Parent()
	result := s.cfg.FUMOResult
	state, mark := okState, ""
	if result < 200 || result > 299 {
		state, mark = failState, "critical"
	}
	if st := s.d.tree.lookup(mustJoin(root, "State")); st != nil {
		st.value = []byte(state)
		st.touch(s.d.tree.stamp())
	}
	s.d.QueueGenericAlert(GenericAlert{
		Correlator: c.Correlator,
		Source:     root.String(),
		Type:       typ,
		Format:     dmtree.FormatInt.String(),
		Mark:       mark,
		Data:       strconv.Itoa(result),
	})
	return StatusAccepted
}

func mustJoin(u dmtree.URI, name string) dmtree.URI {
	v, err := u.Join(name)
	if err != nil {
		return u
	}
	return v
}

// execAtomic runs the children all-or-nothing (RepPro §4.1.6.3): on the first failure the
// tree is restored, the Atomic answers 507, children that had succeeded 216 and children not
// reached 215. Nested Atomic answers 500.
func (s *session) execAtomic(msgRef string, c *syncml.Command, w where) execOut {
	if w == inAtomic {
		return s.answerAll(msgRef, c, StatusCommandFailed)
	}
	t := s.d.tree
	snap := t.snapshot()
	children := make([]execOut, 0, len(c.Commands))
	failedAt := -1
	for i := range c.Commands {
		ch := &c.Commands[i]
		if failedAt >= 0 {
			children = append(children, s.answerAll(msgRef, ch, StatusNotExecuted))
			continue
		}
		o := s.exec(msgRef, ch, inAtomic)
		if failed(o.code) {
			failedAt = i
		}
		children = append(children, o)
	}
	code := StatusOK
	if failedAt >= 0 {
		t.restore(snap)
		code = StatusAtomicFailed
		for i := range children[:failedAt+1] {
			rollBack(&children[i])
		}
	}
	return container(s, msgRef, c, code, children)
}

// rollBack turns the successes of an executed command into 216 (roll back OK).
func rollBack(o *execOut) {
	kept := o.cmds[:0]
	for _, c := range o.cmds {
		if c.Kind == syncml.KindResults {
			continue
		}
		if code, _ := strconv.Atoi(c.Data); c.Kind == syncml.KindStatus && !failed(code) {
			c.Data = strconv.Itoa(StatusRolledBack)
		}
		kept = append(kept, c)
	}
	o.cmds = kept
	for i := range o.recs {
		if !failed(o.recs[i].Status) {
			o.recs[i].Status = StatusRolledBack
		}
	}
}

// execSequence runs the children in order; after a failure the rest answer 215. The
// Sequence itself answers 200 (RepPro §4.1.6.14).
func (s *session) execSequence(msgRef string, c *syncml.Command, w where) execOut {
	if w != inBody {
		return s.answerAll(msgRef, c, StatusCommandFailed)
	}
	children := make([]execOut, 0, len(c.Commands))
	stopped := false
	for i := range c.Commands {
		ch := &c.Commands[i]
		if stopped {
			children = append(children, s.answerAll(msgRef, ch, StatusNotExecuted))
			continue
		}
		o := s.exec(msgRef, ch, inSequence)
		stopped = failed(o.code)
		children = append(children, o)
	}
	return container(s, msgRef, c, StatusOK, children)
}

func container(s *session, msgRef string, c *syncml.Command, code int, children []execOut) execOut {
	o := execOut{code: code}
	if !c.NoResp {
		o.cmds = append(o.cmds, statusCmd(msgRef, c, code, nil, nil))
	}
	o.recs = append(o.recs, s.record(msgRef, c, "", code))
	for _, ch := range children {
		o.cmds = append(o.cmds, ch.cmds...)
		o.recs = append(o.recs, ch.recs...)
	}
	return o
}

// execAlert answers server Alerts (OMA-TS-DM_Protocol §2.5, PROTOCOL.md §6): 1222 and 1225
// with 200, user interaction through SessionOptions.UI, anything else 406.
func (s *session) execAlert(msgRef string, c *syncml.Command) execOut {
	code, _ := strconv.Atoi(c.Data)
	st := statusCmd(msgRef, c, StatusOK, nil, nil)
	switch {
	case code == alertNextMessage:
	case code == alertNoEndOfData:
		s.warn("server reports a broken chunked object (1225)")
		s.out = nil
	case code >= alertDisplay && code <= alertMultiChoice:
		ui := UIAlert{Code: code}
		for i, it := range c.Items {
			if i == 0 {
				ui.Options = itemData(&it)
			} else {
				ui.Items = append(ui.Items, itemData(&it))
			}
		}
		answer := s.opt.UI
		if answer == nil {
			answer = DefaultUI
		}
		// The simulated user may look at the tree: do not hold its lock meanwhile.
		s.d.tree.unlock()
		r := answer(ui)
		s.d.tree.lock()
		st.Data = strconv.Itoa(r.Status)
		for _, a := range r.Answers {
			st.Items = append(st.Items, syncml.Item{Data: syncml.TextData(a)})
		}
	default:
		st.Data = strconv.Itoa(StatusOptionalFeature)
	}
	var o execOut
	o.code, _ = strconv.Atoi(st.Data)
	if !c.NoResp {
		o.cmds = append(o.cmds, st)
	}
	o.recs = append(o.recs, s.record(msgRef, c, c.Data, o.code))
	return o
}

// DefaultUI is the simulated user who accepts everything: Display and Confirm → 200, Text
// Input → the DR= default or "dmsim", choices → the DR= default or item 1 (§2.5.3).
func DefaultUI(a UIAlert) UIResponse {
	opts, _ := url.ParseQuery(a.Options)
	dr := opts.Get("DR")
	switch a.Code {
	case 1102:
		if dr == "" {
			dr = "dmsim"
		}
		return UIResponse{Status: StatusOK, Answers: []string{dr}}
	case 1103:
		if dr == "" {
			dr = "1"
		}
		return UIResponse{Status: StatusOK, Answers: []string{dr}}
	case 1104:
		if dr == "" {
			return UIResponse{Status: StatusOK, Answers: []string{"1"}}
		}
		return UIResponse{Status: StatusOK, Answers: strings.Split(dr, "-")}
	}
	return UIResponse{Status: StatusOK}
}
