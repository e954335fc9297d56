package api

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// badFields returns the fields a BadRequest detail of err names.
func badFields(err error) []string {
	var out []string
	for _, d := range status.Convert(err).Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.FieldViolations {
				out = append(out, v.Field)
			}
		}
	}
	return out
}

// notified records the devices the relay was told about.
type notified struct {
	mu  sync.Mutex
	ids []string
}

func (n *notified) Notify(id string) {
	n.mu.Lock()
	n.ids = append(n.ids, id)
	n.mu.Unlock()
}

func (n *notified) count(id string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	k := 0
	for _, x := range n.ids {
		if x == id {
			k++
		}
	}
	return k
}

// TestUpdateDeviceMaskStar: update_mask "*" (as the proto documents) replaces every settable
// field, exactly as an empty mask does; "*" together with other paths is INVALID_ARGUMENT
// naming update_mask, refused before any Redis round trip and changing nothing.
func TestUpdateDeviceMaskStar(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	start := func(id string) *devicev1.Device {
		createDevice(t, devs, id, map[string]string{"fleet": "a"})
		resp, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Msisdn: "+4915100000001", ServerId: "srv-a"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn", "server_id"}}})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Device
	}
	// Every settable field in the request; msisdn and server_auth left unset, so they are
	// cleared by a full replacement.
	full := func(id, etag string) *devicev1.Device {
		return &devicev1.Device{DeviceId: id, Etag: etag, ServerId: "srv-b", Labels: map[string]string{"fleet": "b"},
			ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "cli", Secret: "pw"}}
	}

	star := start("IMEI:star-1")
	resp, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: full(star.DeviceId, star.Etag), UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"*"}}})
	if err != nil {
		t.Fatalf(`update_mask "*": %v`, err)
	}
	empty := start("IMEI:star-2")
	want, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: full(empty.DeviceId, empty.Etag)})
	if err != nil {
		t.Fatal(err)
	}
	got := proto.Clone(resp.Device).(*devicev1.Device)
	got.DeviceId = want.Device.DeviceId
	if !proto.Equal(got, want.Device) {
		t.Fatalf("update_mask \"*\" stored\n%v\nan empty mask stores\n%v", resp.Device, want.Device)
	}
	if d := resp.Device; d.Msisdn != "" || d.ServerId != "srv-b" || d.Labels["fleet"] != "b" || d.ClientAuth.GetType() != devicev1.AuthType_AUTH_TYPE_MD5 || d.ClientAuth.GetName() != "cli" {
		t.Fatalf("after update_mask \"*\": %v", d)
	}

	// "*" with anything else is ambiguous (AIP-134): refused, before any Redis call.
	before, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: star.DeviceId})
	if err != nil {
		t.Fatal(err)
	}
	for _, paths := range [][]string{{"*", "labels"}, {"msisdn", "*"}, {"*", "*"}} {
		n0 := r.probe.n.Load()
		_, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: full(star.DeviceId, ""), UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
		if status.Code(err) != codes.InvalidArgument || fmt.Sprint(badFields(err)) != "[update_mask]" {
			t.Fatalf("update_mask %q: %v (fields %v), want InvalidArgument naming update_mask", paths, err, badFields(err))
		}
		if n := r.probe.n.Load() - n0; n != 0 {
			t.Fatalf("update_mask %q: refused after %d Redis round trips, want 0", paths, n)
		}
	}
	if after, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: star.DeviceId}); err != nil || !proto.Equal(after.Device, before.Device) {
		t.Fatalf("a refused update changed the device: %v %v", after, err)
	}
}

// outboxEvents decodes the device's outbox entries from mark on.
func outboxEvents(t *testing.T, r *rig, dev string, mark int) []*eventsv1.Event {
	t.Helper()
	raw, err := r.st.ReadOutbox(context.Background(), dev, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var out []*eventsv1.Event
	for _, b := range raw[mark:] {
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(b, ev); err != nil {
			t.Fatal(err)
		}
		out = append(out, ev)
	}
	return out
}

// TestDeleteDeviceCancelsQueued: DeleteDevice does what the proto says: the device's queued
// commands become CANCELLED (their records kept, so GetCommand answers with the final
// state), a command that had already finished is left exactly as it was, and the outbox
// gets one command_state_changed event per cancelled command, in queue order, then the
// device_changed(deleted) event — all in the delete's atomic step — and the relay is told.
// It takes 3 Redis round trips (read the queue, the delete script, the listing indexes).
// A stale etag refuses the delete and cancels nothing.
func TestDeleteDeviceCancelsQueued(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	relay := &notified{}
	devs := &Devices{St: r.st, Now: fixedNow, Relay: relay}
	cmdSvc := &Commands{St: r.st, Now: fixedNow}

	// A first delete loads the scripts into Redis's cache, so the count below is the
	// steady state.
	createDevice(t, devs, "IMEI:del-warm", nil)
	enqueueOps(t, cmdSvc, "IMEI:del-warm", commandv1.Group_GROUP_NONE, replaceOp("./W"))
	if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: "IMEI:del-warm"}); err != nil {
		t.Fatal(err)
	}

	const dev = "IMEI:del-q"
	d := createDevice(t, devs, dev, map[string]string{"fleet": "q"})
	done := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_NONE, replaceOp("./A/0"))
	queuedCmds := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_NONE, replaceOp("./A/1"), replaceOp("./A/2"))
	queuedCmds = append(queuedCmds, enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_SEQUENCE, replaceOp("./A/3"))...)
	setStates(t, r.st, dev, engine.StateCompleted, done[0].CommandId)
	doneBefore, err := cmdSvc.GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: done[0].CommandId})
	if err != nil {
		t.Fatal(err)
	}

	// A stale etag: refused, nothing cancelled, no event.
	upd, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: dev, Etag: d.Etag, Msisdn: "+4915100000001"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	if err != nil {
		t.Fatal(err)
	}
	mark := outboxLen(t, r.st, dev)
	_, err = devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: dev, Etag: d.Etag})
	if status.Code(err) != codes.Aborted || reason(err) != "CONCURRENT_MODIFICATION" {
		t.Fatalf("delete with a stale etag: %v", err)
	}
	if got := commandStates(t, cmdSvc, queuedCmds); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{queued, queued, queued}) {
		t.Fatalf("a refused delete changed the commands: %v", got)
	}
	if evs := outboxEvents(t, r, dev, mark); len(evs) != 0 {
		t.Fatalf("a refused delete appended %d events: %v", len(evs), evs)
	}
	if _, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: dev}); err != nil {
		t.Fatalf("device after a refused delete: %v", err)
	}

	// The current etag deletes.
	n0 := r.probe.n.Load()
	if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: dev, Etag: upd.Device.Etag}); err != nil {
		t.Fatal(err)
	}
	if n := r.probe.n.Load() - n0; n > 3 {
		t.Fatalf("DeleteDevice took %d Redis round trips, want at most 3", n)
	}
	if got := commandStates(t, cmdSvc, queuedCmds); fmt.Sprint(got) != fmt.Sprint([]commandv1.Command_State{cancelled, cancelled, cancelled}) {
		t.Fatalf("queued commands after the delete: %v, want all CANCELLED", got)
	}
	doneAfter, err := cmdSvc.GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: done[0].CommandId})
	if err != nil || !proto.Equal(doneAfter.Command, doneBefore.Command) {
		t.Fatalf("the completed command changed: %v (%v), was %v", doneAfter, err, doneBefore.Command)
	}
	evs := outboxEvents(t, r, dev, mark)
	if len(evs) != 4 {
		t.Fatalf("%d events after the delete, want 3 command events and the device event: %v", len(evs), evs)
	}
	for i, c := range queuedCmds {
		got := evs[i].GetCommandStateChanged().GetCommand()
		if got.GetCommandId() != c.CommandId || got.GetState() != cancelled || evs[i].DeviceId != dev || evs[i].EventId == "" {
			t.Fatalf("event %d: %v, want %s CANCELLED", i, evs[i], c.CommandId)
		}
	}
	if dc := evs[3].GetDeviceChanged(); dc == nil || !dc.Deleted || evs[3].DeviceId != dev {
		t.Fatalf("last event %v, want device_changed deleted", evs[3])
	}
	if relay.count(dev) == 0 {
		t.Fatal("the relay was not told about the delete's events")
	}
	// The device is gone: its queue is empty for a session, ListCommands is NOT_FOUND like
	// every call naming the device; the commands stay readable by id.
	if st, err := r.st.Load(ctx, dev, "s-after", "", false); err != nil || st.Account != nil || len(st.Queue) != 0 {
		t.Fatalf("after the delete a session loads account %v, queue %d (%v)", st.Account, len(st.Queue), err)
	}
	if _, err := cmdSvc.ListCommands(ctx, &commandv1.ListCommandsRequest{DeviceId: dev}); status.Code(err) != codes.NotFound {
		t.Fatalf("ListCommands of a deleted device: %v", err)
	}
}

// TestDeleteDeviceInFlight: a command already sent when its device is deleted can no longer
// be answered (the device's session is gone with it). As when the engine gives up on an
// unanswered command after an aborted session, it becomes FAILED with error set and no
// status code; a queued member of the same group is CANCELLED. Both get an event.
func TestDeleteDeviceInFlight(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	cmdSvc := &Commands{St: r.st, Now: fixedNow}
	const dev = "IMEI:del-flight"
	createDevice(t, devs, dev, nil)
	seq := enqueueOps(t, cmdSvc, dev, commandv1.Group_GROUP_SEQUENCE, replaceOp("./S/1"), replaceOp("./S/2"))
	setStates(t, r.st, dev, engine.StateSent, seq[0].CommandId)
	mark := outboxLen(t, r.st, dev)
	if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: dev}); err != nil {
		t.Fatal(err)
	}
	sentAfter, err := cmdSvc.GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: seq[0].CommandId})
	if err != nil {
		t.Fatal(err)
	}
	if c := sentAfter.Command; c.State != commandv1.Command_STATE_FAILED || c.Error == "" || c.StatusCode != 0 || c.SentSessionId != "s1" || c.Attempts != 1 {
		t.Fatalf("in-flight command after the delete: %v, want FAILED with an error, no status, its session and attempts kept", c)
	}
	if got := commandStates(t, cmdSvc, seq[1:]); got[0] != cancelled {
		t.Fatalf("queued member after the delete: %v", got)
	}
	evs := outboxEvents(t, r, dev, mark)
	if len(evs) != 3 || evs[0].GetCommandStateChanged().GetCommand().GetState() != commandv1.Command_STATE_FAILED ||
		evs[1].GetCommandStateChanged().GetCommand().GetState() != cancelled || !evs[2].GetDeviceChanged().GetDeleted() {
		t.Fatalf("events after the delete: %v", evs)
	}
}
