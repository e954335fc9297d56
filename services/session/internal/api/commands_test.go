package api

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

func replaceOp(uri string) *commandv1.Operation {
	return &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_REPLACE, TargetUri: uri, Data: []byte("v")}
}

func enqueueOps(t *testing.T, s *Commands, dev string, group commandv1.Group, ops ...*commandv1.Operation) []*commandv1.Command {
	t.Helper()
	resp, err := s.EnqueueCommands(context.Background(), &commandv1.EnqueueCommandsRequest{DeviceId: dev, Group: group, Operations: ops})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Commands
}

// setStates moves commands to a state the way a session does: through Commit, leaving the
// queue when the state is terminal.
func setStates(t *testing.T, st *store.Store, dev string, state engine.CmdState, ids ...string) {
	t.Helper()
	ctx := context.Background()
	out := engine.Output{Commit: true}
	for _, id := range ids {
		c, _, err := st.GetCommand(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		c.State, c.Updated = state, fixedNow()
		if state == engine.StateSent {
			c.Attempts, c.SentSession = c.Attempts+1, "s1"
		}
		out.Commands = append(out.Commands, c)
		if state.Terminal() {
			out.Dequeue = append(out.Dequeue, id)
		}
	}
	if err := st.Commit(ctx, dev, "setup", engine.State{}, out, nil, nil); err != nil {
		t.Fatal(err)
	}
}

// outboxLen and cancelEvents read the command_state_changed events appended after mark.
func outboxLen(t *testing.T, st *store.Store, dev string) int {
	t.Helper()
	evs, err := st.ReadOutbox(context.Background(), dev, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	return len(evs)
}

func cancelEvents(t *testing.T, st *store.Store, dev string, mark int) map[string]commandv1.Command_State {
	t.Helper()
	evs, err := st.ReadOutbox(context.Background(), dev, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]commandv1.Command_State{}
	for _, b := range evs[mark:] {
		var ev eventsv1.Event
		if err := proto.Unmarshal(b, &ev); err != nil {
			t.Fatal(err)
		}
		c := ev.GetCommandStateChanged().GetCommand()
		if c == nil {
			t.Fatalf("unexpected event %v", &ev)
		}
		if _, dup := got[c.CommandId]; dup {
			t.Fatalf("two events for %s", c.CommandId)
		}
		got[c.CommandId] = c.State
	}
	return got
}

func commandStates(t *testing.T, s *Commands, cmds []*commandv1.Command) []commandv1.Command_State {
	t.Helper()
	out := make([]commandv1.Command_State, len(cmds))
	for i, c := range cmds {
		resp, err := s.GetCommand(context.Background(), &commandv1.GetCommandRequest{CommandId: c.CommandId})
		if err != nil {
			t.Fatal(err)
		}
		out[i] = resp.Command.State
	}
	return out
}

const (
	queued    = commandv1.Command_STATE_QUEUED
	sent      = commandv1.Command_STATE_SENT
	completed = commandv1.Command_STATE_COMPLETED
	cancelled = commandv1.Command_STATE_CANCELLED
)

// TestCancelGroup: cancelling one member of an Atomic/Sequence group cancels the group's
// queued members in one step, with a command_state_changed event for each and every one of
// them in the response; the commands queued before and after the group are not touched.
// Members that already left the queue state (sent, completed) are kept, as before: only
// the queued rest is cancelled. A cancel of a member that is itself no longer queued is
// refused (FailedPrecondition) and cancels nothing.
func TestCancelGroup(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	cmdSvc := &Commands{St: r.st, Now: fixedNow}
	const dev = "IMEI:cancel-1"
	createDevice(t, &Devices{St: r.st, Now: fixedNow}, dev, nil)

	before := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_NONE, replaceOp("./A/0"))
	group := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_ATOMIC, replaceOp("./A/1"), replaceOp("./A/2"), replaceOp("./A/3"))
	seq := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_SEQUENCE, replaceOp("./B/1"), replaceOp("./B/2"), replaceOp("./B/3"))
	after := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_NONE, replaceOp("./A/4"))

	mark := outboxLen(t, r.st, dev)
	resp, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: group[1].CommandId})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Commands) != 3 || resp.Commands[0].CommandId != group[1].CommandId {
		t.Fatalf("cancel answered %d commands (first %s), want the 3 of the group, the requested one first", len(resp.Commands), resp.Commands[0].GetCommandId())
	}
	for _, c := range resp.Commands {
		if c.State != cancelled || c.GroupId != group[0].GroupId {
			t.Fatalf("answered %s in state %v, group %q", c.CommandId, c.State, c.GroupId)
		}
	}
	if got := commandStates(t, cmdSvc, group); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{cancelled, cancelled, cancelled}) {
		t.Fatalf("group states %v", got)
	}
	if got := commandStates(t, cmdSvc, append(append(before, after...), seq...)); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{queued, queued, queued, queued, queued}) {
		t.Fatalf("neighbours' states %v, want all queued", got)
	}
	evs := cancelEvents(t, r.st, dev, mark)
	if len(evs) != 3 {
		t.Fatalf("%d events, want 3: %v", len(evs), evs)
	}
	for _, c := range group {
		if evs[c.CommandId] != cancelled {
			t.Fatalf("event for %s: %v", c.CommandId, evs[c.CommandId])
		}
	}
	// The session sees the queue without the group.
	st, err := r.st.Load(ctx, dev, "s-check", "", false)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range st.Queue {
		ids = append(ids, c.ID)
	}
	if want := []string{before[0].CommandId, seq[0].CommandId, seq[1].CommandId, seq[2].CommandId, after[0].CommandId}; fmt.Sprint(ids) != fmt.Sprint(want) {
		t.Fatalf("queue after the cancel %v, want %v", ids, want)
	}

	// A Sequence whose first member is in flight and whose second completed (the device
	// answered part of it): cancelling the third cancels only itself, the queued rest.
	setStates(t, r.st, dev, engine.StateSent, seq[0].CommandId)
	setStates(t, r.st, dev, engine.StateCompleted, seq[1].CommandId)
	mark = outboxLen(t, r.st, dev)
	// The in-flight member itself cannot be cancelled, and nothing else is.
	if _, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: seq[0].CommandId}); status.Code(err) != codes.FailedPrecondition || reason(err) != "NOT_QUEUED" {
		t.Fatalf("cancel of a sent member: %v", err)
	}
	if got := commandStates(t, cmdSvc, seq); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{sent, completed, queued}) {
		t.Fatalf("a refused cancel changed the group: %v", got)
	}
	if evs := cancelEvents(t, r.st, dev, mark); len(evs) != 0 {
		t.Fatalf("a refused cancel appended events: %v", evs)
	}
	resp, err = cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: seq[2].CommandId})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Commands) != 1 || resp.Commands[0].CommandId != seq[2].CommandId || resp.Commands[0].State != cancelled {
		t.Fatalf("partly sent group: answered %v", resp.Commands)
	}
	if got := commandStates(t, cmdSvc, seq); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{sent, completed, cancelled}) {
		t.Fatalf("partly sent group: states %v", got)
	}
	if evs := cancelEvents(t, r.st, dev, mark); len(evs) != 1 || evs[seq[2].CommandId] != cancelled {
		t.Fatalf("partly sent group: events %v", evs)
	}

	// A Sequence whose first member was sent: cancelling the second cancels the queued
	// second and third and leaves the sent one.
	seq2 := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_SEQUENCE, replaceOp("./C/1"), replaceOp("./C/2"), replaceOp("./C/3"))
	setStates(t, r.st, dev, engine.StateSent, seq2[0].CommandId)
	resp, err = cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: seq2[1].CommandId})
	if err != nil || len(resp.Commands) != 2 {
		t.Fatalf("cancel in a group with a sent member: %v %v", err, resp)
	}
	if got := commandStates(t, cmdSvc, seq2); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{sent, cancelled, cancelled}) {
		t.Fatalf("group with a sent member: states %v", got)
	}

	// A command without a group is cancelled alone; twice is NOT_QUEUED.
	resp, err = cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: after[0].CommandId})
	if err != nil || len(resp.Commands) != 1 || resp.Commands[0].State != cancelled {
		t.Fatalf("cancel of a single command: %v %v", err, resp)
	}
	if _, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: after[0].CommandId}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel twice: %v", err)
	}
	if _, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: store.NewCommandID(dev, "missing")}); status.Code(err) != codes.NotFound {
		t.Fatalf("cancel of an unknown command: %v", err)
	}
}

// TestCancelGroupAtomic: between any two Redis round trips of a group cancel, a session
// loading the queue sees the whole group queued or none of it, never a half-cancelled
// group it would send as a smaller Atomic.
func TestCancelGroupAtomic(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	cmdSvc := &Commands{St: r.st, Now: fixedNow}
	const dev = "IMEI:cancel-atomic"
	createDevice(t, &Devices{St: r.st, Now: fixedNow}, dev, nil)
	group := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_ATOMIC, replaceOp("./A/1"), replaceOp("./A/2"), replaceOp("./A/3"))
	var seen []int
	r.probe.afterEach(func() {
		st, err := r.other.Load(ctx, dev, "s-peek", "", false)
		if err != nil {
			t.Error(err)
			return
		}
		n := 0
		for _, c := range st.Queue {
			if c.GroupID == group[0].GroupId && c.State == engine.StateQueued {
				n++
			}
		}
		seen = append(seen, n)
	})
	_, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: group[0].CommandId})
	r.probe.afterEach(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range seen {
		if n != 0 && n != 3 {
			t.Fatalf("a session loading during the cancel saw %d of the group's 3 commands queued (after each round trip: %v)", n, seen)
		}
	}
	if len(seen) == 0 || seen[len(seen)-1] != 0 {
		t.Fatalf("queued members of the group after each round trip: %v, want none at the end", seen)
	}
}

// TestCancelGroupLongHistory: cancelling a group on a device with 2,000 finished commands
// costs the same two Redis round trips as on a new device (read the group, then apply the
// cancel) — nothing walks the device's command history.
func TestCancelGroupLongHistory(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	cmdSvc := &Commands{St: r.st, Now: fixedNow}
	const dev = "IMEI:cancel-history"
	createDevice(t, &Devices{St: r.st, Now: fixedNow}, dev, nil)
	history := make([]*engine.Command, 2000)
	ids := make([]string, len(history))
	for i := range history {
		ids[i] = store.NewCommandID(dev, fmt.Sprintf("h%04d", i))
		history[i] = &engine.Command{ID: ids[i], DeviceID: dev, Op: engine.Operation{Type: engine.OpGet, TargetURI: "./A"}, State: engine.StateQueued, Created: fixedNow()}
	}
	if _, _, err := r.st.Enqueue(ctx, dev, "", history, nil); err != nil {
		t.Fatal(err)
	}
	setStates(t, r.st, dev, engine.StateCompleted, ids...)

	// A first cancel loads the scripts into Redis's cache, so the count shows the steady state.
	warm := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_ATOMIC, replaceOp("./W/1"), replaceOp("./W/2"))
	if _, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: warm[0].CommandId}); err != nil {
		t.Fatal(err)
	}
	group := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_ATOMIC, replaceOp("./A/1"), replaceOp("./A/2"), replaceOp("./A/3"))
	mark := outboxLen(t, r.st, dev)
	n0 := r.probe.n.Load()
	resp, err := cmdSvc.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: group[2].CommandId})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.probe.n.Load() - n0; n > 2 {
		t.Fatalf("cancelling a group of 3 with 2,000 commands of history took %d Redis round trips, want 2", n)
	}
	if len(resp.Commands) != 3 {
		t.Fatalf("answered %d commands, want 3", len(resp.Commands))
	}
	if got := commandStates(t, cmdSvc, group); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{cancelled, cancelled, cancelled}) {
		t.Fatalf("group states %v", got)
	}
	if evs := cancelEvents(t, r.st, dev, mark); len(evs) != 3 {
		t.Fatalf("%d events, want 3", len(evs))
	}
}

// TestExecCorrelatorChosen: an Exec enqueued without a correlator gets one the server
// chose (command.proto), returned with the command, stored with it and indexed like a
// given one, so the device's Generic Alert that echoes it is attached to the command. A
// given correlator is kept; other operations get none.
func TestExecCorrelatorChosen(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	cmdSvc := &Commands{St: r.st, Now: fixedNow}
	const dev = "IMEI:corr-1"
	createDevice(t, devs, dev, nil)
	exec := func(corr string) *commandv1.Operation {
		return &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_EXEC, TargetUri: "./FUMO/Pkg/Update", Correlator: corr}
	}
	cmds := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_NONE, exec(""), exec(""), exec("given-1"), replaceOp("./A"))
	chosen := cmds[0].Operation.Correlator
	if chosen == "" || cmds[1].Operation.Correlator == "" || cmds[1].Operation.Correlator == chosen {
		t.Fatalf("correlators chosen: %q, %q; want two different ones", chosen, cmds[1].Operation.Correlator)
	}
	if cmds[2].Operation.Correlator != "given-1" || cmds[3].Operation.Correlator != "" {
		t.Fatalf("given correlator %q, Replace's %q", cmds[2].Operation.Correlator, cmds[3].Operation.Correlator)
	}
	if got, err := cmdSvc.GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: cmds[0].CommandId}); err != nil || got.Command.Operation.Correlator != chosen {
		t.Fatalf("stored command: %v %v", got, err)
	}
	for i, corr := range []string{chosen, "given-1"} {
		c, err := r.st.AttachAlert(ctx, dev, corr, engine.ResultItem{URI: "./FUMO/Pkg", Data: []byte("200")}, fixedNow(), nil)
		if err != nil || c == nil || c.ID != cmds[2*i].CommandId {
			t.Fatalf("generic alert with correlator %q attached to %v (%v), want %s", corr, c, err, cmds[2*i].CommandId)
		}
	}
}
