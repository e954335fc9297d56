package ingest

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"

	"github.com/dmgrid/dmgrid/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
)

// Applier applies inventory updates: the store, or a decorator around it (tests inject
// faults this way).
type Applier interface {
	ApplyBatch(ctx context.Context, ups []store.Update) ([]store.Result, error)
}

// Config tunes the consumer.
type Config struct {
	Stream            string          // the events stream (default events.DefaultStream)
	Durable           string          // durable consumer name (default "inventory")
	DeadLetterSubject string          // where malformed and failing events go (default dmgrid.deadletter.inventory)
	DeadLetterStream  string          // stream holding dead letters, created when missing; "": plain NATS publish (at most once)
	MaxDeliver        int             // attempts before an event is dead-lettered (default 5)
	MaxAckPending     int             // events in flight, unacknowledged (default 4096)
	AckWait           time.Duration   // redelivery after a crash (default 30s)
	Backoff           []time.Duration // redelivery delay after attempt n fails (default 1s, 5s, 30s, 2m)
	Workers           int             // parallel appliers; a device always goes to the same one (default 4)
	Batch             int             // events per Redis round trip (default 256)
	ApplyTimeout      time.Duration   // bound on one batch's Redis work (default 10s)
	// Tracer and Propagator, when set, continue each event's trace (traceparent in the NATS
	// headers, set by the session service's outbox relay) with a consumer span.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
}

func (c *Config) defaults() {
	if c.Stream == "" {
		c.Stream = events.DefaultStream
	}
	if c.Durable == "" {
		c.Durable = "inventory"
	}
	if c.DeadLetterSubject == "" {
		c.DeadLetterSubject = events.DeadLetterRoot + ".inventory"
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 5
	}
	if c.MaxAckPending <= 0 {
		c.MaxAckPending = 4096
	}
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if len(c.Backoff) == 0 {
		c.Backoff = []time.Duration{time.Second, 5 * time.Second, 30 * time.Second, 2 * time.Minute}
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.Batch <= 0 {
		c.Batch = 256
	}
	if c.ApplyTimeout <= 0 {
		c.ApplyTimeout = 10 * time.Second
	}
}

// Stats are the consumer's counters since it started.
type Stats struct {
	Applied      int64 // events that changed the inventory
	Duplicates   int64 // events already applied (redeliveries, duplicates)
	Ignored      int64 // events with nothing for the inventory (acknowledged without Redis)
	Retried      int64 // failed attempts handed back for redelivery
	DeadLettered int64 // events sent to the dead-letter subject
	SkippedItems int64 // result items left out because their URI is not a node address
}

// Consumer applies the events stream to the inventory through a durable pull consumer
// with explicit acks: an event is acknowledged only after Redis applied it, so a crash
// means redelivery, which the store's event-id check makes harmless.
type Consumer struct {
	js  jetstream.JetStream
	app Applier
	log *slog.Logger
	cfg Config
	dl  *events.DeadLetters

	applied, duplicates, ignored, retried, deadLettered, skipped atomic.Int64
}

// NewConsumer returns a consumer; Run starts it.
func NewConsumer(js jetstream.JetStream, app Applier, log *slog.Logger, cfg Config) *Consumer {
	cfg.defaults()
	return &Consumer{js: js, app: app, log: log, cfg: cfg, dl: &events.DeadLetters{JS: js, Subject: cfg.DeadLetterSubject,
		Stream: cfg.DeadLetterStream, Consumer: cfg.Durable, Source: cfg.Stream}}
}

// Stats returns the counters.
func (c *Consumer) Stats() Stats {
	return Stats{Applied: c.applied.Load(), Duplicates: c.duplicates.Load(), Ignored: c.ignored.Load(),
		Retried: c.retried.Load(), DeadLettered: c.deadLettered.Load(), SkippedItems: c.skipped.Load()}
}

// ConsumerConfig is the durable consumer's JetStream configuration.
//
// It has no subject filter although the inventory needs only some kinds: with one subject
// per device in the stream, nats-server (2.12) intersects a multi-subject filter with the
// stream's subject tree for every message it delivers, which capped ingestion below 1,000
// events/s in BenchmarkIngest; unfiltered delivery is the fast path, and the few events of
// other kinds (wake_requested) are acknowledged without touching Redis.
func (c *Consumer) ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       c.cfg.Durable,
		Description:   "dmgrid inventory: device facts from the events stream",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.cfg.AckWait,
		// One more than the attempts we make ourselves: the last failing attempt
		// dead-letters the event and terminates it, so JetStream never drops it silently.
		MaxDeliver:    c.cfg.MaxDeliver + 1,
		MaxAckPending: c.cfg.MaxAckPending,
	}
}

// Setup makes sure the events stream, the dead-letter stream and the durable consumer exist.
func (c *Consumer) Setup(ctx context.Context) (jetstream.Consumer, error) {
	// The session service owns this stream's configuration (it creates or updates it);
	// creating it here only lets the inventory start first.
	if err := events.EnsureStream(ctx, c.js, events.StreamConfig(c.cfg.Stream)); err != nil {
		return nil, err
	}
	if err := c.dl.Setup(ctx); err != nil {
		return nil, err
	}
	cons, err := c.js.CreateOrUpdateConsumer(ctx, c.cfg.Stream, c.ConsumerConfig())
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on %s: %w", c.cfg.Durable, c.cfg.Stream, err)
	}
	return cons, nil
}

// Run consumes until ctx ends, then finishes the events already received (bounded by
// ApplyTimeout per batch) and returns.
func (c *Consumer) Run(ctx context.Context) error {
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	cons, err := c.Setup(sctx)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting: not a failure
		}
		return err
	}
	shards := make([]chan jetstream.Msg, c.cfg.Workers)
	var wg sync.WaitGroup
	for i := range shards {
		shards[i] = make(chan jetstream.Msg, c.cfg.Batch)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx, shards[i])
		}()
	}
	// The client buffers at most this many events; with the workers' own buffers the total
	// stays within MaxAckPending, which the server enforces anyway.
	buffer := min(c.cfg.MaxAckPending/2, 2*c.cfg.Batch*c.cfg.Workers)
	// The callback may still be running after the consume context reports closed (for
	// instance when the connection dies), so the shards are closed under a lock the callback
	// holds while it hands a message over; a message that arrives after that is not
	// acknowledged and comes back after AckWait.
	var mu sync.RWMutex
	closed := false
	closeShards := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		for _, s := range shards {
			close(s)
		}
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.RLock()
		defer mu.RUnlock()
		if !closed {
			shards[shard(m.Subject(), len(shards))] <- m
		}
	}, jetstream.PullMaxMessages(max(buffer, 1)), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		c.log.Warn("events consumer", "err", err)
	}))
	if err != nil {
		closeShards()
		wg.Wait()
		return fmt.Errorf("consume %s: %w", c.cfg.Durable, err)
	}
	<-ctx.Done()
	// Drain: messages already pulled are still handed to the callback, then it stops.
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(c.cfg.ApplyTimeout):
		cc.Stop()
	}
	closeShards()
	wg.Wait()
	return nil
}

// shard picks a worker by the subject's device token, so that one device's events are
// applied by one worker, in stream order.
func shard(subject string, n int) int {
	tok := subject[strings.LastIndexByte(subject, '.')+1:]
	h := fnv.New32a()
	h.Write([]byte(tok))
	return int(h.Sum32() % uint32(n))
}

// work applies the events of one shard in batches: whatever is queued, up to Batch, goes
// to Redis in one pipeline.
func (c *Consumer) work(stop context.Context, in <-chan jetstream.Msg) {
	batch := make([]jetstream.Msg, 0, c.cfg.Batch)
	for m := range in {
		batch = append(batch[:0], m)
	fill:
		for len(batch) < c.cfg.Batch {
			select {
			case m, ok := <-in:
				if !ok {
					break fill
				}
				batch = append(batch, m)
			default:
				break fill
			}
		}
		c.process(stop, batch)
	}
}

// process applies one batch of messages and acknowledges, retries or dead-letters each.
// stop ends the wait for an unreachable Redis (at shutdown).
func (c *Consumer) process(stop context.Context, batch []jetstream.Msg) {
	// Not the consumer's context: a batch in hand is finished at shutdown, within bounds.
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
	defer cancel()
	ups := make([]store.Update, 0, len(batch))
	owners := make([]jetstream.Msg, 0, len(batch))
	spans := make([]trace.Span, 0, len(batch))
	for _, m := range batch {
		span := c.span(m)
		ev, err := Decode(m.Subject(), m.Data())
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
			span.End()
			c.deadLetter(m, err.Error())
			continue
		}
		u, ok, skipped := ToUpdate(ev)
		if skipped > 0 {
			c.skipped.Add(int64(skipped))
			c.log.Warn("result items without a node URI left out", "device_id", ev.GetDeviceId(), "event_id", ev.GetEventId(), "items", skipped)
		}
		if !ok {
			span.End()
			c.ignored.Add(1)
			c.ack(m)
			continue
		}
		ups = append(ups, u)
		owners = append(owners, m)
		spans = append(spans, span)
	}
	defer func() {
		for _, sp := range spans {
			sp.End()
		}
	}()
	if len(ups) == 0 {
		return
	}
	res, err := c.applyGuarded(ctx, ups)
	if err != nil && !errors.As(err, new(*panicError)) {
		if res, err = c.hold(stop, ups, owners); res == nil && err == nil {
			return // stopped while Redis was unreachable: unacknowledged, redelivered later
		}
	}
	for i, m := range owners {
		switch {
		case err != nil:
			c.retry(m, err)
		case res[i].Err != nil:
			c.retry(m, res[i].Err)
		case res[i].Applied:
			c.applied.Add(1)
			c.ack(m)
		default:
			c.duplicates.Add(1)
			c.ack(m)
		}
	}
}

// hold retries a batch that failed as a whole (Redis unreachable, or the pipeline broke):
// redelivering would only spend the events' attempts and dead-letter good events during an
// outage, so the worker keeps the batch, marks its events in progress and tries again until
// Redis answers (or a panic makes it a per-event matter). It returns nil, nil when stop
// ends first.
func (c *Consumer) hold(stop context.Context, ups []store.Update, owners []jetstream.Msg) ([]store.Result, error) {
	for wait := outageBackoffMin; ; wait = min(2*wait, outageBackoffMax) {
		c.log.Warn("apply events; redis unavailable, holding the batch", "events", len(ups), "retry_in", wait)
		select {
		case <-stop.Done():
			return nil, nil
		case <-time.After(wait):
		}
		for _, m := range owners {
			_ = m.InProgress()
		}
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ApplyTimeout)
		res, err := c.applyGuarded(ctx, ups)
		cancel()
		if err == nil || errors.As(err, new(*panicError)) {
			return res, err
		}
	}
}

// applyGuarded turns a panic while applying into an error for the batch, so that a
// poisonous event is retried and dead-lettered like any failure instead of killing the
// service over and over.
func (c *Consumer) applyGuarded(ctx context.Context, ups []store.Update) (res []store.Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{v: r}
		}
	}()
	res, err = c.app.ApplyBatch(ctx, ups)
	if err == nil && len(res) != len(ups) {
		err = fmt.Errorf("apply returned %d results for %d events", len(res), len(ups))
	}
	return res, err
}

// panicError is a panic while applying: a poisonous batch, retried per event rather than
// held like an outage.
type panicError struct{ v any }

func (e *panicError) Error() string { return fmt.Sprintf("apply panicked: %v", e.v) }

// Bounds of the wait between attempts while Redis is unreachable.
const (
	outageBackoffMin = 100 * time.Millisecond
	outageBackoffMax = 10 * time.Second
)

func (c *Consumer) ack(m jetstream.Msg) {
	// Fire and forget: a lost ack only means a redelivery, which changes nothing.
	if err := m.Ack(); err != nil {
		c.log.Debug("ack event", "subject", m.Subject(), "err", err)
	}
}

// retry hands a failed event back for redelivery after a back-off, or dead-letters it on
// its last attempt.
func (c *Consumer) retry(m jetstream.Msg, cause error) {
	n := uint64(1)
	if md, err := m.Metadata(); err == nil {
		n = md.NumDelivered
	}
	if n >= uint64(c.cfg.MaxDeliver) {
		c.deadLetter(m, fmt.Sprintf("not applied after %d attempts: %v", n, cause))
		return
	}
	c.retried.Add(1)
	c.log.Warn("apply event; will retry", "subject", m.Subject(), "attempt", n, "err", cause)
	delay := c.cfg.Backoff[min(int(n)-1, len(c.cfg.Backoff)-1)]
	if err := m.NakWithDelay(delay); err != nil {
		c.log.Debug("nak event", "subject", m.Subject(), "err", err)
	}
}

// deadLetter publishes the event as received, with why, to the dead-letter subject and
// terminates it, so that it never blocks the stream. If the publish fails the event is
// handed back and dead-lettered on a later attempt.
func (c *Consumer) deadLetter(m jetstream.Msg, reason string) {
	if c.dl.Handle(m, reason, c.cfg.Backoff[0], c.log) {
		c.deadLettered.Add(1)
	}
}

// span starts the consumer span of one event, a child of the span that published it.
func (c *Consumer) span(m jetstream.Msg) trace.Span {
	if c.cfg.Tracer == nil || c.cfg.Propagator == nil {
		return noop.Span{}
	}
	ctx := c.cfg.Propagator.Extract(context.Background(), telemetry.HeaderCarrier(m.Headers()))
	_, sp := c.cfg.Tracer.Start(ctx, "inventory apply", trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(attribute.String("messaging.destination.name", m.Subject())))
	return sp
}
