package engine

import (
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// NeedsLOBuffer reports whether handling m may need the chunks of an incoming large
// object received so far (State's Session.InLO.Buf): only a message with a Results item
// that is not marked MoreData can complete one. The store reads the buffer only then, so
// a large object costs its size in reads, not its size times its chunk count.
func NeedsLOBuffer(m *syncml.Message) bool {
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		if c.Kind != syncml.KindResults {
			continue
		}
		for j := range c.Items {
			if !c.Items[j].MoreData {
				return true
			}
		}
	}
	return false
}

// clientCommands handles every command of the client's message in document order
// (PROTOCOL.md §3): Status and Results are correlated to what we sent; Alerts and the
// DevInfo Replace are answered with a Status.
func (p *proc) clientCommands() {
	m := p.m
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		switch c.Kind {
		case syncml.KindStatus:
			p.clientStatus(c)
		case syncml.KindResults:
			p.clientResults(c)
		case syncml.KindAlert:
			p.clientAlert(c)
			if p.sess.Ended {
				return
			}
		case syncml.KindReplace:
			p.devInfo(c)
		default:
			// A client may send only Replace(DevInfo), Results, Alert and Status
			// (OMA-TS-DM_Protocol §2.3); anything else is not allowed here.
			p.r.status(m, c, 405)
		}
	}
	// A Get completes once its Results are in: at the end of this message, unless a large
	// object is still arriving in chunks.
	for _, cmd := range p.completeLater {
		if cmd.State.Terminal() || (p.sess.InLO != nil && p.sess.InLO.CommandID == cmd.ID) {
			continue
		}
		p.setState(cmd, StateCompleted, 0, "")
	}
}

func (p *proc) clientStatus(c *syncml.Command) {
	if c.Cmd == "SyncHdr" {
		p.serverHdrStatus(c)
		return
	}
	msgRef, _ := strconv.Atoi(c.MsgRef)
	key := sentKey(msgRef, c.CmdRef)
	ref, ok := p.sess.Sent[key]
	if !ok {
		return // a Status for something we did not send (or already settled): ignore
	}
	code, _ := strconv.Atoi(c.Data)
	if code == 213 {
		// Chunk received and buffered (RepPro §2.2.6): send the next one.
		if p.sess.OutLO != nil && p.sess.OutLO.CommandID == ref.CommandID {
			p.sess.OutLO.Acked = true
		}
		delete(p.sess.Sent, key)
		return
	}
	delete(p.sess.Sent, key)
	p.settled[key] = ref
	if ref.CommandID == "" {
		return // Atomic/Sequence wrapper: the children carry their own Status
	}
	cmd := p.command(ref.CommandID)
	if cmd == nil || cmd.State.Terminal() {
		return
	}
	if p.sess.OutLO != nil && p.sess.OutLO.CommandID == cmd.ID {
		p.sess.OutLO = nil
	}
	if cmd.Op.Type == OpGet && code >= 200 && code < 300 {
		cmd.Status = code
		p.touch(cmd)
		p.completeLater = append(p.completeLater, cmd)
		return
	}
	switch {
	case code == 215 || code == 216:
		// Not executed (Sequence stopped) or rolled back with its Atomic: it had no effect.
		p.setState(cmd, StateFailed, code, "device answered "+c.Data+" (not executed or rolled back)")
	case code >= 200 && code < 300:
		p.setState(cmd, StateCompleted, code, "")
	default:
		p.setState(cmd, StateFailed, code, "device answered "+c.Data)
	}
}

// clientResults attaches returned values to the Get they answer, reassembling chunked
// values (large objects, RepPro §2.2.6 / PROTOCOL.md §3.2).
func (p *proc) clientResults(c *syncml.Command) {
	msgRef := c.MsgRef
	if msgRef == "" {
		msgRef = strconv.Itoa(p.sess.ServerMsgID)
	}
	n, _ := strconv.Atoi(msgRef)
	ref, ok := p.sess.Sent[sentKey(n, c.CmdRef)]
	if !ok {
		ref, ok = p.settled[sentKey(n, c.CmdRef)]
	}
	var cmd *Command
	if ok && ref.CommandID != "" {
		cmd = p.command(ref.CommandID)
	} else if lo := p.sess.InLO; lo != nil && lo.CmdRef == c.CmdRef {
		cmd = p.command(lo.CommandID)
	}
	if cmd == nil {
		// Results for a Get we know nothing about: nothing to attach them to.
		return
	}
	for j := range c.Items {
		it := &c.Items[j]
		uri := ""
		if it.Source != nil {
			uri = it.Source.LocURI
		}
		format, mime := metaOf(c.Meta, it.Meta)
		val := ""
		if it.Data != nil {
			val = it.Data.Value
		}
		lo := p.sess.InLO
		if it.MoreData || lo != nil {
			if lo == nil {
				declared, _ := it.Meta.SizeInt()
				lo = &InLO{MsgRef: msgRef, CmdRef: c.CmdRef, CommandID: cmd.ID, URI: uri, Format: format, MIME: mime, Declared: declared}
				p.sess.InLO = lo
			}
			if lo.Received == 0 && len(lo.Buf) > 0 {
				lo.Received = int64(len(lo.Buf)) // a record from before Received was kept
			}
			if lo.Received+int64(len(val)) > p.e.cfg.ServerMaxObjSize {
				p.sess.InLO = nil
				p.out.LOReset = true
				p.r.status(p.m, c, 413)
				p.setState(cmd, StateFailed, 413, "large object exceeds the server's MaxObjSize")
				return
			}
			lo.Buf = append(lo.Buf, val...)
			lo.Received += int64(len(val))
			if it.MoreData {
				p.out.LOAppend = append(p.out.LOAppend, val...)
				p.r.status(p.m, c, 213)
				p.touch(cmd)
				continue
			}
			// Last chunk: the store handed back the chunks received so far (it does for a
			// message that may end a large object, NeedsLOBuffer); check the size before
			// committing (424 on mismatch).
			p.sess.InLO = nil
			p.out.LOReset = true
			if int64(len(lo.Buf)) != lo.Received {
				// The buffer expired or was not loaded: the object cannot be rebuilt.
				p.r.status(p.m, c, 500)
				p.setState(cmd, StateFailed, 500, "large object chunks lost")
				return
			}
			data, ok := sizeMatches(lo.Buf, lo.Declared, lo.Format)
			if !ok {
				p.r.status(p.m, c, 424)
				p.setState(cmd, StateFailed, 424, "large object size mismatch")
				return
			}
			cmd.Results = append(cmd.Results, ResultItem{URI: lo.URI, Format: lo.Format, MIME: lo.MIME, Data: data})
			if cmd.Status >= 200 && cmd.Status < 300 {
				p.setState(cmd, StateCompleted, 0, "")
			} else {
				p.touch(cmd)
			}
			continue
		}
		cmd.Results = append(cmd.Results, ResultItem{URI: uri, Format: format, MIME: mime, Data: decodeValue(val, format)})
		p.touch(cmd)
	}
}

// sizeMatches checks a reassembled object against Meta Size. Implementations differ on
// whether Size counts base64 text or decoded bytes (PROTOCOL.md §3.2, §12.15): both are
// accepted. It returns the value (decoded when Format is b64).
func sizeMatches(buf []byte, declared int64, format string) ([]byte, bool) {
	data := buf
	if strings.EqualFold(format, "b64") {
		if d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(buf)), "")); err == nil {
			data = d
		}
	}
	if declared == 0 {
		return data, true
	}
	return data, int64(len(buf)) == declared || int64(len(data)) == declared
}

func decodeValue(v, format string) []byte {
	if strings.EqualFold(format, "b64") {
		if d, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(v), "")); err == nil {
			return d
		}
	}
	return []byte(v)
}

// metaOf returns Format and Type of an item, falling back to the command's Meta.
func metaOf(cmd, item *syncml.Meta) (format, mime string) {
	if item != nil {
		format, mime = item.Format, item.Type
	}
	if cmd != nil {
		if format == "" {
			format = cmd.Format
		}
		if mime == "" {
			mime = cmd.Type
		}
	}
	return strings.ToLower(format), mime
}

// clientAlert answers the client's alerts (PROTOCOL.md §6).
func (p *proc) clientAlert(c *syncml.Command) {
	switch c.Data {
	case "1223":
		// Session abort: answer Status for the header and the Alert only; what we sent
		// and got no answer for goes back to the queue.
		p.r.status(p.m, c, 200)
		p.r.msg.Body.Final = true
		p.abort("aborted by device")
	case "1226":
		p.r.status(p.m, c, 200)
		for j := range c.Items {
			it := &c.Items[j]
			ev := Event{Kind: EventGenericAlert, Session: p.sess.SessionID, Correlator: c.Correlator}
			if it.Source != nil {
				ev.SourceURI = it.Source.LocURI
			}
			if it.Meta != nil {
				ev.AlertType, ev.Format, ev.Mark = normalizeAlertType(it.Meta.Type), it.Meta.Format, it.Meta.Mark
			}
			if it.Data != nil {
				ev.Data = []byte(it.Data.Value)
			}
			p.out.Events = append(p.out.Events, ev)
		}
	default:
		// 1200/1201 open the session, 1222 asks for our next message, 1224 is a client
		// event: all acknowledged with 200.
		p.r.status(p.m, c, 200)
	}
}

// normalizeAlertType drops the "Reversed-Domain-Name: " prefix some clients send
// (PROTOCOL.md §12.6).
func normalizeAlertType(t string) string {
	t = strings.TrimSpace(t)
	if i := strings.Index(t, ":"); i > 0 && strings.EqualFold(t[:i], "Reversed-Domain-Name") {
		return strings.TrimSpace(t[i+1:])
	}
	return t
}

// devInfo records DevInfo values from the client's Replace (Package 1, §3).
func (p *proc) devInfo(c *syncml.Command) {
	vals := map[string]string{}
	for j := range c.Items {
		it := &c.Items[j]
		uri := ""
		switch {
		case it.Source != nil:
			uri = it.Source.LocURI
		case it.Target != nil:
			uri = it.Target.LocURI
		}
		if !isDevInfo(uri) {
			continue
		}
		v := ""
		if it.Data != nil {
			v = it.Data.Value
		}
		vals[strings.TrimPrefix(strings.TrimPrefix(uri, "./"), "DevInfo/")] = v
	}
	if len(vals) == 0 {
		p.r.status(p.m, c, 405)
		return
	}
	p.r.status(p.m, c, 200)
	p.out.Events = append(p.out.Events, Event{Kind: EventDeviceInfo, Session: p.sess.SessionID, Values: vals})
}

// abort ends the session and returns unanswered commands to the queue.
func (p *proc) abort(outcome string) {
	for key, ref := range p.sess.Sent {
		delete(p.sess.Sent, key)
		if ref.CommandID == "" {
			continue
		}
		if cmd := p.command(ref.CommandID); cmd != nil && cmd.State == StateSent {
			p.requeue(cmd, outcome)
		}
	}
	if p.sess.InLO != nil {
		p.out.LOReset = true
	}
	p.sess.OutLO, p.sess.InLO = nil, nil
	p.sess.Ended = true
	p.sess.Outcome = OutcomeAborted
}
