package notifier

import (
	"bufio"
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/events"
)

// eventRig is a notifier on a real Redis and a real NATS JetStream (embedded nats-server)
// whose events stream exists; its session tier is unreachable (nothing here asks it).
type eventRig struct {
	svc *Service
	js  jetstream.JetStream
}

func newEventRig(t *testing.T, deadLetterStream string) *eventRig {
	t.Helper()
	ns := e2e.StartNATS(t)
	js := e2e.JetStream(t, ns)
	if _, err := js.CreateStream(context.Background(), events.StreamConfig(events.DefaultStream)); err != nil {
		t.Fatal(err)
	}
	svc, err := New(context.Background(), Config{
		RedisURL: testredis.URL(t), RedisPrefix: testredis.Prefix(t), NATSURL: ns.ClientURL(), EventsStream: events.DefaultStream,
		DeadLetterStream: deadLetterStream, SessionAddr: "127.0.0.1:1", Routes: "default=log", PKG0Version: 11,
		MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, AnswerTimeout: time.Minute,
		PollInterval: 50 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: time.Second, Concurrency: 2, MaxEventAge: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return &eventRig{svc: svc, js: js}
}

// run runs f (a consumer, or Background) until the test ends.
func (r *eventRig) run(t *testing.T, f func(context.Context)) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}

// waitConsumer waits until the durable exists (it starts at new events, so events must be
// published after that) and returns its configuration.
func (r *eventRig) waitConsumer(t *testing.T, durable string) jetstream.ConsumerConfig {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitUntil(t, "consumer "+durable, func() bool {
		c, err := r.js.Consumer(context.Background(), events.DefaultStream, durable)
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil
	})
	return info.Config
}

// waitSettled waits until the durable has nothing pending, in flight or waiting for
// redelivery, and returns its state.
func (r *eventRig) waitSettled(t *testing.T, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	var info *jetstream.ConsumerInfo
	waitUntil(t, durable+" settled", func() bool {
		c, err := r.js.Consumer(context.Background(), events.DefaultStream, durable)
		if err != nil {
			return false
		}
		info, err = c.Info(context.Background())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0 && info.NumRedelivered == 0
	})
	return info
}

// publish publishes data on subject with an extra header and returns its stream sequence.
func (r *eventRig) publish(t *testing.T, subject string, data []byte, msgID string) uint64 {
	t.Helper()
	m := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set("X-Test", "kept")
	ack, err := r.js.PublishMsg(context.Background(), m)
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ack.Sequence
}

func (r *eventRig) publishEvent(t *testing.T, ev *eventsv1.Event) uint64 {
	t.Helper()
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	return r.publish(t, events.Subject(ev), b, ev.GetEventId())
}

// deadLetters waits until the dead-letter stream holds n messages and returns them.
func (r *eventRig) deadLetters(t *testing.T, stream string, n int) []*jetstream.RawStreamMsg {
	t.Helper()
	var s jetstream.Stream
	waitUntil(t, "dead letters", func() bool {
		var err error
		if s, err = r.js.Stream(context.Background(), stream); err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs >= uint64(n)
	})
	var out []*jetstream.RawStreamMsg
	for seq := uint64(1); len(out) < n; seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		out = append(out, m)
	}
	if info, err := s.Info(context.Background()); err != nil || info.State.Msgs != uint64(n) {
		t.Fatalf("dead-letter stream: %+v %v, want %d messages", info, err, n)
	}
	return out
}

// deadLetteredMetric returns the value of dmgrid_notifier_events_dead_lettered_total for
// the consumer and cause ("" when the series is absent).
func (r *eventRig) deadLetteredMetric(t *testing.T, consumer, cause string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	r.svc.Telemetry().MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "dmgrid_notifier_events_dead_lettered_total{") &&
			strings.Contains(line, `consumer="`+consumer+`"`) && strings.Contains(line, `cause="`+cause+`"`) {
			return line[strings.LastIndexByte(line, ' ')+1:]
		}
	}
	return ""
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func wakeEvent(id, dev string, at time.Time) *eventsv1.Event {
	return &eventsv1.Event{EventId: id, DeviceId: dev, Time: timestamppb.New(at),
		Payload: &eventsv1.Event_WakeRequested{WakeRequested: &eventsv1.WakeRequested{Reason: "test"}}}
}

// recorder is an event handler that records the event ids it was given and fails those in
// fail, every time.
type recorder struct {
	mu       sync.Mutex
	fail     map[string]bool
	attempts map[string]int
	handled  chan string
}

func newRecorder(fail ...string) *recorder {
	r := &recorder{fail: map[string]bool{}, attempts: map[string]int{}, handled: make(chan string, 16)}
	for _, id := range fail {
		r.fail[id] = true
	}
	return r
}

func (r *recorder) handle(_ context.Context, ev *eventsv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.attempts[ev.GetEventId()]++
	if r.fail[ev.GetEventId()] {
		return errors.New("session tier unavailable")
	}
	r.handled <- ev.GetEventId()
	return nil
}

func (r *recorder) attemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

// waitHandled waits for the next event the handler accepted.
func (r *recorder) waitHandled(t *testing.T) string {
	t.Helper()
	select {
	case id := <-r.handled:
		return id
	case <-time.After(15 * time.Second):
		t.Fatal("timed out waiting for an event to be handled")
		return ""
	}
}

// TestUndecodableEventIsDeadLettered: a payload that is not an Event is published unchanged
// to the dead-letter subject with the reason, its original subject and headers, terminated
// (not redelivered), counted, and the consumer goes on with the events behind it.
func TestUndecodableEventIsDeadLettered(t *testing.T) {
	r := newEventRig(t, "DL")
	rec := newRecorder()
	r.run(t, func(ctx context.Context) { r.svc.consume(ctx, "t-wake", "wake_requested", rec.handle) })
	r.waitConsumer(t, "t-wake")

	garbage := []byte("\xff\xffnot protobuf")
	subject := events.KindSubject("wake_requested", "IMEI:1")
	seq := r.publish(t, subject, garbage, "bad-1")
	r.publishEvent(t, wakeEvent("good-1", "IMEI:2", time.Now()))
	if id := rec.waitHandled(t); id != "good-1" {
		t.Fatalf("handled %q, want good-1", id)
	}

	dl := r.deadLetters(t, "DL", 1)[0]
	h := dl.Header
	if dl.Subject != "dmgrid.deadletter.notifier" || string(dl.Data) != string(garbage) ||
		!strings.Contains(h.Get(events.HeaderDeadLetterReason), "not a dmgrid.events.v1.Event") ||
		h.Get(events.HeaderDeadLetterConsumer) != "t-wake" || h.Get(events.HeaderOriginalSubject) != subject ||
		h.Get(events.HeaderOriginalStreamSeq) != "1" || seq != 1 || h.Get(events.HeaderDeliveries) != "1" ||
		h.Get("X-Test") != "kept" || h.Get(jetstream.MsgIDHeader) != "t-wake:DMGRID_EVENTS:1" {
		t.Fatalf("dead letter: %s %q %v", dl.Subject, dl.Data, h)
	}
	// Terminated at once: never redelivered, never given to the handler.
	info := r.waitSettled(t, "t-wake")
	if info.Delivered.Consumer != 2 {
		t.Fatalf("%d deliveries, want 2 (no redelivery)", info.Delivered.Consumer)
	}
	rec.mu.Lock()
	if len(rec.attempts) != 1 || rec.attempts["good-1"] != 1 {
		t.Fatalf("handler attempts %v, want the good event once", rec.attempts)
	}
	rec.mu.Unlock()
	if v := r.deadLetteredMetric(t, "t-wake", "undecodable"); v != "1" {
		t.Fatalf("dmgrid_notifier_events_dead_lettered_total{consumer=t-wake,cause=undecodable} = %q, want 1", v)
	}
}

// TestFailingEventIsDeadLetteredAfterMaxDeliver: an event whose handler always fails is
// redelivered until its last allowed attempt, then dead-lettered with the last error and
// the delivery count and terminated; it does not hold up the events behind it.
func TestFailingEventIsDeadLetteredAfterMaxDeliver(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	rec := newRecorder("never")
	r.run(t, func(ctx context.Context) { r.svc.consume(ctx, "t-wake", "wake_requested", rec.handle) })
	if cfg := r.waitConsumer(t, "t-wake"); cfg.MaxDeliver != 4 {
		t.Fatalf("MaxDeliver %d, want attempts+1 = 4 (JetStream must not drop the event before it is dead-lettered)", cfg.MaxDeliver)
	}

	subject := events.Subject(wakeEvent("never", "IMEI:1", time.Now()))
	r.publishEvent(t, wakeEvent("never", "IMEI:1", time.Now()))
	r.publishEvent(t, wakeEvent("fine", "IMEI:2", time.Now()))
	if id := rec.waitHandled(t); id != "fine" {
		t.Fatalf("handled %q, want fine", id)
	}

	dl := r.deadLetters(t, "DL", 1)[0]
	h := dl.Header
	if dl.Subject != "dmgrid.deadletter.notifier" ||
		!strings.Contains(h.Get(events.HeaderDeadLetterReason), "not handled after 3 attempts: session tier unavailable") ||
		h.Get(events.HeaderDeliveries) != "3" || h.Get(events.HeaderOriginalSubject) != subject ||
		h.Get(events.HeaderOriginalStreamSeq) != "1" || h.Get("X-Test") != "kept" {
		t.Fatalf("dead letter: %s %v", dl.Subject, h)
	}
	var ev eventsv1.Event
	if err := proto.Unmarshal(dl.Data, &ev); err != nil || ev.GetEventId() != "never" {
		t.Fatalf("dead letter payload: %v %v", &ev, err)
	}
	// Terminated after the third attempt: settled, and the handler saw it three times only.
	r.waitSettled(t, "t-wake")
	if n := rec.attemptsOf("never"); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if n := rec.attemptsOf("fine"); n != 1 {
		t.Fatalf("%d attempts of the good event, want 1", n)
	}
	if v := r.deadLetteredMetric(t, "t-wake", "failing"); v != "1" {
		t.Fatalf("dmgrid_notifier_events_dead_lettered_total{consumer=t-wake,cause=failing} = %q, want 1", v)
	}
}

// TestServiceConsumersDeadLetter: the service's own consumers (Background) dead-letter to
// the default subject and stream, and keep handling good events after a bad one.
func TestServiceConsumersDeadLetter(t *testing.T) {
	r := newEventRig(t, events.DefaultDeadLetterStream)
	r.run(t, func(ctx context.Context) { _ = r.svc.Background(ctx) })
	for _, d := range []string{"dmgrid-notifier-wake", "dmgrid-notifier-answered"} {
		if cfg := r.waitConsumer(t, d); cfg.MaxDeliver != defaultEventAttempts+1 {
			t.Fatalf("%s: MaxDeliver %d", d, cfg.MaxDeliver)
		}
	}
	r.publish(t, events.KindSubject("wake_requested", "IMEI:1"), []byte("\x01garbage"), "bad-wake")
	r.publish(t, events.KindSubject("session_started", "IMEI:1"), []byte("\x01garbage"), "bad-started")
	// Good events behind them: a stale wake request (skipped without asking the session
	// tier) and a server-initiated session of a device with nothing outstanding.
	wakeSeq := r.publishEvent(t, wakeEvent("old-wake", "IMEI:1", time.Now().Add(-2*time.Hour)))
	startedSeq := r.publishEvent(t, &eventsv1.Event{EventId: "started", DeviceId: "IMEI:1", Time: timestamppb.Now(),
		Payload: &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1A2B",
			Initiator: eventsv1.SessionStarted_INITIATOR_SERVER}}})

	dls := r.deadLetters(t, events.DefaultDeadLetterStream, 2)
	got := map[string]string{}
	for _, dl := range dls {
		if dl.Subject != "dmgrid.deadletter.notifier" || !strings.Contains(dl.Header.Get(events.HeaderDeadLetterReason), "not a dmgrid.events.v1.Event") {
			t.Fatalf("dead letter: %s %v", dl.Subject, dl.Header)
		}
		got[dl.Header.Get(events.HeaderDeadLetterConsumer)] = dl.Header.Get(events.HeaderOriginalSubject)
	}
	if got["dmgrid-notifier-wake"] != events.KindSubject("wake_requested", "IMEI:1") ||
		got["dmgrid-notifier-answered"] != events.KindSubject("session_started", "IMEI:1") {
		t.Fatalf("dead letters by consumer: %v", got)
	}
	for d, seq := range map[string]uint64{"dmgrid-notifier-wake": wakeSeq, "dmgrid-notifier-answered": startedSeq} {
		if info := r.waitSettled(t, d); info.AckFloor.Stream != seq {
			t.Fatalf("%s: acknowledged up to stream sequence %d, want %d (the good event)", d, info.AckFloor.Stream, seq)
		}
		if v := r.deadLetteredMetric(t, d, "undecodable"); v != "1" {
			t.Fatalf("%s: dead-lettered metric %q, want 1", d, v)
		}
	}
}
