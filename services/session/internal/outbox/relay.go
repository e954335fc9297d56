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
	Workers      int           // batches relayed at a time (default 2)
	ScanInterval time.Duration // how often left-behind outboxes are searched (default 10s)
	Retry        time.Duration // wait before retrying a device after a failure (default 1s)
	Batch        int           // entries read per device per round (default 64)
	Devices      int           // devices relayed together in one batch (default 256)
	// Linger is how long a relay worker waits, after the first device of a batch arrives,
	// for more to join it (0: only those already waiting). Fewer, larger batches mean fewer
	// Redis round trips and fewer wake-ups of the message path; events are that much later.
	Linger time.Duration
	// Tracer and Propagator continue each event's trace (its trace_parent, set when the
	// state change was committed) with a producer span and carry it in the NATS headers.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator
	// Published counts events handed to JetStream (dmgrid_outbox_published_total).
	PublishedCounter metric.Int64Counter
	PublishLatency   metric.Float64Histogram
}

// Relay moves events from Redis to JetStream.
//
// Devices with new events are gathered into batches: one pipelined read of all their
// outboxes, then rounds in which the next event of every device is published
// asynchronously and the round's acknowledgements awaited (a device's next event goes out
// only once the previous one is stored, so its events reach the stream in commit order
// even across failures), then one pipelined removal of the acknowledged prefix of each
// outbox. Under load a batch covers many devices, so the
// relay adds a small fraction of a Redis round trip per event.
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
		cfg.Workers = 2
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
	if cfg.Devices <= 0 {
		cfg.Devices = 256
	}
	return &Relay{st: st, js: js, log: log, cfg: cfg, pending: map[string]bool{}, again: map[string]bool{}, work: make(chan string, 16384)}
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
	r.offer(deviceID)
}

// offer puts a pending device on the work queue, or releases it when the queue is full
// (the periodic scan finds it later).
func (r *Relay) offer(dev string) {
	select {
	case r.work <- dev:
	default:
		r.mu.Lock()
		delete(r.pending, dev)
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
			batch := make([]string, 0, r.cfg.Devices)
			var timer *time.Timer // the linger timer, reused
			for {
				select {
				case <-ctx.Done():
					return
				case dev := <-r.work:
					batch = append(batch[:0], dev)
				}
				var linger <-chan time.Time
				if r.cfg.Linger > 0 {
					if timer == nil {
						timer = time.NewTimer(r.cfg.Linger)
					} else {
						timer.Reset(r.cfg.Linger) // Go ≥ 1.23: no stale tick survives a Stop or Reset
					}
					linger = timer.C
				}
			fill: // everything already waiting, or arriving while lingering, joins the batch
				for len(batch) < r.cfg.Devices {
					if linger == nil {
						select {
						case dev := <-r.work:
							batch = append(batch, dev)
						default:
							break fill
						}
						continue
					}
					select {
					case dev := <-r.work:
						batch = append(batch, dev)
					case <-linger:
						break fill
					case <-ctx.Done():
						return
					}
				}
				if timer != nil {
					timer.Stop()
				}
				r.runBatch(ctx, batch)
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

// runBatch relays one round of the devices' outboxes, then releases each device: one that
// failed is retried after cfg.Retry, one notified meanwhile or with more entries waiting
// goes round again.
func (r *Relay) runBatch(ctx context.Context, devs []string) {
	errs, more := r.relay(ctx, devs)
	var retry, requeue []string
	r.mu.Lock()
	for i, dev := range devs {
		switch {
		case errs[i] != nil:
			delete(r.pending, dev)
			delete(r.again, dev)
			if ctx.Err() == nil {
				retry = append(retry, dev)
				r.log.Warn("outbox relay", "device_id", dev, "err", errs[i])
			}
		case more[i] || r.again[dev]:
			delete(r.again, dev)
			requeue = append(requeue, dev) // stays pending
		default:
			delete(r.pending, dev)
		}
	}
	r.mu.Unlock()
	for _, dev := range retry {
		time.AfterFunc(r.cfg.Retry, func() { r.Notify(dev) })
	}
	for _, dev := range requeue {
		r.offer(dev)
	}
}

// sent is one outbox entry handed to JetStream, awaiting its acknowledgement.
type sent struct {
	fut   jetstream.PubAckFuture
	span  trace.Span
	start time.Time
}

// relay publishes up to cfg.Batch entries of each device's outbox and removes the
// acknowledged ones. errs[i] is device i's failure; more[i] reports a full read (more
// entries may be waiting).
func (r *Relay) relay(ctx context.Context, devs []string) (errs []error, more []bool) {
	errs, more = make([]error, len(devs)), make([]bool, len(devs))
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	entries, err := r.st.ReadOutboxes(rctx, devs, r.cfg.Batch)
	cancel()
	for i := range devs {
		if entries[i] == nil && err != nil {
			errs[i] = err
		}
		more[i] = len(entries[i]) == r.cfg.Batch
	}

	// Publish in rounds: round k sends entry k of every device whose entries 0..k-1 are
	// acknowledged (or dropped), asynchronously, then waits for those acknowledgements. A
	// device's events thus reach the stream strictly in commit order even when a publish
	// fails (nothing after it is sent), while all the batch's devices share each round
	// trip. done[i] entries of device i, from the head, can leave the outbox.
	// Device i takes part in round k while it has no error and entries 0..k-1 are done.
	done := make([]int, len(devs))
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	expired := false
	acked := 0
	round := make([]sent, len(devs))
	for k := 0; ; k++ {
		tried := false
		for i := range devs {
			round[i] = sent{}
			if errs[i] != nil || done[i] != k || k >= len(entries[i]) {
				continue
			}
			tried = true
			fut, span, err := r.publish(ctx, devs[i], entries[i][k])
			switch {
			case err != nil:
				errs[i] = err
			case fut == nil: // dropped as unpublishable: finished
				done[i]++
			default:
				round[i] = sent{fut: fut, span: span, start: time.Now()}
			}
		}
		if !tried {
			break
		}
		for i := range devs {
			p := round[i]
			if p.fut == nil {
				continue
			}
			var perr error
			if expired {
				perr = errors.New("no acknowledgement from JetStream within 10s")
			} else {
				select {
				case <-p.fut.Ok():
				case perr = <-p.fut.Err():
				case <-deadline.C:
					expired = true
					perr = errors.New("no acknowledgement from JetStream within 10s")
				case <-ctx.Done():
					expired = true
					perr = ctx.Err()
				}
			}
			if p.span != nil {
				p.span.End()
			}
			if perr != nil {
				errs[i] = fmt.Errorf("publish: %w", perr)
				continue
			}
			acked++
			done[i]++
			if r.cfg.PublishLatency != nil {
				r.cfg.PublishLatency.Record(ctx, time.Since(p.start).Seconds())
			}
		}
	}
	var popDevs []string
	var popEntries [][][]byte
	var popIdx []int
	for i := range devs {
		if done[i] > 0 {
			popDevs, popEntries, popIdx = append(popDevs, devs[i]), append(popEntries, entries[i][:done[i]]), append(popIdx, i)
		}
	}
	if len(popDevs) == 0 {
		return errs, more
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if _, err := r.st.PopOutboxes(pctx, popDevs, popEntries); err != nil {
		for _, i := range popIdx {
			if errs[i] == nil {
				errs[i] = err
			}
		}
		return errs, more
	}
	r.mu.Lock()
	r.published += uint64(acked)
	r.mu.Unlock()
	if r.cfg.PublishedCounter != nil {
		r.cfg.PublishedCounter.Add(ctx, int64(acked))
	}
	return errs, more
}

// publish hands one event to JetStream without waiting for its acknowledgement. A nil
// future with a nil error means the entry was dropped (it can never be published).
func (r *Relay) publish(ctx context.Context, dev string, entry []byte) (jetstream.PubAckFuture, trace.Span, error) {
	var ev eventsv1.Event
	if err := proto.Unmarshal(entry, &ev); err != nil || ev.GetEventId() == "" {
		// Not one of ours: publishing it would poison consumers. Drop it loudly (only the
		// session service writes outboxes, so this means a bug, not bad input).
		r.log.Error("outbox entry is not an event; dropped", "device_id", dev, "bytes", len(entry))
		return nil, nil, nil
	}
	msg := &nats.Msg{Subject: events.Subject(&ev), Data: entry, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.GetEventId())
	var span trace.Span
	if r.cfg.Tracer != nil && r.cfg.Propagator != nil {
		// The publish span is a child of the span that committed the event, and the
		// consumer's span will be a child of this one (traceparent in the NATS headers).
		pctx := r.cfg.Propagator.Extract(ctx, propagation.MapCarrier{"traceparent": ev.GetTraceParent()})
		pctx, span = r.cfg.Tracer.Start(pctx, "events publish", trace.WithSpanKind(trace.SpanKindProducer),
			trace.WithAttributes(attribute.String("messaging.system", "nats"), attribute.String("messaging.destination.name", msg.Subject), attribute.String("device_id", ev.GetDeviceId())))
		r.cfg.Propagator.Inject(pctx, telemetry.HeaderCarrier(msg.Header))
	} else if tp := ev.GetTraceParent(); tp != "" {
		msg.Header.Set("traceparent", tp)
	}
	fut, err := r.js.PublishMsgAsync(msg)
	if err != nil {
		if span != nil {
			span.End()
		}
		if errors.Is(err, nats.ErrMaxPayload) {
			// Can never succeed: retrying would block the device's later events forever.
			r.log.Error("event larger than the NATS maximum payload; dropped", "device_id", ev.GetDeviceId(), "subject", msg.Subject, "bytes", len(entry))
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("publish %s: %w", msg.Subject, err)
	}
	return fut, span, nil
}

// EnsureStream creates or updates the events stream.
func EnsureStream(ctx context.Context, js jetstream.JetStream, name string) (jetstream.Stream, error) {
	cfg := events.StreamConfig(name)
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil && errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
