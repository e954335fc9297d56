package outbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

func startNATS(t *testing.T, port int, dir string) *server.Server {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: dir, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return ns
}

// streamOn connects to url and ensures the events stream name; the connection closes with
// the test.
func streamOn(ctx context.Context, t *testing.T, url, name string, opts ...nats.Option) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	if _, err := EnsureStream(ctx, js, name); err != nil {
		t.Fatal(err)
	}
	return js
}

func event(dev string, i int) []byte {
	b, _ := proto.Marshal(&eventsv1.Event{EventId: fmt.Sprintf("%s-%03d", dev, i), DeviceId: dev, Time: timestamppb.Now(),
		Payload: &eventsv1.Event_WakeRequested{WakeRequested: &eventsv1.WakeRequested{Reason: fmt.Sprint(i)}}})
	return b
}

// TestNoEventLostWhileNATSIsDown: events committed while NATS is unreachable wait in the
// Redis outbox and are published, in order per device and without duplicates, once it is
// back.
func TestNoEventLostWhileNATSIsDown(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	ns := startNATS(t, -1, dir)
	url := ns.ClientURL()
	port := ns.Addr().(*net.TCPAddr).Port
	js := streamOn(ctx, t, url, "EV", nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	st := store.New(testredis.Client(t), testredis.Prefix(t), store.Options{})
	devs := []string{"IMEI:A", "IMEI:B"}
	for _, d := range devs {
		if err := st.CreateDevice(ctx, store.NewDevice{Account: engine.Account{DeviceID: d}}, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	write := func(from, to int) {
		for _, d := range devs {
			var evs [][]byte
			for i := from; i < to; i++ {
				evs = append(evs, event(d, i))
			}
			c := &engine.Command{ID: store.NewCommandID(d, fmt.Sprint(from)), DeviceID: d, State: engine.StateQueued}
			if _, _, err := st.Enqueue(ctx, d, "", []*engine.Command{c}, evs); err != nil {
				t.Fatal(err)
			}
		}
	}
	r := New(st, js, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{ScanInterval: 200 * time.Millisecond, Retry: 100 * time.Millisecond})
	go r.Run(ctx)
	write(0, 10)
	streamCount := func() uint64 {
		s, err := js.Stream(ctx, "EV")
		if err != nil {
			return 0
		}
		info, err := s.Info(ctx)
		if err != nil {
			return 0
		}
		return info.State.Msgs
	}
	waitFor(t, func() bool { return streamCount() == 20 })

	// NATS goes away; the session service keeps committing.
	ns.Shutdown()
	ns.WaitForShutdown()
	write(10, 30)
	time.Sleep(300 * time.Millisecond) // the relay tries and fails meanwhile
	for _, d := range devs {
		pending, _ := st.ReadOutbox(ctx, d, 100)
		if len(pending) != 20 {
			t.Fatalf("%s: %d events in the outbox while NATS is down, want 20", d, len(pending))
		}
	}
	// Back on the same port and store.
	ns2 := startNATS(t, port, dir)
	defer ns2.Shutdown()
	waitFor(t, func() bool { return streamCount() == 60 })

	// Per device: all 30 events, in commit order, once each.
	checkStream(ctx, t, js, "EV", devs, 30)
}

// checkStream reads the whole stream and checks that each device's events are there once
// each, in commit order (event ids <device>-000, -001, ...), with the event's subject and
// its id as Nats-Msg-Id.
func checkStream(ctx context.Context, t *testing.T, js jetstream.JetStream, stream string, devs []string, per int) {
	t.Helper()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string][]string{}
	for i := 0; i < len(devs)*per; i++ {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			t.Fatal(err)
		}
		if m.Subject() != events.Subject(&ev) || m.Headers().Get(jetstream.MsgIDHeader) != ev.EventId {
			t.Fatalf("subject %s / msg id %q for event %s", m.Subject(), m.Headers().Get(jetstream.MsgIDHeader), ev.EventId)
		}
		seen[ev.DeviceId] = append(seen[ev.DeviceId], ev.EventId)
	}
	for _, d := range devs {
		if len(seen[d]) != per {
			t.Fatalf("%s: %d events, want %d", d, len(seen[d]), per)
		}
		for j, id := range seen[d] {
			if id != fmt.Sprintf("%s-%03d", d, j) {
				t.Fatalf("%s: event %d is %s: out of order or duplicated", d, j, id)
			}
		}
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// pipelines counts Redis pipelines (each is one round trip on a single Redis); reads counts
// the relay's outbox reads (LRANGE pipelines), one per batch.
type pipelines struct{ n, cmds, reads atomic.Int64 }

func (p *pipelines) DialHook(next redis.DialHook) redis.DialHook { return next }
func (p *pipelines) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { p.cmds.Add(1); return next(ctx, cmd) }
}
func (p *pipelines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		if len(cmds) > 0 && cmds[0].Name() == "lrange" {
			p.reads.Add(1)
		}
		return next(ctx, cmds)
	}
}

// TestBatchesAcrossDevices: many devices' outboxes are relayed together (a pipelined read
// and a pipelined removal per batch, not two round trips per device), every event once and
// in commit order per device; an entry that is not an event is dropped without holding up
// the device's later events.
func TestBatchesAcrossDevices(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := startNATS(t, -1, t.TempDir())
	defer ns.Shutdown()
	js := streamOn(ctx, t, ns.ClientURL(), "EVB")
	rdb := testredis.Client(t)
	hook := &pipelines{}
	rdb.AddHook(hook)
	st := store.New(rdb, testredis.Prefix(t), store.Options{})
	const devices, per = 300, 3
	devs := make([]string, devices)
	for i := range devs {
		devs[i] = fmt.Sprintf("IMEI:B%04d", i)
		var evs [][]byte
		for j := 0; j < per; j++ {
			evs = append(evs, event(devs[i], j))
			if i == 7 && j == 1 {
				evs = append(evs, []byte("not an event"))
			}
		}
		if err := st.AppendOutbox(ctx, devs[i], evs); err != nil {
			t.Fatal(err)
		}
	}
	r := New(st, js, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{ScanInterval: time.Hour})
	for _, d := range devs {
		r.Notify(d)
	}
	p0, c0 := hook.n.Load(), hook.cmds.Load()
	go r.Run(ctx)
	waitFor(t, func() bool { return r.Published() == devices*per })
	for _, d := range []string{devs[0], devs[7], devs[devices-1]} {
		waitFor(t, func() bool { left, _ := st.ReadOutbox(ctx, d, 10); return len(left) == 0 })
	}
	pipes, single := hook.n.Load()-p0, hook.cmds.Load()-c0
	// Unbatched, each device costs a read and a removal: 600 round trips. 300 devices fit
	// two batches of at most 256 (four pipelines); the start-up scan (single commands)
	// notifies devices again while they are in flight, which adds small batches depending on
	// timing (up to 15 pipelines seen under -race on a loaded machine).
	if pipes > devices/5 {
		t.Errorf("%d pipelines for %d devices, want batches (≤ %d)", pipes, devices, devices/5)
	}
	t.Logf("%d devices × %d events: %d pipelines, %d single commands", devices, per, pipes, single)

	checkStream(ctx, t, js, "EVB", devs, per)
}

// failOnce is the real JetStream client, except that the first publish of one event id is
// not sent and its acknowledgement fails asynchronously, as a lost or refused publish does
// (a fault injected in front of a real server).
type failOnce struct {
	jetstream.JetStream
	id     string
	failed atomic.Bool
}

func (f *failOnce) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if m.Header.Get(jetstream.MsgIDHeader) == f.id && f.failed.CompareAndSwap(false, true) {
		errc := make(chan error, 1)
		errc <- errors.New("injected publish failure")
		return &failedAck{msg: m, err: errc}, nil
	}
	return f.JetStream.PublishMsgAsync(m, opts...)
}

// failedAck is a publish whose acknowledgement failed.
type failedAck struct {
	msg *nats.Msg
	err chan error
}

func (a *failedAck) Ok() <-chan *jetstream.PubAck { return nil }
func (a *failedAck) Err() <-chan error            { return a.err }
func (a *failedAck) Msg() *nats.Msg               { return a.msg }

// TestFailedPublishKeepsOrder: when one event's publish fails (asynchronously, after later
// ones could have been sent), none of the device's later events reaches the stream before it; the device is retried and every event arrives once,
// in commit order; another device in the same batch is not held up.
func TestFailedPublishKeepsOrder(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ns := startNATS(t, -1, t.TempDir())
	defer ns.Shutdown()
	js := streamOn(ctx, t, ns.ClientURL(), "EVF")
	st := store.New(testredis.Client(t), testredis.Prefix(t), store.Options{})
	devs := []string{"IMEI:F1", "IMEI:F2"}
	for _, d := range devs {
		var evs [][]byte
		for j := 0; j < 5; j++ {
			evs = append(evs, event(d, j))
		}
		if err := st.AppendOutbox(ctx, d, evs); err != nil {
			t.Fatal(err)
		}
	}
	fj := &failOnce{JetStream: js, id: "IMEI:F1-002"}
	r := New(st, fj, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{ScanInterval: time.Hour, Retry: 100 * time.Millisecond})
	for _, d := range devs {
		r.Notify(d)
	}
	go r.Run(ctx)
	waitFor(t, func() bool {
		for _, d := range devs {
			if left, _ := st.ReadOutbox(ctx, d, 10); len(left) > 0 {
				return false
			}
		}
		return true
	})
	if !fj.failed.Load() {
		t.Fatal("the injected failure did not happen")
	}
	checkStream(ctx, t, js, "EVF", devs, 5)
}

// TestLingerGathersDevices: with Linger, devices notified one after another within the
// linger time go out in one batch (one pipelined read, one pipelined removal); without it
// an idle relay takes each as it comes, one batch per device.
func TestLingerGathersDevices(t *testing.T) {
	for _, tc := range []struct {
		linger     time.Duration
		minBatches int64
		maxBatches int64
	}{{time.Second, 1, 1}, {0, 4, 20}} {
		t.Run(tc.linger.String(), func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			ns := startNATS(t, -1, t.TempDir())
			defer ns.Shutdown()
			js := streamOn(ctx, t, ns.ClientURL(), "EVL")
			rdb := testredis.Client(t)
			hook := &pipelines{}
			rdb.AddHook(hook)
			st := store.New(rdb, testredis.Prefix(t), store.Options{})
			const devices = 20
			devs := make([]string, devices)
			r := New(st, js, slog.New(slog.NewTextHandler(io.Discard, nil)), Config{ScanInterval: time.Hour, Workers: 1, Linger: tc.linger})
			go r.Run(ctx)
			time.Sleep(100 * time.Millisecond) // the start-up scan, over no outboxes yet
			r0 := hook.reads.Load()
			start := time.Now()
			for i := range devs {
				// As the session API does: commit events to the outbox, then notify.
				devs[i] = fmt.Sprintf("IMEI:L%04d", i)
				if err := st.AppendOutbox(ctx, devs[i], [][]byte{event(devs[i], 0)}); err != nil {
					t.Fatal(err)
				}
				r.Notify(devs[i])
				time.Sleep(5 * time.Millisecond) // 100 ms in all, well inside a linger of 1s
			}
			waitFor(t, func() bool { return r.Published() >= devices })
			if el := time.Since(start); el < tc.linger {
				t.Errorf("published after %v, before the linger of %v ended", el, tc.linger)
			}
			batches := hook.reads.Load() - r0
			if batches < tc.minBatches || batches > tc.maxBatches {
				t.Errorf("%d batches (outbox reads) for %d devices notified 5 ms apart, want %d–%d", batches, devices, tc.minBatches, tc.maxBatches)
			}
			t.Logf("linger %v: %d batches", tc.linger, batches)
			checkStream(ctx, t, js, "EVL", devs, 1)
		})
	}
}
