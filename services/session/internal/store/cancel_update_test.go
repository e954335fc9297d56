package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// TestEtagAndGroupCancel covers the compare-and-set device update and delete and the
// atomic group cancel on a single Redis and on a Cluster (the scripts read keys they build
// from the device's hash tag).
func TestEtagAndGroupCancel(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.new(t)
			t.Run("update", func(t *testing.T) { testUpdateReturnsStored(t, newStore(t, rdb)) })
			t.Run("delete", func(t *testing.T) { testDeleteEtag(t, newStore(t, rdb)) })
			t.Run("cancel group", func(t *testing.T) { testCancelGroup(t, newStore(t, rdb)) })
			t.Run("cancel group conflict", func(t *testing.T) { testCancelGroupConflict(t, rdb) })
		})
	}
}

// testUpdateReturnsStored: UpdateDevice returns exactly what GetDevice reads afterwards
// (nonces and the sealed credential included), and is a compare-and-set on the etag of the
// device it was given.
func testUpdateReturnsStored(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	const id = "IMEI:U1"
	acct := engine.Account{DeviceID: id, ClientAuth: engine.AuthMD5, ClientName: "c", ClientKey: dmauth.Key("c", "pw"), ClientNonce: []byte("n1"),
		ServerAuth: engine.AuthBasic, ServerName: "srv"}
	if err := s.CreateDevice(ctx, NewDevice{Account: acct, ServerBasicCred: dmauth.BasicCred("srv", "pw2"), Labels: map[string]string{"fleet": "a"}}, now); err != nil {
		t.Fatal(err)
	}
	old, err := s.GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	nd := NewDevice{Account: old.Account, ServerBasicCred: old.Account.ServerBasicCred, Labels: map[string]string{"fleet": "b"}}
	nd.Account.MSISDN = "+4915100000001"
	got, err := s.UpdateDevice(ctx, old, nd, now.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := s.GetDevice(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, fresh) {
		t.Fatalf("UpdateDevice returned\n%+v\nGetDevice reads\n%+v", got, fresh)
	}
	if got.Etag != old.Etag+1 || got.Account.MSISDN != "+4915100000001" || !got.Created.Equal(now) || !got.Updated.Equal(now.Add(time.Minute)) ||
		string(got.Account.ClientNonce) != "n1" || got.Account.ServerBasicCred != dmauth.BasicCred("srv", "pw2") {
		t.Fatalf("updated device %+v", got)
	}
	if a, _, _ := s.ListDevices(ctx, "fleet", "a", "", 10); len(a) != 0 {
		t.Fatalf("old label still indexed")
	}
	// old is stale now: a second update based on it is refused and changes nothing.
	if _, err := s.UpdateDevice(ctx, old, NewDevice{Account: old.Account}, now); !errors.Is(err, ErrConflict) {
		t.Fatalf("update from a stale read: %v", err)
	}
	if again, _ := s.GetDevice(ctx, id); !reflect.DeepEqual(again, fresh) {
		t.Fatalf("a refused update changed the device: %+v", again)
	}
	gone := &Device{Account: engine.Account{DeviceID: "IMEI:none"}, Etag: 1}
	if _, err := s.UpdateDevice(ctx, gone, NewDevice{Account: gone.Account}, now); !errors.Is(err, ErrNotFound) {
		t.Fatalf("update of a missing device: %v", err)
	}
}

// testDeleteEtag: the etag is compared by the delete itself; a refused delete leaves the
// device, its commands and its index entries; a delete cancels the queued command.
func testDeleteEtag(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	const id = "IMEI:D1"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: id}, Labels: map[string]string{"fleet": "x"}}, now); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Enqueue(ctx, id, "", []*engine.Command{mkCmd(id, 1, engine.OpGet)}, nil); err != nil {
		t.Fatal(err)
	}
	d, _ := s.GetDevice(ctx, id)
	if err := s.DeleteDevice(ctx, id, d.Etag+1, now, nil, nil); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete with a wrong etag: %v", err)
	}
	if _, err := s.GetDevice(ctx, id); err != nil {
		t.Fatalf("after a refused delete: %v", err)
	}
	if _, _, err := s.GetCommand(ctx, NewCommandID(id, "1")); err != nil {
		t.Fatalf("command after a refused delete: %v", err)
	}
	if x, _, _ := s.ListDevices(ctx, "fleet", "x", "", 10); len(x) != 1 {
		t.Fatalf("label index after a refused delete: %d devices", len(x))
	}
	if err := s.DeleteDevice(ctx, id, d.Etag, now, nil, nil); err != nil {
		t.Fatalf("delete with the current etag: %v", err)
	}
	if _, err := s.GetDevice(ctx, id); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted device: %v", err)
	}
	// The queued command is cancelled, its record kept (DeviceService.DeleteDevice).
	if c, _, err := s.GetCommand(ctx, NewCommandID(id, "1")); err != nil || c.State != engine.StateCancelled {
		t.Fatalf("command of a deleted device: %v %+v", err, c)
	}
	for _, key := range []string{s.devicesKey(), s.labelKey("fleet", "x")} {
		if n, err := s.rdb.ZCard(ctx, key).Result(); err != nil || n != 0 {
			t.Fatalf("%s still has %d members (%v)", key, n, err)
		}
	}
	if err := s.DeleteDevice(ctx, id, d.Etag, now, nil, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("delete of a missing device with an etag: %v", err)
	}
}

func groupCmds(dev, group string, kind engine.Group, from, n int) []*engine.Command {
	out := make([]*engine.Command, n)
	for i := range out {
		out[i] = mkCmd(dev, from+i, engine.OpReplace)
		out[i].GroupID, out[i].Group = group, kind
	}
	return out
}

func ids(cmds []*engine.Command) []string {
	out := make([]string, len(cmds))
	for i, c := range cmds {
		out[i] = c.ID
	}
	return out
}

// testCancelGroup: a cancel takes the whole queued group with it, at the head and at the
// tail of the queue, in queue order after the named command, with one event each, and
// leaves the other commands.
func testCancelGroup(t *testing.T, s *Store) {
	ctx := context.Background()
	const dev = "IMEI:G1"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	g1 := groupCmds(dev, "g1", engine.GroupAtomic, 1, 3)
	single := mkCmd(dev, 4, engine.OpGet)
	g2 := groupCmds(dev, "g2", engine.GroupSequence, 5, 2)
	for _, cmds := range [][]*engine.Command{g1, {single}, g2} {
		if _, _, err := s.Enqueue(ctx, dev, "", cmds, nil); err != nil {
			t.Fatal(err)
		}
	}
	ev := func(c *engine.Command) []byte { return []byte(c.ID + "=" + string(c.State)) }
	got, err := s.CancelCommand(ctx, g1[1].ID, time.Now(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{g1[1].ID, g1[0].ID, g1[2].ID}; fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("cancelled %v, want %v", ids(got), want)
	}
	got, err = s.CancelCommand(ctx, g2[1].ID, time.Now(), ev)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{g2[1].ID, g2[0].ID}; fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("cancelled %v, want %v", ids(got), want)
	}
	for _, c := range append(append([]*engine.Command{}, g1...), g2...) {
		rec, _, err := s.GetCommand(ctx, c.ID)
		if err != nil || rec.State != engine.StateCancelled {
			t.Fatalf("%s: %v %+v", c.ID, err, rec)
		}
	}
	st, err := s.Load(ctx, dev, "S", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ids(st.Queue)) != fmt.Sprint([]string{single.ID}) {
		t.Fatalf("queue after the cancels: %v", ids(st.Queue))
	}
	evs, _ := s.ReadOutbox(ctx, dev, 100)
	var names []string
	for _, e := range evs {
		names = append(names, string(e))
	}
	want := []string{g1[1].ID + "=cancelled", g1[0].ID + "=cancelled", g1[2].ID + "=cancelled", g2[1].ID + "=cancelled", g2[0].ID + "=cancelled"}
	if fmt.Sprint(names) != fmt.Sprint(want) {
		t.Fatalf("events %v, want %v", names, want)
	}
	if _, err := s.CancelCommand(ctx, g1[0].ID, time.Now(), ev); !errors.Is(err, ErrNotQueued) {
		t.Fatalf("cancel of a cancelled group: %v", err)
	}
}

// injector runs a function once, right after the next round trip, and counts the runs of
// the cancel's write script.
type injector struct {
	mu     sync.Mutex
	after  func()
	writes int
}

func (h *injector) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *injector) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.mu.Lock()
		if a := cmd.Args(); len(a) > 1 && a[0] == "evalsha" && a[1] == cancelScript.Hash() {
			h.writes++
		}
		f := h.after
		h.after = nil
		h.mu.Unlock()
		if f != nil {
			f()
		}
		return err
	}
}
func (h *injector) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// testCancelGroupConflict: a session sends one member between the cancel's read and its
// write. The write changes nothing, the cancel reads again and cancels the members still
// queued, leaving the sent one; no event is appended twice.
func testCancelGroupConflict(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	h := &injector{}
	rdb.AddHook(h)
	s := newStore(t, rdb)
	const dev = "IMEI:G2"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, time.Now()); err != nil {
		t.Fatal(err)
	}
	g := groupCmds(dev, "g", engine.GroupSequence, 1, 3)
	if _, _, err := s.Enqueue(ctx, dev, "", g, nil); err != nil {
		t.Fatal(err)
	}
	// With the scripts cached, the first round trip of the cancel is the whole read and
	// each write is one EVALSHA.
	load := func(ctx context.Context, c redis.Scripter) error {
		if err := groupScript.Load(ctx, c).Err(); err != nil {
			return err
		}
		return cancelScript.Load(ctx, c).Err()
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		if err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return load(ctx, m) }); err != nil {
			t.Fatal(err)
		}
	} else if err := load(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	h.mu.Lock()
	h.after = func() {
		c, _, err := s.GetCommand(ctx, g[2].ID)
		if err != nil {
			t.Error(err)
			return
		}
		c.State, c.SentSession, c.Attempts = engine.StateSent, "S", 1
		if err := s.Commit(ctx, dev, "S", engine.State{}, engine.Output{Commit: true, Commands: []*engine.Command{c}}, nil, nil); err != nil {
			t.Error(err)
		}
	}
	h.mu.Unlock()
	got, err := s.CancelCommand(ctx, g[0].ID, time.Now(), func(c *engine.Command) []byte { return []byte(c.ID) })
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{g[0].ID, g[1].ID}; fmt.Sprint(ids(got)) != fmt.Sprint(want) {
		t.Fatalf("cancelled %v, want %v", ids(got), want)
	}
	for i, want := range []engine.CmdState{engine.StateCancelled, engine.StateCancelled, engine.StateSent} {
		c, _, err := s.GetCommand(ctx, g[i].ID)
		if err != nil || c.State != want {
			t.Fatalf("member %d: %v %v, want %v", i, err, c.State, want)
		}
	}
	if evs, _ := s.ReadOutbox(ctx, dev, 100); len(evs) != 2 {
		t.Fatalf("%d events, want 2", len(evs))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.writes != 2 {
		t.Fatalf("the cancel's write ran %d times, want 2 (refused once, then applied)", h.writes)
	}
}
