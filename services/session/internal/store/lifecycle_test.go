package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// TestLifecycle covers the ends of things on a single Redis and on a Cluster (the scripts
// build keys from the device's hash tag): the challenge rate limit's window, sessions that
// time out, devices deleted and created again, and the listing index of expired commands.
func TestLifecycle(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.new(t)
			t.Run("challenge window", func(t *testing.T) { testChallengeWindow(t, newStore(t, rdb)) })
			t.Run("timed out", func(t *testing.T) { testTimedOut(t, rdb) })
			t.Run("created again", func(t *testing.T) { testCreatedAgain(t, rdb) })
			t.Run("command index", func(t *testing.T) { testCommandIndex(t, rdb) })
		})
	}
}

// testChallengeWindow: a device that keeps failing (here every window/6) is limited to
// limit challenges per window, and the window ends: it is answered again one window after
// the first attempt, however often it tried in between (each attempt used to push the
// window's end out, so it stayed blocked for good). A counter found without an expiry gets
// one.
func testChallengeWindow(t *testing.T, s *Store) {
	ctx := context.Background()
	const limit, window = 2, 300 * time.Millisecond
	start := time.Now()
	var allowedAt []time.Duration
	attempts := 0
	for time.Since(start) < 3*window {
		ok, err := s.AllowChallenge(ctx, "IMEI:rl1", limit, window)
		if err != nil {
			t.Fatal(err)
		}
		attempts++
		if ok {
			allowedAt = append(allowedAt, time.Since(start))
		} else if len(allowedAt) < limit {
			t.Fatalf("attempt %d refused after %d allowed, limit %d", attempts, len(allowedAt), limit)
		}
		time.Sleep(window / 6)
	}
	if len(allowedAt) < 2*limit {
		t.Fatalf("%d attempts over 3 windows, %d allowed at %v: the limit never lifted", attempts, len(allowedAt), allowedAt)
	}
	if allowedAt[limit] < window {
		t.Fatalf("allowed at %v: more than %d within the first window of %v", allowedAt, limit, window)
	}
	// A counter without an expiry (as a crash between INCR and PEXPIRE could once leave)
	// gets one at the next attempt.
	k := s.rateKey("IMEI:rl2")
	if err := s.rdb.Set(ctx, k, 7, 0).Err(); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.AllowChallenge(ctx, "IMEI:rl2", limit, window); err != nil || ok {
		t.Fatalf("over the limit: %v %v", ok, err)
	}
	if ttl, err := s.rdb.PTTL(ctx, k).Result(); err != nil || ttl <= 0 || ttl > window {
		t.Fatalf("counter expiry %v (%v), want within %v", ttl, err, window)
	}
}

// sessionRig drives sessions of one device through the engine with real Load and Commit,
// the events encoded as "<kind> <session> <outcome>" in the device's outbox.
type sessionRig struct {
	t   *testing.T
	s   *Store
	e   *engine.Engine
	dev string
	key string // the client key, B64(MD5(name:secret))
	now time.Time
}

func newSessionRig(t *testing.T, s *Store, dev string) *sessionRig {
	r := &sessionRig{t: t, s: s, e: engine.New(engine.Config{IdleTimeout: time.Minute}), dev: dev,
		key: dmauth.Key("c", "pw"), now: time.Unix(1_800_000_000, 0)}
	r.create()
	return r
}

func (r *sessionRig) create() {
	r.t.Helper()
	acct := engine.Account{DeviceID: r.dev, ClientAuth: engine.AuthMD5, ClientName: "c", ClientKey: r.key, ClientNonce: []byte("n1")}
	if err := r.s.CreateDevice(context.Background(), NewDevice{Account: acct}, r.now); err != nil {
		r.t.Fatal(err)
	}
}

func (r *sessionRig) msg(sid, msgID string) *syncml.Message {
	return &syncml.Message{Header: syncml.Header{VerDTD: "1.2", VerProto: "DM/1.2", SessionID: sid, MsgID: msgID,
		Target: syncml.Locator{LocURI: "http://s/dm"}, Source: syncml.Locator{LocURI: r.dev, LocName: "c"}}}
}

// pkg1 is an authenticated Package 1 with the device's current nonce.
func (r *sessionRig) pkg1(sid string) *syncml.Message {
	r.t.Helper()
	st, err := r.s.Load(context.Background(), r.dev, sid, "", false)
	if err != nil || st.Account == nil {
		r.t.Fatalf("load account: %v", err)
	}
	m := r.msg(sid, "1")
	m.Header.Cred = &syncml.Cred{Meta: &syncml.Meta{Type: "syncml:auth-md5"}, Data: dmauth.MD5Cred(r.key, st.Account.ClientNonce)}
	m.Body.Commands = []syncml.Command{{Kind: syncml.KindAlert, CmdID: "1", Data: "1201"}}
	m.Body.Final = true
	return m
}

func (r *sessionRig) load(m *syncml.Message) engine.State {
	r.t.Helper()
	st, err := r.s.Load(context.Background(), r.dev, m.Header.SessionID, "", false)
	if err != nil {
		r.t.Fatal(err)
	}
	return st
}

func (r *sessionRig) process(st engine.State, m *syncml.Message) engine.Output {
	return r.e.Process(st, engine.Input{Msg: m, Encoding: syncml.EncodingXML, Now: r.now})
}

func (r *sessionRig) commit(st engine.State, m *syncml.Message, out engine.Output) error {
	var evs [][]byte
	for _, e := range out.Events {
		evs = append(evs, []byte(fmt.Sprintf("%s %s %s", e.Kind, e.Session, e.Outcome)))
	}
	return r.s.Commit(context.Background(), r.dev, m.Header.SessionID, st, out, evs, nil)
}

// send handles one message as a worker does (conflicts fail the test).
func (r *sessionRig) send(m *syncml.Message) engine.Output {
	r.t.Helper()
	st := r.load(m)
	out := r.process(st, m)
	if err := r.commit(st, m, out); err != nil {
		r.t.Fatal(err)
	}
	return out
}

// sessionEvents are the outbox's session events.
func (r *sessionRig) sessionEvents() []string {
	var out []string
	for _, e := range outboxStrings(r.t, r.s, r.dev) {
		if e[:len("session_")] == "session_" {
			out = append(out, e)
		}
	}
	return out
}

// testTimedOut: a session left idle ends TIMED_OUT in the commit of the device's next
// session, exactly once: of two sessions of the device that both load it as timed out,
// only the first to commit ends it; the other's commit conflicts (nothing else differs
// between them) and, run again, does not end it a second time. A session's command left in
// flight is requeued and sent again in the commit that ends it.
func testTimedOut(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	r := newSessionRig(t, newStore(t, rdb), "IMEI:TO1")
	openSessions := func() map[string]string {
		open, err := r.s.rdb.HGetAll(ctx, r.s.openKey(r.dev)).Result()
		if err != nil {
			t.Fatal(err)
		}
		return open
	}
	a := r.pkg1("A")
	a.Body.Final = false // the package goes on: A stays open, with nothing in flight
	r.send(a)
	if open := openSessions(); len(open) != 1 || open["A"] == "" {
		t.Fatalf("open sessions %v, want A", open)
	}
	r.now = r.now.Add(2 * time.Minute) // past A's idle timeout
	// Sessions B and C open at once; both load A as open and timed out.
	mb, mc := r.pkg1("B"), r.pkg1("C")
	stB, stC := r.load(mb), r.load(mc)
	outB, outC := r.process(stB, mb), r.process(stC, mc)
	if len(outB.TimedOut) != 1 || len(outC.TimedOut) != 1 {
		t.Fatalf("timed out: B %v, C %v; want A in both", outB.TimedOut, outC.TimedOut)
	}
	if err := r.commit(stB, mb, outB); err != nil {
		t.Fatal(err)
	}
	if err := r.commit(stC, mc, outC); !errors.Is(err, ErrConflict) {
		t.Fatalf("second commit ending A: %v, want ErrConflict", err)
	}
	outC = r.send(r.pkg1("C")) // the worker runs it again on a fresh load (B rotated the nonce)
	if len(outC.TimedOut) != 0 || outC.Reply.Body.Commands[0].Data != "212" {
		t.Fatalf("C run again: timed out %v, answered %s", outC.TimedOut, outC.Reply.Body.Commands[0].Data)
	}
	want := []string{"session_started A ", "session_ended A timed out", "session_started B ", "session_ended B completed",
		"session_started C ", "session_ended C completed"}
	if got := r.sessionEvents(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("session events %q, want %q", got, want)
	}
	if open := openSessions(); len(open) != 0 {
		t.Fatalf("open sessions %v, want none", open)
	}

	// A command in flight in a session that times out goes out again in the commit that
	// ends the session.
	cmd := mkCmd(r.dev, 1, engine.OpGet)
	if _, _, err := r.s.Enqueue(ctx, r.dev, "", []*engine.Command{cmd}, nil); err != nil {
		t.Fatal(err)
	}
	r.send(r.pkg1("D"))
	r.now = r.now.Add(2 * time.Minute)
	mark := len(r.sessionEvents())
	r.send(r.pkg1("E"))
	if got, want := r.sessionEvents()[mark:], []string{"session_ended D timed out", "session_started E "}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("session events %q, want %q", got, want)
	}
	if c, _, err := r.s.GetCommand(ctx, cmd.ID); err != nil || c.State != engine.StateSent || c.SentSession != "E" || c.Attempts != 2 {
		t.Fatalf("command after D timed out: %v %+v, want sent again in E", err, c)
	}
	if open := openSessions(); len(open) != 1 || open["E"] == "" {
		t.Fatalf("open sessions %v, want E", open)
	}
}

// testCreatedAgain: a device deleted and created again with the same id and credentials
// does not continue the earlier account's session (it used to, authenticated, until the
// session record expired): the next message of that session is refused as unknown and
// commits nothing. A worker that loaded the session before the delete cannot commit it
// after (nor write a nonce into the new account), and an update based on a read of the
// earlier account is refused although the new account's etag is the same number. Still 2
// round trips per message.
func testCreatedAgain(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	rt := &roundTrips{}
	rdb.AddHook(rt)
	r := newSessionRig(t, newStore(t, rdb), "IMEI:RE1")
	if _, _, err := r.s.Enqueue(ctx, r.dev, "", []*engine.Command{mkCmd(r.dev, 1, engine.OpGet)}, nil); err != nil {
		t.Fatal(err)
	}
	pkg2 := r.send(r.pkg1("S")).Reply // the scripts are cached from here on
	next := r.msg("S", "2")
	// Not Final (the device's package goes on): the message changes only the session, so
	// nothing but the account can make its commit conflict.
	next.Body.Commands = []syncml.Command{{Kind: syncml.KindStatus, CmdID: "1", MsgRef: pkg2.Header.MsgID, CmdRef: "0", Cmd: "SyncHdr", Data: "200"}}
	staleSt := r.load(next) // a worker that loaded before the delete
	staleOut := r.process(staleSt, next)
	if !staleOut.Commit || len(staleOut.Commands) != 0 || staleOut.Session == nil {
		t.Fatalf("the message before the delete: commit %v, commands %d, session %v", staleOut.Commit, len(staleOut.Commands), staleOut.Session != nil)
	}
	old, err := r.s.GetDevice(ctx, r.dev)
	if err != nil {
		t.Fatal(err)
	}

	if err := r.s.DeleteDevice(ctx, r.dev, 0, r.now, nil, nil); err != nil {
		t.Fatal(err)
	}
	r.create()
	fresh, err := r.s.GetDevice(ctx, r.dev)
	if err != nil || fresh.Etag != old.Etag || fresh.Account.Gen == old.Account.Gen {
		t.Fatalf("created again: %v, etag %d (was %d), gen %q (was %q)", err, fresh.Etag, old.Etag, fresh.Account.Gen, old.Account.Gen)
	}
	if err := r.commit(staleSt, next, staleOut); !errors.Is(err, ErrConflict) {
		t.Fatalf("commit of the earlier account's session after the delete: %v, want ErrConflict", err)
	}
	before := rt.n.Load()
	st := r.load(next)
	out := r.process(st, next)
	if err := r.commit(st, next, out); err != nil {
		t.Fatal(err)
	}
	if n := rt.n.Load() - before; n > 2 {
		t.Fatalf("the message took %d Redis round trips, want at most 2", n)
	}
	if code := out.Reply.Body.Commands[0].Data; code != "404" || out.Commit || out.Session != nil {
		t.Fatalf("the earlier account's session answered %s (commit %v, session %+v), want 404 and nothing committed", code, out.Commit, out.Session)
	}
	if again, err := r.s.GetDevice(ctx, r.dev); err != nil || string(again.Account.ClientNonce) != "n1" {
		t.Fatalf("the new account's nonce: %v %q, want n1 as created", err, again.Account.ClientNonce)
	}
	if _, err := r.s.UpdateDevice(ctx, old, NewDevice{Account: old.Account, Labels: map[string]string{"from": "old"}}, r.now); !errors.Is(err, ErrConflict) {
		t.Fatalf("update based on the earlier account: %v, want ErrConflict", err)
	}
	// The new account works: a session authenticates from scratch.
	if out := r.send(r.pkg1("S2")); out.Reply.Body.Commands[0].Data != "212" {
		t.Fatalf("new session answered %s", out.Reply.Body.Commands[0].Data)
	}
}

// testCommandIndex: the listing index does not keep the ids of commands whose records
// expired (it used to keep them for good): an enqueue removes them, and ListCommands skips
// and removes those it meets, so its pages are full.
func testCommandIndex(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	key := make([]byte, 32)
	sealer, _ := NewSealer(key)
	const ttl = 200 * time.Millisecond
	s := New(rdb, newStore(t, rdb).prefix, Options{Sealer: sealer, CommandTTL: ttl})
	finish := func(dev string, cmds []*engine.Command) {
		for _, c := range cmds {
			setState(t, s, dev, c.ID, engine.StateCompleted)
		}
	}
	cmdsN := func(dev string, from, n int) []*engine.Command {
		var out []*engine.Command
		for i := from; i < from+n; i++ {
			out = append(out, mkCmd(dev, i, engine.OpGet))
		}
		return out
	}
	indexed := func(dev string) []string {
		ids, err := s.rdb.ZRange(ctx, s.allKey(dev), 0, -1).Result()
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}

	// Enqueue trims.
	const dev = "IMEI:IX1"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	done, live := cmdsN(dev, 1, 20), cmdsN(dev, 21, 2)
	if _, _, err := s.Enqueue(ctx, dev, "", append(done, live...), nil); err != nil {
		t.Fatal(err)
	}
	finish(dev, done)
	time.Sleep(ttl + 100*time.Millisecond)
	more := cmdsN(dev, 30, 1)
	if _, _, err := s.Enqueue(ctx, dev, "", more, nil); err != nil {
		t.Fatal(err)
	}
	if got, want := indexed(dev), ids(append(live, more...)); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("index after the records expired and an enqueue: %v, want %v", got, want)
	}

	// ListCommands pages are full across expired records.
	const dev2 = "IMEI:IX2"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev2}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	var all, keep []*engine.Command
	for i := 0; i < 6; i++ { // 3 that expire, 1 that stays, ...
		batch := cmdsN(dev2, 10*i, 4)
		all = append(all, batch...)
		keep = append(keep, batch[3])
	}
	if _, _, err := s.Enqueue(ctx, dev2, "", all, nil); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 6; i++ {
		finish(dev2, all[4*i:4*i+3])
	}
	time.Sleep(ttl + 100*time.Millisecond)
	var pages [][]string
	var after int64
	for {
		page, next, err := s.ListCommands(ctx, dev2, after, 2)
		if err != nil {
			t.Fatal(err)
		}
		pages = append(pages, ids(page))
		if next == 0 {
			break
		}
		after = next
	}
	want := [][]string{ids(keep[0:2]), ids(keep[2:4]), ids(keep[4:6])}
	if fmt.Sprint(pages) != fmt.Sprint(want) {
		t.Fatalf("pages %v, want %v", pages, want)
	}
	if got := indexed(dev2); fmt.Sprint(got) != fmt.Sprint(ids(keep)) {
		t.Fatalf("index after listing: %v, want %v", got, ids(keep))
	}
}
