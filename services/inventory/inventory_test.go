package inventory

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/ingest"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

func TestConfigFromEnv(t *testing.T) {
	env := map[string]string{"DMGRID_REDIS_URL": "redis://127.0.0.1:6379/0", "DMGRID_NATS_URL": "nats://127.0.0.1:4222",
		"DMGRID_INVENTORY_WORKERS": "8", "DMGRID_DEADLETTER_STREAM": "none"}
	c, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	if err != nil {
		t.Fatal(err)
	}
	if c.Workers != 8 || c.GRPCAddr != ":9091" || c.Consumer != "inventory" || c.DeadLetterStream != "" || c.MaxDeliver != 5 {
		t.Fatalf("config = %+v", c)
	}
	env = map[string]string{"DMGRID_INVENTORY_BATCH": "0", "DMGRID_INVENTORY_ACK_WAIT": "soon"}
	_, err = ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok })
	for _, want := range []string{"DMGRID_INVENTORY_BATCH", "DMGRID_INVENTORY_ACK_WAIT"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("bad config: %v (want %s named)", err, want)
		}
	}
	env = map[string]string{"DMGRID_REDIS_URL": "redis://x", "DMGRID_NATS_URL": "nats://x", "DMGRID_INVENTORY_DEADLETTER_SUBJECT": "dmgrid.events.dl"}
	if _, err := ConfigFromEnv(func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err == nil {
		t.Fatal("a dead-letter subject inside the events stream was accepted (it would be consumed again)")
	}
}

// fleetWant builds the ground truth of a fleet whose device i had one session at seenAt(i).
func fleetWant(f *dmsim.Fleet) map[string]*expected {
	want := map[string]*expected{}
	for i, d := range f.Devices {
		want[d.DevID()] = &expected{cfg: d.Config(), seen: lastSeen(seenAt(i)), sessions: 1}
	}
	return want
}

func fleetEvents(f *dmsim.Fleet) []*eventsv1.Event {
	var evs []*eventsv1.Event
	for i, d := range f.Devices {
		evs = append(evs, sessionEvents(i, d, seenAt(i))...)
	}
	return evs
}

// TestIntegrationFleet10k: 10,000 devices of 20 models and 50 firmware versions each
// complete a session (its events published straight to JetStream, built from the
// simulator's ground truth); the inventory then answers every filter exactly, pages
// stably through all devices, and counts and aggregates match.
func TestIntegrationFleet10k(t *testing.T) {
	n := 10000
	if testing.Short() {
		n = 1000
	}
	ns := e2e.StartNATS(t)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	fleet := newFleet(n, 10000, dmsim.Config{})
	inv := startInventory(t, ns.ClientURL(), testredis.Prefix(t), nil)
	start := time.Now()
	evs := fleetEvents(fleet)
	publishAll(t, js, evs)
	waitCaughtUp(t, js, "inventory", 3*time.Minute)
	st := inv.svc.Consumer.Stats()
	t.Logf("%d events applied in %v (%+v)", len(evs), time.Since(start), st)
	if st.Applied != int64(4*n) || st.Ignored != int64(n) || st.DeadLettered != 0 {
		t.Fatalf("stats %+v, want %d applied and %d ignored", st, 4*n, n)
	}
	checkInventory(t, inv.client, fleetWant(fleet))
}

// checkInventory compares everything the API answers with the ground truth.
func checkInventory(t *testing.T, c inventoryv1.InventoryServiceClient, want map[string]*expected) {
	t.Helper()
	ctx := context.Background()
	all := matching(want, func(*expected) bool { return true })
	// Every device, in id order, through pages of an odd size; every record exact.
	devs := listAll(t, c, nil, 137)
	if !slices.Equal(ids(devs), all) {
		t.Fatalf("listed %d devices, want %d", len(devs), len(all))
	}
	for _, d := range devs {
		checkDevice(t, d, want[d.GetDeviceId()])
	}
	check := func(f *inventoryv1.DeviceFilter, keep func(*expected) bool) {
		t.Helper()
		exp := matching(want, keep)
		if got := ids(listAll(t, c, f, 1000)); !slices.Equal(got, exp) {
			t.Fatalf("filter %v: listed %d, want %d", f, len(got), len(exp))
		}
		resp, err := c.CountDevices(ctx, &inventoryv1.CountDevicesRequest{Filter: f})
		if err != nil || resp.GetCount() != int64(len(exp)) {
			t.Fatalf("filter %v: count %d (%v), want %d", f, resp.GetCount(), err, len(exp))
		}
	}
	models, firmwares, sws := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, e := range want {
		models[e.cfg.Mod], firmwares[e.cfg.FwV], sws[e.cfg.SwV] = true, true, true
	}
	if len(models) != numModels && len(want) >= 1000 {
		t.Fatalf("the fleet has %d models", len(models))
	}
	for m := range models {
		check(&inventoryv1.DeviceFilter{Model: m}, func(e *expected) bool { return e.cfg.Mod == m })
	}
	for fw := range firmwares {
		check(&inventoryv1.DeviceFilter{FirmwareVersion: fw}, func(e *expected) bool { return e.cfg.FwV == fw })
	}
	for i := range 5 {
		m, fw := fmt.Sprintf("M-%02d", i), firmware(i*5+i%5)
		check(&inventoryv1.DeviceFilter{Model: m, FirmwareVersion: fw}, func(e *expected) bool { return e.cfg.Mod == m && e.cfg.FwV == fw })
		man, sw := fmt.Sprintf("Maker %d", i), "sw-"+strconv.Itoa(i)
		check(&inventoryv1.DeviceFilter{Manufacturer: man, SoftwareVersion: sw, Language: "de-DE"}, func(e *expected) bool {
			return e.cfg.Man == man && e.cfg.SwV == sw && e.cfg.Lang == "de-DE"
		})
	}
	check(&inventoryv1.DeviceFilter{HardwareVersion: "hw3", DeviceType: "iot", Oem: "OEM 1", DmVersion: "1.2",
		LastSessionOutcome: eventsv1.SessionEnded_OUTCOME_COMPLETED}, func(e *expected) bool {
		return e.cfg.HwV == "hw3" && e.cfg.DevTyp == "iot" && e.cfg.OEM == "OEM 1"
	})
	check(&inventoryv1.DeviceFilter{LastSessionOutcome: eventsv1.SessionEnded_OUTCOME_ABORTED}, func(*expected) bool { return false })
	// Last-seen windows: narrow, wide, open-ended, and with an equality.
	for _, w := range [][2]time.Duration{{10 * time.Minute, 10*time.Minute + 30*time.Second}, {time.Hour, 2 * time.Hour}, {0, 0}} {
		after, before := tBase.Add(w[0]), tBase.Add(w[1])
		f := &inventoryv1.DeviceFilter{LastSeenAfter: timestamppb.New(after)}
		in := func(e *expected) bool { return e.seen.After(after) && (w[1] == 0 || e.seen.Before(before)) }
		if w[1] != 0 {
			f.LastSeenBefore = timestamppb.New(before)
		}
		check(f, in)
		m := "M-07"
		check(&inventoryv1.DeviceFilter{Model: m, LastSeenAfter: f.LastSeenAfter, LastSeenBefore: f.LastSeenBefore},
			func(e *expected) bool { return in(e) && e.cfg.Mod == m })
	}
	// Aggregates by model and by firmware, whole fleet and within a model.
	for _, f := range []*inventoryv1.DeviceFilter{nil, {Model: "M-03"}, {LastSeenBefore: timestamppb.New(tBase.Add(time.Hour))}} {
		resp, err := c.AggregateDevices(ctx, &inventoryv1.AggregateDevicesRequest{Filter: f})
		if err != nil {
			t.Fatal(err)
		}
		keep := func(e *expected) bool {
			return f == nil || (f.Model == "" || e.cfg.Mod == f.Model) && (f.LastSeenBefore == nil || e.seen.Before(f.LastSeenBefore.AsTime()))
		}
		total := int64(len(matching(want, keep)))
		if resp.GetTotalCount() != total || len(resp.GetAggregations()) != 2 {
			t.Fatalf("aggregate %v: total %d, want %d", f, resp.GetTotalCount(), total)
		}
		for _, ag := range resp.GetAggregations() {
			exp := map[string]int64{}
			for _, e := range want {
				if keep(e) {
					v := e.cfg.Mod
					if ag.GetField() == inventoryv1.DeviceField_DEVICE_FIELD_FIRMWARE_VERSION {
						v = e.cfg.FwV
					}
					exp[v]++
				}
			}
			got := map[string]int64{}
			for _, b := range ag.GetBuckets() {
				got[b.GetValue()] = b.GetCount()
			}
			if fmt.Sprint(got) != fmt.Sprint(exp) || ag.GetMissingCount() != 0 {
				t.Fatalf("aggregate %v by %v = %v missing %d, want %v", f, ag.GetField(), got, ag.GetMissingCount(), exp)
			}
		}
	}
}

// crashingApplier applies batches and then, once armed, "crashes" after applying one: it
// closes the consumer's NATS connection so that the acknowledgements of work already in
// Redis are lost, as when a replica is killed between the two.
type crashingApplier struct {
	ingest.Applier
	after   int64 // crash after this many applied events
	applied atomic.Int64
	crash   func()
	once    sync.Once
}

func (c *crashingApplier) ApplyBatch(ctx context.Context, ups []store.Update) ([]store.Result, error) {
	res, err := c.Applier.ApplyBatch(ctx, ups)
	if err == nil && c.applied.Add(int64(len(ups))) >= c.after {
		c.once.Do(c.crash)
	}
	return res, err
}

// TestIntegrationRedeliveryAndDuplicates: the consumer is killed mid-stream (after writing
// to Redis, before its acks) and restarted; duplicates (the same event_id under another
// Nats-Msg-Id) and stale events (older times) are injected; the final inventory equals the
// ground truth: nothing missing, nothing doubled, nothing older winning.
func TestIntegrationRedeliveryAndDuplicates(t *testing.T) {
	n := 2000
	if testing.Short() {
		n = 300
	}
	ns := e2e.StartNATS(t)
	fleet := newFleet(n, 77, dmsim.Config{})
	want := fleetWant(fleet)
	evs := fleetEvents(fleet)
	var extra []*eventsv1.Event
	for i, e := range evs {
		if i%10 == 3 {
			extra = append(extra, e) // a duplicate, published again later under another msg id
		}
	}
	for i, d := range fleet.Devices {
		if i%20 == 0 {
			// A stale report: an older Get whose results carry another firmware.
			stale := sessionEvents(i, d, seenAt(i).Add(-time.Hour))[3]
			stale.EventId = fmt.Sprintf("stale-%d", i)
			stale.GetCommandStateChanged().GetCommand().GetResults()[2].Data = []byte("0.0.0-stale")
			extra = append(extra, stale)
		}
	}
	pubConn, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer pubConn.Close()
	js, _ := jetstream.New(pubConn)
	ensureEventsStream(t, js)
	publishAll(t, js, evs)
	// The duplicates go in under fresh Nats-Msg-Ids, as a republish after JetStream's
	// duplicate window would, so that they reach the consumer.
	for i, e := range extra {
		b, err := proto.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		m := &nats.Msg{Subject: events.Subject(e), Data: b, Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, "dup-"+strconv.Itoa(i))
		if _, err := js.PublishMsg(context.Background(), m); err != nil {
			t.Fatal(err)
		}
	}

	rdb := testredis.Client(t)
	st := store.New(rdb, testredis.Prefix(t), store.Options{})
	if err := st.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	cfg := ingest.Config{Durable: "inventory", DeadLetterStream: "DMGRID_DEADLETTER", AckWait: time.Second,
		Backoff: []time.Duration{50 * time.Millisecond}, Batch: 64}
	runConsumer := func(app ingest.Applier, nc *nats.Conn) (*ingest.Consumer, func()) {
		cjs, _ := jetstream.New(nc)
		c := ingest.NewConsumer(cjs, app, testLogger(), cfg)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- c.Run(ctx) }()
		return c, func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("consumer: %v", err)
			}
		}
	}
	// First replica: dies after about a third of the stream.
	nc1, err := nats.Connect(ns.ClientURL(), nats.NoReconnect())
	if err != nil {
		t.Fatal(err)
	}
	crashed := make(chan struct{})
	app := &crashingApplier{Applier: st, after: int64(len(evs) / 3), crash: func() { nc1.Close(); close(crashed) }}
	c1, stop1 := runConsumer(app, nc1)
	select {
	case <-crashed:
	case <-time.After(2 * time.Minute):
		t.Fatal("the first consumer never got a third of the way")
	}
	stop1()
	s1 := c1.Stats()
	t.Logf("first replica before the crash: %+v", s1)
	// Second replica: the same durable consumer; it gets what was never acknowledged again.
	nc2, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc2.Close()
	c2, stop2 := runConsumer(st, nc2)
	defer stop2()
	waitCaughtUp(t, js, "inventory", 2*time.Minute)
	s2 := c2.Stats()
	t.Logf("second replica: %+v", s2)
	if s2.Duplicates == 0 {
		t.Fatal("no redelivered or duplicated event reached the second replica")
	}
	if s1.DeadLettered+s2.DeadLettered != 0 {
		t.Fatalf("dead letters: %d + %d", s1.DeadLettered, s2.DeadLettered)
	}
	checkInventory(t, serveAPI(t, st), want)
}

// TestIntegrationEndToEnd: real sessions of 50 simulated devices through the gateway and
// session workers; the DevDetail leaves are read by the session service's collection
// policy, plus explicitly enqueued Gets; the inventory consumes the real events. Then one
// device updates its firmware and reports it in its next session.
func TestIntegrationEndToEnd(t *testing.T) {
	st := e2e.Start(t, e2e.Options{Workers: 2, DevDetailEvery: time.Hour})
	inv := startInventory(t, st.NATS.ClientURL(), testredis.Prefix(t), nil)
	ctx := context.Background()
	// 1,000 real sessions in make test (50 with -short); DMGRID_INVENTORY_FLEET=10000 runs
	// the full fleet.
	n := 1000
	if testing.Short() {
		n = 50
	}
	if v, err := strconv.Atoi(os.Getenv("DMGRID_INVENTORY_FLEET")); err == nil && v > 0 {
		n = v
	}
	fleet := newFleet(n, 5, dmsim.Config{ServerURL: st.URL, AuthType: dmauth.TypeMD5, ClientSecret: "inv-secret"})
	want := map[string]*expected{}
	region := func(i int) string { return []string{"eu", "us", "apac"}[i%3] }
	var mu sync.Mutex
	work := make(chan int)
	errc := make(chan error, 32)
	for w := 0; w < 32; w++ {
		go func() {
			for i := range work {
				c := fleet.Devices[i].Config()
				_, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: c.DevID,
					ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: c.ClientName, Secret: c.ClientSecret},
					Labels:     map[string]string{"region": region(i)}}})
				if err == nil {
					_, err = st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: c.DevID, Operations: []*commandv1.Operation{
						{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail/FwV"},
						{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail/URI?list=StructData"},
					}})
				}
				if err != nil {
					errc <- err
					continue
				}
				mu.Lock()
				want[c.DevID] = &expected{cfg: c, sessions: 1}
				mu.Unlock()
			}
			errc <- nil
		}()
	}
	for i := range fleet.Devices {
		work <- i
	}
	close(work)
	for w := 0; w < 32; {
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		w++
	}
	start := time.Now()
	runFleet(t, fleet)
	t.Logf("%d real sessions in %v", n, time.Since(start))
	waitInventory(t, inv.client, func(d *inventoryv1.Device) bool {
		e := want[d.GetDeviceId()]
		return e != nil && d.GetDevDetail().GetLrgObj() != "" && d.GetDevDetail().GetFwV() == e.cfg.FwV && d.GetSessions().GetCompletedCount() == 1
	}, n)
	// Real sessions have real times: take last_seen from the records (checked to fall
	// within the fleet's run) so that the last-seen filters are compared with what the
	// inventory holds. (Under -race on a loaded machine the run alone can take a minute.)
	for _, d := range listAll(t, inv.client, nil, 100) {
		if seen := d.GetLastSeenTime(); seen == nil || seen.AsTime().Before(start.Add(-time.Second)) || seen.AsTime().After(time.Now()) {
			t.Fatalf("%s: last seen %v, not during the fleet's sessions (from %v)", d.GetDeviceId(), d.GetLastSeenTime().AsTime(), start)
		}
		want[d.GetDeviceId()].seen = d.GetLastSeenTime().AsTime()
	}
	checkInventory(t, inv.client, want)
	// Labels come from the DeviceService's device_changed events.
	for r := 0; r < 3; r++ {
		exp := []string{}
		for i, d := range fleet.Devices {
			if region(i) == region(r) {
				exp = append(exp, d.DevID())
			}
		}
		slices.Sort(exp)
		if got := ids(listAll(t, inv.client, &inventoryv1.DeviceFilter{Labels: map[string]string{"region": region(r)}}, 500)); !slices.Equal(got, exp) {
			t.Fatalf("label region=%s: %d devices, want %d", region(r), len(got), len(exp))
		}
	}
	// The tree: DevInfo from the Pkg1 report, DevDetail from Results, the StructData listing.
	d0 := fleet.Devices[0].Config()
	tree, err := inv.client.GetDeviceTree(ctx, &inventoryv1.GetDeviceTreeRequest{DeviceId: d0.DevID})
	if err != nil {
		t.Fatal(err)
	}
	nodes := map[string]*inventoryv1.TreeNode{}
	for _, nd := range tree.GetNodes() {
		nodes[nd.GetUri()] = nd
	}
	if nd := nodes["./DevInfo/Mod"]; nd.GetSource() != inventoryv1.TreeNode_SOURCE_DEVICE_INFO || string(nd.GetData()) != d0.Mod {
		t.Fatalf("./DevInfo/Mod = %v", nd)
	}
	if nd := nodes["./DevDetail/FwV"]; nd.GetSource() != inventoryv1.TreeNode_SOURCE_RESULTS || string(nd.GetData()) != d0.FwV ||
		nd.GetCommandId() == "" || nd.GetUpdateTime() == nil {
		t.Fatalf("./DevDetail/FwV = %v", nd)
	}
	if nd := nodes["./DevDetail/URI/MaxDepth"]; nd == nil || nd.GetFormat() != "int" || len(nd.GetData()) == 0 {
		t.Fatalf("./DevDetail/URI/MaxDepth = %v (from ?list=StructData)", nd)
	}
	sub, err := inv.client.GetDeviceTree(ctx, &inventoryv1.GetDeviceTreeRequest{DeviceId: d0.DevID, Uri: "DevDetail/URI"})
	if err != nil || len(sub.GetNodes()) < 3 || !strings.HasPrefix(sub.GetNodes()[0].GetUri(), "./DevDetail/URI") {
		t.Fatalf("subtree ./DevDetail/URI = %v %v", sub.GetNodes(), err)
	}

	// A firmware update: the device's next session reports the new version.
	dev := fleet.Devices[0]
	oldFw := d0.FwV
	if err := dev.Tree().Set("./DevDetail/FwV", []byte("9.9.9")); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: d0.DevID, Operations: []*commandv1.Operation{
		{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./DevDetail/FwV"}}}); err != nil {
		t.Fatal(err)
	}
	runFleet(t, &dmsim.Fleet{Devices: []*dmsim.Device{dev}})
	waitInventory(t, inv.client, func(d *inventoryv1.Device) bool {
		return d.GetDeviceId() != d0.DevID || d.GetDevDetail().GetFwV() == "9.9.9" && d.GetSessions().GetCompletedCount() == 2
	}, n)
	want[d0.DevID].cfg.FwV, want[d0.DevID].sessions = "9.9.9", 2
	for _, fw := range []string{"9.9.9", oldFw} {
		exp := matching(want, func(e *expected) bool { return e.cfg.FwV == fw })
		if got := ids(listAll(t, inv.client, &inventoryv1.DeviceFilter{FirmwareVersion: fw}, 10)); !slices.Equal(got, exp) {
			t.Fatalf("firmware %s: %v, want %v", fw, got, exp)
		}
	}
	if st := inv.svc.Consumer.Stats(); st.DeadLettered != 0 || st.Applied == 0 {
		t.Fatalf("consumer stats %+v", st)
	}
	// /metrics carries the consumer's counters and its lag.
	rec := httptest.NewRecorder()
	inv.svc.Telemetry().MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `dmgrid_inventory_events_total{result="applied"}`) || !strings.Contains(body, "dmgrid_inventory_pending_events") {
		t.Fatalf("inventory /metrics lacks its series:\n%.2000s", body)
	}
}

func runFleet(t *testing.T, f *dmsim.Fleet) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tr := &dmsim.HTTPTransport{Client: &http.Client{Timeout: 30 * time.Second}}
	for _, r := range f.Run(ctx, tr, 64, dmsim.SessionOptions{}) {
		if r.Err != nil || !r.Report.Ended || len(r.Report.Warnings) > 0 {
			t.Fatalf("session of %s: %v %v", r.Device.DevID(), r.Err, r.Report)
		}
	}
}

// waitInventory polls until n devices are listed and every one satisfies ok (events travel
// through the session outbox, JetStream and the consumer asynchronously).
func waitInventory(t *testing.T, c inventoryv1.InventoryServiceClient, ok func(*inventoryv1.Device) bool, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		devs := listAll(t, c, nil, 1000)
		done := len(devs) == n
		for _, d := range devs {
			done = done && ok(d)
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the inventory did not converge: %d devices listed, want %d", len(devs), n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAPIErrors: invalid requests are InvalidArgument naming every bad field
// (google.rpc.BadRequest); unknown devices NotFound.
func TestAPIErrors(t *testing.T) {
	st := store.New(testredis.Client(t), testredis.Prefix(t), store.Options{})
	ctx := context.Background()
	if err := st.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := st.ApplyBatch(ctx, []store.Update{{EventID: "e" + strconv.Itoa(i), DeviceID: "IMEI:" + strconv.Itoa(i),
			Time: tBase, Attrs: []store.Attr{{Name: string(store.FieldMod), Value: "A"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	c := serveAPI(t, st)
	fields := func(err error) []string {
		var out []string
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok {
				for _, v := range br.GetFieldViolations() {
					out = append(out, v.GetField())
				}
			}
		}
		slices.Sort(out)
		return out
	}
	page, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: &inventoryv1.DeviceFilter{Model: "A"}, PageSize: 1})
	if err != nil || page.GetNextPageToken() == "" {
		t.Fatalf("first page: %v %v", page, err)
	}
	ts := func(sec int64) *timestamppb.Timestamp { return &timestamppb.Timestamp{Seconds: sec} }
	for _, c2 := range []struct {
		name string
		call func() error
		want []string
	}{
		{"empty device id", func() error { _, err := c.GetDevice(ctx, &inventoryv1.GetDeviceRequest{}); return err }, []string{"device_id"}},
		{"negative page size", func() error {
			_, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageSize: -1})
			return err
		}, []string{"page_size"}},
		{"garbage token", func() error {
			_, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageToken: "!!"})
			return err
		}, []string{"page_token"}},
		{"token of another filter", func() error {
			_, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: &inventoryv1.DeviceFilter{Model: "B"}, PageToken: page.GetNextPageToken()})
			return err
		}, []string{"page_token"}},
		{"everything wrong at once", func() error {
			_, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{PageSize: -5, PageToken: "x", Filter: &inventoryv1.DeviceFilter{
				Labels: map[string]string{"": "x"}, Model: strings.Repeat("m", 2000), LastSessionOutcome: 99,
				LastSeenAfter: ts(2000), LastSeenBefore: ts(1000)}})
			return err
		}, []string{"filter.labels[\"\"]", "filter.last_seen_before", "filter.last_session_outcome", "filter.model", "page_size", "page_token"}},
		{"invalid timestamp", func() error {
			_, err := c.CountDevices(ctx, &inventoryv1.CountDevicesRequest{Filter: &inventoryv1.DeviceFilter{LastSeenAfter: ts(-1e15)}})
			return err
		}, []string{"filter.last_seen_after"}},
		{"group by nothing, twice", func() error {
			_, err := c.AggregateDevices(ctx, &inventoryv1.AggregateDevicesRequest{GroupBy: []inventoryv1.DeviceField{
				inventoryv1.DeviceField_DEVICE_FIELD_UNSPECIFIED, inventoryv1.DeviceField_DEVICE_FIELD_MODEL, inventoryv1.DeviceField_DEVICE_FIELD_MODEL}})
			return err
		}, []string{"group_by[0]", "group_by[2]"}},
		{"tree uri with a query", func() error {
			_, err := c.GetDeviceTree(ctx, &inventoryv1.GetDeviceTreeRequest{DeviceId: "IMEI:0", Uri: "./DevInfo?prop=ACL"})
			return err
		}, []string{"uri"}},
		{"tree uri outside the tree", func() error {
			_, err := c.GetDeviceTree(ctx, &inventoryv1.GetDeviceTreeRequest{DeviceId: "IMEI:0", Uri: "../etc"})
			return err
		}, []string{"uri"}},
	} {
		t.Run(c2.name, func(t *testing.T) {
			err := c2.call()
			if status.Code(err) != codes.InvalidArgument || !slices.Equal(fields(err), c2.want) {
				t.Fatalf("%v: fields %q, want InvalidArgument with %q", err, fields(err), c2.want)
			}
		})
	}
	if _, err := c.GetDevice(ctx, &inventoryv1.GetDeviceRequest{DeviceId: "IMEI:none"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown device: %v", err)
	}
	if _, err := c.GetDeviceTree(ctx, &inventoryv1.GetDeviceTreeRequest{DeviceId: "IMEI:none"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown device's tree: %v", err)
	}
	// The token works with its own filter.
	next, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: &inventoryv1.DeviceFilter{Model: "A"}, PageSize: 5, PageToken: page.GetNextPageToken()})
	if err != nil || len(next.GetDevices()) != 2 || next.GetNextPageToken() != "" {
		t.Fatalf("second page: %v %v", next, err)
	}
}
