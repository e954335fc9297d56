package inventory

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/services/inventory/internal/api"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// The fleets of these tests: 20 models from 6 manufacturers and 50 firmware versions, each
// model shipping 5 of them (so every version runs on two models).
const (
	numModels   = 20
	numFirmware = 50
)

var tBase = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func firmware(i int) string { return fmt.Sprintf("%d.%d.%d", 1+i/10, i%10, 100+i*3) }

// newFleet builds n simulated devices with models and firmware drawn from seed; it is the
// ground truth the inventory is compared with.
func newFleet(n int, seed uint64, base dmsim.Config) *dmsim.Fleet {
	rng := rand.New(rand.NewPCG(seed, 0xD15EA5E))
	return dmsim.NewFleet(n, seed, base, func(i int, c *dmsim.Config) {
		m := rng.IntN(numModels)
		c.Man = fmt.Sprintf("Maker %d", m%6)
		c.Mod = fmt.Sprintf("M-%02d", m)
		c.DevTyp = []string{"phone", "modem", "iot"}[m%3]
		c.OEM = fmt.Sprintf("OEM %d", m%4)
		c.HwV = fmt.Sprintf("hw%d", m%5)
		c.FwV = firmware((m*5 + rng.IntN(5)) % numFirmware)
		c.SwV = fmt.Sprintf("sw-%d", rng.IntN(8))
		c.Lang = []string{"en-US", "de-DE", "fr-FR"}[rng.IntN(3)]
		c.DmV = "1.2"
		c.LrgObj = m%2 == 0
		c.ClientName = fmt.Sprintf("fleet-%d", i) // for the end-to-end test's accounts
		if i%2 == 1 {
			c.Encoding = syncml.EncodingWBXML
		}
	})
}

// seenAt is device i's (synthetic) session time: spread over about three hours.
func seenAt(i int) time.Time { return tBase.Add(time.Duration(i) * 1100 * time.Millisecond) }

// sessionEvents are the events one session of d at time at produces (as the session
// service publishes them): started, DevInfo, a Get of DevDetail sent and completed, ended.
func sessionEvents(i int, d *dmsim.Device, at time.Time) []*eventsv1.Event {
	c := d.Config()
	id := c.DevID
	ev := func(n int, t time.Time, p func(*eventsv1.Event)) *eventsv1.Event {
		e := &eventsv1.Event{EventId: fmt.Sprintf("%032x", uint64(i)<<8|uint64(n)), DeviceId: id, Time: timestamppb.New(t)}
		p(e)
		return e
	}
	sid := strconv.Itoa(i % 0xFFFF)
	cmd := func(state commandv1.Command_State, status int32) *commandv1.Command {
		return &commandv1.Command{CommandId: "cmd-" + strconv.Itoa(i), DeviceId: id, State: state, StatusCode: status,
			Operation: &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail?list=StructData"}}
	}
	done := cmd(commandv1.Command_STATE_COMPLETED, 200)
	for _, kv := range [][2]string{{"DevTyp", c.DevTyp}, {"OEM", c.OEM}, {"FwV", c.FwV}, {"SwV", c.SwV}, {"HwV", c.HwV}, {"LrgObj", strconv.FormatBool(c.LrgObj)}} {
		done.Results = append(done.Results, &commandv1.ResultItem{Uri: "./DevDetail/" + kv[0], Format: "chr", Data: []byte(kv[1])})
	}
	return []*eventsv1.Event{
		ev(1, at, func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: sid, Initiator: eventsv1.SessionStarted_INITIATOR_CLIENT}}
		}),
		ev(2, at, func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_DeviceInfoReported{DeviceInfoReported: &eventsv1.DeviceInfoReported{SessionId: sid,
				DevId: id, Man: c.Man, Mod: c.Mod, DmV: c.DmV, Lang: c.Lang}}
		}),
		ev(3, at, func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: cmd(commandv1.Command_STATE_SENT, 0)}}
		}),
		ev(4, at.Add(time.Millisecond), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_CommandStateChanged{CommandStateChanged: &eventsv1.CommandStateChanged{Command: done}}
		}),
		ev(5, at.Add(2*time.Millisecond), func(e *eventsv1.Event) {
			e.Payload = &eventsv1.Event_SessionEnded{SessionEnded: &eventsv1.SessionEnded{SessionId: sid,
				Outcome: eventsv1.SessionEnded_OUTCOME_COMPLETED, Messages: 2, CommandsCompleted: 1}}
		}),
	}
}

// lastSeen is what the inventory must report as last_seen for sessionEvents at `at`.
func lastSeen(at time.Time) time.Time { return at.Add(2 * time.Millisecond) }

// publishAll publishes events asynchronously (event_id as Nats-Msg-Id) and waits for every
// acknowledgement.
func publishAll(tb testing.TB, js jetstream.JetStream, evs []*eventsv1.Event) {
	tb.Helper()
	var futures []jetstream.PubAckFuture
	for i, e := range evs {
		if i%2000 == 1999 {
			waitPublished(tb, js, futures) // stay under the client's limit of outstanding publishes
			futures = futures[:0]
		}
		b, err := proto.Marshal(e)
		if err != nil {
			tb.Fatal(err)
		}
		m := &nats.Msg{Subject: events.Subject(e), Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, e.GetEventId())
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			tb.Fatalf("publish: %v", err)
		}
		futures = append(futures, f)
	}
	waitPublished(tb, js, futures)
}

func waitPublished(tb testing.TB, js jetstream.JetStream, futures []jetstream.PubAckFuture) {
	tb.Helper()
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(2 * time.Minute):
		tb.Fatal("publishing did not complete")
	}
	for _, f := range futures {
		select {
		case err := <-f.Err():
			tb.Fatalf("publish %s: %v", f.Msg().Subject, err)
		default:
		}
	}
}

// ensureEventsStream creates the events stream as the session service does, for tests
// that publish before any service runs.
func ensureEventsStream(tb testing.TB, js jetstream.JetStream) {
	tb.Helper()
	if _, err := js.CreateOrUpdateStream(context.Background(), events.StreamConfig(events.DefaultStream)); err != nil {
		tb.Fatalf("events stream: %v", err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("DMGRID_TEST_LOG") != "" {
		return slog.New(slog.NewJSONHandler(os.Stderr, nil))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// running is an inventory replica serving on a loopback port.
type running struct {
	svc    *Service
	client inventoryv1.InventoryServiceClient
	stop   func()
}

// startInventory runs an inventory replica against natsURL and the test Redis; it stops at
// cleanup (or when stop is called).
func startInventory(tb testing.TB, natsURL, prefix string, mod func(*Config)) *running {
	tb.Helper()
	cfg := Config{RedisURL: testredis.URL(tb), RedisPrefix: prefix, NATSURL: natsURL, EventsStream: events.DefaultStream,
		Consumer: "inventory", DeadLetterSubject: "dmgrid.deadletter.inventory", DeadLetterStream: "DMGRID_DEADLETTER",
		MaxDeliver: 5, MaxAckPending: 4096, AckWait: 30 * time.Second, Workers: 4, Batch: 256, DedupeWindow: 24 * time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := New(ctx, cfg, testLogger())
	if err != nil {
		tb.Fatalf("inventory: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, lis); s.Close() }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	stopped := false
	r := &running{svc: s, client: inventoryv1.NewInventoryServiceClient(conn)}
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("inventory serve: %v", err)
		}
	}
	tb.Cleanup(r.stop)
	return r
}

// waitCaughtUp polls the durable consumer until it has nothing pending or unacknowledged.
func waitCaughtUp(tb testing.TB, js jetstream.JetStream, durable string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for {
		c, err := js.Consumer(context.Background(), events.DefaultStream, durable)
		if err == nil {
			info, err := c.Info(context.Background())
			if err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("consumer %s did not catch up within %v", durable, within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listAll pages through ListDevices and fails on a repeated token or an id out of order.
func listAll(tb testing.TB, c inventoryv1.InventoryServiceClient, f *inventoryv1.DeviceFilter, size int32) []*inventoryv1.Device {
	tb.Helper()
	var out []*inventoryv1.Device
	req := &inventoryv1.ListDevicesRequest{Filter: f, PageSize: size}
	for {
		resp, err := c.ListDevices(context.Background(), req)
		if err != nil {
			tb.Fatalf("list %v: %v", f, err)
		}
		for _, d := range resp.GetDevices() {
			if len(out) > 0 && out[len(out)-1].GetDeviceId() >= d.GetDeviceId() {
				tb.Fatalf("list %v: %s after %s", f, d.GetDeviceId(), out[len(out)-1].GetDeviceId())
			}
			out = append(out, d)
		}
		if resp.GetNextPageToken() == "" {
			return out
		}
		if resp.GetNextPageToken() == req.PageToken {
			tb.Fatalf("list %v: the same token twice", f)
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func ids(devs []*inventoryv1.Device) []string {
	out := make([]string, len(devs))
	for i, d := range devs {
		out[i] = d.GetDeviceId()
	}
	return out
}

// expected is the inventory's view of one fleet device after its sessions.
type expected struct {
	cfg      dmsim.Config
	seen     time.Time
	sessions int64
}

// matching returns the sorted ids of the expected devices for which keep is true.
func matching(want map[string]*expected, keep func(*expected) bool) []string {
	var out []string
	for id, e := range want {
		if keep(e) {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// checkDevice compares one device record with the ground truth.
func checkDevice(tb testing.TB, d *inventoryv1.Device, e *expected) {
	tb.Helper()
	c := e.cfg
	di, dd, s := d.GetDevInfo(), d.GetDevDetail(), d.GetSessions()
	if di.GetDevId() != c.DevID || di.GetMan() != c.Man || di.GetMod() != c.Mod || di.GetDmV() != c.DmV || di.GetLang() != c.Lang {
		tb.Fatalf("%s: DevInfo %v, want %s/%s/%s/%s", c.DevID, di, c.Man, c.Mod, c.DmV, c.Lang)
	}
	if dd.GetDevTyp() != c.DevTyp || dd.GetOem() != c.OEM || dd.GetFwV() != c.FwV || dd.GetSwV() != c.SwV || dd.GetHwV() != c.HwV ||
		dd.GetLrgObj() != strconv.FormatBool(c.LrgObj) {
		tb.Fatalf("%s: DevDetail %v, want fw %s sw %s", c.DevID, dd, c.FwV, c.SwV)
	}
	if s.GetStartedCount() != e.sessions || s.GetCompletedCount() != e.sessions || s.GetLastOutcome() != eventsv1.SessionEnded_OUTCOME_COMPLETED {
		tb.Fatalf("%s: sessions %v, want %d completed", c.DevID, s, e.sessions)
	}
	if !e.seen.IsZero() && !d.GetLastSeenTime().AsTime().Equal(e.seen) {
		tb.Fatalf("%s: last seen %v, want %v", c.DevID, d.GetLastSeenTime().AsTime(), e.seen)
	}
}

// serveAPI serves InventoryService over st on a loopback port (no consumer).
func serveAPI(tb testing.TB, st *store.Store) inventoryv1.InventoryServiceClient {
	tb.Helper()
	g := grpc.NewServer()
	inventoryv1.RegisterInventoryServiceServer(g, &api.Inventory{St: st})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	go g.Serve(lis)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close(); g.Stop() })
	return inventoryv1.NewInventoryServiceClient(conn)
}
