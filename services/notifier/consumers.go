package notifier

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/notifier/internal/store"
)

// Event consumers give up on an event after this many attempts, waiting this long between
// them: its dead letter is then published and the event terminated.
const (
	defaultEventAttempts   = 20
	defaultEventRetryDelay = 2 * time.Second
)

// Causes of dead letters (the cause attribute of dmgrid_notifier_events_dead_lettered_total).
const (
	causeUndecodable = "undecodable"
	causeFailing     = "failing"
	// causeOutage: held through an outage on the last delivery JetStream allows when the
	// consumer stopped (see holder.handBack).
	causeOutage = "outage"
)

// Dependencies whose outage makes the consumers hold events (the dependency attribute of
// dmgrid_notifier_dependency_up).
const (
	depSession = "session" // the session tier's GetNotificationTarget
	depRedis   = "redis"
)

// Bounds of the wait between attempts at held events, and the time Redis gets to answer
// the PING that tells an unreachable Redis from a failure of one event.
const (
	outageBackoffMin  = 100 * time.Millisecond
	outageBackoffMax  = 10 * time.Second
	redisProbeTimeout = 2 * time.Second
)

// consumeOptions are a durable consumer's JetStream settings (tests shorten them).
type consumeOptions struct {
	// ackWait: an event neither acknowledged nor marked in progress for this long is
	// redelivered (a crashed replica's events).
	ackWait time.Duration
	// maxAckPending bounds the events handed out and not yet acknowledged, held ones
	// included: during an outage the rest wait in the stream, their attempts untouched.
	maxAckPending int
}

func defaultConsumeOptions() consumeOptions {
	return consumeOptions{ackWait: 30 * time.Second, maxAckPending: 1000}
}

// consume runs a durable JetStream consumer of one event kind until ctx ends. Replicas share
// the durable, so each event is handled by one of them. The stream belongs to the session
// tier; until it exists the consumer is retried with back-off. New consumers start at new
// events: replaying old wake requests on a first deployment would wake every device.
//
// An event that is not a dmgrid.events.v1.Event is dead-lettered at once; one whose handler
// fails is redelivered and dead-lettered on its last attempt, so that nothing is dropped
// without trace. A failure that shows a dependency every event needs to be unavailable
// (see outage) is not the event's fault: the event is held instead (see holder), so that
// an outage longer than the attempts does not dead-letter good events.
func (s *Service) consume(ctx context.Context, durable, kind string, handle func(context.Context, *eventsv1.Event) error) {
	s.consumeWith(ctx, durable, kind, handle, defaultConsumeOptions())
}

// consumeWith is consume with the consumer's JetStream settings given.
func (s *Service) consumeWith(ctx context.Context, durable, kind string, handle func(context.Context, *eventsv1.Event) error, o consumeOptions) {
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "dmgrid notifier: " + kind + " events",
		FilterSubject: events.SubjectRoot + "." + kind + ".>",
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       o.ackWait,
		// One more than the attempts made here: the last failing attempt dead-letters the
		// event and terminates it, so JetStream never drops it silently. A held event is
		// not redelivered, so holding spends none of them.
		MaxDeliver:    s.eventAttempts + 1,
		MaxAckPending: o.maxAckPending,
	}
	dl := &events.DeadLetters{JS: s.js, Subject: s.cfg.deadLetterSubject(), Stream: s.cfg.DeadLetterStream,
		Consumer: durable, Source: s.cfg.EventsStream}
	var cons jetstream.Consumer
	wait := 100 * time.Millisecond
	for {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		err := dl.Setup(cctx)
		if err == nil {
			cons, err = s.js.CreateOrUpdateConsumer(cctx, s.cfg.EventsStream, cfg)
		}
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("create events consumer; retrying", "consumer", durable, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, 10*time.Second)
	}
	h := newHolder(s, durable, dl, handle, o)
	s.addHeld(durable, 0) // the series exists (0) before any outage
	// The holder stops retrying when ctx ends but hands its events back only once this
	// consumer has stopped pulling (drained): a Nak before that would often be redelivered
	// to the draining consumer itself, spending a delivery for nothing.
	holdCtx, stopHolder := context.WithCancel(ctx)
	drained := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		h.run(holdCtx, drained)
	}()
	go func() {
		defer wg.Done()
		h.keep()
	}()
	defer func() {
		stopHolder()
		close(drained)
		wg.Wait()
	}()
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			s.deadLetter(dl, m, causeUndecodable, "not a dmgrid.events.v1.Event: "+err.Error())
			return
		}
		if h.follow(m, &ev) {
			return // queued behind the held events: not attempted while a dependency is down
		}
		// An attempt and the Redis PING that may follow take up to 2×rpcTimeout + 2 s; the
		// event is kept in progress meanwhile, so JetStream does not redeliver it (and count
		// a delivery) when AckWait is short.
		busy := keepInProgress(m, o.ackWait)
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*rpcTimeout)
		err := handle(hctx, &ev)
		cancel()
		dep := ""
		if err != nil {
			dep = s.outage(err)
		}
		busy()
		switch {
		case err == nil:
			_ = m.Ack()
		case dep != "" && h.hold(m, &ev, dep, err):
		default:
			s.retryOrDeadLetter(dl, m, &ev, err)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		s.log.Debug("events consumer", "consumer", durable, "err", err)
	}))
	if err != nil {
		s.log.Error("consume events", "consumer", durable, "err", err)
		return
	}
	<-ctx.Done()
	cc.Drain()
	select {
	case <-cc.Closed():
	case <-time.After(5 * time.Second):
		cc.Stop()
	}
}

// keepInProgress marks m in progress every third of ackWait until the returned function is
// called (after which it sends nothing more).
func keepInProgress(m jetstream.Msg, ackWait time.Duration) (stop func()) {
	every := max(ackWait/3, 10*time.Millisecond)
	var mu sync.Mutex
	stopped := false
	var t *time.Timer
	mu.Lock()
	defer mu.Unlock()
	t = time.AfterFunc(every, func() {
		mu.Lock()
		defer mu.Unlock()
		if !stopped {
			_ = m.InProgress()
			t.Reset(every)
		}
	})
	return func() {
		mu.Lock()
		defer mu.Unlock()
		stopped = true
		t.Stop()
	}
}

// retryOrDeadLetter hands an event whose handling failed back for redelivery, or
// dead-letters it on its last attempt.
func (s *Service) retryOrDeadLetter(dl *events.DeadLetters, m jetstream.Msg, ev *eventsv1.Event, err error) {
	n := uint64(1)
	if md, merr := m.Metadata(); merr == nil {
		n = md.NumDelivered
	}
	if n >= uint64(s.eventAttempts) {
		s.deadLetter(dl, m, causeFailing, fmt.Sprintf("not handled after %d attempts: %v", n, err))
		return
	}
	s.log.Warn("handle event; redelivering", "consumer", dl.Consumer, "event_id", ev.GetEventId(), "device_id", ev.GetDeviceId(),
		"attempt", n, "err", err)
	_ = m.NakWithDelay(s.eventRetryDelay)
}

// outage reports whether err, an event handler's failure, shows a dependency every event
// needs to be unavailable, and names it; "" means a failure of this event, retried and
// dead-lettered like any.
//
//   - The session tier is unavailable when GetNotificationTarget failed with Unavailable,
//     DeadlineExceeded or ResourceExhausted: notify (api.go) returns a *sessionTierError
//     that keeps the session tier's status; any other code (Internal, PermissionDenied, ...)
//     is the event's failure.
//   - Redis failures reach the handlers only as errors (wrapped by the store; notify keeps
//     their text only, as Unavailable), so whether Redis is unreachable is asked of Redis
//     itself: a PING that fails means an outage; one that succeeds means the command failed
//     for this event (WRONGTYPE, a script error, ...).
//
// Statuses with other codes (FailedPrecondition, InvalidArgument, Aborted, ...) are the
// event's own failures.
func (s *Service) outage(err error) string {
	var se *sessionTierError
	if errors.As(err, &se) {
		if isOutageCode(status.Code(se.err)) {
			return depSession
		}
		return ""
	}
	if st, ok := status.FromError(err); ok && !isOutageCode(st.Code()) {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), redisProbeTimeout)
	defer cancel()
	if s.rdb.Ping(ctx).Err() != nil {
		return depRedis
	}
	return ""
}

func isOutageCode(c codes.Code) bool {
	return c == codes.Unavailable || c == codes.DeadlineExceeded || c == codes.ResourceExhausted
}

// holder keeps the events of one consumer that failed because a dependency every event
// needs is unavailable, as the inventory's consumer holds a batch while Redis is down:
// retrying them after NakWithDelay would spend their attempts and dead-letter good events
// during any outage longer than attempts × delay.
//
// A held event stays in progress (InProgress well within AckWait, so JetStream neither
// redelivers it nor counts a delivery) and is retried with back-off (100 ms doubling to
// 10 s, reset by any event handled) by one goroutine (run), which takes the held events in
// turn, a failing one going to the back. While anything is held, newly delivered events
// queue behind it instead of being attempted, so an outage costs one attempt per back-off
// interval, not one per event. What is held is bounded by the consumer's MaxAckPending:
// JetStream hands out no more unacknowledged events than that, so the rest of an outage's
// events wait in the stream with their attempts untouched.
//
// A held event leaves the queue when it is handled (acknowledged) or fails on its own (back
// to the per-event retries and dead-lettering). When the consumer stops, held events are
// handed back (Nak) as soon as it has stopped pulling, so another replica takes them.
//
// An outage is logged when a dependency is first seen unavailable while events are held,
// and once more when nothing is held any longer; dmgrid_notifier_events_held counts what is
// held and dmgrid_notifier_dependency_up{dependency} is 0 in between.
type holder struct {
	s       *Service
	durable string
	dl      *events.DeadLetters
	handle  func(context.Context, *eventsv1.Event) error
	max     int           // what may be held: the consumer's MaxAckPending
	ackWait time.Duration // the consumer's; held events are marked in progress within a third of it
	kick    chan struct{} // wakes run when the first event is held
	done    chan struct{} // closed by close

	mu     sync.Mutex
	queue  []*heldEvent    // in turn: queue[0] is tried next
	closed bool            // the consumer is stopping: nothing more is held
	down   map[string]bool // dependencies seen unavailable since events are held
	since  time.Time       // when the first of them was held
	held   int             // events held since then
}

type heldEvent struct {
	m       jetstream.Msg
	ev      *eventsv1.Event
	seq     uint64    // stream sequence: a redelivery of a held event replaces it
	touched time.Time // last marked in progress
}

func newHolder(s *Service, durable string, dl *events.DeadLetters, handle func(context.Context, *eventsv1.Event) error, o consumeOptions) *holder {
	return &holder{s: s, durable: durable, dl: dl, handle: handle, max: max(o.maxAckPending, 1), ackWait: o.ackWait,
		kick: make(chan struct{}, 1), done: make(chan struct{}), down: map[string]bool{}}
}

// follow queues an event behind the held ones and reports whether it did; with nothing
// held the caller handles the event itself. While the consumer stops during an outage the
// event is handed back instead.
func (h *holder) follow(m jetstream.Msg, ev *eventsv1.Event) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		if len(h.down) > 0 {
			h.handBack(m)
			return true
		}
		return false
	}
	if len(h.queue) == 0 {
		return false
	}
	return h.push(m, ev)
}

// hold keeps an event whose handling failed because dep is unavailable and reports whether
// it did; it does not when the bound is reached (the event is then retried and
// dead-lettered as usual). While the consumer stops the event is handed back instead.
func (h *holder) hold(m jetstream.Msg, ev *eventsv1.Event, dep string, cause error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		h.handBack(m)
		return true
	}
	if len(h.queue) == 0 {
		h.since, h.held = time.Now(), 0
	}
	if !h.push(m, ev) {
		return false
	}
	h.markDown(dep, cause)
	select {
	case h.kick <- struct{}{}:
	default:
	}
	return true
}

// push appends an event to the queue (h.mu held) and marks it in progress; a redelivery
// of an event already held replaces it.
func (h *holder) push(m jetstream.Msg, ev *eventsv1.Event) bool {
	var seq uint64
	if md, err := m.Metadata(); err == nil {
		seq = md.Sequence.Stream
	}
	now := time.Now()
	for _, e := range h.queue {
		if seq != 0 && e.seq == seq {
			_ = m.InProgress()
			e.m, e.ev, e.touched = m, ev, now
			return true
		}
	}
	if len(h.queue) >= h.max {
		return false
	}
	_ = m.InProgress()
	h.queue = append(h.queue, &heldEvent{m: m, ev: ev, seq: seq, touched: now})
	h.held++
	h.s.addHeld(h.durable, 1)
	return true
}

// markDown notes (h.mu held) that dep is unavailable: logged and exposed once per outage.
func (h *holder) markDown(dep string, cause error) {
	if h.down[dep] {
		return
	}
	h.down[dep] = true
	h.s.log.Warn("dependency unavailable; holding events until it answers", "consumer", h.durable, "dependency", dep,
		"held", len(h.queue), "err", cause)
	h.s.setDependencyUp(h.durable, dep, false)
}

// run retries the held events until ctx ends, then, once the consumer is drained, hands
// them back.
func (h *holder) run(ctx context.Context, drained <-chan struct{}) {
	defer func() {
		<-drained
		h.close()
	}()
	wait := outageBackoffMin
	for {
		h.mu.Lock()
		var e *heldEvent
		var ev *eventsv1.Event
		if len(h.queue) > 0 {
			e, ev = h.queue[0], h.queue[0].ev
		}
		h.mu.Unlock()
		if e == nil {
			select {
			case <-ctx.Done():
				return
			case <-h.kick:
			}
			// The event held first has just failed: wait before trying again.
			wait = outageBackoffMin
			if !sleep(ctx, wait) {
				return
			}
			wait = min(2*wait, outageBackoffMax)
			continue
		}
		actx, cancel := context.WithTimeout(ctx, 2*rpcTimeout)
		err := h.handle(actx, ev)
		cancel()
		if err != nil && ctx.Err() != nil {
			return // stopped while trying: handed back with the others
		}
		if err != nil {
			if dep := h.s.outage(err); dep != "" {
				h.s.log.Debug("held event still failing", "consumer", h.durable, "event_id", ev.GetEventId(), "dependency", dep,
					"retry_in", wait, "err", err)
				h.retryLater(e, dep, err)
				if !sleep(ctx, wait) {
					return
				}
				wait = min(2*wait, outageBackoffMax)
				continue
			}
		}
		wait = outageBackoffMin
		m := h.release(e)
		if err == nil {
			_ = m.Ack()
		} else {
			h.s.retryOrDeadLetter(h.dl, m, ev, err)
		}
	}
}

// retryLater moves a held event that failed again to the back of the queue, so that the
// others are tried too (an outage of part of a dependency fails only some events).
func (h *holder) retryLater(e *heldEvent, dep string, cause error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) > 0 && h.queue[0] == e {
		h.queue = append(h.queue[1:], e)
	}
	h.markDown(dep, cause)
}

// release takes the event that run handled off the queue and returns its (latest)
// message; when nothing is held any longer the outage is over.
func (h *holder) release(e *heldEvent) jetstream.Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.queue) > 0 && h.queue[0] == e {
		h.queue = h.queue[1:]
		h.s.addHeld(h.durable, -1)
	}
	if len(h.queue) == 0 && len(h.down) > 0 {
		deps := make([]string, 0, len(h.down))
		for d := range h.down {
			deps = append(deps, d)
			h.s.setDependencyUp(h.durable, d, true)
		}
		sort.Strings(deps)
		h.s.log.Info("dependency answers again; held events released", "consumer", h.durable, "dependencies", strings.Join(deps, ","),
			"events", h.held, "held_for", time.Since(h.since).Round(time.Millisecond))
		clear(h.down)
	}
	return e.m
}

// sleep waits d, or less when ctx ends first; it reports whether ctx is still going.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// close hands every held event back (Nak: redelivered at once, to another replica or this
// consumer's successor) and holds nothing more.
func (h *holder) close() {
	h.mu.Lock()
	q := h.queue
	h.queue, h.closed = nil, true
	close(h.done)
	h.s.addHeld(h.durable, -int64(len(q)))
	h.mu.Unlock()
	if len(q) > 0 {
		h.s.log.Info("stopping; held events handed back for redelivery", "consumer", h.durable, "events", len(q))
	}
	for _, e := range q {
		h.handBack(e.m)
	}
}

// handBack returns an event for redelivery (Nak) when the consumer stops. An event on the
// last delivery JetStream allows (MaxDeliver: redeliveries after earlier stops or crashes
// count) would not come back: it is dead-lettered instead, so that it is not dropped
// without trace.
func (h *holder) handBack(m jetstream.Msg) {
	if md, err := m.Metadata(); err == nil && md.NumDelivered > uint64(h.s.eventAttempts) {
		h.s.deadLetter(h.dl, m, causeOutage, fmt.Sprintf("held while a dependency was unavailable on its last delivery (%d) when the consumer stopped",
			md.NumDelivered))
		return
	}
	if err := m.Nak(); err != nil {
		h.s.log.Debug("nak held event", "consumer", h.durable, "subject", m.Subject(), "err", err)
	}
}

// keep marks the held events in progress, each within a third of AckWait of the last time,
// until they are handed back (close).
func (h *holder) keep() {
	t := time.NewTicker(max(h.ackWait/10, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		now := time.Now()
		h.mu.Lock()
		for _, e := range h.queue {
			if now.Sub(e.touched) >= h.ackWait/3 {
				if err := e.m.InProgress(); err != nil {
					h.s.log.Debug("mark held event in progress", "consumer", h.durable, "subject", e.m.Subject(), "err", err)
				}
				e.touched = now
			}
		}
		h.mu.Unlock()
	}
}

// addHeld and setDependencyUp update the outage metrics.
func (s *Service) addHeld(consumer string, n int64) {
	if s.heldEvents != nil {
		s.heldEvents.Add(context.Background(), n, metric.WithAttributes(attribute.String("consumer", consumer)))
	}
}

func (s *Service) setDependencyUp(consumer, dep string, up bool) {
	if s.dependencyUp == nil {
		return
	}
	v := int64(0)
	if up {
		v = 1
	}
	s.dependencyUp.Record(context.Background(), v, metric.WithAttributes(attribute.String("consumer", consumer), attribute.String("dependency", dep)))
}

// deadLetter publishes the event as received, with why, to the dead-letter subject and
// terminates it. If the publish fails the event is handed back and dead-lettered on a later
// delivery.
func (s *Service) deadLetter(dl *events.DeadLetters, m jetstream.Msg, cause, reason string) {
	if dl.Handle(m, reason, s.eventRetryDelay, s.log) && s.deadLetters != nil {
		s.deadLetters.Add(context.Background(), 1, metric.WithAttributes(attribute.String("consumer", dl.Consumer), attribute.String("cause", cause)))
	}
}

// onWake turns a WakeRequested event into a (coalesced) notification. The event id is the
// request id, so a redelivered event does not notify twice. Devices that cannot be notified
// are logged and the event is dropped.
func (s *Service) onWake(ctx context.Context, ev *eventsv1.Event) error {
	if ev.GetWakeRequested() == nil {
		return nil
	}
	if t := ev.GetTime(); t != nil && s.now().Sub(t.AsTime()) > s.cfg.MaxEventAge {
		s.log.Info("stale wake request skipped", "device_id", ev.GetDeviceId(), "event_id", ev.GetEventId())
		return nil
	}
	reason := ev.GetWakeRequested().GetReason()
	if reason == "" {
		reason = "wake requested"
	}
	_, _, err := s.notify(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: ev.GetDeviceId(), Reason: truncate(reason, maxReason),
		RequestId: "ev:" + ev.GetEventId()})
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.FailedPrecondition, codes.InvalidArgument:
		s.log.Warn("wake request for a device that cannot be notified", "device_id", ev.GetDeviceId(), "err", err)
		return nil
	}
	return err
}

// onSessionStarted marks the device's outstanding notification ANSWERED when the device
// opened a server-initiated session (Alert 1200) with the notification's session id
// (OMA-TS-DM_Notification §6.2.2.10).
func (s *Service) onSessionStarted(ctx context.Context, ev *eventsv1.Event) error {
	st := ev.GetSessionStarted()
	if st == nil || st.GetInitiator() != eventsv1.SessionStarted_INITIATOR_SERVER {
		return nil
	}
	for try := 0; try < 3; try++ {
		r, err := s.st.Outstanding(ctx, ev.GetDeviceId())
		if err != nil {
			return err
		}
		if r == nil || store.Final(r.State) || !SessionIDMatches(st.GetSessionId(), r.SessionID) {
			return nil
		}
		err = s.finish(ctx, r, notifierv1.Notification_STATE_ANSWERED, "")
		if !errors.Is(err, store.ErrConflict) {
			return err
		}
	}
	return errors.New("notification kept changing")
}

// SessionIDMatches reports whether a Pkg1 SessionID is the trigger's 16-bit session id.
// Devices should send upper-case hex without leading zeros (PROTOCOL.md §2.1), but clients
// vary: lower case, zero padding and decimal are accepted by comparing numerically.
func SessionIDMatches(sessionID string, id uint16) bool {
	s := strings.TrimSpace(sessionID)
	if s == "" || len(s) > 20 {
		return false
	}
	if v, err := strconv.ParseUint(s, 16, 64); err == nil && v == uint64(id) {
		return true
	}
	v, err := strconv.ParseUint(s, 10, 64)
	return err == nil && v == uint64(id)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
