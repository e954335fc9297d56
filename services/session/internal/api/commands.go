package api

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// Limits on one enqueue call.
const (
	maxOperations = 100
	maxDataBytes  = 4 << 20
)

// Commands implements dmgrid.command.v1.CommandService.
type Commands struct {
	commandv1.UnimplementedCommandServiceServer
	St    *store.Store
	Relay Notifier
	// JS and Stream serve WatchCommands from the events stream (deduplicated by event id,
	// unlike plain NATS subscriptions, which see every relay's publish); nil JS makes
	// WatchCommands Unavailable.
	JS     jetstream.JetStream
	Stream string
	Now    func() time.Time
	// Propagator (optional) carries the API call's trace into the events it commits.
	Propagator propagation.TextMapPropagator
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

func (s *Commands) event(ctx context.Context, c *engine.Command, now time.Time) ([]byte, error) {
	return commandEvent(ctx, s.Propagator, c, now)
}

// commandEvent builds the command_state_changed event of a change made through the API.
func commandEvent(ctx context.Context, p propagation.TextMapPropagator, c *engine.Command, now time.Time) ([]byte, error) {
	return frame(ctx, p, eventToProto(engine.Event{Kind: engine.EventCommandStateChanged, Command: c}, c.DeviceID, now))
}

// EnqueueCommands validates and queues operations for a device.
func (s *Commands) EnqueueCommands(ctx context.Context, req *commandv1.EnqueueCommandsRequest) (*commandv1.EnqueueCommandsResponse, error) {
	dev := req.GetDeviceId()
	if err := validDeviceID(dev); err != nil {
		return nil, err
	}
	ops := req.GetOperations()
	switch {
	case len(ops) == 0:
		return nil, invalid("operations", "at least one operation is required")
	case len(ops) > maxOperations:
		return nil, invalid("operations", "at most "+strconv.Itoa(maxOperations)+" operations per call")
	case len(req.GetRequestId()) > 128:
		return nil, invalid("request_id", "longer than 128 bytes")
	}
	now := s.Now()
	var expire time.Time
	if req.GetExpireTime() != nil {
		if err := req.ExpireTime.CheckValid(); err != nil {
			return nil, invalid("expire_time", err.Error())
		}
		expire = req.ExpireTime.AsTime()
		if !expire.After(now) {
			return nil, invalid("expire_time", "must be in the future")
		}
	}
	group := engine.GroupNone
	switch req.GetGroup() {
	case commandv1.Group_GROUP_ATOMIC:
		group = engine.GroupAtomic
	case commandv1.Group_GROUP_SEQUENCE:
		group = engine.GroupSequence
	}
	groupID := ""
	if group != engine.GroupNone {
		groupID = randomHex(8)
	}
	cmds := make([]*engine.Command, 0, len(ops))
	for i, op := range ops {
		field := "operations[" + strconv.Itoa(i) + "]"
		t, ok := opFromProto[op.GetType()]
		if !ok {
			return nil, invalid(field+".type", "required")
		}
		// Atomic may hold only Add, Delete, Copy, Replace (and Alert) in DM: a Get or Exec
		// inside it is refused by devices with 500 (RepPro §4.1.6.3).
		if group == engine.GroupAtomic && (t == engine.OpGet || t == engine.OpExec) {
			return nil, invalid(field+".type", string(t)+" is not allowed inside an atomic group")
		}
		target, err := dmtree.ParseURI(op.GetTargetUri(), dmtree.DefaultLimits)
		if err != nil {
			return nil, invalid(field+".target_uri", err.Error())
		}
		o := engine.Operation{Type: t, TargetURI: target.String(), Format: op.GetFormat(), MIME: op.GetMimeType(), Correlator: op.GetCorrelator()}
		if t == engine.OpCopy {
			src, err := dmtree.ParseURI(op.GetSourceUri(), dmtree.DefaultLimits)
			if err != nil {
				return nil, invalid(field+".source_uri", err.Error())
			}
			o.SourceURI = src.String()
		}
		if op.Data != nil {
			if len(op.Data) > maxDataBytes {
				return nil, invalid(field+".data", "larger than 4 MiB")
			}
			if t == engine.OpGet || t == engine.OpDelete || t == engine.OpCopy {
				return nil, invalid(field+".data", string(t)+" carries no data")
			}
			o.Data, o.HasData = op.Data, true
		}
		if o.Format != "" {
			if _, err := dmtree.ParseFormat(o.Format); err != nil {
				return nil, invalid(field+".format", err.Error())
			}
		}
		if len(o.Correlator) > 128 || len(o.MIME) > 128 {
			return nil, invalid(field, "correlator or mime_type longer than 128 bytes")
		}
		if t == engine.OpExec && o.Correlator == "" {
			// Ours to choose (command.proto): the device echoes it in the Generic Alert
			// with the Exec's result, which the store's correlator index then attaches to
			// this command like a given one.
			o.Correlator = randomHex(8)
		}
		cmds = append(cmds, &engine.Command{
			ID: store.NewCommandID(dev, randomHex(12)), DeviceID: dev, GroupID: groupID, Group: group,
			Op: o, State: engine.StateQueued, RequestID: req.GetRequestId(), Created: now, Updated: now, Expire: expire,
		})
	}
	evs := make([][]byte, 0, len(cmds)+1)
	for _, c := range cmds {
		b, err := s.event(ctx, c, now)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode event: %v", err)
		}
		evs = append(evs, b)
	}
	if req.GetWake() {
		b, err := frame(ctx, s.Propagator, &eventsv1.Event{DeviceId: dev, Time: timestamppb.New(now),
			Payload: &eventsv1.Event_WakeRequested{WakeRequested: &eventsv1.WakeRequested{Reason: "commands enqueued"}}})
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode event: %v", err)
		}
		evs = append(evs, b)
	}
	out, _, err := s.St.Enqueue(ctx, dev, req.GetRequestId(), cmds, evs)
	if err != nil {
		return nil, storeErr(err, "device "+dev, map[string]string{"device_id": dev})
	}
	if s.Relay != nil {
		s.Relay.Notify(dev)
	}
	resp := &commandv1.EnqueueCommandsResponse{}
	for _, c := range out {
		resp.Commands = append(resp.Commands, CommandToProto(c))
	}
	return resp, nil
}

func validCommandID(id string) (string, error) {
	dev, ok := store.CommandDevice(id)
	if !ok {
		return "", invalid("command_id", "not a command id this service issued")
	}
	return dev, nil
}

// GetCommand returns one command with its state and results.
func (s *Commands) GetCommand(ctx context.Context, req *commandv1.GetCommandRequest) (*commandv1.GetCommandResponse, error) {
	if _, err := validCommandID(req.GetCommandId()); err != nil {
		return nil, err
	}
	c, _, err := s.St.GetCommand(ctx, req.CommandId)
	if err != nil {
		return nil, storeErr(err, "command "+req.CommandId, map[string]string{"command_id": req.CommandId})
	}
	return &commandv1.GetCommandResponse{Command: CommandToProto(c)}, nil
}

// ListCommands pages through a device's commands in queue order.
func (s *Commands) ListCommands(ctx context.Context, req *commandv1.ListCommandsRequest) (*commandv1.ListCommandsResponse, error) {
	if err := validDeviceID(req.GetDeviceId()); err != nil {
		return nil, err
	}
	n := int(req.GetPageSize())
	switch {
	case n < 0:
		return nil, invalid("page_size", "must not be negative")
	case n == 0:
		n = 50
	case n > 1000:
		n = 1000
	}
	var after int64
	if tok := req.GetPageToken(); tok != "" {
		raw, err := store.DecodePageToken(tok)
		if err == nil {
			after, err = strconv.ParseInt(raw, 10, 64)
		}
		if err != nil || after <= 0 {
			return nil, invalid("page_token", "not a token this service issued")
		}
	}
	want := map[commandv1.Command_State]bool{}
	for _, st := range req.GetStates() {
		want[st] = true
	}
	if _, err := s.St.GetDevice(ctx, req.DeviceId); err != nil {
		return nil, storeErr(err, "device "+req.DeviceId, map[string]string{"device_id": req.DeviceId})
	}
	cmds, next, err := s.St.ListCommands(ctx, req.DeviceId, after, n)
	if err != nil {
		return nil, storeErr(err, "commands of "+req.DeviceId, nil)
	}
	resp := &commandv1.ListCommandsResponse{}
	if next > 0 {
		resp.NextPageToken = store.EncodePageToken(strconv.FormatInt(next, 10))
	}
	for _, c := range cmds {
		pc := CommandToProto(c)
		if len(want) == 0 || want[pc.State] {
			resp.Commands = append(resp.Commands, pc)
		}
	}
	return resp, nil
}

// CancelCommand cancels a queued command and the queued rest of its atomic/sequence group
// (the group goes to the device as one element), in one atomic store step.
func (s *Commands) CancelCommand(ctx context.Context, req *commandv1.CancelCommandRequest) (*commandv1.CancelCommandResponse, error) {
	dev, err := validCommandID(req.GetCommandId())
	if err != nil {
		return nil, err
	}
	now := s.Now()
	ev := func(c *engine.Command) []byte { b, _ := s.event(ctx, c, now); return b } // marshalling our own event cannot fail
	cancelled, err := s.St.CancelCommand(ctx, req.CommandId, now, ev)
	if err != nil {
		return nil, storeErr(err, "command "+req.CommandId, map[string]string{"command_id": req.CommandId})
	}
	resp := &commandv1.CancelCommandResponse{Commands: make([]*commandv1.Command, 0, len(cancelled))}
	for _, c := range cancelled {
		resp.Commands = append(resp.Commands, CommandToProto(c))
	}
	if s.Relay != nil {
		s.Relay.Notify(dev)
	}
	return resp, nil
}

// WatchCommands streams the device's command state changes as they are published.
func (s *Commands) WatchCommands(req *commandv1.WatchCommandsRequest, stream commandv1.CommandService_WatchCommandsServer) error {
	if err := validDeviceID(req.GetDeviceId()); err != nil {
		return err
	}
	if s.JS == nil {
		return status.Error(codes.Unavailable, "command watching needs NATS, which is not configured")
	}
	ids := map[string]bool{}
	for _, id := range req.GetCommandIds() {
		ids[id] = true
	}
	cons, err := s.JS.OrderedConsumer(stream.Context(), s.Stream, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.KindSubject("command_state_changed", req.DeviceId)},
		DeliverPolicy:  jetstream.DeliverNewPolicy,
	})
	if err != nil {
		return status.Errorf(codes.Unavailable, "watch: %v", err)
	}
	msgs, err := cons.Messages()
	if err != nil {
		return status.Errorf(codes.Unavailable, "watch: %v", err)
	}
	defer msgs.Stop()
	ch := make(chan jetstream.Msg)
	go func() {
		for {
			m, err := msgs.Next()
			if err != nil {
				close(ch)
				return
			}
			select {
			case ch <- m:
			case <-stream.Context().Done():
				close(ch)
				return
			}
		}
	}()
	ctx := stream.Context()
	// With command ids: first their current state, and the stream ends once every one of
	// them is final (subscribed before reading, so no change falls in between).
	final := map[string]bool{}
	for id := range ids {
		c, _, err := s.St.GetCommand(ctx, id)
		if err != nil {
			return storeErr(err, "command "+id, map[string]string{"command_id": id})
		}
		if c.DeviceID != req.DeviceId {
			return invalid("command_ids", "command "+id+" belongs to another device")
		}
		if err := stream.Send(&commandv1.WatchCommandsResponse{Command: CommandToProto(c), Time: timestamppb.New(c.Updated)}); err != nil {
			return err
		}
		if c.State.Terminal() {
			final[id] = true
		}
	}
	for {
		if len(ids) > 0 && len(final) == len(ids) {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-ch:
			if !ok {
				return status.Error(codes.Unavailable, "watch: event stream closed")
			}
			var ev eventsv1.Event
			if err := proto.Unmarshal(m.Data(), &ev); err != nil {
				continue
			}
			c := ev.GetCommandStateChanged().GetCommand()
			if c == nil || (len(ids) > 0 && !ids[c.CommandId]) {
				continue
			}
			if err := stream.Send(&commandv1.WatchCommandsResponse{Command: c, Time: ev.Time}); err != nil {
				return err
			}
			switch c.State {
			case commandv1.Command_STATE_COMPLETED, commandv1.Command_STATE_FAILED, commandv1.Command_STATE_CANCELLED, commandv1.Command_STATE_EXPIRED:
				if ids[c.CommandId] {
					final[c.CommandId] = true
				}
			}
		}
	}
}
