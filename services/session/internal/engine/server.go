package engine

import (
	"encoding/base64"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// sizeMargin keeps replies a little under the client's MaxMsgSize: our size accounting adds
// commands' standalone encodings, which can differ from the final message by a few bytes
// (WBXML page switches).
const sizeMargin = 64

// serverPackage builds the rest of the server's package once the client's package is
// complete: our credentials if needed, the next large-object chunk or the next commands from
// the queue that fit the client's MaxMsgSize, and Final. A package with no command ends the
// session (OMA-TS-DM_Protocol §2.3; PROTOCOL.md §3).
func (p *proc) serverPackage() {
	s := p.sess
	cfg := p.e.cfg
	p.serverCred()
	p.r.msg.Header.Meta = &syncml.Meta{
		MaxMsgSize: strconv.FormatInt(cfg.ServerMaxMsgSize, 10),
		MaxObjSize: strconv.FormatInt(cfg.ServerMaxObjSize, 10),
	}
	// The client finished its package: anything it did not answer goes back to the queue.
	for key, ref := range s.Sent {
		delete(s.Sent, key)
		if ref.CommandID == "" {
			continue
		}
		if cmd := p.command(ref.CommandID); cmd != nil && cmd.State == StateSent {
			if s.OutLO != nil && s.OutLO.CommandID == cmd.ID {
				s.OutLO = nil
			}
			p.requeue(cmd, "device sent no Status")
		}
	}
	limit := s.ClientMaxMsgSize
	if limit <= 0 {
		limit = cfg.DefaultClientMaxMsgSize
	}
	sz := newSizer(p.in.Encoding, p.r.msg)

	if lo := s.OutLO; lo != nil && lo.Acked {
		if cmd := p.command(lo.CommandID); cmd != nil {
			p.chunk(cmd, lo, sz, limit)
			return
		}
		s.OutLO = nil
	}

	added := 0
	for i := 0; i < len(p.queue) && added < cfg.MaxCommandsPerMessage; i++ {
		c := p.command(p.queue[i].ID)
		if c == nil || c.State != StateQueued {
			continue
		}
		group := []*Command{c}
		if c.Group != GroupNone && c.GroupID != "" {
			for i+1 < len(p.queue) && p.queue[i+1].GroupID == c.GroupID {
				i++
				if g := p.command(p.queue[i].ID); g != nil && g.State == StateQueued {
					group = append(group, g)
				}
			}
		}
		sc, refs := p.build(group)
		n := sz.size(&sc)
		if sz.total+n > limit-sizeMargin {
			if added == 0 && len(group) == 1 && len(c.Op.Data) > 0 && (c.Op.Type == OpReplace || c.Op.Type == OpAdd) {
				p.startChunks(c, sz, limit)
				return
			}
			if added == 0 {
				// Not even alone does it fit the client's messages: it can never be sent.
				for _, g := range group {
					p.setState(g, StateFailed, 413, "command larger than the device's MaxMsgSize")
				}
				continue
			}
			break
		}
		sz.total += n
		p.r.add(sc)
		p.markSent(&p.r.msg.Body.Commands[len(p.r.msg.Body.Commands)-1], refs)
		added += len(group)
	}
	p.r.msg.Body.Final = true
	if added == 0 {
		s.Ended = true
		s.Outcome = OutcomeCompleted
	}
}

// markSent records a sent command (and an Atomic/Sequence's children) for correlation.
func (p *proc) markSent(sc *syncml.Command, refs []*Command) {
	s := p.sess
	msgID := s.ServerMsgID + 1
	if s.Sent == nil {
		s.Sent = map[string]SentRef{}
	}
	if sc.Kind == syncml.KindAtomic || sc.Kind == syncml.KindSequence {
		s.Sent[sentKey(msgID, sc.CmdID)] = SentRef{GroupID: refs[0].GroupID, Kind: sc.Kind.String()}
		for i := range sc.Commands {
			child := &sc.Commands[i]
			child.CmdID = p.r.nextID()
			p.sent(refs[i], child, msgID)
		}
		return
	}
	p.sent(refs[0], sc, msgID)
}

func (p *proc) sent(c *Command, sc *syncml.Command, msgID int) {
	p.sess.Sent[sentKey(msgID, sc.CmdID)] = SentRef{CommandID: c.ID, Kind: sc.Kind.String()}
	if c.State == StateSent && c.SentSession == p.sess.SessionID {
		// A later chunk of a large object: the same attempt, and the session's Sent map
		// is what correlates its Status. The record (with the whole object) is not
		// rewritten for every chunk.
		return
	}
	c.Attempts++
	c.SentSession, c.SentMsgID, c.SentCmdID = p.sess.SessionID, msgID, sc.CmdID
	c.LeaseUntil = p.in.Now.Add(p.e.cfg.IdleTimeout)
	p.setState(c, StateSent, 0, "")
}

// build turns queued commands into one SyncML command (a group becomes Atomic/Sequence).
func (p *proc) build(group []*Command) (syncml.Command, []*Command) {
	if len(group) == 1 && group[0].Group == GroupNone {
		return p.toSyncML(group[0]), group
	}
	kind := syncml.KindAtomic
	if group[0].Group == GroupSequence {
		kind = syncml.KindSequence
	}
	w := syncml.Command{Kind: kind}
	for _, c := range group {
		w.Commands = append(w.Commands, p.toSyncML(c))
	}
	return w, group
}

var opKinds = map[OpType]syncml.Kind{
	OpGet: syncml.KindGet, OpReplace: syncml.KindReplace, OpAdd: syncml.KindAdd,
	OpDelete: syncml.KindDelete, OpExec: syncml.KindExec, OpCopy: syncml.KindCopy,
}

// commandShell is the command for an operation with its target, source and correlator but
// no data (a large-object chunk fills in its own piece).
func (p *proc) commandShell(c *Command) syncml.Command {
	op := c.Op
	sc := syncml.Command{Kind: opKinds[op.Type]}
	it := syncml.Item{Target: &syncml.Locator{LocURI: op.TargetURI}}
	if op.Type == OpCopy {
		it.Source = &syncml.Locator{LocURI: op.SourceURI}
	}
	if op.Type == OpExec {
		sc.Correlator = op.Correlator
	}
	sc.Items = []syncml.Item{it}
	return sc
}

// toSyncML converts a queued operation into its command (PROTOCOL.md §4).
func (p *proc) toSyncML(c *Command) syncml.Command {
	op := c.Op
	sc := p.commandShell(c)
	it := &sc.Items[0]
	if len(op.Data) > 0 || op.HasData {
		wire, format := p.wire(op)
		it.Data = &syncml.Data{Value: wire}
		if format == "bin" {
			it.Data.Kind = syncml.DataOpaque
		}
		if format != "" || op.MIME != "" {
			it.Meta = &syncml.Meta{Format: format, Type: op.MIME}
		}
	} else if op.Format != "" || op.MIME != "" {
		it.Meta = &syncml.Meta{Format: op.Format, Type: op.MIME}
	}
	return sc
}

// wire returns the data as transmitted and its Format: binary data travels base64-encoded
// with Format b64 in XML, raw as OPAQUE with Format bin in WBXML (PROTOCOL.md §8.6).
func (p *proc) wire(op Operation) (string, string) {
	format := strings.ToLower(op.Format)
	binary := format == "bin" || format == "b64" || !utf8.Valid(op.Data) || strings.ContainsRune(string(op.Data), 0)
	if !binary {
		return string(op.Data), format
	}
	if p.in.Encoding == syncml.EncodingWBXML && format != "b64" {
		return string(op.Data), "bin"
	}
	return base64.StdEncoding.EncodeToString(op.Data), "b64"
}

// wireLen is the length of data's wire form in format (wire).
func wireLen(data []byte, format string) int {
	if format == "b64" {
		return base64.StdEncoding.EncodedLen(len(data))
	}
	return len(data)
}

// wirePart is wire form characters [off, off+n) of data in format, of total characters in
// all. A base64 piece starts on a 4-character boundary and ends on one unless it is the
// last, so it is the encoding of data[off/4*3 : (off+n)/4*3].
func wirePart(data []byte, format string, total, off, n int) string {
	if format != "b64" {
		return string(data[off : off+n])
	}
	end := len(data)
	if off+n < total {
		end = (off + n) / 4 * 3
	}
	return base64.StdEncoding.EncodeToString(data[off/4*3 : end])
}

// startChunks begins sending a value that does not fit one message as a large object
// (RepPro §2.2.6, PROTOCOL.md §3.2).
func (p *proc) startChunks(c *Command, sz *sizer, limit int64) {
	max := p.sess.ClientMaxObjSize
	wire, format := p.wire(c.Op)
	if max > 0 && int64(len(wire)) > max {
		p.setState(c, StateFailed, 413, "object larger than the device's MaxObjSize")
		p.r.msg.Body.Final = true
		p.sess.Ended, p.sess.Outcome = true, OutcomeCompleted
		return
	}
	lo := &OutLO{CommandID: c.ID, Total: len(wire), Format: format}
	p.sess.OutLO = lo
	p.chunk(c, lo, sz, limit)
}

// chunk sends the next piece of an outgoing large object: as much as fits the message,
// base64 split on 4-character boundaries, Meta Size (the transmitted length) on the first
// chunk, MoreData on all but the last, Final only after the last.
func (p *proc) chunk(c *Command, lo *OutLO, sz *sizer, limit int64) {
	// The piece is cut from the queued command's data (the session record does not carry
	// the object), encoding only that piece: not the whole object on every chunk.
	if wireLen(c.Op.Data, lo.Format) != lo.Total {
		p.sess.OutLO = nil
		p.setState(c, StateFailed, 500, "large object changed while being sent")
		p.r.msg.Body.Final = true
		return
	}
	sc := p.commandShell(c)
	it := &sc.Items[0]
	it.Data = &syncml.Data{}
	if lo.Format == "bin" {
		it.Data.Kind = syncml.DataOpaque
	}
	it.Meta = &syncml.Meta{Format: lo.Format, Type: c.Op.MIME}
	if lo.Offset == 0 {
		it.Meta.Size = strconv.Itoa(lo.Total)
	}
	it.MoreData = true
	room := limit - sizeMargin - sz.total - sz.size(&sc)
	if room < 16 {
		room = 16
	}
	n := int64(lo.Total - lo.Offset)
	last := n <= room
	if !last {
		n = room
		if lo.Format == "b64" {
			n -= n % 4
		}
	}
	it.MoreData = !last
	it.Data.Value = wirePart(c.Op.Data, lo.Format, lo.Total, lo.Offset, int(n))
	lo.Offset += int(n)
	lo.Acked = false
	p.r.add(sc)
	p.markSent(&p.r.msg.Body.Commands[len(p.r.msg.Body.Commands)-1], []*Command{c})
	if last {
		p.sess.OutLO = nil
		p.r.msg.Body.Final = true
		return
	}
	// Chunks are not the end of a package: no Final (RepPro §2.1.2).
	p.r.msg.Body.Final = false
}

// sizer tracks the encoded size of a reply as commands are added: the base message is
// encoded once and each command's standalone size (its encoding in an otherwise empty
// message, minus that empty message) is added to it.
type sizer struct {
	enc   syncml.Encoding
	empty int64
	total int64
}

func newSizer(enc syncml.Encoding, base *syncml.Message) *sizer {
	s := &sizer{enc: enc}
	s.total = s.encoded(base)
	s.empty = s.encoded(&syncml.Message{})
	return s
}

func (s *sizer) encoded(m *syncml.Message) int64 {
	b, err := syncml.Encode(m, s.enc)
	if err != nil {
		return 1 << 40 // unencodable: never "fits"
	}
	return int64(len(b))
}

func (s *sizer) size(c *syncml.Command) int64 {
	return s.encoded(&syncml.Message{Body: syncml.Body{Commands: []syncml.Command{*c}}}) - s.empty
}
