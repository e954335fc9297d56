package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// roundTrips counts network round trips: one per command and one per pipeline (a script
// is one command).
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		// EVALSHA that misses the script cache is retried as EVAL: count what was sent.
		r.n.Add(1)
		return next(ctx, cmd)
	}
}
func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

type backend struct {
	name string
	new  func(t *testing.T) redis.UniversalClient
}

func backends(t *testing.T) []backend {
	return []backend{
		{"single", func(t *testing.T) redis.UniversalClient { return testredis.Client(t) }},
		{"cluster", func(t *testing.T) redis.UniversalClient {
			if testing.Short() {
				t.Skip("cluster test skipped in -short mode")
			}
			c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: testredis.Cluster(t)})
			t.Cleanup(func() { c.Close() })
			return c
		}},
	}
}

func newStore(t *testing.T, rdb redis.UniversalClient) *Store {
	key := make([]byte, 32)
	sealer, err := NewSealer(key)
	if err != nil {
		t.Fatal(err)
	}
	return New(rdb, testredis.Prefix(t), Options{Sealer: sealer})
}

func TestStore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.new(t)
			t.Run("devices", func(t *testing.T) { testDevices(t, newStore(t, rdb)) })
			t.Run("queue", func(t *testing.T) { testQueue(t, newStore(t, rdb)) })
			t.Run("session", func(t *testing.T) { testSession(t, rdb) })
		})
	}
}

func testDevices(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	for i := 0; i < 5; i++ {
		d := NewDevice{Account: engine.Account{DeviceID: fmt.Sprintf("IMEI:%02d", i), ClientAuth: engine.AuthMD5,
			ClientName: "c", ClientKey: dmauth.Key("c", "secret"), ClientNonce: []byte{byte(i)}},
			Labels: map[string]string{"fleet": []string{"a", "b"}[i%2]}}
		if i == 0 {
			d.Account.ServerAuth, d.Account.ServerName = engine.AuthBasic, "srv"
			d.ServerBasicCred = dmauth.BasicCred("srv", "plain-secret")
		}
		if err := s.CreateDevice(ctx, d, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: "IMEI:00"}}, now); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v", err)
	}
	d, err := s.GetDevice(ctx, "IMEI:00")
	if err != nil {
		t.Fatal(err)
	}
	if d.Account.ServerBasicCred != dmauth.BasicCred("srv", "plain-secret") || string(d.Account.ClientNonce) != "\x00" {
		t.Fatalf("device read back wrong: %+v", d.Account)
	}
	// The basic credential is sealed at rest: its plaintext is nowhere in Redis.
	raw, _ := s.rdb.HGet(ctx, s.acctKey("IMEI:00"), "data").Result()
	if raw == "" || contains(raw, dmauth.BasicCred("srv", "plain-secret")) || contains(raw, "plain-secret") {
		t.Fatalf("secret stored in the clear: %s", raw)
	}
	// Paging is stable and complete; label filters use their index.
	var all []string
	tok := ""
	for {
		page, next, err := s.ListDevices(ctx, "", "", tok, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range page {
			all = append(all, d.Account.DeviceID)
		}
		if next == "" {
			break
		}
		tok = next
	}
	if fmt.Sprint(all) != "[IMEI:00 IMEI:01 IMEI:02 IMEI:03 IMEI:04]" {
		t.Fatalf("pages = %v", all)
	}
	fleetB, _, _ := s.ListDevices(ctx, "fleet", "b", "", 10)
	if len(fleetB) != 2 {
		t.Fatalf("fleet=b has %d devices", len(fleetB))
	}
	// Update with a stale etag conflicts; with the right one it moves the label index.
	d, _ = s.GetDevice(ctx, "IMEI:01")
	stale := *d
	stale.Etag += 5
	if _, err := s.UpdateDevice(ctx, &stale, NewDevice{Account: d.Account, Labels: map[string]string{"fleet": "a"}}, now); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale etag: %v", err)
	}
	if _, err := s.UpdateDevice(ctx, d, NewDevice{Account: d.Account, Labels: map[string]string{"fleet": "a"}}, now); err != nil {
		t.Fatal(err)
	}
	fleetB, _, _ = s.ListDevices(ctx, "fleet", "b", "", 10)
	if len(fleetB) != 1 {
		t.Fatalf("after relabel fleet=b has %d devices", len(fleetB))
	}
	if err := s.DeleteDevice(ctx, "IMEI:03", 0, now, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDevice(ctx, "IMEI:03"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted device: %v", err)
	}
	if err := s.DeleteDevice(ctx, "IMEI:03", 0, now, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete twice: %v", err)
	}
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

func mkCmd(dev string, i int, op engine.OpType) *engine.Command {
	return &engine.Command{ID: NewCommandID(dev, strconv.Itoa(i)), DeviceID: dev, Op: engine.Operation{Type: op, TargetURI: "./A/" + strconv.Itoa(i)}, State: engine.StateQueued}
}

func testQueue(t *testing.T, s *Store) {
	ctx := context.Background()
	dev := "IMEI:Q1"
	if _, _, err := s.Enqueue(ctx, dev, "", []*engine.Command{mkCmd(dev, 0, engine.OpGet)}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("enqueue for unknown device: %v", err)
	}
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	first, dup, err := s.Enqueue(ctx, dev, "req-1", []*engine.Command{mkCmd(dev, 1, engine.OpGet), mkCmd(dev, 2, engine.OpReplace)}, [][]byte{[]byte("ev")})
	if err != nil || dup {
		t.Fatal(err, dup)
	}
	again, dup, err := s.Enqueue(ctx, dev, "req-1", []*engine.Command{mkCmd(dev, 3, engine.OpGet)}, nil)
	if err != nil || !dup || len(again) != 2 || again[0].ID != first[0].ID {
		t.Fatalf("idempotent enqueue: %v dup=%v %d", err, dup, len(again))
	}
	if _, _, err := s.Enqueue(ctx, dev, "", []*engine.Command{mkCmd(dev, 4, engine.OpDelete)}, nil); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(ctx, dev, "S1", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Queue) != 3 || st.Queue[0].Op.TargetURI != "./A/1" || st.Queue[2].Op.TargetURI != "./A/4" {
		t.Fatalf("queue order wrong: %+v", st.Queue)
	}
	cs, err := s.CancelCommand(ctx, first[1].ID, time.Now(), nil)
	if err != nil || len(cs) != 1 || cs[0].State != engine.StateCancelled {
		t.Fatalf("cancel: %v %+v", err, cs)
	}
	if _, err := s.CancelCommand(ctx, first[1].ID, time.Now(), nil); !errors.Is(err, ErrNotQueued) {
		t.Fatalf("cancel twice: %v", err)
	}
	cmds, next, err := s.ListCommands(ctx, dev, 0, 2)
	if err != nil || len(cmds) != 2 || next == 0 {
		t.Fatalf("list page 1: %v %d %d", err, len(cmds), next)
	}
	cmds2, next2, err := s.ListCommands(ctx, dev, next, 2)
	if err != nil || len(cmds2) != 1 || next2 != 0 || cmds2[0].Op.TargetURI != "./A/4" {
		t.Fatalf("list page 2: %v %d %d", err, len(cmds2), next2)
	}
	if n, _ := s.rdb.LLen(ctx, s.outboxKey(dev)).Result(); n != 1 {
		t.Fatalf("outbox has %d entries, want 1", n)
	}
}

// testSession drives a whole session through the engine with real Load/Commit, counting
// Redis round trips per device message, and checks optimistic concurrency.
func testSession(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	rt := &roundTrips{}
	rdb.AddHook(rt)
	s := newStore(t, rdb)
	dev := "IMEI:S1"
	now := time.Unix(1_800_000_000, 0)
	acct := engine.Account{DeviceID: dev, ClientAuth: engine.AuthMD5, ClientName: "c", ClientKey: dmauth.Key("c", "pw"), ClientNonce: []byte("n1")}
	if err := s.CreateDevice(ctx, NewDevice{Account: acct}, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enqueue(ctx, dev, "", []*engine.Command{mkCmd(dev, 1, engine.OpGet)}, nil); err != nil {
		t.Fatal(err)
	}
	// Warm the script cache so the count shows the steady state (EVALSHA hits).
	if _, err := s.Load(ctx, dev, "x", "", false); err != nil {
		t.Fatal(err)
	}
	if err := commitScript.Load(ctx, rdb).Err(); err != nil && !isCluster(rdb) {
		t.Fatal(err)
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return commitScript.Load(ctx, m).Err() })
	}

	e := engine.New(engine.Config{})
	send := func(m *syncml.Message, body string) engine.Output {
		t.Helper()
		before := rt.n.Load()
		st, err := s.Load(ctx, dev, m.Header.SessionID, dmauth.BodyHash([]byte(body)), false)
		if err != nil {
			t.Fatal(err)
		}
		out := e.Process(st, engine.Input{Msg: m, Encoding: syncml.EncodingXML, BodyHash: dmauth.BodyHash([]byte(body)), Now: now})
		if err := s.Commit(ctx, dev, m.Header.SessionID, st, out, nil, nil); err != nil {
			t.Fatal(err)
		}
		if n := rt.n.Load() - before; n > 2 {
			t.Fatalf("message %s took %d Redis round trips, want at most 2", m.Header.MsgID, n)
		}
		return out
	}
	hdr := func(msgID string) syncml.Header {
		return syncml.Header{VerDTD: "1.2", VerProto: "DM/1.2", SessionID: "7", MsgID: msgID,
			Target: syncml.Locator{LocURI: "http://s/dm"}, Source: syncml.Locator{LocURI: dev, LocName: "c"}}
	}
	pkg1 := &syncml.Message{Header: hdr("1")}
	pkg1.Header.Cred = &syncml.Cred{Meta: &syncml.Meta{Type: "syncml:auth-md5"}, Data: dmauth.MD5Cred(acct.ClientKey, acct.ClientNonce)}
	pkg1.Body.Commands = []syncml.Command{{Kind: syncml.KindAlert, CmdID: "1", Data: "1201"}}
	pkg1.Body.Final = true
	out := send(pkg1, "pkg1")
	if out.Reply.Body.Commands[0].Data != "212" {
		t.Fatalf("auth: %s", out.Reply.Body.Commands[0].Data)
	}
	// The cached reply comes back (the same message) only for the same body: a retransmission.
	want, err := syncml.Encode(out.Reply, syncml.EncodingXML)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := s.Load(ctx, dev, "7", dmauth.BodyHash([]byte("pkg1")), false); err != nil || st.Session == nil || st.Session.LastReply == nil {
		t.Fatalf("load for a retransmission: %v, %+v", err, st.Session)
	} else if got, err := syncml.Encode(st.Session.LastReply, syncml.EncodingXML); err != nil || string(got) != string(want) {
		t.Fatalf("cached reply:\n%s\nwant\n%s", got, want)
	}
	if st, err := s.Load(ctx, dev, "7", dmauth.BodyHash([]byte("pkg3")), false); err != nil || st.Session.LastReply != nil || st.Session.LastReqHash != dmauth.BodyHash([]byte("pkg1")) {
		t.Fatalf("load for another body: %v, reply %v, hash %q", err, st.Session.LastReply != nil, st.Session.LastReqHash)
	}
	var get *syncml.Command
	for i := range out.Reply.Body.Commands {
		if out.Reply.Body.Commands[i].Kind == syncml.KindGet {
			get = &out.Reply.Body.Commands[i]
		}
	}
	if get == nil {
		t.Fatal("no Get in pkg2")
	}
	// A stale commit (another worker got there first) is refused and changes nothing.
	st, _ := s.Load(ctx, dev, "7", "", false)
	stale := st
	stale.Session = &engine.Session{Version: st.Session.Version - 1}
	if err := s.Commit(ctx, dev, "7", stale, engine.Output{Commit: true, Session: &engine.Session{SessionID: "7"}}, nil, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale commit: %v", err)
	}
	pkg3 := &syncml.Message{Header: hdr("2")}
	pkg3.Body.Commands = []syncml.Command{
		{Kind: syncml.KindStatus, CmdID: "1", MsgRef: "1", CmdRef: "0", Cmd: "SyncHdr", Data: "200"},
		{Kind: syncml.KindStatus, CmdID: "2", MsgRef: "1", CmdRef: get.CmdID, Cmd: "Get", Data: "200"},
		{Kind: syncml.KindResults, CmdID: "3", MsgRef: "1", CmdRef: get.CmdID, Items: []syncml.Item{{Source: &syncml.Locator{LocURI: "./A/1"}, Data: syncml.TextData("v1")}}},
	}
	pkg3.Body.Final = true
	send(pkg3, "pkg3")
	c, _, err := s.GetCommand(ctx, NewCommandID(dev, "1"))
	if err != nil {
		t.Fatal(err)
	}
	if c.State != engine.StateCompleted || string(c.Results[0].Data) != "v1" {
		t.Fatalf("command = %+v", c)
	}
	st, _ = s.Load(ctx, dev, "7", "", false)
	if len(st.Queue) != 0 || !st.Session.Ended {
		t.Fatalf("after the session: queue %d, ended %v", len(st.Queue), st.Session.Ended)
	}
	// The nonce rotated and was persisted for the next session.
	if string(st.Account.ClientNonce) == "n1" || len(st.Account.ClientNonce) != dmauth.NonceSize {
		t.Fatalf("client nonce not rotated: %q", st.Account.ClientNonce)
	}
}

func isCluster(rdb redis.UniversalClient) bool { _, ok := rdb.(*redis.ClusterClient); return ok }

// TestLargeObjectBuffer: the chunks of an incoming large object are appended in Redis and
// come back on Load only when asked for (a message that may complete the object), so a
// chunked transfer is not read back in full on every chunk.
func TestLargeObjectBuffer(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, testredis.Client(t))
	dev := "IMEI:LO1"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(ctx, dev, "L", "", false)
	if err != nil {
		t.Fatal(err)
	}
	commit := func(loaded engine.State, chunk string, received int64) engine.State {
		t.Helper()
		sess := &engine.Session{SessionID: "L", InLO: &engine.InLO{CmdRef: "3", CommandID: "c1", Declared: 9, Received: received}}
		if err := s.Commit(ctx, dev, "L", loaded, engine.Output{Commit: true, Session: sess, LOAppend: []byte(chunk)}, nil, nil); err != nil {
			t.Fatal(err)
		}
		next, err := s.Load(ctx, dev, "L", "", false)
		if err != nil {
			t.Fatal(err)
		}
		return next
	}
	st = commit(st, "abc", 3)
	st = commit(st, "def", 6)
	if lo := st.Session.InLO; lo == nil || lo.Received != 6 || lo.Buf != nil {
		t.Fatalf("without needLO: InLO %+v, want Received 6 and no buffer", lo)
	}
	full, err := s.Load(ctx, dev, "L", "", true)
	if err != nil {
		t.Fatal(err)
	}
	if lo := full.Session.InLO; lo == nil || string(lo.Buf) != "abcdef" {
		t.Fatalf("with needLO: InLO %+v, want the buffer abcdef", lo)
	}
	// The object completes: the buffer is dropped with the session's large-object state.
	if err := s.Commit(ctx, dev, "L", full, engine.Output{Commit: true, Session: &engine.Session{SessionID: "L"}, LOReset: true}, nil, nil); err != nil {
		t.Fatal(err)
	}
	after, err := s.Load(ctx, dev, "L", "", true)
	if err != nil || after.Session.InLO != nil {
		t.Fatalf("after the reset: %v, InLO %+v", err, after.Session.InLO)
	}
	if n, err := s.rdb.Exists(ctx, s.loKey(dev, "L")).Result(); err != nil || n != 0 {
		t.Fatalf("large-object buffer key left behind: %d, %v", n, err)
	}
}
