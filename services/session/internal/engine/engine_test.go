package engine

import (
	"encoding/base64"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// memStore applies Outputs the way the Redis store does, so engine tests can run whole
// sessions without Redis. It is a test double for the engine's own tests only; the store
// package tests the real thing against Redis.
type memStore struct {
	acct     *Account
	sessions map[string]*Session
	cmds     map[string]*Command
	queue    []string
	events   []Event
	lo       map[string][]byte // incoming large-object chunks by session, as the store keeps them
	loReads  int               // loads that handed the chunks back
	open     map[string]OpenSession
}

func newMem(a *Account) *memStore {
	return &memStore{acct: a, sessions: map[string]*Session{}, cmds: map[string]*Command{}, lo: map[string][]byte{}, open: map[string]OpenSession{}}
}

func (s *memStore) enqueue(cs ...*Command) {
	for _, c := range cs {
		c.State = StateQueued
		s.cmds[c.ID] = c
		s.queue = append(s.queue, c.ID)
	}
}

// state is what Load returns; the large-object chunks come back only with needLO, as the
// store hands them back only for a message that may complete the object.
func (s *memStore) state(sessionID string, needLO bool) State {
	st := State{Session: s.sessions[sessionID]}
	if sess := st.Session; sess != nil && sess.InLO != nil {
		cp, lo := *sess, *sess.InLO
		lo.Buf = nil
		if needLO {
			lo.Buf = append([]byte(nil), s.lo[sessionID]...)
			s.loReads++
		}
		cp.InLO = &lo
		st.Session = &cp
	}
	if s.acct != nil {
		a := *s.acct
		st.Account = &a
	}
	for _, id := range s.queue {
		c := *s.cmds[id]
		st.Queue = append(st.Queue, &c)
	}
	for _, o := range s.open {
		st.Open = append(st.Open, o)
	}
	return st
}

func (s *memStore) apply(o Output) {
	if !o.Commit {
		return
	}
	if o.NewClientNonce != nil {
		s.acct.ClientNonce = o.NewClientNonce
	}
	if o.NewServerNonce != nil {
		s.acct.ServerNonce = o.NewServerNonce
	}
	for _, t := range o.TimedOut {
		if s.open[t.ID] != t {
			panic("timed-out session " + t.ID + " not as loaded") // the store's commit would conflict
		}
		delete(s.open, t.ID)
	}
	if o.Session != nil {
		if o.Session.Ended {
			delete(s.open, o.Session.SessionID)
		} else {
			s.open[o.Session.SessionID] = OpenSession{ID: o.Session.SessionID, LastActive: o.Session.LastActive,
				Messages: o.Session.Messages, Completed: o.Session.Completed}
		}
		s.sessions[o.Session.SessionID] = o.Session
		if o.LOReset {
			delete(s.lo, o.Session.SessionID)
		} else if len(o.LOAppend) > 0 {
			s.lo[o.Session.SessionID] = append(s.lo[o.Session.SessionID], o.LOAppend...)
		}
	}
	for _, c := range o.Commands {
		s.cmds[c.ID] = c
	}
	for _, id := range o.Dequeue {
		for i, q := range s.queue {
			if q == id {
				s.queue = append(s.queue[:i], s.queue[i+1:]...)
				break
			}
		}
	}
	s.events = append(s.events, o.Events...)
}

type client struct {
	t       *testing.T
	e       *Engine
	st      *memStore
	sess    string
	msgID   int
	name    string
	secret  string
	nonce   []byte
	now     time.Time
	enc     syncml.Encoding
	maxMsg  string
	replies []*syncml.Message
}

func (c *client) header() syncml.Header {
	c.msgID++
	h := syncml.Header{VerDTD: "1.2", VerProto: "DM/1.2", SessionID: c.sess, MsgID: strconv.Itoa(c.msgID),
		Target: syncml.Locator{LocURI: "https://dm.example.com/dm"},
		Source: syncml.Locator{LocURI: "IMEI:1", LocName: c.name}}
	if c.maxMsg != "" {
		h.Meta = &syncml.Meta{MaxMsgSize: c.maxMsg}
	}
	return h
}

func (c *client) send(m *syncml.Message) *syncml.Message {
	c.t.Helper()
	// Round-trip through the wire encoding, as the gateway would.
	b, err := syncml.Encode(m, c.enc)
	if err != nil {
		c.t.Fatal(err)
	}
	dm, _, err := syncml.Decode(b, c.enc, syncml.Limits{})
	if err != nil {
		c.t.Fatal(err)
	}
	out := c.e.Process(c.st.state(c.sess, NeedsLOBuffer(dm)), Input{Msg: dm, Encoding: c.enc, BodyHash: dmauth.BodyHash(b), Now: c.now})
	c.st.apply(out)
	if out.Reply == nil {
		c.t.Fatal("no reply")
	}
	if max, err := strconv.Atoi(c.maxMsg); err == nil {
		rb, _ := syncml.Encode(out.Reply, c.enc)
		if len(rb) > max {
			c.t.Fatalf("reply of %d bytes exceeds MaxMsgSize %d", len(rb), max)
		}
	}
	c.replies = append(c.replies, out.Reply)
	return out.Reply
}

func (c *client) pkg1(withCred bool) *syncml.Message {
	m := &syncml.Message{Header: c.header()}
	if withCred {
		m.Header.Cred = &syncml.Cred{Meta: &syncml.Meta{Type: "syncml:auth-md5", Format: "b64"},
			Data: dmauth.MD5Cred(dmauth.Key(c.name, c.secret), c.nonce)}
	}
	m.Body.Commands = []syncml.Command{
		{Kind: syncml.KindAlert, CmdID: "1", Data: "1201"},
		{Kind: syncml.KindReplace, CmdID: "2", Items: []syncml.Item{
			{Source: &syncml.Locator{LocURI: "./DevInfo/Mod"}, Data: syncml.TextData("EX-100")},
		}},
	}
	m.Body.Final = true
	return m
}

func hdrCode(t *testing.T, m *syncml.Message) string {
	t.Helper()
	c := m.Body.Commands[0]
	if c.Kind != syncml.KindStatus || c.Cmd != "SyncHdr" {
		t.Fatalf("first command is %v %s, want Status SyncHdr", c.Kind, c.Cmd)
	}
	return c.Data
}

func newClient(t *testing.T, cfg Config) *client {
	acct := &Account{DeviceID: "IMEI:1", ClientAuth: AuthMD5, ClientName: "dmclient01",
		ClientKey: dmauth.Key("dmclient01", "s3cret"), ClientNonce: []byte("n0nce")}
	return &client{t: t, e: New(cfg), st: newMem(acct), sess: "1A2B", name: "dmclient01", secret: "s3cret",
		nonce: []byte("stale"), now: time.Unix(1_800_000_000, 0), enc: syncml.EncodingXML}
}

func (c *client) challengeAndAuth() *syncml.Message {
	c.t.Helper()
	r := c.send(c.pkg1(true)) // stale nonce → 401 + Chal
	if got := hdrCode(c.t, r); got != "401" {
		c.t.Fatalf("stale nonce answered %s, want 401", got)
	}
	chal := r.Body.Commands[0].Chal
	n, err := dmauth.DecodeNonce(chal.Meta.NextNonce)
	if err != nil {
		c.t.Fatal(err)
	}
	c.nonce = n
	r = c.send(c.pkg1(true))
	if got := hdrCode(c.t, r); got != "212" {
		c.t.Fatalf("good credentials answered %s, want 212", got)
	}
	return r
}

func TestMD5ChallengeThenCommandsThenEnd(t *testing.T) {
	for _, enc := range []syncml.Encoding{syncml.EncodingXML, syncml.EncodingWBXML} {
		t.Run(enc.String(), func(t *testing.T) {
			c := newClient(t, Config{})
			c.enc = enc
			c.st.enqueue(
				&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./DevDetail/FwV"}},
				&Command{ID: "c2", Op: Operation{Type: OpReplace, TargetURI: "./X", Data: []byte("v"), HasData: true}},
			)
			r := c.challengeAndAuth()
			if len(c.st.sessions) != 1 {
				t.Fatalf("sessions = %d", len(c.st.sessions))
			}
			var get, rep *syncml.Command
			for i := range r.Body.Commands {
				switch r.Body.Commands[i].Kind {
				case syncml.KindGet:
					get = &r.Body.Commands[i]
				case syncml.KindReplace:
					rep = &r.Body.Commands[i]
				}
			}
			if get == nil || rep == nil || !r.Body.Final {
				t.Fatalf("pkg2 lacks Get/Replace/Final: %+v", r.Body)
			}
			// Package 3: statuses and results.
			m := &syncml.Message{Header: c.header()}
			m.Body.Commands = []syncml.Command{
				{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
				{Kind: syncml.KindStatus, CmdID: "2", MsgRef: r.Header.MsgID, CmdRef: get.CmdID, Cmd: "Get", Data: "200"},
				{Kind: syncml.KindResults, CmdID: "3", MsgRef: r.Header.MsgID, CmdRef: get.CmdID, Items: []syncml.Item{
					{Source: &syncml.Locator{LocURI: "./DevDetail/FwV"}, Data: syncml.TextData("1.0.7")}}},
				{Kind: syncml.KindStatus, CmdID: "4", MsgRef: r.Header.MsgID, CmdRef: rep.CmdID, Cmd: "Replace", Data: "404"},
			}
			m.Body.Final = true
			r = c.send(m)
			if len(r.Body.Commands) != 1 || !r.Body.Final {
				t.Fatalf("pkg4 should end the session with Status only: %+v", r.Body.Commands)
			}
			if c1 := c.st.cmds["c1"]; c1.State != StateCompleted || string(c1.Results[0].Data) != "1.0.7" || c1.Status != 200 {
				t.Fatalf("c1 = %+v", c1)
			}
			if c2 := c.st.cmds["c2"]; c2.State != StateFailed || c2.Status != 404 {
				t.Fatalf("c2 = %+v", c2)
			}
			if len(c.st.queue) != 0 {
				t.Fatalf("queue not drained: %v", c.st.queue)
			}
			if s := c.st.sessions["1A2B"]; !s.Ended || s.Outcome != "completed" {
				t.Fatalf("session = %+v", s)
			}
			kinds := map[EventKind]int{}
			for _, e := range c.st.events {
				kinds[e.Kind]++
			}
			if kinds[EventSessionStarted] != 1 || kinds[EventSessionEnded] != 1 || kinds[EventDeviceInfo] != 1 || kinds[EventCommandStateChanged] < 4 {
				t.Fatalf("events = %v", kinds)
			}
			// The nonce rotated: the 212 Chal carries the nonce for the next session.
			if string(c.st.acct.ClientNonce) == string(c.nonce) {
				t.Fatal("client nonce not rotated after authentication")
			}
		})
	}
}

func TestUnknownDeviceCreatesNoState(t *testing.T) {
	c := newClient(t, Config{})
	c.st.acct = nil
	r := c.send(c.pkg1(true))
	if got := hdrCode(t, r); got != "401" {
		t.Fatalf("unknown device answered %s", got)
	}
	if len(c.st.sessions) != 0 || len(c.st.events) != 0 {
		t.Fatal("state created for an unknown device")
	}
}

func TestRetransmissionGetsSameReply(t *testing.T) {
	c := newClient(t, Config{})
	c.st.enqueue(&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./A"}})
	c.nonce = c.st.acct.ClientNonce
	m := c.pkg1(true)
	r1 := c.send(m)
	events := len(c.st.events)
	r2 := c.send(m) // same SessionID, MsgID and body
	b1, _ := syncml.Encode(r1, syncml.EncodingXML)
	b2, _ := syncml.Encode(r2, syncml.EncodingXML)
	if string(b1) != string(b2) {
		t.Fatalf("retransmission got a different reply:\n%s\n%s", b1, b2)
	}
	if len(c.st.events) != events || c.st.cmds["c1"].Attempts != 1 {
		t.Fatal("retransmission ran the message twice")
	}
}

func TestMultiMessageRepliesFitMaxMsgSize(t *testing.T) {
	c := newClient(t, Config{})
	c.maxMsg = "1500"
	for i := 0; i < 40; i++ {
		c.st.enqueue(&Command{ID: "c" + strconv.Itoa(i), Op: Operation{Type: OpGet, TargetURI: "./Vendor/Node/" + strings.Repeat("x", 20) + strconv.Itoa(i)}})
	}
	c.nonce = c.st.acct.ClientNonce
	r := c.send(c.pkg1(true))
	for round := 0; round < 50 && !c.st.sessions["1A2B"].Ended; round++ {
		m := &syncml.Message{Header: c.header()}
		m.Body.Commands = append(m.Body.Commands, syncml.Command{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"})
		for _, sc := range r.Body.Commands {
			if sc.Kind == syncml.KindGet {
				m.Body.Commands = append(m.Body.Commands, syncml.Command{Kind: syncml.KindStatus, CmdID: strconv.Itoa(len(m.Body.Commands) + 1), MsgRef: r.Header.MsgID, CmdRef: sc.CmdID, Cmd: "Get", Data: "200"})
			}
		}
		m.Body.Final = true
		r = c.send(m)
	}
	for id, cmd := range c.st.cmds {
		if cmd.State != StateCompleted || cmd.Attempts != 1 {
			t.Fatalf("%s = %s after %d attempts", id, cmd.State, cmd.Attempts)
		}
	}
	if len(c.replies) < 4 {
		t.Fatalf("40 commands fit in %d replies under MaxMsgSize 1500", len(c.replies))
	}
}

func TestIdleTimeoutRequeues(t *testing.T) {
	c := newClient(t, Config{IdleTimeout: time.Minute, MaxAttempts: 2})
	c.st.enqueue(&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./A"}})
	c.nonce = c.st.acct.ClientNonce
	c.send(c.pkg1(true))
	if c.st.cmds["c1"].State != StateSent {
		t.Fatal("not sent")
	}
	// The device vanishes; a new session after the idle timeout gets the command again.
	for attempt := 2; attempt <= 3; attempt++ {
		c.now = c.now.Add(2 * time.Minute)
		c.sess = "1A2" + strconv.Itoa(attempt)
		c.msgID = 0
		c.nonce = c.st.acct.ClientNonce
		c.send(c.pkg1(true))
	}
	if got := c.st.cmds["c1"]; got.State != StateFailed || got.Attempts != 2 {
		t.Fatalf("after two unanswered attempts c1 = %s attempts %d", got.State, got.Attempts)
	}
}

// sessionEnds returns the session_ended events recorded from mark on.
func sessionEnds(st *memStore, mark int) []Event {
	var out []Event
	for _, e := range st.events[mark:] {
		if e.Kind == EventSessionEnded {
			out = append(out, e)
		}
	}
	return out
}

// TestIdleTimeoutEndsSession: a session the device stopped continuing ends TIMED_OUT, with
// the messages and completed commands it had, dated when its idle timeout passed, in the
// commit of the device's next message (a new session), before that session's start, and
// only once; its unanswered command goes back to the queue in the same commit. A session
// still inside its idle timeout is left open, however many others the device starts.
func TestIdleTimeoutEndsSession(t *testing.T) {
	c := newClient(t, Config{IdleTimeout: time.Minute, MaxAttempts: 3})
	c.st.enqueue(&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./A"}})
	c.nonce = c.st.acct.ClientNonce
	c.send(c.pkg1(true))
	lastActive := c.now
	if c.st.cmds["c1"].State != StateSent {
		t.Fatal("not sent")
	}
	// Another session 30 s later (the first one is still inside its idle timeout): nothing
	// ends; this one completes at once (c1 is in flight in the first one).
	c.now = c.now.Add(30 * time.Second)
	c.sess, c.msgID, c.nonce = "2", 0, c.st.acct.ClientNonce
	mark := len(c.st.events)
	c.send(c.pkg1(true))
	if ends := sessionEnds(c.st, mark); len(ends) != 1 || ends[0].Session != "2" || ends[0].Outcome != OutcomeCompleted {
		t.Fatalf("a session inside its idle timeout ended: %+v", ends)
	}
	// Past the timeout, the device's next session ends the first one TIMED_OUT.
	c.now = lastActive.Add(2 * time.Minute)
	c.sess, c.msgID, c.nonce = "3", 0, c.st.acct.ClientNonce
	mark = len(c.st.events)
	r := c.send(c.pkg1(true))
	evs := c.st.events[mark:]
	want := Event{Kind: EventSessionEnded, Session: "1A2B", At: lastActive.Add(time.Minute), Outcome: OutcomeTimedOut, Messages: 1}
	if len(evs) == 0 || !reflect.DeepEqual(evs[0], want) {
		t.Fatalf("first event %+v, want %+v", evs, want)
	}
	if evs[1].Kind != EventSessionStarted || evs[1].Session != "3" {
		t.Fatalf("second event %+v, want session 3 started", evs[1])
	}
	if got := c.st.cmds["c1"]; got.State != StateSent || got.SentSession != "3" || got.Attempts != 2 {
		t.Fatalf("c1 after the timeout = %+v, want requeued and sent again in session 3", got)
	}
	if _, open := c.st.open["1A2B"]; open {
		t.Fatal("the timed-out session is still open")
	}
	// Session 3 goes on and completes: no second TIMED_OUT for 1A2B.
	c.now = c.now.Add(time.Second)
	m := &syncml.Message{Header: c.header()}
	m.Body.Commands = []syncml.Command{
		{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
		{Kind: syncml.KindStatus, CmdID: "2", MsgRef: r.Header.MsgID, CmdRef: r.Body.Commands[len(r.Body.Commands)-1].CmdID, Cmd: "Get", Data: "200"},
	}
	m.Body.Final = true
	c.send(m)
	ends := sessionEnds(c.st, mark)
	if len(ends) != 2 || ends[1].Session != "3" || ends[1].Outcome != OutcomeCompleted || ends[1].Completed != 1 {
		t.Fatalf("session ends %+v, want 1A2B timed out then 3 completed", ends)
	}
	if len(c.st.open) != 0 {
		t.Fatalf("open sessions left: %v", c.st.open)
	}
}

// TestIdleSessionIDReused: a device that opens a session with the id of one it left idle
// (a Package 0 session id, or a client that restarts its numbering) gets a new session;
// the old one ends TIMED_OUT, and the command it left in flight is sent again (it used to
// stay SENT: its session id was this one's). A failed authentication also ends a timed-out
// session, and commits only that besides the nonce.
func TestIdleSessionIDReused(t *testing.T) {
	c := newClient(t, Config{IdleTimeout: time.Minute, MaxAttempts: 3})
	c.st.enqueue(&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./A"}})
	c.nonce = c.st.acct.ClientNonce
	c.send(c.pkg1(true))
	start := c.now
	c.now = c.now.Add(2 * time.Minute)
	c.msgID = 0
	c.nonce = c.st.acct.ClientNonce
	mark := len(c.st.events)
	r := c.send(c.pkg1(true))
	if got := hdrCode(t, r); got != "212" {
		t.Fatalf("new session with the old id answered %s", got)
	}
	if ends := sessionEnds(c.st, mark); len(ends) != 1 || ends[0].Session != "1A2B" || ends[0].Outcome != OutcomeTimedOut || !ends[0].At.Equal(start.Add(time.Minute)) {
		t.Fatalf("session ends %+v, want 1A2B timed out", ends)
	}
	if got := c.st.cmds["c1"]; got.State != StateSent || got.Attempts != 2 || got.SentMsgID != 1 {
		t.Fatalf("c1 = %+v, want sent again in the new session", got)
	}
	// The new 1A2B goes idle too; the device comes back with a wrong password: the
	// challenge's commit ends the idle session as well.
	c.now = c.now.Add(2 * time.Minute)
	c.sess, c.msgID, c.secret = "5", 0, "wrong"
	mark = len(c.st.events)
	if got := hdrCode(t, c.send(c.pkg1(true))); got != "401" {
		t.Fatalf("wrong password answered %s", got)
	}
	if ends := sessionEnds(c.st, mark); len(ends) != 1 || ends[0].Session != "1A2B" || ends[0].Outcome != OutcomeTimedOut || len(c.st.events) != mark+1 {
		t.Fatalf("events after the failed authentication: %+v", c.st.events[mark:])
	}
}

// TestSessionOfEarlierAccountNotContinued: a session authenticated under an account that
// was deleted and created again (another Gen) is unknown to the new account: its next
// message is refused (404 + Alert 1223) and changes nothing, and a new session must
// authenticate.
func TestSessionOfEarlierAccountNotContinued(t *testing.T) {
	c := newClient(t, Config{})
	c.st.acct.Gen = "g1"
	c.st.enqueue(&Command{ID: "c1", Op: Operation{Type: OpGet, TargetURI: "./A"}})
	c.nonce = c.st.acct.ClientNonce
	r := c.send(c.pkg1(true))
	if s := c.st.sessions["1A2B"]; s == nil || s.AccountGen != "g1" || !s.Authenticated {
		t.Fatalf("session = %+v", s)
	}
	c.st.acct.Gen = "g2" // deleted and created again, same id and credentials
	mark := len(c.st.events)
	m := &syncml.Message{Header: c.header()}
	m.Body.Commands = []syncml.Command{
		{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
		{Kind: syncml.KindStatus, CmdID: "2", MsgRef: r.Header.MsgID, CmdRef: r.Body.Commands[len(r.Body.Commands)-1].CmdID, Cmd: "Get", Data: "200"},
	}
	m.Body.Final = true
	r = c.send(m)
	if got := hdrCode(t, r); got != "404" || r.Body.Commands[len(r.Body.Commands)-1].Data != "1223" {
		t.Fatalf("continuing a session of the earlier account answered %s %+v, want 404 + Alert 1223", got, r.Body.Commands)
	}
	if len(c.st.events) != mark || c.st.cmds["c1"].State != StateSent {
		t.Fatalf("the refused message changed state: events %+v, c1 %s", c.st.events[mark:], c.st.cmds["c1"].State)
	}
	// Opening a session again needs credentials: without them it is challenged.
	c.sess, c.msgID = "2", 0
	if got := hdrCode(t, c.send(c.pkg1(false))); got != "407" {
		t.Fatalf("a new session without credentials answered %s, want 407", got)
	}
}

// TestAcceptsNonceAsBase64Text: AOSP builds its MD5 credential over the NextNonce text
// rather than the decoded bytes (PROTOCOL.md §12.8); it authenticates, and the nonce rotates.
func TestAcceptsNonceAsBase64Text(t *testing.T) {
	c := newClient(t, Config{})
	c.nonce = []byte(dmauth.EncodeNonce(c.st.acct.ClientNonce))
	r := c.send(c.pkg1(true))
	if got := hdrCode(t, r); got != "212" {
		t.Fatalf("nonce-as-text credential answered %s", got)
	}
}

func TestMsgIDOutOfOrderRefused(t *testing.T) {
	c := newClient(t, Config{})
	c.nonce = c.st.acct.ClientNonce
	c.send(c.pkg1(true))
	before := *c.st.sessions["1A2B"]
	c.msgID += 3 // skip ahead
	m := &syncml.Message{Header: c.header()}
	m.Body.Commands = []syncml.Command{{Kind: syncml.KindStatus, CmdID: "1", MsgRef: "1", CmdRef: "0", Cmd: "SyncHdr", Data: "200"}}
	m.Body.Final = true
	r := c.send(m)
	if got := hdrCode(t, r); got != "400" {
		t.Fatalf("out-of-order MsgID answered %s, want 400", got)
	}
	if after := c.st.sessions["1A2B"]; after.ClientMsgID != before.ClientMsgID || after.Version != before.Version {
		t.Fatal("a refused message changed the session")
	}
}

func TestUnknownSessionRefused(t *testing.T) {
	c := newClient(t, Config{})
	m := &syncml.Message{Header: c.header()}
	m.Body.Commands = []syncml.Command{{Kind: syncml.KindStatus, CmdID: "1", MsgRef: "1", CmdRef: "0", Cmd: "SyncHdr", Data: "200"}}
	m.Body.Final = true
	r := c.send(m)
	if got := hdrCode(t, r); got != "404" || r.Body.Commands[1].Data != "1223" {
		t.Fatalf("unknown session answered %s %+v, want 404 + Alert 1223", got, r.Body.Commands)
	}
	if len(c.st.sessions) != 0 {
		t.Fatal("state created for an unknown session")
	}
}

// TestReplayedNonceRefused: a recorded Package 1 replayed in a new session fails, because
// the nonce it was built on was rotated when it first succeeded.
func TestReplayedNonceRefused(t *testing.T) {
	c := newClient(t, Config{})
	c.nonce = c.st.acct.ClientNonce
	first := c.pkg1(true)
	if got := hdrCode(t, c.send(first)); got != "212" {
		t.Fatalf("first use answered %s", got)
	}
	replay := *first
	replay.Header.SessionID = "BEEF"
	c.sess = "BEEF"
	r := c.send(&replay)
	if got := hdrCode(t, r); got != "401" {
		t.Fatalf("replayed credential answered %s, want 401", got)
	}
	if _, ok := c.st.sessions["BEEF"]; ok {
		t.Fatal("replay created a session")
	}
}

// TestAcceptsSessionIDForms: sessions are keyed on the SessionID text, so hex without
// leading zeros, 4-digit padded hex, decimal and lower-case forms all work (PROTOCOL.md
// §12.10).
func TestAcceptsSessionIDForms(t *testing.T) {
	for _, sid := range []string{"1A2B", "001A", "6699", "1a2b", "12345678"} {
		c := newClient(t, Config{})
		c.sess = sid
		c.nonce = c.st.acct.ClientNonce
		r := c.send(c.pkg1(true))
		if got := hdrCode(t, r); got != "212" || r.Header.SessionID != sid {
			t.Fatalf("SessionID %q: %s, reply session %q", sid, got, r.Header.SessionID)
		}
		if _, ok := c.st.sessions[sid]; !ok {
			t.Fatalf("SessionID %q: no session stored", sid)
		}
	}
}

// TestAcceptsReversedDomainAlertType: a Generic Alert Type with the "Reversed-Domain-Name: "
// prefix (HAP) is normalised to the bare name (PROTOCOL.md §12.6); Format in upper case is
// read case-insensitively (§12.5).
func TestAcceptsReversedDomainAlertType(t *testing.T) {
	c := newClient(t, Config{})
	c.nonce = c.st.acct.ClientNonce
	m := c.pkg1(true)
	m.Body.Commands = append(m.Body.Commands, syncml.Command{Kind: syncml.KindAlert, CmdID: "3", Data: "1226", Correlator: "c1",
		Items: []syncml.Item{{Source: &syncml.Locator{LocURI: "./FUMO/X"}, Meta: &syncml.Meta{Type: "Reversed-Domain-Name: org.openmobilealliance.dm.firmwareupdate.update", Format: "Int"}, Data: syncml.TextData("200")}}})
	c.send(m)
	for _, e := range c.st.events {
		if e.Kind == EventGenericAlert {
			if e.AlertType != "org.openmobilealliance.dm.firmwareupdate.update" || e.Correlator != "c1" || string(e.Data) != "200" {
				t.Fatalf("generic alert event = %+v", e)
			}
			return
		}
	}
	t.Fatal("no generic alert event")
}

// openWithGet queues Get uri as command "g" and opens an authenticated session: the reply
// to Package 1 and the Get's CmdID in it.
func openWithGet(t *testing.T, uri string) (*client, *syncml.Message, string) {
	t.Helper()
	c := newClient(t, Config{})
	c.st.enqueue(&Command{ID: "g", Op: Operation{Type: OpGet, TargetURI: uri}})
	c.nonce = c.st.acct.ClientNonce
	r := c.send(c.pkg1(true))
	for _, sc := range r.Body.Commands {
		if sc.Kind == syncml.KindGet {
			return c, r, sc.CmdID
		}
	}
	t.Fatal("no Get in the reply to Package 1")
	return nil, nil, ""
}

// TestAcceptsResultsFormatInAnyCase: Results with Meta Format "Chr"/"B64" (HAP sends "Chr")
// are read case-insensitively; b64 values are decoded.
func TestAcceptsResultsFormatInAnyCase(t *testing.T) {
	c, r, get := openWithGet(t, "./A")
	m := &syncml.Message{Header: c.header()}
	m.Body.Commands = []syncml.Command{
		{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
		{Kind: syncml.KindStatus, CmdID: "2", MsgRef: r.Header.MsgID, CmdRef: get, Cmd: "Get", Data: "200"},
		{Kind: syncml.KindResults, CmdID: "3", MsgRef: r.Header.MsgID, CmdRef: get, Items: []syncml.Item{
			{Source: &syncml.Locator{LocURI: "./A"}, Meta: &syncml.Meta{Format: "B64"}, Data: syncml.TextData("aGVsbG8=")}}},
	}
	m.Body.Final = true
	c.send(m)
	if got := c.st.cmds["g"]; got.State != StateCompleted || string(got.Results[0].Data) != "hello" || got.Results[0].Format != "b64" {
		t.Fatalf("result = %+v", got.Results)
	}
}

// TestLargeObjectInChunks: Results arriving in chunks (MoreData) are answered 213, kept by
// the store, read back only for the message that may end the object, and rebuilt into the
// command's result; if the chunks are gone by then, the command fails instead of completing
// with a partial value.
func TestLargeObjectInChunks(t *testing.T) {
	for _, lose := range []bool{false, true} {
		t.Run(map[bool]string{false: "complete", true: "chunks lost"}[lose], func(t *testing.T) {
			c, r, get := openWithGet(t, "./LO")
			getMsg := r.Header.MsgID
			chunk := func(data string, more bool, final bool) *syncml.Message {
				m := &syncml.Message{Header: c.header()}
				it := syncml.Item{Source: &syncml.Locator{LocURI: "./LO"}, Data: syncml.TextData(data), MoreData: more}
				res := syncml.Command{Kind: syncml.KindResults, CmdID: "3", MsgRef: getMsg, CmdRef: get, Items: []syncml.Item{it}}
				if data == "abc" {
					res.Items[0].Meta = &syncml.Meta{Size: "9"}
				}
				m.Body.Commands = []syncml.Command{
					{Kind: syncml.KindStatus, CmdID: "1", MsgRef: r.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
				}
				if data == "abc" {
					m.Body.Commands = append(m.Body.Commands, syncml.Command{Kind: syncml.KindStatus, CmdID: "2", MsgRef: getMsg, CmdRef: get, Cmd: "Get", Data: "200"})
				}
				m.Body.Commands = append(m.Body.Commands, res)
				m.Body.Final = final
				return m
			}
			for _, part := range []string{"abc", "def"} {
				r = c.send(chunk(part, true, false))
				got := ""
				for _, sc := range r.Body.Commands {
					if sc.Kind == syncml.KindStatus && sc.Cmd == "Results" {
						got = sc.Data
					}
				}
				if got != "213" {
					t.Fatalf("chunk %q answered %q, want 213", part, got)
				}
			}
			if c.st.loReads != 0 || string(c.st.lo["1A2B"]) != "abcdef" {
				t.Fatalf("after two chunks: %d reads of the buffer (want 0), stored %q", c.st.loReads, c.st.lo["1A2B"])
			}
			if lose {
				delete(c.st.lo, "1A2B") // the buffer key expired
			}
			c.send(chunk("ghi", false, true))
			if c.st.loReads != 1 {
				t.Fatalf("the buffer was read %d times, want once (for the last chunk)", c.st.loReads)
			}
			g := c.st.cmds["g"]
			switch {
			case !lose && (g.State != StateCompleted || len(g.Results) != 1 || string(g.Results[0].Data) != "abcdefghi"):
				t.Fatalf("command = %+v", g)
			case lose && (g.State != StateFailed || g.Status != 500):
				t.Fatalf("with the chunks lost: command = %+v, want failed with 500", g)
			}
			if _, left := c.st.lo["1A2B"]; left {
				t.Fatal("buffer not reset after the last chunk")
			}
		})
	}
}

// TestWirePart: the pieces of an outgoing large object, cut on 4-character boundaries and
// encoded one by one, join into the wire form of the whole object.
func TestWirePart(t *testing.T) {
	for _, size := range []int{0, 1, 2, 3, 4, 5, 47, 48, 1000, 4099} {
		data := make([]byte, size)
		for i := range data {
			data[i] = byte(i * 7)
		}
		for _, format := range []string{"b64", "bin"} {
			whole := string(data)
			if format == "b64" {
				whole = base64.StdEncoding.EncodeToString(data)
			}
			total := wireLen(data, format)
			if total != len(whole) {
				t.Fatalf("%s %d: wireLen %d, want %d", format, size, total, len(whole))
			}
			for _, step := range []int{4, 16, 100, 1024} {
				var joined strings.Builder
				for off := 0; off < total; off += step {
					joined.WriteString(wirePart(data, format, total, off, min(step, total-off)))
				}
				if joined.String() != whole {
					t.Fatalf("%s %d bytes in pieces of %d: joined pieces differ from the whole", format, size, step)
				}
			}
		}
	}
}
