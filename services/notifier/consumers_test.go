package notifier

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/notifier/internal/store"
)

// eventRig is a notifier on a real Redis and a real NATS JetStream (embedded nats-server)
// whose events stream exists; its session tier is unreachable (nothing here asks it, or
// asking it fails with Unavailable).
type eventRig struct {
	svc *Service
	js  jetstream.JetStream
	cfg Config
}

func newEventRig(t *testing.T, deadLetterStream string, opts ...func(*Config)) *eventRig {
	t.Helper()
	ns := e2e.StartNATS(t)
	js := e2e.JetStream(t, ns)
	if _, err := js.CreateStream(context.Background(), events.StreamConfig(events.DefaultStream)); err != nil {
		t.Fatal(err)
	}
	cfg := Config{
		RedisURL: testredis.URL(t), RedisPrefix: testredis.Prefix(t), NATSURL: ns.ClientURL(), EventsStream: events.DefaultStream,
		DeadLetterStream: deadLetterStream, SessionAddr: "127.0.0.1:1", Routes: "default=log", PKG0Version: 11,
		MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, AnswerTimeout: time.Minute,
		PollInterval: 50 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: time.Second, Concurrency: 2, MaxEventAge: time.Hour,
	}
	for _, o := range opts {
		o(&cfg)
	}
	r := &eventRig{js: js, cfg: cfg}
	r.svc = r.replica(t)
	return r
}

// replica starts another notifier with the rig's configuration (closed when the test ends).
func (r *eventRig) replica(t *testing.T) *Service {
	t.Helper()
	svc, err := New(context.Background(), r.cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(svc.Close)
	return svc
}

// run runs f (a consumer, or Background) until the test ends.
func (r *eventRig) run(t *testing.T, f func(context.Context)) {
	r.start(t, f)
}

// start runs f until stop is called or the test ends; stop returns when f has returned
// (failing the test if that takes more than 15 s).
func (r *eventRig) start(t *testing.T, f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ctx)
	}()
	stop = func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Errorf("the consumer did not stop within 15 s")
			<-done
		}
	}
	t.Cleanup(stop)
	return stop
}

// consumerInfo returns the durable's state.
func (r *eventRig) consumerInfo(t *testing.T, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := r.js.Consumer(context.Background(), events.DefaultStream, durable)
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// deadLetterCount returns how many messages the dead-letter stream holds (0 when it does
// not exist).
func (r *eventRig) deadLetterCount(t *testing.T, stream string) uint64 {
	t.Helper()
	s, err := r.js.Stream(context.Background(), stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
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
	return metricValue(t, r.svc, "dmgrid_notifier_events_dead_lettered_total", `consumer="`+consumer+`"`, `cause="`+cause+`"`)
}

// metricValue returns the value of the series of metric name with every one of labels
// (`key="value"`) on svc's /metrics ("" when there is none).
func metricValue(t *testing.T, svc *Service, name string, labels ...string) string {
	t.Helper()
	rec := httptest.NewRecorder()
	svc.Telemetry().MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	sc := bufio.NewScanner(strings.NewReader(rec.Body.String()))
next:
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		for _, l := range labels {
			if !strings.Contains(line, l) {
				continue next
			}
		}
		return line[strings.LastIndexByte(line, ' ')+1:]
	}
	return ""
}

// heldMetric and dependencyUpMetric read the outage metrics of a consumer.
func heldMetric(t *testing.T, svc *Service, consumer string) string {
	t.Helper()
	return metricValue(t, svc, "dmgrid_notifier_events_held", `consumer="`+consumer+`"`)
}

func dependencyUpMetric(t *testing.T, svc *Service, consumer, dep string) string {
	t.Helper()
	return metricValue(t, svc, "dmgrid_notifier_dependency_up", `consumer="`+consumer+`"`, `dependency="`+dep+`"`)
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitWithin(t, 15*time.Second, what, cond)
}

func waitWithin(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
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
// fail, every time, with a plain error; those in errs with that error; and every event
// while down, as notify does when the session tier is unreachable.
type recorder struct {
	mu        sync.Mutex
	fail      map[string]bool
	errs      map[string]error
	down      bool
	attempts  map[string]int
	successes map[string]int
	handled   chan string
}

func newRecorder(fail ...string) *recorder {
	r := &recorder{fail: map[string]bool{}, errs: map[string]error{}, attempts: map[string]int{}, successes: map[string]int{},
		handled: make(chan string, 64)}
	for _, id := range fail {
		r.fail[id] = true
	}
	return r
}

// sessionStatusErr is the error notify (api.go) returns when GetNotificationTarget failed
// with code.
func sessionStatusErr(dev string, code codes.Code) error {
	return &sessionTierError{err: fmt.Errorf("get notification target of %s: %w", dev, status.Error(code, "session tier says no"))}
}

func (r *recorder) handle(_ context.Context, ev *eventsv1.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	id := ev.GetEventId()
	r.attempts[id]++
	switch {
	case r.down:
		return sessionStatusErr(ev.GetDeviceId(), codes.Unavailable)
	case r.errs[id] != nil:
		return r.errs[id]
	case r.fail[id]:
		return errors.New("session tier unavailable")
	}
	r.successes[id]++
	r.handled <- id
	return nil
}

func (r *recorder) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *recorder) setErr(id string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs[id] = err
}

func (r *recorder) attemptsOf(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.attempts[id]
}

func (r *recorder) totalAttempts() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, a := range r.attempts {
		n += a
	}
	return n
}

// successCounts returns how often each event was handled successfully.
func (r *recorder) successCounts() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return maps.Clone(r.successes)
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

// logCapture is a slog handler that keeps the messages logged.
type logCapture struct {
	mu   sync.Mutex
	msgs []string
}

func (c *logCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *logCapture) WithAttrs([]slog.Attr) slog.Handler       { return c }
func (c *logCapture) WithGroup(string) slog.Handler            { return c }

func (c *logCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.msgs = append(c.msgs, r.Message)
	return nil
}

// count returns how often msg was logged.
func (c *logCapture) count(msg string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.msgs {
		if m == msg {
			n++
		}
	}
	return n
}

func captureLogs(svc *Service) *logCapture {
	c := &logCapture{}
	svc.log = slog.New(c)
	return c
}

// Messages the consumers log once per outage.
const (
	logHolding  = "dependency unavailable; holding events until it answers"
	logReleased = "dependency answers again; held events released"
	logHandBack = "stopping; held events handed back for redelivery"
	logRedeliv  = "handle event; redelivering"
)

// tcpProxy forwards loopback connections to a target (a real Redis here) until cut: then
// every open connection is closed and new ones are refused, as when Redis is down, until
// restore listens again on the same address.
type tcpProxy struct {
	target, addr string
	mu           sync.Mutex
	lis          net.Listener
	conns        map[net.Conn]bool
}

func startProxy(t *testing.T, target string) *tcpProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{target: target, addr: lis.Addr().String(), conns: map[net.Conn]bool{}}
	p.serve(lis)
	t.Cleanup(p.cut)
	return p
}

func (p *tcpProxy) serve(lis net.Listener) {
	p.mu.Lock()
	p.lis = lis
	p.mu.Unlock()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.lis != lis { // cut meanwhile
				p.mu.Unlock()
				c.Close()
				up.Close()
				return
			}
			p.conns[c], p.conns[up] = true, true
			p.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				dst.Close()
				src.Close()
				p.mu.Lock()
				delete(p.conns, dst)
				delete(p.conns, src)
				p.mu.Unlock()
			}
			go pipe(c, up)
			go pipe(up, c)
		}
	}()
}

func (p *tcpProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lis != nil {
		p.lis.Close()
		p.lis = nil
	}
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func (p *tcpProxy) restore(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lis, err := net.Listen("tcp", p.addr)
		if err == nil {
			p.serve(lis)
			return
		}
		if !errors.Is(err, syscall.EADDRINUSE) || time.Now().After(deadline) {
			t.Fatalf("proxy: listen again on %s: %v", p.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// redisProxy puts a tcpProxy in front of the test Redis and returns it with its URL.
func redisProxy(t *testing.T) (*tcpProxy, string) {
	t.Helper()
	opt, err := redis.ParseURL(testredis.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	p := startProxy(t, opt.Addr)
	return p, "redis://" + p.addr
}

// shortOutageOptions: AckWait short enough that an outage of a few seconds outlasts it
// several times, so only marking held events in progress keeps them from being redelivered.
var shortOutageOptions = consumeOptions{ackWait: time.Second, maxAckPending: 100}

// TestOutageHoldsEventsWithoutSpendingAttempts: while the session tier is unavailable (the
// handler fails as notify does then) for far longer than attempts × delay and than AckWait,
// the consumer holds the events: no dead letter, no redelivery (the deliveries stay at one
// each), retries with back-off; once the session tier answers each event is handled exactly
// once. The outage is logged once when it starts and once when it ends, and exposed as
// dmgrid_notifier_events_held and dmgrid_notifier_dependency_up.
func TestOutageHoldsEventsWithoutSpendingAttempts(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	logs := captureLogs(r.svc)
	rec := newRecorder()
	rec.setDown(true)
	r.run(t, func(ctx context.Context) {
		r.svc.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, shortOutageOptions)
	})
	r.waitConsumer(t, "t-wake")
	// The series exists, at 0, before any outage.
	waitUntil(t, "dmgrid_notifier_events_held 0", func() bool { return heldMetric(t, r.svc, "t-wake") == "0" })

	start := time.Now()
	ids := []string{"e1", "e2", "e3"}
	for i, id := range ids {
		r.publishEvent(t, wakeEvent(id, fmt.Sprintf("IMEI:%d", i), time.Now()))
	}
	// Down for 2.5 AckWaits and at least 5 attempts (the events have 3 each).
	waitUntil(t, "attempts during the outage", func() bool {
		return time.Since(start) > 5*shortOutageOptions.ackWait/2 && rec.totalAttempts() >= 5
	})
	info := r.consumerInfo(t, "t-wake")
	if info.NumAckPending != 3 || info.NumRedelivered != 0 || info.Delivered.Consumer != 3 {
		t.Fatalf("during the outage: ack pending %d, redelivered %d, delivered %d; want 3 held, none redelivered",
			info.NumAckPending, info.NumRedelivered, info.Delivered.Consumer)
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters during the outage", n)
	}
	if v := heldMetric(t, r.svc, "t-wake"); v != "3" {
		t.Fatalf("dmgrid_notifier_events_held = %q, want 3", v)
	}
	if v := dependencyUpMetric(t, r.svc, "t-wake", depSession); v != "0" {
		t.Fatalf("dmgrid_notifier_dependency_up{session} = %q during the outage, want 0", v)
	}

	rec.setDown(false)
	got := map[string]bool{}
	for range ids {
		got[rec.waitHandled(t)] = true
	}
	info = r.waitSettled(t, "t-wake")
	if info.Delivered.Consumer != 3 || info.NumRedelivered != 0 {
		t.Fatalf("after the outage: %d deliveries (%d redelivered), want 3 (none)", info.Delivered.Consumer, info.NumRedelivered)
	}
	if want := map[string]int{"e1": 1, "e2": 1, "e3": 1}; !maps.Equal(rec.successCounts(), want) {
		t.Fatalf("handled %v, want each event exactly once", rec.successCounts())
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters after the outage", n)
	}
	if v := r.deadLetteredMetric(t, "t-wake", causeFailing); v != "" {
		t.Fatalf("dead-lettered metric %q, want none", v)
	}
	if v := heldMetric(t, r.svc, "t-wake"); v != "0" {
		t.Fatalf("dmgrid_notifier_events_held = %q after the outage, want 0", v)
	}
	if v := dependencyUpMetric(t, r.svc, "t-wake", depSession); v != "1" {
		t.Fatalf("dmgrid_notifier_dependency_up{session} = %q after the outage, want 1", v)
	}
	if a, h, rd := logs.count(logHolding), logs.count(logReleased), logs.count(logRedeliv); a != 1 || h != 1 || rd != 0 {
		t.Fatalf("logged the outage %d times, its end %d times, redeliveries %d times; want 1, 1, 0 (over %d attempts)",
			a, h, rd, rec.totalAttempts())
	}
}

// TestOutageHoldIsBounded: what is held during an outage is bounded by the consumer's
// MaxAckPending; the other events stay in the stream, undelivered (no attempt spent), and
// are all handled once after the outage.
func TestOutageHoldIsBounded(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	rec := newRecorder()
	rec.setDown(true)
	opts := consumeOptions{ackWait: time.Second, maxAckPending: 2}
	r.run(t, func(ctx context.Context) { r.svc.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, opts) })
	if cfg := r.waitConsumer(t, "t-wake"); cfg.MaxAckPending != 2 {
		t.Fatalf("MaxAckPending %d, want 2", cfg.MaxAckPending)
	}
	start := time.Now()
	for i := range 6 {
		r.publishEvent(t, wakeEvent(fmt.Sprintf("b%d", i), fmt.Sprintf("IMEI:%d", i), time.Now()))
	}
	maxHeld := ""
	waitUntil(t, "the outage outlasting AckWait", func() bool {
		if v := heldMetric(t, r.svc, "t-wake"); v > maxHeld {
			maxHeld = v
		}
		return time.Since(start) > 3*opts.ackWait/2 && rec.totalAttempts() >= 4
	})
	info := r.consumerInfo(t, "t-wake")
	if maxHeld != "2" || info.NumAckPending != 2 || info.NumPending != 4 || info.Delivered.Consumer != 2 || info.NumRedelivered != 0 {
		t.Fatalf("during the outage: held at most %q, ack pending %d, pending %d, delivered %d, redelivered %d; want 2 held, 4 waiting in the stream",
			maxHeld, info.NumAckPending, info.NumPending, info.Delivered.Consumer, info.NumRedelivered)
	}
	rec.setDown(false)
	for range 6 {
		rec.waitHandled(t)
	}
	info = r.waitSettled(t, "t-wake")
	if info.Delivered.Consumer != 6 {
		t.Fatalf("%d deliveries, want 6", info.Delivered.Consumer)
	}
	for id, n := range rec.successCounts() {
		if n != 1 {
			t.Fatalf("%s handled %d times", id, n)
		}
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// TestEventFailuresStillDeadLetter: a failure of the event itself — the session tier
// answers, with Internal — is retried and dead-lettered after the attempts, without holding
// anything; and a held event whose dependency comes back but which then fails on its own
// goes back to those retries and is dead-lettered too, its held time not counted.
func TestEventFailuresStillDeadLetter(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	logs := captureLogs(r.svc)
	rec := newRecorder()
	rec.setErr("poison", sessionStatusErr("IMEI:1", codes.Internal))
	r.run(t, func(ctx context.Context) {
		r.svc.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, shortOutageOptions)
	})
	r.waitConsumer(t, "t-wake")

	r.publishEvent(t, wakeEvent("poison", "IMEI:1", time.Now()))
	dl := r.deadLetters(t, "DL", 1)[0]
	if reason := dl.Header.Get(events.HeaderDeadLetterReason); !strings.Contains(reason, "not handled after 3 attempts") ||
		!strings.Contains(reason, "code = Internal") || dl.Header.Get(events.HeaderDeliveries) != "3" {
		t.Fatalf("dead letter: %v", dl.Header)
	}
	if n := rec.attemptsOf("poison"); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	if n := logs.count(logHolding); n != 0 {
		t.Fatalf("an event failure was taken for an outage (%d)", n)
	}

	rec.setDown(true)
	r.publishEvent(t, wakeEvent("late", "IMEI:2", time.Now()))
	waitUntil(t, "the event held", func() bool { return heldMetric(t, r.svc, "t-wake") == "1" && rec.attemptsOf("late") >= 3 })
	rec.setErr("late", sessionStatusErr("IMEI:2", codes.Internal))
	rec.setDown(false)
	dls := r.deadLetters(t, "DL", 2)
	if reason := dls[1].Header.Get(events.HeaderDeadLetterReason); !strings.Contains(reason, "not handled after 3 attempts") ||
		!strings.Contains(reason, "code = Internal") || dls[1].Header.Get(events.HeaderDeliveries) != "3" {
		t.Fatalf("dead letter of the held event: %v", dls[1].Header)
	}
	r.waitSettled(t, "t-wake")
	if v := heldMetric(t, r.svc, "t-wake"); v != "0" {
		t.Fatalf("dmgrid_notifier_events_held = %q, want 0", v)
	}
	if len(rec.successCounts()) != 0 {
		t.Fatalf("handled %v, want nothing", rec.successCounts())
	}
}

// TestStopWhileHoldingHandsEventsBack: a replica that stops while it holds events hands
// them back (Nak) at once: another replica handles them long before AckWait (30 s) would
// have redelivered them; nothing is lost or dead-lettered.
func TestStopWhileHoldingHandsEventsBack(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	logs := captureLogs(r.svc)
	rec := newRecorder()
	rec.setDown(true)
	opts := defaultConsumeOptions()
	stopFirst := r.start(t, func(ctx context.Context) { r.svc.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, opts) })
	r.waitConsumer(t, "t-wake")
	r.publishEvent(t, wakeEvent("kept", "IMEI:1", time.Now()))
	waitUntil(t, "the event held", func() bool { return heldMetric(t, r.svc, "t-wake") == "1" && rec.attemptsOf("kept") >= 2 })

	stopped := time.Now()
	stopFirst()
	if d := time.Since(stopped); d > 10*time.Second {
		t.Fatalf("stopping took %v", d)
	}
	if v := heldMetric(t, r.svc, "t-wake"); v != "0" || logs.count(logHandBack) != 1 {
		t.Fatalf("after stopping: held %q, hand-back logged %d times; want 0, 1", v, logs.count(logHandBack))
	}
	if len(rec.successCounts()) != 0 {
		t.Fatal("handled while the dependency was down")
	}

	rec.setDown(false)
	second := r.replica(t)
	second.eventAttempts, second.eventRetryDelay = 3, 10*time.Millisecond
	r.run(t, func(ctx context.Context) { second.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, opts) })
	select {
	case id := <-rec.handled:
		if id != "kept" {
			t.Fatalf("handled %q", id)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the held event was not redelivered to the other replica within 10 s (AckWait is 30 s)")
	}
	info := r.waitSettled(t, "t-wake")
	if info.Delivered.Consumer != 2 || rec.successCounts()["kept"] != 1 {
		t.Fatalf("%d deliveries, handled %v; want 2 deliveries (held, handed back, handled), handled once",
			info.Delivered.Consumer, rec.successCounts())
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

// TestOutageClassification: which failures hold events. The session tier's outage is
// taken from notify's real error (the session tier unreachable); Redis's from a PING of the
// real Redis, reachable here and cut off in TestRedisOutageHoldsSessionStarted.
func TestOutageClassification(t *testing.T) {
	r := newEventRig(t, "DL") // its session tier (127.0.0.1:1) refuses connections
	_, _, notifyErr := r.svc.notify(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:1"})
	wakeErr := r.svc.onWake(context.Background(), wakeEvent("w", "IMEI:1", time.Now()))
	for _, c := range []struct {
		name string
		err  error
		want string
	}{
		{"notify, session tier unreachable", notifyErr, depSession},
		{"onWake, session tier unreachable", wakeErr, depSession},
		{"session tier DeadlineExceeded", sessionStatusErr("d", codes.DeadlineExceeded), depSession},
		{"session tier ResourceExhausted", sessionStatusErr("d", codes.ResourceExhausted), depSession},
		{"session tier Internal", sessionStatusErr("d", codes.Internal), ""},
		{"session tier PermissionDenied", sessionStatusErr("d", codes.PermissionDenied), ""},
		{"unknown device", (&TargetError{DeviceID: "d", Code: "UNKNOWN_DEVICE", Reason: "unknown device"}), ""},
		{"concurrent modification", status.Error(codes.Aborted, "the device's notification changed concurrently; retry"), ""},
		{"Unavailable (a Redis failure in notify), Redis answers", status.Error(codes.Unavailable, "create notification for d: WRONGTYPE"), ""},
		{"plain error, Redis answers", errors.New("notification kept changing"), ""},
		{"store conflict, Redis answers", fmt.Errorf("update notification x: %w", store.ErrConflict), ""},
	} {
		if got := r.svc.outage(c.err); got != c.want {
			t.Errorf("%s (%v): outage %q, want %q", c.name, c.err, got, c.want)
		}
	}
}

// TestRedisOutageHoldsSessionStarted: Redis (a real one behind a proxy that is cut) is
// unreachable for longer than attempts × delay and AckWait: the session_started event that
// should mark a notification ANSWERED is held, then handled once when Redis is back.
func TestRedisOutageHoldsSessionStarted(t *testing.T) {
	proxy, url := redisProxy(t)
	r := newEventRig(t, "DL", func(c *Config) { c.RedisURL = url })
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	logs := captureLogs(r.svc)
	ctx := context.Background()
	now := time.Now()
	note, _, err := r.svc.st.Create(ctx, &store.Record{ID: store.NewID("IMEI:1", "abc"), DeviceID: "IMEI:1",
		State: notifierv1.Notification_STATE_QUEUED, SessionID: 0x1A2B, Created: now, Updated: now, NextAt: now}, "")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	attempts, successes := 0, 0
	handle := func(ctx context.Context, ev *eventsv1.Event) error {
		err := r.svc.onSessionStarted(ctx, ev)
		mu.Lock()
		defer mu.Unlock()
		attempts++
		if err == nil {
			successes++
		}
		return err
	}
	counts := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return attempts, successes
	}
	r.run(t, func(ctx context.Context) {
		r.svc.consumeWith(ctx, "t-answered", "session_started", handle, shortOutageOptions)
	})
	r.waitConsumer(t, "t-answered")

	proxy.cut()
	if got := r.svc.outage(errors.New("load outstanding notification of IMEI:1: EOF")); got != depRedis {
		t.Fatalf("with Redis cut off, a plain error is %q, want redis", got)
	}
	if got := r.svc.outage(status.Error(codes.Unavailable, "create notification for d: connection refused")); got != depRedis {
		t.Fatalf("with Redis cut off, notify's Unavailable is %q, want redis", got)
	}
	start := time.Now()
	r.publishEvent(t, &eventsv1.Event{EventId: "started", DeviceId: "IMEI:1", Time: timestamppb.Now(),
		Payload: &eventsv1.Event_SessionStarted{SessionStarted: &eventsv1.SessionStarted{SessionId: "1a2b",
			Initiator: eventsv1.SessionStarted_INITIATOR_SERVER}}})
	// More attempts than the event has (3) and longer than AckWait; an attempt against an
	// unreachable Redis (go-redis dials and retries, then the PING) takes seconds.
	waitWithin(t, 40*time.Second, "attempts during the outage", func() bool {
		a, _ := counts()
		return time.Since(start) > 5*shortOutageOptions.ackWait/2 && a >= 4
	})
	if v, up := heldMetric(t, r.svc, "t-answered"), dependencyUpMetric(t, r.svc, "t-answered", depRedis); v != "1" || up != "0" {
		t.Fatalf("during the outage: held %q, dependency_up{redis} %q; want 1, 0", v, up)
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters during the outage", n)
	}
	if info := r.consumerInfo(t, "t-answered"); info.Delivered.Consumer != 1 || info.NumRedelivered != 0 {
		t.Fatalf("during the outage: %d deliveries (%d redelivered), want 1 (none)", info.Delivered.Consumer, info.NumRedelivered)
	}
	proxy.restore(t)
	// An attempt that failed just before Redis came back, whose PING then succeeded, is the
	// event's own failure (one redelivery): that race may cost one attempt, no more.
	info := r.waitSettled(t, "t-answered")
	if info.Delivered.Consumer > 2 {
		t.Fatalf("%d deliveries, want 1 (2 if the recovery raced with an attempt)", info.Delivered.Consumer)
	}
	if _, s := counts(); s != 1 {
		t.Fatalf("handled %d times, want once", s)
	}
	got, err := r.svc.st.Get(ctx, note.ID)
	if err != nil || got.State != notifierv1.Notification_STATE_ANSWERED {
		t.Fatalf("notification after the outage: %+v %v, want ANSWERED", got, err)
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	if a, h := logs.count(logHolding), logs.count(logReleased); a != 1 || h != 1 {
		t.Fatalf("outage logged %d times, its end %d times; want 1, 1", a, h)
	}
}

// TestWakeHeldWhileSessionTierDown: the real wake path (onWake → notify →
// GetNotificationTarget on a real session worker, notification in Redis). A wake request
// that arrives while the session tier is stopped, for longer than attempts × delay and than
// AckWait, is held and queues exactly one notification once the worker is back; then the
// same while the notifier's Redis is cut off (the session tier up). Nothing is
// dead-lettered or redelivered.
func TestWakeHeldWhileSessionTierDown(t *testing.T) {
	st := e2e.Start(t, e2e.Options{Workers: 1})
	proxy, url := redisProxy(t)
	ctx := context.Background()
	for _, dev := range []string{"IMEI:wake-1", "IMEI:wake-2"} {
		if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
			DeviceId:   dev,
			ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "client-" + dev, Secret: "client-pw"},
			ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dms.example", Secret: "server-pw"},
			Msisdn:     "+4915550100",
		}}); err != nil {
			t.Fatalf("create %s: %v", dev, err)
		}
	}
	r := &eventRig{js: e2e.JetStream(t, st.NATS), cfg: Config{
		RedisURL: url, RedisPrefix: testredis.Prefix(t), NATSURL: st.NATS.ClientURL(), EventsStream: events.DefaultStream,
		DeadLetterStream: "DL", SessionAddr: st.GRPCAddrs[0], Routes: "default=log", PKG0Version: 11,
		MaxAttempts: 3, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond, AnswerTimeout: time.Minute,
		PollInterval: 50 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: time.Second, Concurrency: 2, MaxEventAge: time.Hour,
	}}
	r.svc = r.replica(t)
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	logs := captureLogs(r.svc)
	var mu sync.Mutex
	attempts := map[string]int{}
	handle := func(ctx context.Context, ev *eventsv1.Event) error {
		mu.Lock()
		attempts[ev.GetEventId()]++
		mu.Unlock()
		return r.svc.onWake(ctx, ev)
	}
	attemptsOf := func(id string) int {
		mu.Lock()
		defer mu.Unlock()
		return attempts[id]
	}
	r.run(t, func(ctx context.Context) {
		r.svc.consumeWith(ctx, "t-wake", "wake_requested", handle, shortOutageOptions)
	})
	r.waitConsumer(t, "t-wake")

	// A Redis just reachable again may still fail a call or two (go-redis stops dialing for
	// a moment after repeated dial errors): nil then.
	notifications := func(dev string) []*store.Record {
		recs, _, err := r.svc.st.List(ctx, dev, 0, 10)
		if err != nil {
			return nil
		}
		return recs
	}
	outage := func(dev, id, dep string, down, up func()) {
		t.Helper()
		down()
		start := time.Now()
		r.publishEvent(t, wakeEvent(id, dev, time.Now()))
		// More attempts than the event has (3) and longer than AckWait; an attempt against
		// an unreachable Redis (go-redis dials and retries, then the PING) takes seconds.
		waitWithin(t, 40*time.Second, "attempts during the outage", func() bool {
			return time.Since(start) > 5*shortOutageOptions.ackWait/2 && attemptsOf(id) >= 4
		})
		if v, u := heldMetric(t, r.svc, "t-wake"), dependencyUpMetric(t, r.svc, "t-wake", dep); v != "1" || u != "0" {
			t.Fatalf("%s down: held %q, dependency_up{%s} %q; want 1, 0", dep, v, dep, u)
		}
		if n := r.deadLetterCount(t, "DL"); n != 0 {
			t.Fatalf("%s down: %d dead letters", dep, n)
		}
		if info := r.consumerInfo(t, "t-wake"); info.NumAckPending != 1 || info.NumRedelivered != 0 {
			t.Fatalf("%s down: %d pending acks, %d redelivered; want 1 held, none redelivered", dep, info.NumAckPending, info.NumRedelivered)
		}
		up()
		// The session client reconnects with gRPC's own back-off (about a second or two
		// here); the held event is tried at most 10 s apart.
		waitWithin(t, 40*time.Second, "the wake request handled", func() bool { return len(notifications(dev)) > 0 })
		r.waitSettled(t, "t-wake")
		if recs := notifications(dev); len(recs) != 1 || recs[0].State != notifierv1.Notification_STATE_QUEUED {
			t.Fatalf("%s down: notifications of %s after the outage: %d, want 1 QUEUED", dep, dev, len(recs))
		}
		if v := dependencyUpMetric(t, r.svc, "t-wake", dep); v != "1" {
			t.Fatalf("dependency_up{%s} = %q after the outage, want 1", dep, v)
		}
	}
	outage("IMEI:wake-1", "w1", depSession,
		func() {
			if err := st.StopWorker(0); err != nil {
				t.Fatal(err)
			}
		},
		func() {
			if err := st.StartWorker(0); err != nil {
				t.Fatal(err)
			}
		})
	if info := r.consumerInfo(t, "t-wake"); info.Delivered.Consumer != 1 {
		t.Fatalf("after the session tier's outage: %d deliveries, want 1", info.Delivered.Consumer)
	}
	outage("IMEI:wake-2", "w2", depRedis, proxy.cut, func() { proxy.restore(t) })

	// Redis's outage is told by a PING after the failure: an attempt that failed just
	// before Redis came back may count as the event's own failure (one redelivery).
	if info := r.consumerInfo(t, "t-wake"); info.Delivered.Consumer > 3 {
		t.Fatalf("%d deliveries, want 2 (3 if the recovery raced with an attempt)", info.Delivered.Consumer)
	}
	if n := r.deadLetterCount(t, "DL"); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
	if a, h := logs.count(logHolding), logs.count(logReleased); a != 2 || h != 2 {
		t.Fatalf("outages logged %d times, their ends %d times; want 2, 2", a, h)
	}
}

// TestStopsWhileHoldingEndInDeadLetter: each stop while an event is held hands it back,
// which JetStream counts as a delivery; on the last delivery it allows (attempts + 1) a stop
// dead-letters the event (cause outage) instead, since a Nak would drop it without trace.
func TestStopsWhileHoldingEndInDeadLetter(t *testing.T) {
	r := newEventRig(t, "DL")
	r.svc.eventAttempts, r.svc.eventRetryDelay = 3, 10*time.Millisecond
	rec := newRecorder()
	rec.setDown(true)
	for delivery := 1; delivery <= 4; delivery++ {
		stop := r.start(t, func(ctx context.Context) {
			r.svc.consumeWith(ctx, "t-wake", "wake_requested", rec.handle, defaultConsumeOptions())
		})
		r.waitConsumer(t, "t-wake")
		if delivery == 1 {
			r.publishEvent(t, wakeEvent("unlucky", "IMEI:1", time.Now()))
		}
		waitUntil(t, "the event held", func() bool {
			return heldMetric(t, r.svc, "t-wake") == "1" && r.consumerInfo(t, "t-wake").Delivered.Consumer == uint64(delivery)
		})
		stop()
		if n := r.deadLetterCount(t, "DL"); delivery < 4 && n != 0 {
			t.Fatalf("dead-lettered after stop %d (delivery %d < MaxDeliver 4)", delivery, delivery)
		}
	}
	dl := r.deadLetters(t, "DL", 1)[0]
	if reason := dl.Header.Get(events.HeaderDeadLetterReason); !strings.Contains(reason, "last delivery (4)") ||
		dl.Header.Get(events.HeaderDeliveries) != "4" {
		t.Fatalf("dead letter: %v", dl.Header)
	}
	if v := r.deadLetteredMetric(t, "t-wake", causeOutage); v != "1" {
		t.Fatalf("dead-lettered{cause=outage} = %q, want 1", v)
	}
	if info := r.consumerInfo(t, "t-wake"); info.NumAckPending != 0 || info.NumRedelivered != 0 || info.NumPending != 0 {
		t.Fatalf("after the dead letter: %+v", info)
	}
	if len(rec.successCounts()) != 0 {
		t.Fatalf("handled %v while the dependency was down", rec.successCounts())
	}
}
