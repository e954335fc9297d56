package ingest

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func ev(p func(*eventsv1.Event)) *eventsv1.Event {
	e := &eventsv1.Event{EventId: "e1", DeviceId: "IMEI:1", Time: timestamppb.New(t0)}
	p(e)
	return e
}

func TestDecodeRejectsMalformed(t *testing.T) {
	good := ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1"}}
	})
	for _, c := range []struct {
		name    string
		subject string
		data    []byte
		reason  string
	}{
		{"garbage", "dmgrid.events.session_started.x", []byte{0xff, 0xff, 0xff}, "not a dmgrid.events.v1.Event"},
		{"no event id", "", mustMarshal(ev(func(e *eventsv1.Event) { e.EventId = ""; e.Payload = good.Payload })), "no event_id"},
		{"no device id", "", mustMarshal(ev(func(e *eventsv1.Event) { e.DeviceId = ""; e.Payload = good.Payload })), "no device_id"},
		{"long device id", "", mustMarshal(ev(func(e *eventsv1.Event) { e.DeviceId = strings.Repeat("x", 300); e.Payload = good.Payload })), "device_id"},
		{"no time", "", mustMarshal(ev(func(e *eventsv1.Event) { e.Time = nil; e.Payload = good.Payload })), "time"},
		{"no payload", "", mustMarshal(ev(func(*eventsv1.Event) {})), "no payload"},
		{"subject mismatch", "dmgrid.events.session_ended.x", mustMarshal(good), "does not match"},
		{"no command", "", mustMarshal(ev(func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{}}
		})), "without a command"},
		{"other device's command", "", mustMarshal(ev(func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: &commandv1.Command{DeviceId: "IMEI:2"}}}
		})), "command of device"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(c.subject, c.data)
			var m *MalformedError
			if !errors.As(err, &m) || !strings.Contains(m.Reason, c.reason) {
				t.Fatalf("Decode = %v, want a MalformedError about %q", err, c.reason)
			}
		})
	}
	if _, err := Decode(events.Subject(good), mustMarshal(good)); err != nil {
		t.Fatalf("good event: %v", err)
	}
}

func mustMarshal(m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		panic(err)
	}
	return b
}

func attrs(u store.Update) map[string]string {
	m := map[string]string{}
	for _, a := range u.Attrs {
		m[a.Name] = a.Value
	}
	return m
}

func nodes(u store.Update) map[string]*inventoryv1.TreeNode {
	m := map[string]*inventoryv1.TreeNode{}
	for _, n := range u.Nodes {
		m[n.URI] = n.Value
	}
	return m
}

func TestToUpdate(t *testing.T) {
	ms := "1772366400000" // t0 in unix ms
	get := func(target string, results ...*commandv1.ResultItem) *eventsv1.Event {
		return ev(func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: &commandv1.Command{
				CommandId: "cmd1", DeviceId: "IMEI:1", State: commandv1.Command_STATE_COMPLETED, StatusCode: 200,
				Operation: &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: target}, Results: results}}}
		})
	}
	item := func(uri, data string) *commandv1.ResultItem {
		return &commandv1.ResultItem{Uri: uri, Format: "chr", Data: []byte(data)}
	}

	u, ok, _ := ToUpdate(ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1A"}}
	}))
	if !ok || !u.Seen || attrs(u)[store.AttrSessionID] != "1A" || attrs(u)[store.AttrSessionStart] != ms || !slices.Equal(u.Counters, []string{store.CounterStarted}) {
		t.Fatalf("session_started = %+v", u)
	}

	u, ok, _ = ToUpdate(ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_SessionEnded{SessionEnded: &eventsv1.SessionEnded{Outcome: eventsv1.SessionEnded_OUTCOME_TIMED_OUT}}
	}))
	if !ok || u.Seen || attrs(u)[string(store.FieldOutcome)] != "OUTCOME_TIMED_OUT" || !slices.Equal(u.Counters, []string{store.CounterTimedOut}) {
		t.Fatalf("session_ended timed out = %+v (a timed-out device was not seen)", u)
	}

	u, ok, skipped := ToUpdate(ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_DeviceInfoReported{DeviceInfoReported: &eventsv1.DeviceInfoReported{
			DevId: "IMEI:1", Man: "ACME", Mod: "X1", Lang: "",
			Nodes: map[string]string{"./DevInfo/Ext/Foo": "bar", "DevDetail/SwV": "9.9", "./Bad//Uri": "x"}}}
	}))
	a := attrs(u)
	if !ok || !u.Seen || a[string(store.FieldMan)] != "ACME" || a[string(store.FieldMod)] != "X1" || a[string(store.FieldSwV)] != "9.9" || skipped != 1 {
		t.Fatalf("device_info_reported = %+v skipped %d", u, skipped)
	}
	if _, ok := a[string(store.FieldLang)]; ok {
		t.Fatal("an empty DevInfo field (\"unchanged\") was applied")
	}
	if n := nodes(u); n["./DevInfo/Ext/Foo"] == nil || n["./DevDetail/SwV"] == nil || n["./DevInfo/DevId"].GetSource() != inventoryv1.TreeNode_SOURCE_DEVICE_INFO {
		t.Fatalf("device_info_reported nodes = %v", n)
	}

	big := &commandv1.ResultItem{Uri: "./Vendor/Big", Format: "bin"} // over the events' 64 KiB: no data
	u, ok, skipped = ToUpdate(get("./DevDetail?list=StructData", item("./DevDetail/FwV", "2.0"), item("./DevDetail/HwV", "B"),
		item("./DevDetail/FwV?prop=Format", "chr"), big))
	n := nodes(u)
	if !ok || attrs(u)[string(store.FieldFwV)] != "2.0" || attrs(u)[string(store.FieldHwV)] != "B" || skipped != 1 || len(n) != 3 {
		t.Fatalf("Get results = %+v skipped %d", u, skipped)
	}
	if n["./Vendor/Big"] == nil || n["./Vendor/Big"].Data != nil || n["./DevDetail/FwV"].GetCommandId() != "cmd1" {
		t.Fatalf("nodes = %v", n)
	}
	// ?list=Struct lists nodes without values: those must not erase known values.
	u, _, _ = ToUpdate(get("./DevDetail?list=Struct", &commandv1.ResultItem{Uri: "./DevDetail/FwV", Format: "chr"}))
	if len(u.Nodes) != 0 {
		t.Fatalf("?list=Struct recorded %v", u.Nodes)
	}

	if _, ok, _ := ToUpdate(ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: &commandv1.Command{
			State: commandv1.Command_STATE_SENT}}}
	})); ok {
		t.Fatal("a command the device has not answered changed the inventory")
	}

	u, ok, _ = ToUpdate(ev(func(e *eventsv1.Event) {
		e.Payload = &eventsv1.Event_GenericAlertReceived{GenericAlertReceived: &eventsv1.GenericAlertReceived{
			SourceUri: "./FUMO/FwPkg1", Type: "org.openmobilealliance.dm.firmwareupdate.downloadandupdate", Data: []byte("200"), Mark: "critical"}}
	}))
	if g := nodes(u)["./FUMO/FwPkg1"]; !ok || g.GetSource() != inventoryv1.TreeNode_SOURCE_GENERIC_ALERT || string(g.GetData()) != "200" || g.GetAlertMark() != "critical" {
		t.Fatalf("generic alert = %+v", u)
	}
}
