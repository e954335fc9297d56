// Package outbox relays committed events from the per-device Redis outboxes to NATS
// JetStream. The session engine never publishes while a device waits: its events are
// written to the outbox in the same Redis script as the state change, and this relay
// publishes them afterwards, in order per device, with event_id as Nats-Msg-Id so that a
// retry after a lost acknowledgement is dropped as a duplicate by JetStream. When NATS is
// down, events wait in Redis and go out when it is back (DESIGN.md "Events").
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/telemetry"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// Config tunes the relay.
type Config struct {
	Workers      int           // concurrent devices being relayed (default 4)
	ScanInterval time.Duration // how often left-behind outboxes are searched (default 10s)
	Retry        time.Duration // wait before retrying a device after a failure (default 1s)
	Batch        int           // entries read per round (default 64)
	// Tracer and Propagator continue each event's trace (its trace_parent, set when the
	// state change was committed) with a producer span and carry it in the NATS headers.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Published counts events handed to JetStream (dmgrid_outbox_published_total).
	PublishedCounter metric.Int64Counter
	PublishLatency   metric.Float64Histogram
}

// Relay moves events from Redis to JetStream.
type Relay struct {
	st  *store.Store
	js  jetstream.JetStream
	log *slog.Logger
	cfg Config

	mu      sync.Mutex
	pending map[string]bool // queued or running
	again   map[string]bool // notified while running: run once more
	work    chan string

	published uint64
}

// New returns a relay; Run starts it.
func New(st *store.Store, js jetstream.JetStream, log *slog.Logger, cfg Config) *Relay {
	if cfg.Workers <= 0 {
		cfg.Workers = 4
	}
	if cfg.ScanInterval <= 0 {
		cfg.ScanInterval = 10 * time.Second
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	return &Relay{st: st, js: js, log: log, cfg: cfg, pending: map[string]bool{}, again: map[string]bool{}, work: make(chan string, 4096)}
}

// Notify asks for a device's outbox to be relayed. It never blocks: when the work queue is
// full the periodic scan finds the device later.
func (r *Relay) Notify(deviceID string) {
	r.mu.Lock()
	if r.pending[deviceID] {
		r.again[deviceID] = true
		r.mu.Unlock()
		return
	}
	r.pending[deviceID] = true
	r.mu.Unlock()
	select {
	case r.work <- deviceID:
	default:
		r.mu.Lock()
		delete(r.pending, deviceID)
		r.mu.Unlock()
	}
}

// Published returns how many events this relay published.
func (r *Relay) Published() uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.published
}

// Run relays until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := 0; i < r.cfg.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case dev := <-r.work:
					r.runDevice(ctx, dev)
				}
			}
		}()
	}
	scan := func() {
		sctx, cancel := context.WithTimeout(ctx, r.cfg.ScanInterval)
		defer cancel()
		if err := r.st.ScanOutboxes(sctx, r.Notify); err != nil && ctx.Err() == nil {
			r.log.Warn("outbox scan", "err", err)
		}
	}
	scan()
	t := time.NewTicker(r.cfg.ScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return nil
		case <-t.C:
			scan()
		}
	}
}

func (r *Relay) runDevice(ctx context.Context, dev string) {
	for {
		err := r.relay(ctx, dev)
		r.mu.Lock()
		if err != nil {
			delete(r.pending, dev)
			delete(r.again, dev)
			r.mu.Unlock()
			if ctx.Err() == nil {
				r.log.Warn("outbox relay", "device_id", dev, "err", err)
				time.AfterFunc(r.cfg.Retry, func() { r.Notify(dev) })
			}
			return
		}
		if r.again[dev] {
			delete(r.again, dev)
			r.mu.Unlock()
			continue
		}
		delete(r.pending, dev)
		r.mu.Unlock()
		return
	}
}

// relay publishes the device's outbox until it is empty.
func (r *Relay) relay(ctx context.Context, dev string) error {
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		entries, err := r.st.ReadOutbox(rctx, dev, r.cfg.Batch)
		cancel()
		if err != nil {
			return err
		}
		if len(entries) == 0 {
			return nil
		}
		done := 0
		var pubErr error
		for _, e := range entries {
			if err := r.publish(ctx, e); err != nil {
				pubErr = err
				break
			}
			done++
		}
		if done > 0 {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, err := r.st.PopOutbox(pctx, dev, entries[:done])
			cancel()
			if err != nil {
				return err
			}
			r.mu.Lock()
			r.published += uint64(done)
			r.mu.Unlock()
		}
		if pubErr != nil {
			return pubErr
		}
		if len(entries) < r.cfg.Batch {
			// A short read was the whole outbox: no second read just to find it empty
			// (a later commit notifies the relay again).
			return nil
		}
	}
}

func (r *Relay) publish(ctx context.Context, entry []byte) error {
	var ev eventsv1.Event
	if err := proto.Unmarshal(entry, &ev); err != nil || ev.GetEventId() == "" {
		// Not one of ours: publishing it would poison consumers. Drop it loudly (only the
		// session service writes outboxes, so this means a bug, not bad input).
		r.log.Error("outbox entry is not an event; dropped", "bytes", len(entry))
		return nil
	}
	msg := &nats.Msg{Subject: events.Subject(&ev), Data: entry, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
	if r.cfg.Tracer != nil && r.cfg.Propagator != nil {
		// The publish span is a child of the span that committed the event, and the
		// consumer's span will be a child of this one (traceparent in the NATS headers).
		pctx := r.cfg.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": ev.GetTraceParent()})
		pctx, span := r.cfg.Tracer.Start(pctx, "events publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject), attribute.String("device_id", ev.GetDeviceId())))
		defer span.End()
		r.cfg.Propagator.Inject(pctx, telemetry.HeaderCarrier(msg.Header))
	} else if tp := ev.GetTraceParent(); tp != "" {
		msg.Header.Set("traceparent", tp)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := r.js.PublishMsg(pctx, msg)
	if r.cfg.PublishLatency != nil {
		r.cfg.PublishLatency.Record(ctx, time.Since(start).Seconds())
	}
	if err == nil && r.cfg.PublishedCounter != nil {
		r.cfg.PublishedCounter.Add(ctx, 1)
	}
	if err != nil {
		if errors.Is(err, nats.ErrMaxPayload) {
			// Can never succeed: retrying would block the device's later events forever.
			r.log.Error("event larger than the NATS maximum payload; dropped", "device_id", ev.GetDeviceId(), "subject", msg.Subject, "bytes", len(entry))
			return nil
		}
		return fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return nil
}

// EnsureStream creates or updates the events stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	if name == "" {
		name = events.DefaultStream
	}
	cfg := jetstream.StreamConfig{
		Name:       name,
		Subjects:   []string{events.StreamSubjects},
		Storage:    jetstream.FileStorage,
		Duplicates: 2 * time.Minute,
		MaxAge:     7 * 24 * time.Hour,
	}
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil && errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", name, err)
	}
	return s, nil
}
