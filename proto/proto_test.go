package proto_test

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"
	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"
)

var testTime = timestamppb.New(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

// pkg1 is a client's first message: Alert 1201, a DevInfo Replace, an Item with an empty
// <Data/> and one without Data, and an Atomic, so that nesting and presence are covered.
func pkg1() *syncmlv1.Message {
	return &syncmlv1.Message{
		Header: &syncmlv1.Header{
			VerDtd:    "1.2",
			VerProto:  "DM/1.2",
			SessionId: "0A1",
			MsgId:     "1",
			Target:    &syncmlv1.Locator{LocUri: "https://dm.example.com/dm"},
			Source:    &syncmlv1.Locator{LocUri: "IMEI:490154203237518", LocName: "dev"},
			Cred: &syncmlv1.Cred{
				Meta: &syncmlv1.Meta{Format: "b64", Type: "syncml:auth-md5"},
				Data: "c2VjcmV0",
			},
			Meta: &syncmlv1.Meta{MaxMsgSize: "10000", MaxObjSize: "65536"},
		},
		Body: &syncmlv1.Body{
			Final: true,
			Commands: []*syncmlv1.Command{
				{Kind: syncmlv1.CommandKind_COMMAND_KIND_ALERT, CmdId: "1", Data: "1201"},
				{
					Kind:  syncmlv1.CommandKind_COMMAND_KIND_REPLACE,
					CmdId: "2",
					Items: []*syncmlv1.Item{
						{
							Source: &syncmlv1.Locator{LocUri: "./DevInfo/Man"},
							Data:   &syncmlv1.Data{Value: []byte("ACME"), Kind: syncmlv1.DataKind_DATA_KIND_TEXT},
						},
						{Source: &syncmlv1.Locator{LocUri: "./DevInfo/Lang"}, Data: &syncmlv1.Data{}},
						{Source: &syncmlv1.Locator{LocUri: "./DevInfo/Ext"}},
					},
				},
				{
					Kind:  syncmlv1.CommandKind_COMMAND_KIND_STATUS,
					CmdId: "3", MsgRef: "1", CmdRef: "0", Cmd: "SyncHdr",
					TargetRefs: []string{"IMEI:490154203237518"},
					SourceRefs: []string{"https://dm.example.com/dm"},
					Chal:       &syncmlv1.Chal{Meta: &syncmlv1.Meta{Type: "syncml:auth-md5", NextNonce: "AAAA"}},
					Data:       "401",
				},
				{
					Kind:  syncmlv1.CommandKind_COMMAND_KIND_ATOMIC,
					CmdId: "4",
					Commands: []*syncmlv1.Command{{
						Kind:  syncmlv1.CommandKind_COMMAND_KIND_ADD,
						CmdId: "5",
						Items: []*syncmlv1.Item{{
							Target:   &syncmlv1.Locator{LocUri: "./Ext/Blob"},
							Meta:     &syncmlv1.Meta{Format: "bin", Size: "3"},
							Data:     &syncmlv1.Data{Value: []byte{0x00, 0xff, 0x80}, Kind: syncmlv1.DataKind_DATA_KIND_OPAQUE},
							MoreData: true,
						}},
					}},
				},
			},
		},
	}
}

func command() *commandv1.Command {
	data := []byte("http://fw.example.com/pkg.bin")
	return &commandv1.Command{
		CommandId: "cmd-1",
		DeviceId:  "IMEI:490154203237518",
		GroupId:   "grp-1",
		Group:     commandv1.Group_GROUP_SEQUENCE,
		Operation: &commandv1.Operation{
			Type:      commandv1.OperationType_OPERATION_TYPE_REPLACE,
			TargetUri: "./FUMO/Update/PkgURL",
			Data:      data,
			Format:    "chr",
			MimeType:  "text/plain",
		},
		State:      commandv1.Command_STATE_COMPLETED,
		StatusCode: 200,
		Results: []*commandv1.ResultItem{
			{Uri: "./DevDetail/SwV", Format: "chr", Data: []byte("1.0")},
			{Uri: "./Empty", Data: []byte{}},
			{Uri: "./NoData"},
		},
		Attempts:      1,
		CreateTime:    testTime,
		UpdateTime:    testTime,
		ExpireTime:    testTime,
		SentSessionId: "0A1",
	}
}

// roundTrip marshals m, unmarshals it into a new message of the same type and fails unless
// the two are equal (proto.Equal tells an unset message field from an empty one).
func roundTrip[M proto.Message](t *testing.T, m M) M {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatalf("marshal %T: %v", m, err)
	}
	got := m.ProtoReflect().New().Interface().(M)
	if err := proto.Unmarshal(b, got); err != nil {
		t.Fatalf("unmarshal %T: %v", m, err)
	}
	if !proto.Equal(m, got) {
		t.Fatalf("%T changed in a round trip:\nwant %v\n got %v", m, m, got)
	}
	return got
}

func TestRoundTrip(t *testing.T) {
	t.Run("syncml", func(t *testing.T) {
		got := roundTrip(t, pkg1())
		items := got.GetBody().GetCommands()[1].GetItems()
		// <Data/> and no Data element must stay distinguishable.
		if items[1].GetData() == nil || len(items[1].GetData().GetValue()) != 0 {
			t.Errorf("empty <Data/> became %v", items[1].GetData())
		}
		if items[2].GetData() != nil {
			t.Errorf("absent Data became %v", items[2].GetData())
		}
		if got.GetBody().GetCommands()[3].GetCommands()[0].GetItems()[0].GetData().GetValue()[1] != 0xff {
			t.Error("opaque bytes lost")
		}
	})
	t.Run("session", func(t *testing.T) {
		roundTrip(t, &sessionv1.HandleMessageRequest{
			Message: pkg1(),
			Transport: &sessionv1.Transport{
				Encoding:              syncmlv1.Encoding_ENCODING_WBXML,
				ContentType:           "application/vnd.syncml.dm+wbxml",
				BodySize:              412,
				BodyMd5:               "1B2M2Y8AsgTpgAmY7PhCfg==",
				HmacHeader:            `algorithm=MD5, username="dev", mac=abc=`,
				TlsClientIdentity:     "CN=IMEI:490154203237518",
				RemoteAddr:            "192.0.2.7:40123",
				ReceiveTime:           testTime,
				RequestUri:            "/dm?s=tok",
				WbxmlVersion:          2,
				WbxmlFpiInStringTable: true,
			},
		})
		roundTrip(t, &sessionv1.HandleMessageResponse{
			Reply:      pkg1(),
			HttpStatus: 200,
			ReplyAuth:  &sessionv1.ReplyAuth{Username: "srv", KeyB64Md5: "q6qmS7dUfd5BoHP7mzeIZg==", Nonce: []byte{1, 2, 3, 4}},
			SessionId:  "0A1",
			DeviceId:   "IMEI:490154203237518",
		})
	})
	t.Run("device", func(t *testing.T) {
		dev := &devicev1.Device{
			DeviceId:   "IMEI:490154203237518",
			ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_HMAC, Name: "dev", Secret: "s3cret"},
			ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "srv", Secret: "other"},
			ServerId:   "dmgrid",
			Msisdn:     "+15555550100",
			Labels:     map[string]string{"fleet": "meters", "region": "eu"},
			CreateTime: testTime,
			UpdateTime: testTime,
			Etag:       "W/1",
		}
		roundTrip(t, &devicev1.UpdateDeviceRequest{
			Device:     dev,
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels", "msisdn"}},
		})
		roundTrip(t, &devicev1.ListDevicesResponse{Devices: []*devicev1.Device{dev}, NextPageToken: "p2"})
	})
	t.Run("command", func(t *testing.T) {
		got := roundTrip(t, &commandv1.EnqueueCommandsResponse{Commands: []*commandv1.Command{command()}})
		res := got.GetCommands()[0].GetResults()
		// An empty value and no Data element must stay distinguishable.
		if res[1].Data == nil || res[2].Data != nil {
			t.Errorf("optional data presence lost: empty=%v absent=%v", res[1].Data, res[2].Data)
		}
	})
	t.Run("events", func(t *testing.T) {
		for _, ev := range []*eventsv1.Event{
			{Payload: &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{
				SessionId: "0A1", Initiator: eventsv1.SessionStarted_INITIATOR_CLIENT,
				Encoding: syncmlv1.Encoding_ENCODING_XML, AuthType: devicev1.AuthType_AUTH_TYPE_MD5,
			}}},
			{Payload: &eventsv1.Event_SessionEnded{SessionEnded: &eventsv1.SessionEnded{
				SessionId: "0A1", Outcome: eventsv1.SessionEnded_OUTCOME_COMPLETED, Messages: 3, CommandsCompleted: 2,
			}}},
			{Payload: &eventsv1.Event_DeviceInfoReported{DeviceInfoReported: &eventsv1.DeviceInfoReported{
				SessionId: "0A1", DevId: "IMEI:490154203237518", Man: "ACME", Mod: "M1", DmV: "1.2", Lang: "en",
				Nodes: map[string]string{"./DevDetail/SwV": "1.0"},
			}}},
			{Payload: &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: command()}}},
			{Payload: &eventsv1.Event_GenericAlertReceived{GenericAlertReceived: &eventsv1.GenericAlertReceived{
				SessionId: "0A1", Correlator: "c1", SourceUri: "./FUMO", Format: "int", Mark: "critical",
				Type: "org.openmobilealliance.dm.firmwareupdate.devicerequest", Data: []byte("0"),
			}}},
			{Payload: &eventsv1.Event_WakeRequested{WakeRequested: &eventsv1.WakeRequested{Reason: "commands_enqueued"}}},
		} {
			ev.EventId = "ev-1"
			ev.DeviceId = "IMEI:490154203237518"
			ev.Time = testTime
			ev.TraceParent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
			roundTrip(t, ev)
		}
	})
}

// sessionServer answers every message with its own header echoed back.
type sessionServer struct {
	sessionv1.UnimplementedSessionServiceServer
}

func (sessionServer) HandleMessage(_ context.Context, req *sessionv1.HandleMessageRequest) (*sessionv1.HandleMessageResponse, error) {
	return &sessionv1.HandleMessageResponse{
		Reply:      &syncmlv1.Message{Header: req.GetMessage().GetHeader()},
		HttpStatus: 200,
		SessionId:  req.GetMessage().GetHeader().GetSessionId(),
	}, nil
}

// commandServer streams one state per requested command id.
type commandServer struct {
	commandv1.UnimplementedCommandServiceServer
}

func (commandServer) WatchCommands(req *commandv1.WatchCommandsRequest, stream grpc.ServerStreamingServer[commandv1.WatchCommandsResponse]) error {
	for _, id := range req.GetCommandIds() {
		c := command()
		c.CommandId = id
		if err := stream.Send(&commandv1.WatchCommandsResponse{Command: c, Time: testTime}); err != nil {
			return err
		}
	}
	return nil
}

// TestGRPC serves the generated services over an in-memory listener, so the generated
// client and server code (unary and server-streaming) is exercised end to end.
func TestGRPC(t *testing.T) {
	lis := bufconn.Listen(1 << 20)
	srv := grpc.NewServer()
	sessionv1.RegisterSessionServiceServer(srv, sessionServer{})
	commandv1.RegisterCommandServiceServer(srv, commandServer{})
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)

	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := sessionv1.NewSessionServiceClient(conn).HandleMessage(ctx, &sessionv1.HandleMessageRequest{Message: pkg1()})
	if err != nil {
		t.Fatalf("HandleMessage: %v", err)
	}
	if !proto.Equal(resp.GetReply().GetHeader(), pkg1().GetHeader()) || resp.GetSessionId() != "0A1" {
		t.Fatalf("HandleMessage reply = %v", resp)
	}

	stream, err := commandv1.NewCommandServiceClient(conn).WatchCommands(ctx,
		&commandv1.WatchCommandsRequest{DeviceId: "IMEI:490154203237518", CommandIds: []string{"a", "b"}})
	if err != nil {
		t.Fatalf("WatchCommands: %v", err)
	}
	var ids []string
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("WatchCommands Recv: %v", err)
		}
		ids = append(ids, m.GetCommand().GetCommandId())
	}
	if len(ids) != 2 || ids[0] != "a" || ids[1] != "b" {
		t.Fatalf("WatchCommands streamed %v, want [a b]", ids)
	}

	// An unimplemented method answers Unimplemented, as generated.
	_, err = commandv1.NewCommandServiceClient(conn).GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: "a"})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("GetCommand on an unimplemented server: %v, want Unimplemented", err)
	}
}
