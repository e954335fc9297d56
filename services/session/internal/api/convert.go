// Package api implements the session service's gRPC APIs: the internal SessionService the
// gateways call for every device message, and the public DeviceService and CommandService.
// Handlers are thin: they validate, translate between protobuf and the engine/store types,
// and call the store or the engine.
package api

import (
	"encoding/base64"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var authToProto = map[engine.AuthType]devicev1.AuthType{
	engine.AuthNone: devicev1.AuthType_AUTH_TYPE_NONE, "": devicev1.AuthType_AUTH_TYPE_NONE,
	engine.AuthBasic: devicev1.AuthType_AUTH_TYPE_BASIC, engine.AuthMD5: devicev1.AuthType_AUTH_TYPE_MD5,
	engine.AuthHMAC: devicev1.AuthType_AUTH_TYPE_HMAC,
}

var authFromProto = map[devicev1.AuthType]engine.AuthType{
	devicev1.AuthType_AUTH_TYPE_NONE: engine.AuthNone, devicev1.AuthType_AUTH_TYPE_BASIC: engine.AuthBasic,
	devicev1.AuthType_AUTH_TYPE_MD5: engine.AuthMD5, devicev1.AuthType_AUTH_TYPE_HMAC: engine.AuthHMAC,
}

// deviceToProto never returns secrets: they are stored only hashed or sealed.
func deviceToProto(d *store.Device) *devicev1.Device {
	a := d.Account
	return &devicev1.Device{
		DeviceId:   a.DeviceID,
		ClientAuth: &devicev1.AuthConfig{Type: authToProto[a.ClientAuth], Name: a.ClientName},
		ServerAuth: &devicev1.AuthConfig{Type: authToProto[a.ServerAuth], Name: a.ServerName},
		ServerId:   a.ServerID,
		Msisdn:     a.MSISDN,
		Labels:     d.Labels,
		CreateTime: ts(d.Created),
		UpdateTime: ts(d.Updated),
		Etag:       etagString(d.Etag),
	}
}

func etagString(n int64) string {
	if n == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)})
}

func etagInt(s string) (int64, bool) {
	if s == "" {
		return 0, true
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 8 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		n = n<<8 | int64(c)
	}
	return n, true
}

var opToProto = map[engine.OpType]commandv1.OperationType{
	engine.OpGet: commandv1.OperationType_OPERATION_TYPE_GET, engine.OpReplace: commandv1.OperationType_OPERATION_TYPE_REPLACE,
	engine.OpAdd: commandv1.OperationType_OPERATION_TYPE_ADD, engine.OpDelete: commandv1.OperationType_OPERATION_TYPE_DELETE,
	engine.OpExec: commandv1.OperationType_OPERATION_TYPE_EXEC, engine.OpCopy: commandv1.OperationType_OPERATION_TYPE_COPY,
}

var opFromProto = func() map[commandv1.OperationType]engine.OpType {
	m := map[commandv1.OperationType]engine.OpType{}
	for k, v := range opToProto {
		m[v] = k
	}
	return m
}()

var stateToProto = map[engine.CmdState]commandv1.Command_State{
	engine.StateQueued: commandv1.Command_STATE_QUEUED, engine.StateSent: commandv1.Command_STATE_SENT,
	engine.StateCompleted: commandv1.Command_STATE_COMPLETED, engine.StateFailed: commandv1.Command_STATE_FAILED,
	engine.StateCancelled: commandv1.Command_STATE_CANCELLED, engine.StateExpired: commandv1.Command_STATE_EXPIRED,
}

var groupToProto = map[engine.Group]commandv1.Group{
	engine.GroupNone: commandv1.Group_GROUP_NONE, engine.GroupAtomic: commandv1.Group_GROUP_ATOMIC,
	engine.GroupSequence: commandv1.Group_GROUP_SEQUENCE,
}

// CommandToProto converts a command record (exported for the events relay and tests).
func CommandToProto(c *engine.Command) *commandv1.Command {
	op := &commandv1.Operation{
		Type: opToProto[c.Op.Type], TargetUri: c.Op.TargetURI, SourceUri: c.Op.SourceURI,
		Format: c.Op.Format, MimeType: c.Op.MIME, Correlator: c.Op.Correlator,
	}
	if c.Op.HasData || len(c.Op.Data) > 0 {
		op.Data = c.Op.Data
		if op.Data == nil {
			op.Data = []byte{}
		}
	}
	pc := &commandv1.Command{
		CommandId: c.ID, DeviceId: c.DeviceID, GroupId: c.GroupID, Group: groupToProto[c.Group], Operation: op,
		State: stateToProto[c.State], StatusCode: int32(c.Status), Attempts: int32(c.Attempts),
		CreateTime: ts(c.Created), UpdateTime: ts(c.Updated), ExpireTime: ts(c.Expire),
		SentSessionId: c.SentSession, Error: c.Error,
	}
	for _, r := range c.Results {
		d := r.Data
		if d == nil {
			d = []byte{}
		}
		pc.Results = append(pc.Results, &commandv1.ResultItem{Uri: r.URI, Format: r.Format, MimeType: r.MIME, Data: d})
	}
	return pc
}

var outcomeToProto = map[string]eventsv1.SessionEnded_Outcome{
	engine.OutcomeCompleted: eventsv1.SessionEnded_OUTCOME_COMPLETED,
	engine.OutcomeAborted:   eventsv1.SessionEnded_OUTCOME_ABORTED,
	engine.OutcomeTimedOut:  eventsv1.SessionEnded_OUTCOME_TIMED_OUT,
}

// eventToProto converts an engine event into the wire event.
func eventToProto(e engine.Event, deviceID string, now time.Time) *eventsv1.Event {
	if !e.At.IsZero() {
		now = e.At // it happened before the message that found out
	}
	ev := &eventsv1.Event{DeviceId: deviceID, Time: timestamppb.New(now)}
	switch e.Kind {
	case engine.EventSessionStarted:
		ini := eventsv1.SessionStarted_INITIATOR_CLIENT
		if e.Initiator == 1200 {
			ini = eventsv1.SessionStarted_INITIATOR_SERVER
		}
		enc := syncmlv1.Encoding_ENCODING_XML
		if e.Encoding == "wbxml" {
			enc = syncmlv1.Encoding_ENCODING_WBXML
		}
		ev.Payload = &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{
			SessionId: e.Session, Initiator: ini, Encoding: enc, AuthType: authToProto[engine.AuthType(e.AuthType)]}}
	case engine.EventSessionEnded:
		ev.Payload = &eventsv1.Event_SessionEnded{SessionEnded: &eventsv1.SessionEnded{
			SessionId: e.Session, Outcome: outcomeToProto[e.Outcome], Messages: int32(e.Messages), CommandsCompleted: int32(e.Completed)}}
	case engine.EventDeviceInfo:
		di := &eventsv1.DeviceInfoReported{SessionId: e.Session, Nodes: map[string]string{}}
		for k, v := range e.Values {
			switch k {
			case "DevId":
				di.DevId = v
			case "Man":
				di.Man = v
			case "Mod":
				di.Mod = v
			case "DmV":
				di.DmV = v
			case "Lang":
				di.Lang = v
			default:
				di.Nodes["./DevInfo/"+k] = v
			}
		}
		ev.Payload = &eventsv1.Event_DeviceInfoReported{DeviceInfoReported: di}
	case engine.EventCommandStateChanged:
		ev.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: eventCommand(e.Command)}}
	case engine.EventGenericAlert:
		ev.Payload = &eventsv1.Event_GenericAlertReceived{GenericAlertReceived: &eventsv1.GenericAlertReceived{
			SessionId: e.Session, Correlator: e.Correlator, SourceUri: e.SourceURI, Type: e.AlertType, Format: e.Format, Mark: e.Mark, Data: e.Data}}
	}
	return ev
}

// maxEventData bounds the bytes of node values an event carries: events must stay well under
// NATS's maximum payload (1 MiB by default) however large the objects a command moved.
// Consumers that need a large value read the command with GetCommand.
const maxEventData = 64 << 10

// eventCommand is the command as carried in events: without the operation's data and with
// result values over maxEventData left out (their size stays visible via GetCommand).
func eventCommand(c *engine.Command) *commandv1.Command {
	pc := CommandToProto(c)
	pc.Operation.Data = nil
	for _, r := range pc.Results {
		if len(r.Data) > maxEventData {
			r.Data = nil
		}
	}
	return pc
}
