package dmsim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// maxReplyBytes bounds what the device decodes; it is far above any sane MaxMsgSize, which
// the device checks separately (a larger server message is a warning, PROTOCOL.md §2.1).
const maxReplyBytes = 16 << 20

// Alert codes (OMA-TS-DM_Protocol §2.5, PROTOCOL.md §6).
const (
	alertDisplay      = 1100
	alertMultiChoice  = 1104
	alertServerInit   = 1200
	alertClientInit   = 1201
	alertNextMessage  = 1222
	alertSessionAbort = 1223
	alertNoEndOfData  = 1225
	alertGenericAlert = 1226
	metaFormatB64     = "b64"
	cmdSyncHdr        = "SyncHdr"
)

// sentCmd remembers what a device command was, so a server Status for it can be acted on.
type sentCmd struct {
	cmd    string
	alerts []GenericAlert // Generic Alert Items carried
	chunk  bool           // a Results chunk of a large object
}

// outCmd is a queued device command; CmdIDs are assigned when a message is composed.
type outCmd struct {
	cmd    syncml.Command
	alerts []GenericAlert
}

type session struct {
	d   *Device
	cfg Config
	t   Transport
	opt SessionOptions
	rep *SessionReport
	enc syncml.Encoding

	id    string
	msgID int    // MsgID of the device's latest message
	url   string // where the next message goes: the last RespURI (PROTOCOL.md §1)

	srvMaxMsg int // server SyncHdr Meta MaxMsgSize, 0 = not announced
	srvMaxObj int // server SyncHdr Meta MaxObjSize, 0 = not announced (§3.2: stays in force)

	cred        credentials
	authType    dmauth.Type
	nonce       []byte // nonce for the device's credentials in its next message
	authDone    bool   // 212 received: no more Cred this session (§7.3)
	authOK      bool
	checkServer bool
	srvAuthed   bool
	srvNonce    []byte // nonce the server must use for its next Cred
	srvFailures int
	pendingSrv  []byte // nonce in a Chal of the message being sent; becomes srvNonce once sent

	hdrStatus  *syncml.Command // Status for the server's latest SyncHdr
	queue      []outCmd
	out        *outObject // device large object being sent (§3.2)
	in         *inObject  // server large object being received (§3.2)
	serverOpen bool       // the server's package is not complete (no Final, §3.1)
	sentFinal  bool
	awaitChunk *sentRef // non-final chunk whose 213 is due in the next reply
	pkg1       []outCmd
	sent       map[int]map[string]sentCmd
	lastSrvMsg int
	aborting   bool
	encodings  int // messages encoded, measurements included (a simulator's cost per message)
}

type sentRef struct {
	msg int
	cmd string
}

// RunSession holds one complete DM session against the server behind t (PROTOCOL.md §3): it
// sends Pkg1 (Alert 1201, or 1200 answering a Package 0, DevInfo, queued Generic Alerts),
// authenticates, executes every server command and answers it, and stops when the server's
// final package carries no commands. The report is never nil; err says why the session
// failed.
func (d *Device) RunSession(ctx context.Context, t Transport, opt SessionOptions) (*SessionReport, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	s := d.newSession(t, opt.withDefaults())
	err := s.run(ctx)
	if err != nil {
		err = fmt.Errorf("dmsim: %s session %s: %w", d.cfg.DevID, s.id, err)
	}
	s.rep.Err = err
	s.rep.AuthType = s.authType
	s.rep.Duration = time.Since(start)
	return s.rep, err
}

func (d *Device) newSession(t Transport, opt SessionOptions) *session {
	s := &session{
		d:    d,
		cfg:  d.cfg,
		t:    t,
		opt:  opt,
		enc:  d.cfg.Encoding,
		cred: d.loadCredentials(),
		sent: make(map[int]map[string]sentCmd),
	}
	if opt.Faults.WrongPassword {
		s.cred.secret += "-wrong"
	}
	s.authType = s.cred.typ
	s.nonce = s.cred.nonce
	s.srvNonce = s.cred.srvNonce
	s.checkServer = s.cred.srvName != "" && s.cred.srvSecret != ""
	s.id = opt.SessionID
	if s.id == "" {
		s.id = d.nextSessionID()
	}
	s.url = d.cfg.ServerURL
	if v, ok := d.tree.Get(URIDMAcc + "/" + d.cfg.Account + "/AppAddr/1/Addr"); ok && len(v) > 0 {
		s.url = string(v)
	}
	s.rep = &SessionReport{
		DevID:             d.cfg.DevID,
		SessionID:         s.id,
		Initiator:         opt.Initiator,
		Encoding:          s.enc,
		ServerAuthChecked: s.checkServer,
	}
	return s
}

func (s *session) warn(format string, args ...any) {
	s.rep.Warnings = append(s.rep.Warnings, fmt.Sprintf("message %d: ", s.msgID)+fmt.Sprintf(format, args...))
}

func (s *session) run(ctx context.Context) error {
	if s.url == "" {
		return errors.New("no server URL (Config.ServerURL)")
	}
	if s.enc != syncml.EncodingXML && s.enc != syncml.EncodingWBXML {
		return fmt.Errorf("unsupported encoding %v", s.enc)
	}
	if s.authType != "" && !s.authType.Supported() {
		return fmt.Errorf("unsupported client auth type %q", s.authType)
	}
	s.pkg1 = s.buildPkg1()
	s.queue = append([]outCmd(nil), s.pkg1...)
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("before message %d: %w", s.msgID+1, err)
		}
		if s.msgID >= s.opt.MaxMessages {
			return fmt.Errorf("more than %d messages without the server ending the session", s.opt.MaxMessages)
		}
		body, err := s.compose()
		if err != nil {
			return fmt.Errorf("build message %d: %w", s.msgID, err)
		}
		reply, ct, err := s.send(ctx, body)
		if err != nil {
			return err
		}
		done, err := s.receive(reply, ct)
		if err != nil {
			return fmt.Errorf("reply to message %d: %w", s.msgID, err)
		}
		if done {
			return nil
		}
	}
}

// buildPkg1 is the device's first package (OMA-TS-DM_Protocol §2.3.3, PROTOCOL.md §3): Alert
// 1200/1201, Replace with every ./DevInfo leaf named by Source LocURI, and one Generic Alert
// 1226 per pending alert (§2.3.7).
func (s *session) buildPkg1() []outCmd {
	code := alertClientInit
	if s.opt.Initiator == InitiatorServer {
		code = alertServerInit
	}
	cmds := []outCmd{{cmd: syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(code)}}}
	rep := syncml.Command{Kind: syncml.KindReplace}
	s.d.tree.Walk(URIDevInfo, func(n NodeInfo) bool {
		if n.Interior {
			return true
		}
		it := syncml.Item{Source: &syncml.Locator{LocURI: n.URI}, Data: syncml.TextData(string(n.Value))}
		if m := leafMeta(n.Format, n.Type, ""); m != nil {
			it.Meta = m
		}
		rep.Items = append(rep.Items, it)
		return true
	})
	cmds = append(cmds, outCmd{cmd: rep})
	for _, a := range s.d.PendingAlerts() {
		it := syncml.Item{
			Meta: &syncml.Meta{Type: a.Type, Format: a.Format, Mark: a.Mark},
			Data: syncml.TextData(a.Data),
		}
		if a.Source != "" {
			it.Source = &syncml.Locator{LocURI: a.Source}
		}
		cmds = append(cmds, outCmd{
			cmd:    syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(alertGenericAlert), Correlator: a.Correlator, Items: []syncml.Item{it}},
			alerts: []GenericAlert{a},
		})
	}
	return cmds
}

// header is the device's SyncHdr (PROTOCOL.md §2.1): Target is where the message goes,
// Source the DevId with the user name in LocName, Cred until the server answered 212.
func (s *session) header() syncml.Header {
	h := syncml.Header{
		VerDTD:    "1.2",
		VerProto:  "DM/1.2",
		SessionID: s.id,
		MsgID:     strconv.Itoa(s.msgID),
		Target:    syncml.Locator{LocURI: s.url},
		Source:    syncml.Locator{LocURI: s.cfg.DevID},
		Meta: &syncml.Meta{
			MaxMsgSize: strconv.Itoa(s.cfg.MaxMsgSize),
			MaxObjSize: strconv.Itoa(s.cfg.MaxObjSize),
		},
	}
	if !s.authDone {
		h.Cred = s.credential()
	}
	// LocName names the user whose credentials the message carries: with a Cred, and with
	// every MAC-signed message (the x-syncml-hmac username, §7.2).
	if h.Cred != nil || s.authType == dmauth.TypeMAC {
		h.Source.LocName = s.cred.name
	}
	return h
}

// credential builds SyncHdr Cred (OMA-TS-DM_Security §5.1.3, PROTOCOL.md §7.2). MAC is never
// sent in Cred: it travels in the x-syncml-hmac header.
func (s *session) credential() *syncml.Cred {
	meta := &syncml.Meta{Type: string(s.authType), Format: metaFormatB64}
	switch s.authType {
	case dmauth.TypeBasic:
		return &syncml.Cred{Meta: meta, Data: dmauth.BasicCred(s.cred.name, s.cred.secret)}
	case dmauth.TypeMD5:
		return &syncml.Cred{Meta: meta, Data: dmauth.MD5Cred(dmauth.Key(s.cred.name, s.cred.secret), s.nonce)}
	}
	return nil
}

func (s *session) encode(m *syncml.Message) ([]byte, error) {
	s.encodings++
	b, err := syncml.Encode(m, s.enc)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", s.enc, err)
	}
	return b, nil
}

// composer fills one message within the server's MaxMsgSize.
type composer struct {
	s     *session
	m     *syncml.Message
	refs  map[string]sentCmd
	fixed int // commands that are always present (the SyncHdr Status)
	// body is m's encoding from the last size check, nil once m has changed since: the
	// message is usually sent as it was last measured, without encoding it again.
	body []byte
}

func (c *composer) add(cmd syncml.Command, ref sentCmd) {
	cmd.CmdID = strconv.Itoa(len(c.m.Body.Commands) + 1)
	c.m.Body.Commands = append(c.m.Body.Commands, cmd)
	c.body = nil
	if ref.cmd == "" {
		ref.cmd = cmd.Kind.String()
	}
	c.refs[cmd.CmdID] = ref
}

func (c *composer) pop() {
	last := c.m.Body.Commands[len(c.m.Body.Commands)-1]
	delete(c.refs, last.CmdID)
	c.m.Body.Commands = c.m.Body.Commands[:len(c.m.Body.Commands)-1]
	c.body = nil
}

// encoded returns m's encoding, reusing the last one while m is unchanged.
func (c *composer) encoded() ([]byte, error) {
	if c.body == nil {
		b, err := c.s.encode(c.m)
		if err != nil {
			return nil, err
		}
		c.body = b
	}
	return c.body, nil
}

// fits reports whether the message is within the server's MaxMsgSize. Final is set while
// measuring, so the verdict holds whether or not the message closes the package.
func (c *composer) fits() (bool, error) {
	if c.s.srvMaxMsg <= 0 {
		return true, nil
	}
	b, err := c.encoded()
	return len(b) <= c.s.srvMaxMsg, err
}

func (c *composer) onlyFixed() bool { return len(c.m.Body.Commands) == c.fixed }

// fitsAlone reports whether cmd would fit in a message holding only the fixed commands.
func (c *composer) fitsAlone(cmd syncml.Command) (bool, error) {
	if c.s.srvMaxMsg <= 0 {
		return true, nil
	}
	m := *c.m
	m.Body.Commands = append(append([]syncml.Command(nil), c.m.Body.Commands[:c.fixed]...), cmd)
	m.Body.Commands[c.fixed].CmdID = strconv.Itoa(c.fixed + 1)
	b, err := c.s.encode(&m)
	return len(b) <= c.s.srvMaxMsg, err
}

// compose builds and encodes the next device message: Status for the server's SyncHdr, then
// queued statuses, Results and Alerts in order, as many as fit in the server's MaxMsgSize
// (§3.1); a Results item that fits in no message travels as a large object (§3.2).
func (s *session) compose() ([]byte, error) {
	s.msgID++
	c := &composer{s: s, m: &syncml.Message{Header: s.header()}, refs: make(map[string]sentCmd)}
	// Final is set while measuring, so a size verdict holds whether or not the message closes
	// the package; the last measurement is then sent as it is when the message is final.
	c.m.Body.Final = true
	if s.hdrStatus != nil {
		c.add(*s.hdrStatus, sentCmd{cmd: cmdSyncHdr})
		c.fixed = 1
	}
	if err := s.fill(c); err != nil {
		return nil, err
	}
	final := !s.serverOpen && len(s.queue) == 0 && s.out == nil
	if s.aborting {
		final = true
	}
	if s.serverOpen && !s.aborting {
		// Next Message request (OMA-TS-DM_Protocol §2.1.2): Alert 1222 unless the reply
		// already carries commands other than Status.
		onlyStatus := true
		for _, cmd := range c.m.Body.Commands {
			if cmd.Kind != syncml.KindStatus {
				onlyStatus = false
			}
		}
		if onlyStatus {
			if err := s.addNextMessage(c); err != nil {
				return nil, err
			}
		}
	}
	if !final {
		c.m.Body.Final = false
		c.body = nil
	}
	body, err := c.encoded()
	if err != nil {
		return nil, err
	}
	if s.srvMaxMsg > 0 && len(body) > s.srvMaxMsg {
		// Only a message of the fixed commands can get here: every other command was
		// measured before it stayed.
		return nil, fmt.Errorf("server MaxMsgSize %d is smaller than a message without commands (%d bytes)", s.srvMaxMsg, len(body))
	}
	s.sentFinal = final
	s.sent[s.msgID] = c.refs
	return body, nil
}

// addNextMessage adds Alert 1222 to a message of statuses, moving statuses back to the queue
// if the alert would not fit otherwise.
func (s *session) addNextMessage(c *composer) error {
	alert := syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(alertNextMessage)}
	for {
		c.add(alert, sentCmd{cmd: "Alert 1222"})
		ok, err := c.fits()
		if err != nil || ok {
			return err
		}
		c.pop()
		if c.onlyFixed() {
			return fmt.Errorf("server MaxMsgSize %d leaves no room for Alert 1222", s.srvMaxMsg)
		}
		last := c.m.Body.Commands[len(c.m.Body.Commands)-1]
		c.pop()
		last.CmdID = ""
		s.queue = append([]outCmd{{cmd: last}}, s.queue...)
	}
}

func (s *session) fill(c *composer) error {
	// The common case first: everything queued fits in one message, measured with one
	// encoding instead of one per command. Sizes only grow as commands are added, so this
	// gives the same message as the command-by-command loop below, which runs otherwise.
	if s.out == nil && len(s.queue) > 1 {
		fixed := len(c.m.Body.Commands)
		for _, oc := range s.queue {
			c.add(oc.cmd, refFor(oc))
		}
		ok, err := c.fits()
		if err != nil {
			return err
		}
		if ok {
			for _, oc := range s.queue {
				s.countSent(oc)
			}
			s.queue = nil
			return nil
		}
		for len(c.m.Body.Commands) > fixed {
			c.pop()
		}
	}
	for {
		if s.out != nil {
			// Statuses may share a message with a chunk; new commands may not (§3.2).
			for len(s.queue) > 0 && s.queue[0].cmd.Kind == syncml.KindStatus {
				c.add(s.queue[0].cmd, sentCmd{})
				if ok, err := c.fits(); err != nil {
					return err
				} else if !ok {
					c.pop()
					return nil
				}
				s.queue = s.queue[1:]
			}
			placed, err := s.placeChunk(c)
			if err != nil {
				return err
			}
			if !placed && c.onlyFixed() {
				return fmt.Errorf("server MaxMsgSize %d leaves no room for a large-object chunk", s.srvMaxMsg)
			}
			return nil
		}
		if len(s.queue) == 0 {
			return nil
		}
		oc := s.queue[0]
		c.add(oc.cmd, refFor(oc))
		ok, err := c.fits()
		if err != nil {
			return err
		}
		if ok {
			s.countSent(oc)
			s.queue = s.queue[1:]
			continue
		}
		c.pop()
		if oc.cmd.Kind == syncml.KindResults {
			k, err := s.fittingItems(c, oc.cmd)
			if err != nil {
				return err
			}
			if k > 0 {
				part := oc.cmd
				part.Items = oc.cmd.Items[:k]
				c.add(part, sentCmd{})
				s.queue[0].cmd.Items = oc.cmd.Items[k:]
				return nil // the rest goes in the next message
			}
			first := oc.cmd
			first.Items = oc.cmd.Items[:1]
			if alone, err := c.fitsAlone(first); err != nil {
				return err
			} else if !alone || c.onlyFixed() {
				// The first item fits in no message: send it in chunks (§3.2); the
				// remaining items follow once it is complete.
				s.startOutObject(oc.cmd)
				if len(oc.cmd.Items) > 1 {
					s.queue[0].cmd.Items = oc.cmd.Items[1:]
				} else {
					s.queue = s.queue[1:]
				}
				continue
			}
			return nil
		}
		if c.onlyFixed() {
			return fmt.Errorf("%s does not fit in the server MaxMsgSize %d", oc.cmd.Kind, s.srvMaxMsg)
		}
		return nil
	}
}

func refFor(oc outCmd) sentCmd {
	r := sentCmd{alerts: oc.alerts}
	if oc.cmd.Kind == syncml.KindAlert {
		r.cmd = "Alert " + oc.cmd.Data
	}
	return r
}

func (s *session) countSent(oc outCmd) { s.rep.GenericAlertsSent += len(oc.alerts) }

// fittingItems finds how many leading Items of a Results fit in the message (binary search).
func (s *session) fittingItems(c *composer, r syncml.Command) (int, error) {
	lo, hi := 0, len(r.Items)-1 // len(Items) items did not fit
	for lo < hi {
		mid := (lo + hi + 1) / 2
		part := r
		part.Items = r.Items[:mid]
		c.add(part, sentCmd{})
		ok, err := c.fits()
		c.pop()
		if err != nil {
			return 0, err
		}
		if ok {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo, nil
}

// send signs an encoded message for syncml:auth-MAC (x-syncml-hmac over the exact body, §7.2)
// and posts it, applying the retransmission faults.
func (s *session) send(ctx context.Context, body []byte) ([]byte, string, error) {
	hmac := ""
	if s.authType == dmauth.TypeMAC {
		mac := dmauth.MAC(dmauth.Key(s.cred.name, s.cred.secret), s.nonce, body)
		hmac = dmauth.FormatHMACHeader(s.cred.name, mac)
	}
	if s.opt.Observe != nil {
		s.opt.Observe(true, s.msgID, body, s.enc)
	}
	s.rep.MessagesSent++
	s.rep.LargestSent = max(s.rep.LargestSent, len(body))
	reply, ct, err := s.exchange(ctx, body, hmac)
	if err != nil {
		return nil, "", err
	}
	// The server has the message: a Chal nonce it carried is now the one to expect.
	if s.pendingSrv != nil {
		s.srvNonce = s.pendingSrv
		s.d.setServerNonce(s.pendingSrv)
		s.pendingSrv = nil
	}
	f := s.opt.Faults
	if f.DropReplyAfterMsg == s.msgID || f.RetransmitMsg == s.msgID {
		// Lost reply (DropReplyAfterMsg) or deliberate duplicate (RetransmitMsg): the same
		// bytes go again; a server must replay its cached reply, not execute twice
		// (PROTOCOL.md §12.11).
		s.rep.MessagesReceived++
		s.rep.Retransmissions++
		again, ct2, err := s.exchange(ctx, body, hmac)
		if err != nil {
			return nil, "", err
		}
		if !bytes.Equal(reply, again) {
			if f.RetransmitMsg == s.msgID {
				return nil, "", fmt.Errorf("message %d sent twice got different replies (%d and %d bytes)", s.msgID, len(reply), len(again))
			}
			s.warn("the reply to the retransmitted message differs from the lost one")
		}
		reply, ct = again, ct2
	}
	return reply, ct, nil
}

// exchange posts body, re-posting the same bytes after transport errors and HTTP 408/5xx.
func (s *session) exchange(ctx context.Context, body []byte, hmac string) ([]byte, string, error) {
	var last error
	for attempt := 0; attempt <= s.opt.MaxTransportRetries; attempt++ {
		if attempt > 0 {
			s.rep.Retransmissions++
			select {
			case <-ctx.Done():
				return nil, "", fmt.Errorf("post message %d: %w (after %v)", s.msgID, ctx.Err(), last)
			case <-time.After(time.Duration(attempt) * s.opt.RetryBackoff):
			}
		}
		s.rep.Posts++
		s.rep.BytesSent += int64(len(body))
		reply, ct, err := s.t.Post(ctx, s.url, body, s.enc.ContentType(), hmac)
		if err == nil {
			s.rep.BytesReceived += int64(len(reply))
			if s.opt.Observe != nil {
				s.opt.Observe(false, s.msgID, reply, syncml.ParseContentType(ct))
			}
			return reply, ct, nil
		}
		last = err
		if !Retryable(err) {
			break
		}
	}
	return nil, "", fmt.Errorf("post message %d to %s: %w", s.msgID, s.url, last)
}

// receive processes one server message. done reports that the session is over.
func (s *session) receive(body []byte, ct string) (done bool, err error) {
	s.rep.MessagesReceived++
	enc := syncml.ParseContentType(ct)
	if enc == syncml.EncodingUnknown {
		s.warn("reply Content-Type %q is not a SyncML DM type", ct)
		enc = syncml.Sniff(body)
	}
	if enc != s.enc {
		s.warn("reply encoded as %s, the device sent %s (PROTOCOL.md §1)", enc, s.enc)
	}
	if len(body) > s.cfg.MaxMsgSize {
		s.warn("reply of %d bytes exceeds the device MaxMsgSize %d", len(body), s.cfg.MaxMsgSize)
	}
	m, _, err := syncml.Decode(body, enc, syncml.Limits{MaxBodyBytes: maxReplyBytes})
	if err != nil {
		return true, fmt.Errorf("decode: %w", err)
	}
	if err := syncml.Validate(m); err != nil {
		var se *syncml.Error
		if !errors.As(err, &se) || se.Code != syncml.ErrBadNesting {
			return true, fmt.Errorf("validate: %w", err)
		}
		// Forbidden nesting is answered per command (500, §4) rather than dropped.
	}
	h := &m.Header
	if h.SessionID != s.id {
		return true, fmt.Errorf("server SessionID %q, want %q", h.SessionID, s.id)
	}
	msgNo, _ := strconv.Atoi(h.MsgID)
	if msgNo <= s.lastSrvMsg {
		s.warn("server MsgID %d does not increase (previous %d)", msgNo, s.lastSrvMsg)
	}
	s.lastSrvMsg = msgNo
	if h.Target.LocURI != s.cfg.DevID {
		s.warn("server SyncHdr Target %q is not the DevId %q", h.Target.LocURI, s.cfg.DevID)
	}
	if v, ok := h.Meta.MaxMsgSizeInt(); ok {
		s.srvMaxMsg = int(v)
	}
	if v, ok := h.Meta.MaxObjSizeInt(); ok {
		s.srvMaxObj = int(v)
	}
	if h.RespURI != "" {
		s.url = h.RespURI
	}

	srvOK, err := s.checkServerAuth(h)
	if err != nil {
		return true, err
	}
	retry, err := s.checkClientAuth(m)
	if err != nil {
		return true, err
	}
	s.handleStatuses(m)
	if s.aborting {
		s.rep.Aborted, s.rep.AbortedBy = true, "client"
		return true, nil
	}
	if s.opt.Faults.AbortAfterMsg > 0 && s.opt.Faults.AbortAfterMsg == s.msgID {
		// Session abort (OMA-TS-DM_Protocol §2.3.1): Alert 1223 with Final; the server's
		// commands in this message are not executed.
		s.aborting = true
		s.queue = []outCmd{{cmd: syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(alertSessionAbort)}}}
		s.out, s.in, s.serverOpen = nil, nil, false
		return false, nil
	}
	if retry {
		// Restart Pkg1 with proper credentials (§7.3): same SessionID, next MsgID, RespURI.
		s.queue = append([]outCmd(nil), s.pkg1...)
		s.out, s.in, s.serverOpen = nil, nil, false
		return false, nil
	}

	answerable := false
	s.d.tree.lock()
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		switch c.Kind {
		case syncml.KindStatus:
			continue
		case syncml.KindResults:
			s.warn("server sent Results (CmdID %s)", c.CmdID)
			continue
		}
		answerable = true
		if !srvOK {
			// Not executed: the server has not authenticated itself (§7.3).
			code, _ := strconv.Atoi(s.hdrStatus.Data)
			s.emit(s.answerAll(h.MsgID, c, code))
			continue
		}
		if c.Kind == syncml.KindAlert && c.Data == strconv.Itoa(alertSessionAbort) {
			s.d.tree.unlock()
			// The client SHOULD NOT answer a server's 1223 (§2.3.1).
			s.rep.Aborted, s.rep.AbortedBy = true, "server"
			return true, nil
		}
		s.execTop(h.MsgID, c)
	}
	s.d.tree.unlock()

	nextRequested := hasAlert(m, alertNextMessage)
	if !s.sentFinal && !s.aborting && !s.serverOpen {
		// The device's package is unfinished: this is the server's Next Message reply
		// (§3.1), whether or not it has Final.
		if !nextRequested {
			s.warn("server did not answer the device's unfinished package with Alert 1222")
		}
		s.serverOpen = false
	} else {
		s.serverOpen = !m.Body.Final
	}
	if m.Body.Final && s.in != nil {
		s.warn("server closed its package inside a chunked item")
		s.queueNoEndOfData()
	}
	challenged := s.hdrStatus != nil && s.hdrStatus.Chal != nil && s.hdrStatus.Data != strconv.Itoa(StatusAuthAccepted)
	if m.Body.Final && !answerable && len(s.queue) == 0 && s.out == nil && !challenged {
		// Nothing to answer: the session is over and the device sends nothing (§3).
		s.rep.Ended = true
		return true, nil
	}
	return false, nil
}

func hasAlert(m *syncml.Message, code int) bool {
	want := strconv.Itoa(code)
	for _, c := range m.Body.Commands {
		if c.Kind == syncml.KindAlert && c.Data == want {
			return true
		}
	}
	return false
}

func (s *session) hdrStatusFor(h *syncml.Header, code int, chal *syncml.Chal) *syncml.Command {
	return &syncml.Command{
		Kind:       syncml.KindStatus,
		MsgRef:     h.MsgID,
		CmdRef:     "0",
		Cmd:        cmdSyncHdr,
		TargetRefs: []string{h.Target.LocURI},
		SourceRefs: []string{h.Source.LocURI},
		Chal:       chal,
		Data:       strconv.Itoa(code),
	}
}

// checkServerAuth verifies the server's Cred when server credentials are configured and sets
// the Status for its SyncHdr: 212 (+Chal with the nonce for the next session), 401 or 407
// (+Chal with the nonce for the next message), or 200 when nothing is checked (§7.3).
func (s *session) checkServerAuth(h *syncml.Header) (bool, error) {
	if !s.checkServer || s.srvAuthed {
		s.hdrStatus = s.hdrStatusFor(h, StatusOK, nil)
		return true, nil
	}
	code := StatusMissingCredentials
	if h.Cred != nil {
		code = StatusInvalidCredentials
		typ := dmauth.TypeBasic // SyncML default when Cred/Meta/Type is absent
		if h.Cred.Meta != nil && h.Cred.Meta.Type != "" {
			typ, _ = dmauth.ParseType(h.Cred.Meta.Type)
		}
		key := dmauth.Key(s.cred.srvName, s.cred.srvSecret)
		ok := false
		switch typ {
		case dmauth.TypeMD5:
			ok = dmauth.VerifyMD5(h.Cred.Data, key, s.srvNonce)
		case dmauth.TypeBasic:
			ok = dmauth.VerifyBasic(h.Cred.Data, s.cred.srvName, key)
		}
		if ok && h.Source.LocName != "" && h.Source.LocName != s.cred.srvName {
			ok = false
		}
		if ok {
			code = StatusAuthAccepted
		}
	}
	n, err := dmauth.NewNonce()
	if err != nil {
		return false, fmt.Errorf("server challenge: %w", err)
	}
	s.pendingSrv = n
	chal := &syncml.Chal{Meta: &syncml.Meta{Type: string(dmauth.TypeMD5), Format: metaFormatB64, NextNonce: dmauth.EncodeNonce(n)}}
	s.hdrStatus = s.hdrStatusFor(h, code, chal)
	if code == StatusAuthAccepted {
		s.srvAuthed = true
		s.rep.ServerAuthenticated = true
		return true, nil
	}
	s.srvFailures++
	if s.srvFailures > s.opt.MaxAuthRetries {
		return false, fmt.Errorf("server authentication refused %d times (last status %d)", s.srvFailures, code)
	}
	return false, nil
}

// checkClientAuth reads the server's Status for the device's SyncHdr (§7.3). retry means
// Pkg1 must be sent again with new credentials.
func (s *session) checkClientAuth(m *syncml.Message) (retry bool, err error) {
	var st *syncml.Command
	want := strconv.Itoa(s.msgID)
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		if c.Kind == syncml.KindStatus && c.Cmd == cmdSyncHdr && c.MsgRef == want {
			st = c
			break
		}
	}
	if st == nil {
		s.warn("no Status for the device's SyncHdr")
		return false, nil
	}
	code, _ := strconv.Atoi(st.Data)
	s.rep.AuthStatus = code
	var chalType dmauth.Type
	var chalNonce []byte
	hasNonce := false
	if st.Chal != nil && st.Chal.Meta != nil {
		chalType, _ = dmauth.ParseType(st.Chal.Meta.Type)
		if st.Chal.Meta.NextNonce != "" {
			n, err := dmauth.DecodeNonce(st.Chal.Meta.NextNonce)
			if err != nil {
				return false, fmt.Errorf("server Chal: %w", err)
			}
			chalNonce, hasNonce = n, true
			s.rep.NextNonce = n
		}
	}
	// A nonce from a server that has not authenticated itself is used but not stored (§7.3).
	trusted := !s.checkServer || s.srvAuthed
	switch code {
	case StatusAuthAccepted:
		s.authDone, s.authOK, s.rep.Authenticated = true, true, true
		if hasNonce && trusted {
			s.d.setClientNonce(chalNonce) // for the next session
		}
		return false, nil
	case StatusOK:
		s.authOK = true
		if s.authType != "" {
			s.rep.Authenticated = true
		}
		if hasNonce {
			s.nonce = chalNonce // for the next message
			if trusted {
				s.d.setClientNonce(chalNonce)
			}
		}
		return false, nil
	case StatusInvalidCredentials, StatusMissingCredentials:
		if s.authOK {
			return false, fmt.Errorf("server answered %d to the SyncHdr after authenticating the device", code)
		}
		if st.Chal == nil {
			return false, fmt.Errorf("server answered %d without Chal", code)
		}
		if !chalType.Supported() {
			return false, fmt.Errorf("server challenged with unsupported type %q", st.Chal.Meta.Type)
		}
		if s.cred.name == "" {
			return false, fmt.Errorf("server challenged (%d, %s) but the device has no client credentials", code, chalType)
		}
		s.rep.AuthRetries++
		if s.rep.AuthRetries > s.opt.MaxAuthRetries {
			return false, fmt.Errorf("authentication refused (%d) after %d retries", code, s.opt.MaxAuthRetries)
		}
		s.authType = chalType
		if hasNonce {
			s.nonce = chalNonce
			if trusted {
				s.d.setClientNonce(chalNonce)
			}
		}
		return true, nil
	}
	if code >= 300 || code < 200 {
		return false, fmt.Errorf("server answered %d to the device's SyncHdr", code)
	}
	return false, nil
}

// handleStatuses records the server's statuses for device commands and acts on those that
// matter: Generic Alert acknowledgements and 213 for large-object chunks (§3.2).
func (s *session) handleStatuses(m *syncml.Message) {
	chunkAcked := false
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		if c.Kind != syncml.KindStatus || c.Cmd == cmdSyncHdr {
			continue
		}
		code, _ := strconv.Atoi(c.Data)
		msgRef, _ := strconv.Atoi(c.MsgRef)
		s.rep.StatusesReceived = append(s.rep.StatusesReceived, ReceivedStatus{MsgRef: msgRef, CmdRef: c.CmdRef, Cmd: c.Cmd, Code: code})
		ref, ok := s.sent[msgRef][c.CmdRef]
		if !ok {
			s.warn("Status %d refers to unknown device command %s/%s", code, c.MsgRef, c.CmdRef)
			continue
		}
		if len(ref.alerts) > 0 {
			switch {
			case code >= 200 && code < 300:
				s.d.dropAlerts(ref.alerts)
				s.rep.GenericAlertsAcked += len(ref.alerts)
			case code == StatusInvalidCredentials || code == StatusMissingCredentials:
				// kept for the retry with credentials
			default:
				s.warn("Generic Alert refused with %d; not retried (FUMO §10.2.2)", code)
				s.d.dropAlerts(ref.alerts)
			}
		}
		if ref.chunk && s.awaitChunk != nil && s.awaitChunk.msg == msgRef && s.awaitChunk.cmd == c.CmdRef {
			chunkAcked = true
			if code != StatusChunkAccepted {
				s.warn("chunk answered %d instead of 213; large object abandoned", code)
				s.out = nil
			}
		}
		if strings.HasPrefix(ref.cmd, "Alert 120") && code >= 300 && code != StatusInvalidCredentials && code != StatusMissingCredentials {
			s.warn("session Alert answered %d", code)
		}
	}
	if s.awaitChunk != nil && !chunkAcked {
		s.warn("no Status 213 for the large-object chunk in message %d", s.awaitChunk.msg)
	}
	s.awaitChunk = nil
}

// emit queues the statuses and results of executed commands and records them.
func (s *session) emit(o execOut) {
	for _, c := range o.cmds {
		s.queue = append(s.queue, outCmd{cmd: c})
	}
	s.rep.Commands = append(s.rep.Commands, o.recs...)
}

func (s *session) queueNoEndOfData() {
	a := syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(alertNoEndOfData)}
	if s.in.target != "" {
		a.Items = []syncml.Item{{Target: &syncml.Locator{LocURI: s.in.target}}}
	}
	s.queue = append(s.queue, outCmd{cmd: a})
	s.in = nil
}
