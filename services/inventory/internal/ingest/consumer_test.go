package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

type rig struct {
	js jetstream.JetStream
	st *store.Store
}

func newRig(t *testing.T) *rig {
	t.Helper()
	ns := e2e.StartNATS(t)
	js := e2e.JetStream(t, ns)
	st := store.New(testredis.Client(t), testredis.Prefix(t), store.Options{})
	if err := st.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &rig{js: js, st: st}
}

func (r *rig) start(t *testing.T, app Applier, cfg Config) *Consumer {
	t.Helper()
	c := NewConsumer(r.js, app, slog.New(slog.NewTextHandler(io.Discard, nil)), cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
	})
	return c
}

func (r *rig) publish(t *testing.T, subject string, data []byte, msgID string) {
	t.Helper()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	if msgID != "" {
		m.Header.Set(jetstream.MsgIDHeader, msgID)
	}
	if _, err := r.js.PublishMsg(context.Background(), m); err != nil {
		t.Fatalf("publish: %v", err)
	}
}

func (r *rig) publishEvent(t *testing.T, e *eventsv1.Event) {
	t.Helper()
	r.publish(t, events.Subject(e), mustMarshal(e), e.GetEventId())
}

func started(id, dev string) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, DeviceId: dev, Time: timestamppb.New(t0),
		Payload: &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1"}}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// deadLetters reads every message of the dead-letter stream.
func (r *rig) deadLetters(t *testing.T, stream string) []jetstream.RawStreamMsg {
	t.Helper()
	s, err := r.js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var out []jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, *m)
	}
	return out
}

// TestMalformedIsDeadLettered: bad events go to the dead-letter subject with their reason
// and do not hold up the events behind them.
func TestMalformedIsDeadLettered(t *testing.T) {
	r := newRig(t)
	c := r.start(t, r.st, Config{DeadLetterStream: "DL", Backoff: []time.Duration{10 * time.Millisecond}})
	r.publish(t, "dmgrid.events.session_started.eA", []byte("\xff\xffnot protobuf"), "bad-1")
	noDevice := started("bad-2", "")
	r.publish(t, "dmgrid.events.session_started.x", mustMarshal(noDevice), "bad-2")
	r.publishEvent(t, started("good-1", "IMEI:1"))
	waitFor(t, "the good event applied and two dead letters", func() bool {
		s := c.Stats()
		return s.Applied == 1 && s.DeadLettered == 2
	})
	dls := r.deadLetters(t, "DL")
	if len(dls) != 2 {
		t.Fatalf("%d dead letters", len(dls))
	}
	for i, want := range []string{"not a dmgrid.events.v1.Event", "no device_id"} {
		h := dls[i].Header
		if dls[i].Subject != "dmgrid.deadletter.inventory" || !strings.Contains(h.Get(events.HeaderDeadLetterReason), want) ||
			h.Get(events.HeaderOriginalSubject) == "" || h.Get(events.HeaderOriginalStreamSeq) == "" {
			t.Fatalf("dead letter %d: %s %v", i, dls[i].Subject, h)
		}
	}
	if _, err := r.st.GetDevice(context.Background(), "IMEI:1"); err != nil {
		t.Fatal(err)
	}
}

// flaky fails the events named in failures, each as many times as given (-1: always).
type flaky struct {
	Applier
	mu       sync.Mutex
	failures map[string]int
	attempts map[string]int
}

func (f *flaky) ApplyBatch(ctx context.Context, ups []store.Update) ([]store.Result, error) {
	f.mu.Lock()
	var keep []store.Update
	var idx []int
	res := make([]store.Result, len(ups))
	for i, u := range ups {
		f.attempts[u.EventID]++
		if n := f.failures[u.EventID]; n != 0 {
			if n > 0 {
				f.failures[u.EventID]--
			}
			res[i].Err = errors.New("injected failure")
			continue
		}
		keep = append(keep, u)
		idx = append(idx, i)
	}
	f.mu.Unlock()
	got, err := f.Applier.ApplyBatch(ctx, keep)
	if err != nil {
		return nil, err
	}
	for j, i := range idx {
		res[i] = got[j]
	}
	return res, nil
}

// TestFailuresRetriedThenDeadLettered: a failing event is redelivered after a back-off and
// applied once it succeeds; one that never succeeds is dead-lettered after MaxDeliver
// attempts, and neither holds up the others.
func TestFailuresRetriedThenDeadLettered(t *testing.T) {
	r := newRig(t)
	f := &flaky{Applier: r.st, failures: map[string]int{"twice": 2, "never": -1}, attempts: map[string]int{}}
	c := r.start(t, f, Config{DeadLetterStream: "DL", MaxDeliver: 3, Backoff: []time.Duration{10 * time.Millisecond}})
	r.publishEvent(t, started("twice", "IMEI:1"))
	r.publishEvent(t, started("never", "IMEI:2"))
	r.publishEvent(t, started("fine", "IMEI:3"))
	waitFor(t, "two applied and one dead letter", func() bool {
		s := c.Stats()
		return s.Applied == 2 && s.DeadLettered == 1
	})
	f.mu.Lock()
	if f.attempts["twice"] != 3 || f.attempts["never"] != 3 || f.attempts["fine"] != 1 {
		t.Fatalf("attempts = %v", f.attempts)
	}
	f.mu.Unlock()
	dls := r.deadLetters(t, "DL")
	if len(dls) != 1 || !strings.Contains(dls[0].Header.Get(events.HeaderDeadLetterReason), "not applied after 3 attempts: ") ||
		dls[0].Header.Get(events.HeaderDeliveries) != "3" {
		t.Fatalf("dead letters = %+v", dls)
	}
	// The dead letter carries the event unchanged.
	if e, err := Decode("", dls[0].Data); err != nil || e.GetEventId() != "never" {
		t.Fatalf("dead letter payload: %v %v", e, err)
	}
}

// outage fails whole batches (as an unreachable Redis does) until it has failed n times.
type outage struct {
	Applier
	mu    sync.Mutex
	fails int
}

func (o *outage) ApplyBatch(ctx context.Context, ups []store.Update) ([]store.Result, error) {
	o.mu.Lock()
	if o.fails > 0 {
		o.fails--
		o.mu.Unlock()
		return nil, errors.New("dial tcp 127.0.0.1:6379: connection refused")
	}
	o.mu.Unlock()
	return o.Applier.ApplyBatch(ctx, ups)
}

// TestOutageHoldsEvents: while Redis is unreachable the consumer holds its events instead
// of spending their attempts: more failures than MaxDeliver dead-letter nothing.
func TestOutageHoldsEvents(t *testing.T) {
	r := newRig(t)
	app := &outage{Applier: r.st, fails: 4}
	c := r.start(t, app, Config{DeadLetterStream: "DL", MaxDeliver: 2, Workers: 1, Backoff: []time.Duration{10 * time.Millisecond}})
	for i := range 5 {
		r.publishEvent(t, started(fmt.Sprint("o", i), fmt.Sprint("IMEI:", i)))
	}
	waitFor(t, "five events applied after the outage", func() bool { return c.Stats().Applied == 5 })
	if s := c.Stats(); s.DeadLettered != 0 || s.Retried != 0 {
		t.Fatalf("stats after an outage: %+v", s)
	}
}

// TestUnknownPayloadIgnored: an event of a kind newer than this build is acknowledged and
// ignored, not dead-lettered.
func TestUnknownPayloadIgnored(t *testing.T) {
	r := newRig(t)
	c := r.start(t, r.st, Config{DeadLetterStream: "DL"})
	e := started("future", "IMEI:1")
	e.Payload = nil
	b := mustMarshal(e)
	b = protowire.AppendTag(b, 99, protowire.BytesType) // field 99: a payload from the future
	b = protowire.AppendBytes(b, []byte{0x0a, 0x01, 'x'})
	r.publish(t, "dmgrid.events.something_new.x", b, "future")
	r.publishEvent(t, started("now", "IMEI:2"))
	waitFor(t, "one ignored, one applied", func() bool { s := c.Stats(); return s.Ignored == 1 && s.Applied == 1 })
	if s := c.Stats(); s.DeadLettered != 0 {
		t.Fatalf("stats %+v", s)
	}
}
