package notifier

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
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
)

// consume runs a durable JetStream consumer of one event kind until ctx ends. Replicas share
// the durable, so each event is handled by one of them. The stream belongs to the session
// tier; until it exists the consumer is retried with back-off. New consumers start at new
// events: replaying old wake requests on a first deployment would wake every device.
//
// An event that is not a dmgrid.events.v1.Event is dead-lettered at once; one whose handler
// fails is redelivered and dead-lettered on its last attempt, so that nothing is dropped
// without trace.
func (s *Service) consume(ctx context.Context, durable, kind string, handle func(context.Context, *eventsv1.Event) error) {
	cfg := jetstream.ConsumerConfig{
		Durable:       durable,
		Description:   "dmgrid notifier: " + kind + " events",
		FilterSubject: events.SubjectRoot + "." + kind + ".>",
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		// One more than the attempts made here: the last failing attempt dead-letters the
		// event and terminates it, so JetStream never drops it silently.
		MaxDeliver: s.eventAttempts + 1,
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
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			s.deadLetter(dl, m, causeUndecodable, "not a dmgrid.events.v1.Event: "+err.Error())
			return
		}
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*rpcTimeout)
		err := handle(hctx, &ev)
		cancel()
		if err != nil {
			n := uint64(1)
			if md, merr := m.Metadata(); merr == nil {
				n = md.NumDelivered
			}
			if n >= uint64(s.eventAttempts) {
				s.deadLetter(dl, m, causeFailing, fmt.Sprintf("not handled after %d attempts: %v", n, err))
				return
			}
			s.log.Warn("handle event; redelivering", "consumer", durable, "event_id", ev.GetEventId(), "device_id", ev.GetDeviceId(),
				"attempt", n, "err", err)
			_ = m.NakWithDelay(s.eventRetryDelay)
			return
		}
		_ = m.Ack()
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

// deadLetter publishes the event as received, with why, to the dead-letter subject and
// terminates it. If the publish fails the event is handed back and dead-lettered on a later
// delivery.
func (s *Service) deadLetter(dl *events.DeadLetters, m jetstream.Msg, cause, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dl.Publish(ctx, m, reason); err != nil {
		s.log.Error("dead-letter event", "consumer", dl.Consumer, "subject", m.Subject(), "reason", reason, "err", err)
		_ = m.NakWithDelay(s.eventRetryDelay)
		return
	}
	if s.deadLetters != nil {
		s.deadLetters.Add(ctx, 1, metric.WithAttributes(attribute.String("consumer", dl.Consumer), attribute.String("cause", cause)))
	}
	s.log.Warn("event dead-lettered", "consumer", dl.Consumer, "subject", m.Subject(), "reason", reason, "dead_letter_subject", dl.Subject)
	if err := m.TermWithReason(reason); err != nil {
		s.log.Debug("terminate event", "consumer", dl.Consumer, "subject", m.Subject(), "err", err)
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
