package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory"
)

// startInventoryService runs an inventory over an embedded NATS and the test Redis and
// returns its address and a JetStream context to publish events with.
func startInventoryService(t *testing.T) (string, jetstream.JetStream) {
	t.Helper()
	ns := e2e.StartNATS(t)
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := inventory.New(ctx, inventory.Config{RedisURL: testredis.URL(t), RedisPrefix: testredis.Prefix(t),
		NATSURL: ns.ClientURL(), EventsStream: events.DefaultStream, Consumer: "inventory",
		DeadLetterSubject: "dmgrid.deadletter.inventory", MaxDeliver: 3, MaxAckPending: 256, AckWait: 10 * time.Second,
		Workers: 2, Batch: 32, DedupeWindow: time.Hour}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Serve(ctx, lis)
	}()
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		nc.Close()
		cancel()
		<-done
		svc.Close()
	})
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return lis.Addr().String(), js
}

// invSession returns the events of one completed session of a device that reports the
// given model and firmware.
func invSession(id, mod, fw string, at time.Time) []*eventsv1.Event {
	ts := timestamppb.New(at)
	get := &commandv1.Command{CommandId: "cmd-" + id, DeviceId: id, State: commandv1.Command_STATE_COMPLETED, StatusCode: 200,
		Operation: &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail?list=StructData"},
		Results: []*commandv1.ResultItem{
			{Uri: "./DevDetail/FwV", Format: "chr", Data: []byte(fw)},
			{Uri: "./DevDetail/SwV", Format: "chr", Data: []byte("sw-" + fw)},
			{Uri: "./DevDetail/Ext/Blob", Format: "bin", Data: []byte{0, 1, 2}},
		}}
	return []*eventsv1.Event{
		{EventId: id + "-1", DeviceId: id, Time: ts, Payload: &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1"}}},
		{EventId: id + "-2", DeviceId: id, Time: ts, Payload: &eventsv1.Event_DeviceInfoReported{DeviceInfoReported: &eventsv1.DeviceInfoReported{
			DevId: id, Man: "ACME", Mod: mod, DmV: "1.2", Lang: "en-US"}}},
		{EventId: id + "-3", DeviceId: id, Time: ts, Payload: &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: get}}},
		{EventId: id + "-4", DeviceId: id, Time: ts, Payload: &eventsv1.Event_SessionEnded{SessionEnded: &eventsv1.SessionEnded{
			SessionId: "1", Outcome: eventsv1.SessionEnded_OUTCOME_COMPLETED}}},
	}
}

func TestInventoryCommands(t *testing.T) {
	addr, js := startInventoryService(t)
	at := time.Now().Add(-time.Hour).Truncate(time.Millisecond)
	var evs []*eventsv1.Event
	evs = append(evs, invSession("IMEI:inv-a", "X1", "1.0", at)...)
	evs = append(evs, invSession("IMEI:inv-b", "X1", "2.0", at.Add(time.Minute))...)
	evs = append(evs, invSession("IMEI:inv-c", "Y9", "2.0", at.Add(2*time.Minute))...)
	for _, e := range evs {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.Publish(context.Background(), events.Subject(e), b, jetstream.WithMsgID(e.GetEventId())); err != nil {
			t.Fatal(err)
		}
	}
	a := &apiT{t: t, addr: addr}
	deadline := time.Now().Add(20 * time.Second)
	for strings.TrimSpace(a.ok("inventory", "count", "--outcome", "completed")) != "3" {
		if time.Now().After(deadline) {
			t.Fatal("the inventory did not take in the events")
		}
		time.Sleep(20 * time.Millisecond)
	}

	out := a.ok("inventory", "get", "IMEI:inv-a")
	if field(t, out, "mod") != "X1" || field(t, out, "fw_v") != "1.0" || field(t, out, "last_outcome") != "completed" ||
		!strings.HasPrefix(field(t, out, "sessions"), "started 1, completed 1") || field(t, out, "labels") != "-" {
		t.Fatalf("inventory get:\n%s", out)
	}
	var dev inventoryv1.Device
	unmarshal(t, a.ok("inventory", "get", "IMEI:inv-a", "-o", "json"), &dev)
	if dev.GetDevDetail().GetSwV() != "sw-1.0" || !dev.GetLastSeenTime().AsTime().Equal(at) {
		t.Fatalf("inventory get -o json = %v", &dev)
	}
	a.fails(1, []string{"inventory", "get", "IMEI:none"}, "NotFound")

	if got := strings.TrimSpace(a.ok("inventory", "count", "--fw", "2.0")); got != "2" {
		t.Fatalf("count --fw 2.0 = %s", got)
	}
	if got := strings.TrimSpace(a.ok("inventory", "count", "--model", "X1", "--seen-after", at.Add(30*time.Second).Format(time.RFC3339Nano))); got != "1" {
		t.Fatalf("count --model X1 --seen-after = %s", got)
	}
	if got := strings.TrimSpace(a.ok("inventory", "count", "--seen-before", "30m")); got != "3" {
		t.Fatalf("count --seen-before 30m = %s", got)
	}

	// Pages: one device a page, followed with --all; without it the token goes to stderr.
	var list inventoryv1.ListDevicesResponse
	unmarshal(t, a.ok("inventory", "list", "--model", "X1", "--page-size", "1", "--all", "-o", "json"), &list)
	if len(list.Devices) != 2 || list.Devices[0].GetDeviceId() != "IMEI:inv-a" || list.Devices[1].GetDeviceId() != "IMEI:inv-b" || list.NextPageToken != "" {
		t.Fatalf("list --all = %v", &list)
	}
	code, out, errOut := a.run("inventory", "list", "--page-size", "2")
	if code != 0 || len(lines(out)) != 3 || !strings.Contains(errOut, "more devices: --page-token ") || !strings.Contains(out, "IMEI:inv-b") {
		t.Fatalf("list --page-size 2: exit %d\n%s\n%s", code, out, errOut)
	}
	tok := strings.Fields(strings.TrimPrefix(errOut, "dmctl: more devices: --page-token "))[0]
	if out := a.ok("inventory", "list", "--page-size", "2", "--page-token", tok); len(lines(out)) != 2 || !strings.Contains(out, "IMEI:inv-c") {
		t.Fatalf("second page:\n%s", out)
	}
	// A token used with another filter is refused by the server, with the field named.
	a.fails(1, []string{"inventory", "list", "--model", "Y9", "--page-token", tok}, "InvalidArgument", "field page_token")

	out = a.ok("inventory", "tree", "IMEI:inv-a", "./DevDetail")
	if !strings.Contains(out, "./DevDetail/FwV") || !strings.Contains(out, "b64:AAEC") || strings.Contains(out, "./DevInfo") {
		t.Fatalf("tree ./DevDetail:\n%s", out)
	}
	var tree inventoryv1.GetDeviceTreeResponse
	unmarshal(t, a.ok("inventory", "tree", "IMEI:inv-a", "-o", "json"), &tree)
	if len(tree.Nodes) != 8 { // 5 DevInfo + FwV, SwV, Ext/Blob
		t.Fatalf("tree -o json has %d nodes", len(tree.Nodes))
	}

	out = a.ok("inventory", "stats", "--by", "model", "--by", "firmware")
	if field(t, out, "total") != "3" || !strings.Contains(out, "MODEL") || !strings.Contains(out, "FIRMWARE") {
		t.Fatalf("stats:\n%s", out)
	}
	var stats inventoryv1.AggregateDevicesResponse
	unmarshal(t, a.ok("inventory", "stats", "--fw", "2.0", "-o", "json"), &stats)
	if stats.TotalCount != 2 || len(stats.Aggregations) != 2 || stats.Aggregations[0].Buckets[0].Count != 1 {
		t.Fatalf("stats --fw 2.0 = %v", &stats)
	}

	// Usage errors: exit status 2.
	a.fails(2, []string{"inventory", "list", "--outcome", "fine"}, "--outcome")
	a.fails(2, []string{"inventory", "count", "--seen-after", "yesterday"}, "--seen-after")
	a.fails(2, []string{"inventory", "stats", "--by", "colour"}, "--by")
	a.fails(2, []string{"inventory", "frob"}, "unknown inventory subcommand")
	a.fails(2, []string{"inventory", "list", "extra"}, "unexpected argument")

	// DMGRID_INVENTORY_ADDR is the default address of the inventory commands.
	t.Setenv("DMGRID_INVENTORY_ADDR", addr)
	var o, e bytes.Buffer
	if code := runContext(context.Background(), []string{"inventory", "count"}, nil, &o, &e); code != 0 || strings.TrimSpace(o.String()) != "3" {
		t.Fatalf("count via DMGRID_INVENTORY_ADDR: exit %d %q %q", code, o.String(), e.String())
	}
}
