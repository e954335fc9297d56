package inventory

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// BenchmarkIngest measures events ingested per second with real Redis and an embedded
// JetStream: b.N events (whole sessions of b.N/5 fleet devices, one event in five being a
// "command sent" that the inventory acknowledges without Redis) are published first, then
// the timer runs from the consumer's start until it has acknowledged all of them. Run it
// with a fixed count, e.g. -benchtime 200000x.
//
// "sessions" publishes each session's events together, as a backlog of sessions that ran
// one after another looks; "interleaved" publishes the first event of every session, then
// the second of every session, and so on, so that no two events of a device share a batch
// (the worst case for the per-device grouping of the apply script).
func BenchmarkIngest(b *testing.B) {
	for _, interleaved := range []bool{false, true} {
		name := "sessions"
		if interleaved {
			name = "interleaved"
		}
		b.Run(name, func(b *testing.B) { benchIngest(b, interleaved) })
	}
}

func benchIngest(b *testing.B, interleaved bool) {
	ns := e2e.StartNATS(b)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	fleet := newFleet(max(b.N/5, 1), 1, dmsim.Config{})
	evs := fleetEvents(fleet)
	if interleaved {
		var by []*eventsv1.Event
		for k := range 5 {
			for i := k; i < len(evs); i += 5 {
				by = append(by, evs[i])
			}
		}
		evs = by
	}
	evs = evs[:b.N]
	ensureEventsStream(b, js)
	publishAll(b, js, evs)
	b.ResetTimer()
	start := time.Now()
	inv := startInventory(b, ns.ClientURL(), testredis.Prefix(b), nil)
	waitCaughtUp(b, js, "inventory", 10*time.Minute)
	el := time.Since(start)
	b.StopTimer()
	st := inv.svc.Consumer.Stats()
	b.ReportMetric(float64(len(evs))/el.Seconds(), "events/s")
	b.ReportMetric(float64(st.Applied)/el.Seconds(), "applied/s")
	if st.Applied+st.Ignored != int64(len(evs)) {
		b.Fatalf("stats %+v for %d events", st, len(evs))
	}
}

// queryRig is 100,000 devices in Redis (20 models, 50 firmware versions, 8 software
// versions, 4 label values, last-seen spread over a day) behind the API, built once per
// benchmark binary.
var queryRig struct {
	once   sync.Once
	client inventoryv1.InventoryServiceClient
	err    error
}

const queryDevices = 100000

func queryClient(b *testing.B) inventoryv1.InventoryServiceClient {
	queryRig.once.Do(func() {
		st := store.New(testredis.Client(b), testredis.Prefix(b), store.Options{})
		ctx := context.Background()
		if queryRig.err = st.Load(ctx); queryRig.err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(3, 3))
		ups := make([]store.Update, 0, 1000)
		for i := range queryDevices {
			m := rng.IntN(numModels)
			ups = append(ups, store.Update{EventID: fmt.Sprint("q", i), DeviceID: fmt.Sprintf("IMEI:%015d", rng.Uint64N(1e15)),
				Time: tBase.Add(time.Duration(rng.IntN(86400000)) * time.Millisecond), Seen: true,
				Attrs: []store.Attr{
					{Name: string(store.FieldMan), Value: fmt.Sprintf("Maker %d", m%6)},
					{Name: string(store.FieldMod), Value: fmt.Sprintf("M-%02d", m)},
					{Name: string(store.FieldFwV), Value: firmware((m*5 + rng.IntN(5)) % numFirmware)},
					{Name: string(store.FieldSwV), Value: fmt.Sprintf("sw-%d", rng.IntN(8))},
					{Name: string(store.FieldLang), Value: "en-US"},
					{Name: string(store.FieldOutcome), Value: eventsv1.SessionEnded_OUTCOME_COMPLETED.String()},
				},
				Labels: map[string]string{"ring": fmt.Sprint("r", rng.IntN(4))},
			})
			if len(ups) == cap(ups) || i == queryDevices-1 {
				if _, queryRig.err = st.ApplyBatch(ctx, ups); queryRig.err != nil {
					return
				}
				ups = ups[:0]
			}
		}
		// The rig outlives the benchmark that built it: later benchmarks reuse it.
		queryRig.client = serveAPI(noCleanup{b}, st)
	})
	if queryRig.err != nil {
		b.Fatal(queryRig.err)
	}
	return queryRig.client
}

// noCleanup drops cleanups so that the rig stays up for the rest of the binary.
type noCleanup struct{ testing.TB }

func (noCleanup) Cleanup(func()) {}

// queryFilters are the filters the query benchmarks cycle through: single equalities,
// intersections, labels, narrow and wide last-seen ranges, and both combined.
func queryFilters() []*inventoryv1.DeviceFilter {
	at := func(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(tBase.Add(d)) }
	return []*inventoryv1.DeviceFilter{
		nil,
		{Model: "M-07"},
		{FirmwareVersion: firmware(13)},
		{Model: "M-02", FirmwareVersion: firmware(11)},
		{Manufacturer: "Maker 1", SoftwareVersion: "sw-3"},
		{Labels: map[string]string{"ring": "r2"}, Model: "M-11"},
		{LastSeenAfter: at(3 * time.Hour), LastSeenBefore: at(3*time.Hour + 10*time.Minute)},
		{LastSeenAfter: at(12 * time.Hour)},
		{Model: "M-05", LastSeenBefore: at(6 * time.Hour)},
		{Model: "M-05", FirmwareVersion: firmware(26), SoftwareVersion: "sw-1", LastSeenAfter: at(time.Hour)},
		{Model: "M-01", FirmwareVersion: firmware(40)}, // matches nobody: M-01 ships firmware 5..9
	}
}

// BenchmarkQuery100k measures API latency at 100,000 devices over loopback gRPC: the first
// page (100 devices) of ListDevices, CountDevices and AggregateDevices for each filter of
// queryFilters in turn; it reports p50 and p99 in ms.
func BenchmarkQuery100k(b *testing.B) {
	c := queryClient(b)
	ctx := context.Background()
	filters := queryFilters()
	for _, q := range []struct {
		name string
		call func(f *inventoryv1.DeviceFilter) error
	}{
		{"list", func(f *inventoryv1.DeviceFilter) error {
			_, err := c.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Filter: f, PageSize: 100})
			return err
		}},
		{"count", func(f *inventoryv1.DeviceFilter) error {
			_, err := c.CountDevices(ctx, &inventoryv1.CountDevicesRequest{Filter: f})
			return err
		}},
		{"aggregate", func(f *inventoryv1.DeviceFilter) error {
			_, err := c.AggregateDevices(ctx, &inventoryv1.AggregateDevicesRequest{Filter: f})
			return err
		}},
	} {
		b.Run(q.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := range b.N {
				t := time.Now()
				if err := q.call(filters[i%len(filters)]); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t))
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

func reportPercentiles(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	p := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / 1e6 }
	b.ReportMetric(p(0.5), "p50-ms")
	b.ReportMetric(p(0.99), "p99-ms")
	b.ReportMetric(p(1), "max-ms")
}
