package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// TestDeleteDeviceCommands covers what a device delete does to the device's commands, on a
// single Redis and on a Cluster (the scripts build command keys from the device's hash tag).
func TestDeleteDeviceCommands(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			rdb := b.new(t)
			t.Run("final states", func(t *testing.T) { testDeleteFinalStates(t, newStore(t, rdb)) })
			t.Run("conflict", func(t *testing.T) { testDeleteConflict(t, rdb) })
		})
	}
}

// setState moves a command through Commit as a session does (leaving the queue when the
// state is terminal) and returns its record as stored.
func setState(t *testing.T, s *Store, dev string, id string, state engine.CmdState) string {
	t.Helper()
	ctx := context.Background()
	c, _, err := s.GetCommand(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	c.State = state
	out := engine.Output{Commit: true, Commands: []*engine.Command{c}}
	if state == engine.StateSent {
		c.Attempts, c.SentSession = 1, "S"
	}
	if state.Terminal() {
		c.Status = 200
		out.Dequeue = []string{id}
	}
	if err := s.Commit(ctx, dev, "S", engine.State{}, out, nil, nil); err != nil {
		t.Fatal(err)
	}
	_, raw, err := s.GetCommand(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func outboxStrings(t *testing.T, s *Store, dev string) []string {
	t.Helper()
	evs, err := s.ReadOutbox(context.Background(), dev, 1000)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = string(e)
	}
	return out
}

func stateEvent(c *engine.Command) []byte { return []byte(c.ID + "=" + string(c.State)) }

// testDeleteFinalStates: queued commands end CANCELLED, the one in flight FAILED with
// deletedInFlight, the completed one byte for byte as it was; every record of the device
// expires (none is left forever); events in queue order, then the last event; the outbox
// survives the delete, the queue, listing index and sequence do not.
func testDeleteFinalStates(t *testing.T, s *Store) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	const dev = "IMEI:DEL1"
	if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, now); err != nil {
		t.Fatal(err)
	}
	group := groupCmds(dev, "g", engine.GroupSequence, 1, 2)
	cmds := append(group, mkCmd(dev, 3, engine.OpGet), mkCmd(dev, 4, engine.OpGet), mkCmd(dev, 5, engine.OpExec))
	if _, _, err := s.Enqueue(ctx, dev, "", cmds, nil); err != nil {
		t.Fatal(err)
	}
	// 1, 2: queued (a group); 3: completed; 4: in flight; 5: queued.
	doneRaw := setState(t, s, dev, cmds[2].ID, engine.StateCompleted)
	setState(t, s, dev, cmds[3].ID, engine.StateSent)

	later := now.Add(time.Hour)
	if err := s.DeleteDevice(ctx, dev, 0, later, stateEvent, []byte("deleted")); err != nil {
		t.Fatal(err)
	}
	want := map[string]engine.CmdState{cmds[0].ID: engine.StateCancelled, cmds[1].ID: engine.StateCancelled,
		cmds[3].ID: engine.StateFailed, cmds[4].ID: engine.StateCancelled}
	for id, st := range want {
		c, _, err := s.GetCommand(ctx, id)
		if err != nil || c.State != st || !c.Updated.Equal(later) {
			t.Fatalf("%s after the delete: %v %+v, want %s updated %v", id, err, c, st, later)
		}
		if st == engine.StateFailed && (c.Error != deletedInFlight || c.SentSession != "S" || c.Attempts != 1 || c.Status != 0) {
			t.Fatalf("in-flight command after the delete: %+v", c)
		}
	}
	if _, raw, err := s.GetCommand(ctx, cmds[2].ID); err != nil || raw != doneRaw {
		t.Fatalf("completed command after the delete: %v\n%s\nwas\n%s", err, raw, doneRaw)
	}
	for _, c := range cmds {
		if ttl, err := s.rdb.PTTL(ctx, s.cmdPrefix(dev)+c.ID).Result(); err != nil || ttl <= 0 || ttl > s.opt.CommandTTL {
			t.Fatalf("record %s expires in %v (%v), want within the command TTL %v", c.ID, ttl, err, s.opt.CommandTTL)
		}
	}
	wantEvs := []string{cmds[0].ID + "=cancelled", cmds[1].ID + "=cancelled", cmds[3].ID + "=failed", cmds[4].ID + "=cancelled", "deleted"}
	if got := outboxStrings(t, s, dev); fmt.Sprint(got) != fmt.Sprint(wantEvs) {
		t.Fatalf("outbox %v, want %v", got, wantEvs)
	}
	for _, k := range []string{s.acctKey(dev), s.queueKey(dev), s.allKey(dev), s.seqKey(dev)} {
		if n, err := s.rdb.Exists(ctx, k).Result(); err != nil || n != 0 {
			t.Fatalf("%s after the delete: exists %d (%v)", k, n, err)
		}
	}
}

// deleteHook runs a function after each run of the delete's read script and counts the
// runs of its write script.
type deleteHook struct {
	mu     sync.Mutex
	onRead func()
	writes int
}

func (h *deleteHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *deleteHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		a := cmd.Args()
		if len(a) < 2 || a[0] != "evalsha" {
			return err
		}
		h.mu.Lock()
		f := h.onRead
		switch a[1] {
		case deleteScript.Hash():
			h.writes++
			f = nil
		case deleteReadScript.Hash():
		default:
			f = nil
		}
		h.mu.Unlock()
		if f != nil {
			f()
		}
		return err
	}
}
func (h *deleteHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h *deleteHook) set(f func()) (writes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	writes, h.onRead, h.writes = h.writes, f, 0
	return writes
}

// testDeleteConflict: the queue changes between the delete's read and its write. A command
// sent meanwhile ends FAILED, not CANCELLED; one enqueued meanwhile is cancelled too, not
// left queued under a deleted device; each gets exactly one event. A queue that keeps
// changing makes the delete give up (ErrConflict) after three tries without changing
// anything.
func testDeleteConflict(t *testing.T, rdb redis.UniversalClient) {
	ctx := context.Background()
	now := time.Unix(1_800_000_000, 0).UTC()
	h := &deleteHook{}
	rdb.AddHook(h)
	s := newStore(t, rdb)
	// Cached scripts: each read and each write is one EVALSHA.
	load := func(ctx context.Context, c redis.Scripter) error {
		for _, sc := range []*redis.Script{deleteReadScript, deleteScript} {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		if err := c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return load(ctx, m) }); err != nil {
			t.Fatal(err)
		}
	} else if err := load(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	create := func(dev string, cmds ...*engine.Command) {
		if err := s.CreateDevice(ctx, NewDevice{Account: engine.Account{DeviceID: dev}}, now); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Enqueue(ctx, dev, "", cmds, nil); err != nil {
			t.Fatal(err)
		}
	}
	once := func(f func()) func() {
		var done bool
		return func() {
			if !done {
				done = true
				f()
			}
		}
	}

	// Sent between the read and the write.
	const dev1 = "IMEI:DELC1"
	a, b := mkCmd(dev1, 1, engine.OpGet), mkCmd(dev1, 2, engine.OpGet)
	create(dev1, a, b)
	h.set(once(func() { setState(t, s, dev1, a.ID, engine.StateSent) }))
	if err := s.DeleteDevice(ctx, dev1, 0, now, stateEvent, []byte("deleted")); err != nil {
		t.Fatal(err)
	}
	if w := h.set(nil); w != 2 {
		t.Fatalf("the delete's write ran %d times, want 2 (refused once, then applied)", w)
	}
	for id, st := range map[string]engine.CmdState{a.ID: engine.StateFailed, b.ID: engine.StateCancelled} {
		if c, _, err := s.GetCommand(ctx, id); err != nil || c.State != st {
			t.Fatalf("%s: %v %+v, want %s", id, err, c, st)
		}
	}
	if got, want := outboxStrings(t, s, dev1), []string{a.ID + "=failed", b.ID + "=cancelled", "deleted"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}

	// Enqueued between the read and the write.
	const dev2 = "IMEI:DELC2"
	c1, c2 := mkCmd(dev2, 1, engine.OpGet), mkCmd(dev2, 2, engine.OpGet)
	create(dev2, c1)
	h.set(once(func() {
		if _, _, err := s.Enqueue(ctx, dev2, "", []*engine.Command{c2}, nil); err != nil {
			t.Error(err)
		}
	}))
	if err := s.DeleteDevice(ctx, dev2, 0, now, stateEvent, nil); err != nil {
		t.Fatal(err)
	}
	if w := h.set(nil); w != 2 {
		t.Fatalf("the delete's write ran %d times, want 2", w)
	}
	for _, id := range []string{c1.ID, c2.ID} {
		if c, _, err := s.GetCommand(ctx, id); err != nil || c.State != engine.StateCancelled {
			t.Fatalf("%s: %v %+v, want cancelled", id, err, c)
		}
	}
	if got, want := outboxStrings(t, s, dev2), []string{c1.ID + "=cancelled", c2.ID + "=cancelled"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("outbox %v, want %v", got, want)
	}

	// A queue that changes after every read: three tries, then ErrConflict, nothing changed.
	const dev3 = "IMEI:DELC3"
	create(dev3, mkCmd(dev3, 1, engine.OpGet))
	next := 2
	h.set(func() {
		if _, _, err := s.Enqueue(ctx, dev3, "", []*engine.Command{mkCmd(dev3, next, engine.OpGet)}, nil); err != nil {
			t.Error(err)
		}
		next++
	})
	if err := s.DeleteDevice(ctx, dev3, 0, now, stateEvent, []byte("deleted")); !errors.Is(err, ErrConflict) {
		t.Fatalf("delete under a queue that keeps changing: %v, want ErrConflict", err)
	}
	if w := h.set(nil); w != 3 {
		t.Fatalf("the delete's write ran %d times, want 3", w)
	}
	if _, err := s.GetDevice(ctx, dev3); err != nil {
		t.Fatalf("device after a delete that gave up: %v", err)
	}
	st, err := s.Load(ctx, dev3, "S", "", false)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range st.Queue {
		if c.State != engine.StateQueued {
			t.Fatalf("%s after a delete that gave up: %s", c.ID, c.State)
		}
	}
	if len(st.Queue) != 4 {
		t.Fatalf("queue after a delete that gave up: %d commands, want 4", len(st.Queue))
	}
	if got := outboxStrings(t, s, dev3); len(got) != 0 {
		t.Fatalf("a delete that gave up appended %v", got)
	}
}
