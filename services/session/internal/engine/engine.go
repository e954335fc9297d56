package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Config tunes the engine.
type Config struct {
	// ServerMaxMsgSize and ServerMaxObjSize are advertised in our SyncHdr Meta: the largest
	// message and object we accept.
	ServerMaxMsgSize int64
	ServerMaxObjSize int64
	// DefaultClientMaxMsgSize applies when a client does not say (RepPro leaves it open).
	DefaultClientMaxMsgSize int64
	// IdleTimeout ends a session nobody continued: the device's next message that commits
	// anything ends it with session_ended (TIMED_OUT), and its unanswered commands go back
	// to the queue (default 5 min).
	IdleTimeout time.Duration
	// MaxAttempts fails a command that was sent this many times without an answer.
	MaxAttempts int
	// MaxCommandsPerMessage bounds how much of the queue one message drains.
	MaxCommandsPerMessage int
	// DevDetailEvery makes the engine queue Gets of the DevDetail leaves when a device opens
	// a session and the last collection is older than this, so inventory stays fresh
	// without product teams asking (0 disables it).
	DevDetailEvery time.Duration
	// NewCommandID names commands the engine queues itself (the DevDetail policy).
	NewCommandID func(deviceID string) string
}

// DefaultConfig is what the session service starts with.
var DefaultConfig = Config{
	ServerMaxMsgSize:        1 << 20,
	ServerMaxObjSize:        4 << 20,
	DefaultClientMaxMsgSize: 64 << 10,
	IdleTimeout:             5 * time.Minute,
	MaxAttempts:             3,
	MaxCommandsPerMessage:   64,
}

// Engine processes client messages. It is safe for concurrent use: it holds no state.
type Engine struct {
	cfg Config
	// nonce makes fresh nonces; tests replace it.
	nonce func() []byte
}

// New returns an engine; zero Config fields take DefaultConfig values.
func New(cfg Config) *Engine {
	d := DefaultConfig
	if cfg.ServerMaxMsgSize > 0 {
		d.ServerMaxMsgSize = cfg.ServerMaxMsgSize
	}
	if cfg.ServerMaxObjSize > 0 {
		d.ServerMaxObjSize = cfg.ServerMaxObjSize
	}
	if cfg.DefaultClientMaxMsgSize > 0 {
		d.DefaultClientMaxMsgSize = cfg.DefaultClientMaxMsgSize
	}
	if cfg.IdleTimeout > 0 {
		d.IdleTimeout = cfg.IdleTimeout
	}
	if cfg.MaxAttempts > 0 {
		d.MaxAttempts = cfg.MaxAttempts
	}
	if cfg.MaxCommandsPerMessage > 0 {
		d.MaxCommandsPerMessage = cfg.MaxCommandsPerMessage
	}
	d.DevDetailEvery = cfg.DevDetailEvery
	d.NewCommandID = cfg.NewCommandID
	return &Engine{cfg: d, nonce: func() []byte {
		n, err := dmauth.NewNonce()
		if err != nil {
			panic("crypto/rand failed: " + err.Error()) // the OS RNG does not fail on Linux
		}
		return n
	}}
}

// Input is one client message with the facts the gateway observed.
type Input struct {
	Msg        *syncml.Message
	Encoding   syncml.Encoding
	BodyHash   string // B64(MD5(body)): retransmission detection and HMAC
	HMACHeader string // raw x-syncml-hmac header, if any
	Now        time.Time
}

// State is what the store loaded for the device.
type State struct {
	Account *Account   // nil: unknown device
	Session *Session   // nil: no session with this id
	Queue   []*Command // the device's queued and in-flight commands, in queue order
	// Stored is opaque to the engine: the store's records of Queue as it read them
	// (parallel to Queue), which its commit compares to refuse a stale change.
	Stored []string
	// Open is the device's open-session index: its sessions that have not ended, this one
	// included once it has committed a message.
	Open []OpenSession
}

// Output is the reply and the changes to commit atomically.
type Output struct {
	Reply      *syncml.Message
	HTTPStatus int
	// Commit is false when nothing must be written (retransmission, refused message).
	Commit bool
	// Session is the new session record (its Version is the one loaded; the store bumps it).
	Session *Session
	// NewClientNonce / NewServerNonce replace the account's nonces when not nil.
	NewClientNonce []byte
	NewServerNonce []byte
	// Commands are command records that changed; Dequeue lists ids leaving the queue.
	Commands []*Command
	Dequeue  []string
	// Enqueue lists commands the engine created itself (also in Commands): the store adds
	// them to the queue. DevDetailAt, when not zero, is the new policy timestamp.
	Enqueue     []string
	DevDetailAt time.Time
	// LOAppend are the bytes of an incoming large object received in this message (to
	// append to the stored buffer); LOReset drops the stored buffer (object complete or
	// abandoned). LOReset wins.
	LOAppend []byte
	LOReset  bool
	// TimedOut are entries of State.Open whose session went idle past the timeout: their
	// session_ended (TIMED_OUT) events are in Events, and the store removes them from the
	// index, only if they are still as loaded (otherwise the commit conflicts). The store
	// also keeps Session's own entry: updated while it goes on, removed when it ends.
	TimedOut []OpenSession
	Events   []Event
	// AuthFailure is set when the message failed authentication (for rate limiting).
	AuthFailure bool
	// Outcome summarises the message for logs and metrics.
	Outcome string
}

// reply helps build the server's message.
type reply struct {
	msg   *syncml.Message
	cmdID int
}

func (r *reply) nextID() string {
	r.cmdID++
	return strconv.Itoa(r.cmdID)
}

func (r *reply) add(c syncml.Command) {
	c.CmdID = r.nextID()
	r.msg.Body.Commands = append(r.msg.Body.Commands, c)
}

func (r *reply) status(in *syncml.Message, c *syncml.Command, code int) *syncml.Command {
	st := syncml.Command{
		Kind:   syncml.KindStatus,
		MsgRef: in.Header.MsgID,
		CmdRef: c.CmdID,
		Cmd:    c.Kind.String(),
		Data:   strconv.Itoa(code),
	}
	r.add(st)
	return &r.msg.Body.Commands[len(r.msg.Body.Commands)-1]
}

func newReply(in *syncml.Message, msgID int) *reply {
	h := in.Header
	m := &syncml.Message{Header: syncml.Header{
		VerDTD:    h.VerDTD,
		VerProto:  h.VerProto,
		SessionID: h.SessionID,
		MsgID:     strconv.Itoa(msgID),
		Target:    syncml.Locator{LocURI: h.Source.LocURI},
		Source:    syncml.Locator{LocURI: h.Target.LocURI},
	}}
	return &reply{msg: m}
}

// hdrStatus adds the Status for the client's SyncHdr (RepPro §4.1.5; PROTOCOL.md §3).
func (r *reply) hdrStatus(in *syncml.Message, code int, chal *syncml.Chal) {
	r.add(syncml.Command{
		Kind:       syncml.KindStatus,
		MsgRef:     in.Header.MsgID,
		CmdRef:     "0",
		Cmd:        "SyncHdr",
		TargetRefs: []string{in.Header.Target.LocURI},
		SourceRefs: []string{in.Header.Source.LocURI},
		Chal:       chal,
		Data:       strconv.Itoa(code),
	})
}

// refuse answers a message the engine will not process: Status for the header with code,
// Status code for each command, optionally Alert 1223, Final. Nothing is committed.
func (e *Engine) refuse(in *syncml.Message, code int, abort bool, outcome string) Output {
	msgID, err := strconv.Atoi(in.Header.MsgID)
	if err != nil || msgID < 1 {
		msgID = 1
	}
	r := newReply(in, msgID)
	r.hdrStatus(in, code, nil)
	if abort {
		r.add(syncml.Command{Kind: syncml.KindAlert, Data: "1223"})
	}
	r.msg.Body.Final = true
	return Output{Reply: r.msg, HTTPStatus: 200, Outcome: outcome}
}

func hasAlert(m *syncml.Message, codes ...string) string {
	for i := range m.Body.Commands {
		c := &m.Body.Commands[i]
		if c.Kind != syncml.KindAlert {
			continue
		}
		for _, code := range codes {
			if c.Data == code {
				return code
			}
		}
	}
	return ""
}

// Check validates a client message (syncml.Validate) and, when it is invalid, returns the
// refusal to send: it needs no stored state, so callers check before loading any.
func (e *Engine) Check(in Input) (refusal Output, ok bool) {
	err := syncml.Validate(in.Msg)
	if err == nil {
		return Output{}, true
	}
	code := 400
	if se, isSyncML := err.(*syncml.Error); isSyncML {
		code = se.Status()
	}
	return e.refuse(in.Msg, code, false, "invalid"), false
}

// Process handles one client message: Check, then ProcessChecked.
func (e *Engine) Process(st State, in Input) Output {
	if refusal, ok := e.Check(in); !ok {
		return refusal
	}
	return e.ProcessChecked(st, in)
}

// ProcessChecked handles a client message that passed Check (a worker retrying a commit
// conflict re-runs only this part).
func (e *Engine) ProcessChecked(st State, in Input) Output {
	m := in.Msg
	msgID, _ := strconv.Atoi(m.Header.MsgID)
	sess := st.Session

	// A session of an earlier account with this device id (deleted and created again) is
	// unknown to this one: it is never continued without authenticating again.
	if sess != nil && st.Account != nil && sess.AccountGen != st.Account.Gen {
		sess = nil
	}
	// An idle session is over: its state is dropped, in-flight commands requeue (below,
	// when the queue is read) and, with the first commit, it ends TIMED_OUT (timedOut).
	if sess != nil && !sess.Ended && in.Now.Sub(sess.LastActive) > e.cfg.IdleTimeout {
		sess = nil
	}
	if sess != nil {
		// Retransmission: same SessionID and MsgID with the same body gets the same reply
		// and nothing runs twice (PROTOCOL.md §12.11).
		if msgID == sess.ClientMsgID {
			if in.BodyHash != "" && in.BodyHash == sess.LastReqHash && sess.LastReply != nil {
				return Output{Reply: sess.LastReply, HTTPStatus: 200, Outcome: "retransmission"}
			}
			return e.refuse(m, 400, false, "duplicate msgid")
		}
		if sess.Ended {
			return e.refuse(m, 400, true, "session ended")
		}
		if msgID != sess.ClientMsgID+1 {
			return e.refuse(m, 400, false, "msgid out of order")
		}
	}
	alert := hasAlert(m, "1200", "1201")
	if sess == nil && alert == "" {
		// Unknown (or expired) session without a session-opening alert (PROTOCOL.md §12.14).
		return e.refuse(m, 404, true, "unknown session")
	}

	acct := st.Account
	if acct == nil {
		return e.challengeUnknown(m, in)
	}

	out := Output{HTTPStatus: 200, Commit: true}
	out.TimedOut, out.Events = e.timedOut(st.Open, m.Header.SessionID, sess != nil, in.Now)
	newSession := sess == nil
	if newSession {
		ini, _ := strconv.Atoi(alert)
		// Replies mirror the client's MsgID numbering from the session's first message: a
		// challenged Pkg1 leaves no state, and the retry carries the next client MsgID, so
		// our MsgIDs keep increasing across the challenge (RepPro §4.1.1.4 wants them to).
		sess = &Session{
			DeviceID:    acct.DeviceID,
			SessionID:   m.Header.SessionID,
			Initiator:   ini,
			Encoding:    in.Encoding.String(),
			AuthType:    acct.ClientAuth,
			Started:     in.Now,
			ServerMsgID: msgID - 1,
			AccountGen:  acct.Gen,
		}
	} else {
		cp := *sess
		cp.Sent = cloneSent(sess.Sent)
		sess = &cp
	}
	acctCopy := *acct
	p := &proc{e: e, in: in, m: m, acct: &acctCopy, sess: sess, out: &out, queue: st.Queue, fresh: newSession,
		touched: map[string]*Command{}, settled: map[string]SentRef{}}
	p.r = newReply(m, sess.ServerMsgID+1)

	if !p.authenticate() {
		// Refused credentials: only the challenge is answered; no session is created and
		// only the account's nonce changes (OMA-TS-DM_Security §5.1.3.3).
		out.Session = nil
		out.Commit = out.NewClientNonce != nil || len(out.TimedOut) > 0
		out.AuthFailure = true
		out.Outcome = "auth failed"
		out.Reply = p.r.msg
		return out
	}
	if newSession {
		out.Events = append(out.Events, Event{Kind: EventSessionStarted, Session: sess.SessionID, Initiator: sess.Initiator, Encoding: sess.Encoding, AuthType: string(sess.AuthType)})
	}
	if mm := m.Header.Meta; mm != nil {
		if v, ok := mm.MaxMsgSizeInt(); ok && v > 0 {
			sess.ClientMaxMsgSize = v
		}
		if v, ok := mm.MaxObjSizeInt(); ok && v > 0 {
			sess.ClientMaxObjSize = v
		}
	}
	p.requeueStale()
	if newSession {
		p.devDetailPolicy()
	}
	p.clientCommands()
	if sess.Ended {
		p.finish(msgID)
		return out
	}
	if !m.Body.Final && hasAlert(m, "1222") == "" {
		// The client's package continues: ask for the next message (RepPro §2.1.2, Alert
		// 1222), no new commands, no Final. (A client message carrying Alert 1222 instead
		// asks for OUR next message, e.g. after Status 213 for a chunk: we go on below.)
		p.r.add(syncml.Command{Kind: syncml.KindAlert, Data: "1222",
			Items: []syncml.Item{{Target: &syncml.Locator{LocURI: m.Header.Source.LocURI}, Source: &syncml.Locator{LocURI: m.Header.Target.LocURI}}}})
		p.finish(msgID)
		return out
	}
	p.serverPackage()
	p.finish(msgID)
	return out
}

// timedOut returns the entries of the device's open-session index whose session went idle
// past the timeout, and their session_ended (TIMED_OUT) events, dated when the timeout
// passed. sid is the message's session: its entry is left alone while that session goes
// on (alive), whatever the entry's time says.
func (e *Engine) timedOut(open []OpenSession, sid string, alive bool, now time.Time) ([]OpenSession, []Event) {
	var ended []OpenSession
	var evs []Event
	for _, o := range open {
		if (o.ID == sid && alive) || now.Sub(o.LastActive) <= e.cfg.IdleTimeout {
			continue
		}
		ended = append(ended, o)
		evs = append(evs, Event{Kind: EventSessionEnded, Session: o.ID, At: o.LastActive.Add(e.cfg.IdleTimeout),
			Outcome: OutcomeTimedOut, Messages: o.Messages, Completed: o.Completed})
	}
	return ended, evs
}

func cloneSent(m map[string]SentRef) map[string]SentRef {
	if m == nil {
		return nil
	}
	c := make(map[string]SentRef, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

// challengeUnknown answers a device with no account. It learns nothing and stores nothing:
// the challenge carries a throw-away nonce.
func (e *Engine) challengeUnknown(m *syncml.Message, in Input) Output {
	code := 407
	if m.Header.Cred != nil || in.HMACHeader != "" {
		code = 401
	}
	msgID, _ := strconv.Atoi(m.Header.MsgID)
	r := newReply(m, msgID)
	r.hdrStatus(m, code, &syncml.Chal{Meta: &syncml.Meta{Type: string(dmauth.TypeMD5), Format: "b64", NextNonce: dmauth.EncodeNonce(e.nonce())}})
	for i := range m.Body.Commands {
		if m.Body.Commands[i].Kind != syncml.KindStatus && m.Body.Commands[i].Kind != syncml.KindResults {
			r.status(m, &m.Body.Commands[i], code)
		}
	}
	r.msg.Body.Final = true
	return Output{Reply: r.msg, HTTPStatus: 200, AuthFailure: true, Outcome: "unknown device"}
}

// proc carries the work on one message.
type proc struct {
	e       *Engine
	in      Input
	m       *syncml.Message
	acct    *Account
	sess    *Session
	out     *Output
	r       *reply
	queue   []*Command
	fresh   bool                // the session begins with this message
	touched map[string]*Command // command records changed by this message
	// settled holds the sent commands whose Status arrived in this message, so Results that
	// follow the Status in the same message still find their Get.
	settled       map[string]SentRef
	completeLater []*Command
}

func (p *proc) touch(c *Command) {
	c.Updated = p.in.Now
	if _, ok := p.touched[c.ID]; !ok {
		p.touched[c.ID] = c
		p.out.Commands = append(p.out.Commands, c)
	}
}

func (p *proc) command(id string) *Command {
	if c, ok := p.touched[id]; ok {
		return c
	}
	for _, c := range p.queue {
		if c.ID == id {
			cp := *c
			return &cp
		}
	}
	return nil
}

// setState moves a command and records the event.
func (p *proc) setState(c *Command, s CmdState, status int, errText string) {
	c.State = s
	if status != 0 {
		c.Status = status
	}
	if errText != "" {
		c.Error = errText
	}
	p.touch(c)
	if s.Terminal() {
		p.out.Dequeue = append(p.out.Dequeue, c.ID)
		if s == StateCompleted {
			p.sess.Completed++
		}
	}
}

// finish records the reply in the session for retransmission and closes the output.
func (p *proc) finish(msgID int) {
	s := p.sess
	s.ClientMsgID = msgID
	s.ServerMsgID++
	s.Messages++
	s.LastActive = p.in.Now
	s.LastReqHash = p.in.BodyHash
	s.LastReply = p.r.msg
	// Events for every command that changed state in this message.
	for _, c := range p.out.Commands {
		p.out.Events = append(p.out.Events, Event{Kind: EventCommandStateChanged, Session: s.SessionID, Command: c})
	}
	if s.Ended {
		p.out.Events = append(p.out.Events, Event{Kind: EventSessionEnded, Session: s.SessionID, Outcome: s.Outcome, Messages: s.Messages, Completed: s.Completed})
	}
	p.out.Session = s
	p.out.Reply = p.r.msg
	if p.out.Outcome == "" {
		p.out.Outcome = "ok"
	}
}

func (p *proc) requeueStale() {
	now := p.in.Now
	for _, c := range p.queue {
		switch {
		case c.State == StateQueued && !c.Expire.IsZero() && now.After(c.Expire):
			cp := *c
			p.setState(&cp, StateExpired, 0, "expired before it could be sent")
		// Sent in another session, or in an earlier one with this session id (a new session
		// has sent nothing yet).
		case c.State == StateSent && (c.SentSession != p.sess.SessionID || p.fresh) && now.After(c.LeaseUntil):
			cp := *c
			p.requeue(&cp, "no answer before the session ended")
		}
	}
}

// requeue puts an unanswered command back in the queue, or fails it after MaxAttempts.
func (p *proc) requeue(c *Command, why string) {
	if c.Attempts >= p.e.cfg.MaxAttempts {
		p.setState(c, StateFailed, 0, why+"; gave up after "+strconv.Itoa(c.Attempts)+" attempts")
		return
	}
	c.SentSession, c.SentMsgID, c.SentCmdID = "", 0, ""
	c.LeaseUntil = time.Time{}
	p.setState(c, StateQueued, 0, "")
}

func isDevInfo(uri string) bool {
	return strings.HasPrefix(uri, "./DevInfo/") || strings.HasPrefix(uri, "DevInfo/")
}

// devDetailLeaves are the DevDetail nodes the collection policy reads (OMA-TS-DM_StdObj
// §7.1.3.3).
var devDetailLeaves = []string{"DevTyp", "OEM", "FwV", "SwV", "HwV", "LrgObj"}

// devDetailPolicy queues Gets of the DevDetail leaves when the last collection is older
// than DevDetailEvery. They go out in this session like any queued command and their
// Results reach the inventory through the command events.
func (p *proc) devDetailPolicy() {
	cfg := p.e.cfg
	if cfg.DevDetailEvery <= 0 || cfg.NewCommandID == nil || p.in.Now.Sub(p.acct.DevDetailAt) < cfg.DevDetailEvery {
		return
	}
	for _, leaf := range devDetailLeaves {
		c := &Command{ID: cfg.NewCommandID(p.acct.DeviceID), DeviceID: p.acct.DeviceID, State: StateQueued,
			Op: Operation{Type: OpGet, TargetURI: "./DevDetail/" + leaf}, RequestID: "devdetail-policy", Created: p.in.Now}
		p.touch(c)
		p.queue = append(p.queue, c)
		p.out.Enqueue = append(p.out.Enqueue, c.ID)
	}
	p.out.DevDetailAt = p.in.Now
}
