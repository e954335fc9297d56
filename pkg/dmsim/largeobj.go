package dmsim

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Large objects (OMA-TS-DM_Protocol §2.2, PROTOCOL.md §3.2): an Item's Data split over
// consecutive messages, every chunk but the last marked MoreData, Meta Size only on the first.

// outObject is a Results Item the device is sending in chunks.
type outObject struct {
	cmd  syncml.Command // the Results, without Items
	item syncml.Item    // the Item, without Data
	data string         // the value as it travels (base64 text for b64)
	kind syncml.DataKind
	off  int
	b64  bool
}

func (s *session) startOutObject(r syncml.Command) {
	it := r.Items[0]
	o := &outObject{cmd: r, item: it, b64: it.Meta != nil && it.Meta.Format == metaFormatB64}
	if it.Data != nil {
		o.data, o.kind = it.Data.Value, it.Data.Kind
	}
	o.cmd.Items = nil
	o.item.Data = nil
	s.out = o
}

func (o *outObject) chunk(n int, more bool) syncml.Command {
	r := o.cmd
	it := o.item
	var m syncml.Meta
	if it.Meta != nil {
		m = *it.Meta // Meta is repeated on every chunk (§3.2)
	}
	if o.off == 0 {
		m.Size = strconv.Itoa(len(o.data)) // the first chunk announces the total size
	}
	it.Meta = nil
	if !m.IsZero() {
		it.Meta = &m
	}
	it.Data = &syncml.Data{Value: o.data[o.off : o.off+n], Kind: o.kind}
	it.MoreData = more
	r.Items = []syncml.Item{it}
	return r
}

// align moves a split point back so base64 is cut on 4-character boundaries and text on
// UTF-8 character boundaries (PROTOCOL.md §3.2).
func (o *outObject) align(n int) int {
	if o.b64 {
		return n - n%4
	}
	if o.kind == syncml.DataText {
		for n > 0 && !utf8.RuneStart(o.data[o.off+n]) {
			n--
		}
	}
	return n
}

// placeChunk adds the next chunk of s.out that fits the message. It reports false when no
// useful chunk fits (the chunk then goes in the next message).
func (s *session) placeChunk(c *composer) (bool, error) {
	o := s.out
	rem := len(o.data) - o.off
	c.add(o.chunk(rem, false), sentCmd{chunk: true})
	if ok, err := c.fits(); err != nil {
		return false, err
	} else if ok {
		s.out = nil
		return true, nil
	}
	c.pop()
	c.add(o.chunk(0, true), sentCmd{chunk: true})
	b, err := c.encoded()
	base := len(b)
	c.pop()
	if err != nil {
		return false, err
	}
	minChunk := 4
	if !c.onlyFixed() {
		minChunk = 256 // not worth a chunk next to other commands
	}
	n := min(rem-1, s.srvMaxMsg-base)
	for {
		n = o.align(n)
		if n < minChunk {
			return false, nil
		}
		c.add(o.chunk(n, true), sentCmd{chunk: true})
		b, err := c.encoded()
		if err != nil {
			return false, err
		}
		size := len(b)
		if size <= s.srvMaxMsg {
			o.off += n
			s.awaitChunk = &sentRef{msg: s.msgID, cmd: c.m.Body.Commands[len(c.m.Body.Commands)-1].CmdID}
			return true, nil
		}
		c.pop()
		n -= max(size-s.srvMaxMsg, 1)
	}
}

// inObject is a server Add/Replace Item being received in chunks.
type inObject struct {
	kind     syncml.Kind
	target   string
	cmdMeta  *syncml.Meta
	itemMeta *syncml.Meta
	declared int64 // Meta Size of the first chunk, -1 if absent
	buf      strings.Builder
}

func (o *inObject) continues(c *syncml.Command) bool {
	return c.Kind == o.kind && len(c.Items) == 1 && locURI(c.Items[0].Target) == o.target
}

// chunkIn buffers one chunk: 213 for each chunk with MoreData; after the last, the size
// check (424 on mismatch, accepting the base64-text or the decoded length, §3.2 and §12.15)
// and the command runs on the whole value — nothing is committed before.
func (s *session) chunkIn(msgRef string, c *syncml.Command) execOut {
	if len(c.Items) != 1 {
		s.warn("chunked %s with %d Items is not supported", c.Kind, len(c.Items))
		return s.answerAll(msgRef, c, StatusNotImplemented)
	}
	it := &c.Items[0]
	if s.in == nil {
		o := &inObject{kind: c.Kind, target: locURI(it.Target), cmdMeta: c.Meta, itemMeta: it.Meta, declared: -1}
		if v, ok := it.Meta.SizeInt(); ok {
			o.declared = v
		} else if v, ok := c.Meta.SizeInt(); ok {
			o.declared = v
		} else {
			s.warn("first chunk for %s has no Meta Size", o.target)
		}
		if o.declared > int64(s.cfg.MaxObjSize) {
			return s.answerAll(msgRef, c, StatusTooLarge)
		}
		s.in = o
	}
	o := s.in
	o.buf.WriteString(itemData(it))
	if it.MoreData {
		if o.buf.Len() > 2*s.cfg.MaxObjSize { // base64 text of an object within MaxObjSize is shorter
			s.in = nil
			return s.answerAll(msgRef, c, StatusTooLarge)
		}
		return s.answerAll(msgRef, c, StatusChunkAccepted)
	}
	s.in = nil
	text := o.buf.String()
	if o.declared >= 0 {
		v, _, _, code := itemValue(o.cmdMeta, o.itemMeta, text)
		if code == 0 && o.declared != int64(len(text)) && o.declared != int64(len(v)) {
			return s.answerAll(msgRef, c, StatusSizeMismatch)
		}
	}
	whole := *c
	item := *it
	item.Data = &syncml.Data{Value: text}
	item.MoreData = false
	item.Meta = o.itemMeta
	whole.Meta = o.cmdMeta
	whole.Items = []syncml.Item{item}
	return s.execItems(msgRef, &whole)
}
