package notifier

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/pkg/wappush"
	"github.com/dmgrid/dmgrid/services/notifier/internal/provider"
	"github.com/dmgrid/dmgrid/services/notifier/internal/store"
)

// workLoop claims due notifications and handles them, Concurrency at a time, until ctx
// ends. A full batch is followed by the next claim at once; otherwise it waits for the poll
// interval or a local kick.
func (s *Service) workLoop(ctx context.Context) {
	batch := s.cfg.Concurrency * 2
	for ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, rpcTimeout)
		ids, err := s.st.Claim(cctx, s.now(), s.cfg.Lease, batch)
		cancel()
		if err != nil {
			s.log.Warn("claim notifications", "err", err)
		}
		sem := make(chan struct{}, s.cfg.Concurrency)
		var wg sync.WaitGroup
		for _, id := range ids {
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				// A claimed notification is finished even while stopping, within its own
				// deadline, so that a send that went out is recorded.
				pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.SendTimeout+rpcTimeout)
				defer cancel()
				s.process(pctx, id)
			}()
		}
		wg.Wait()
		if len(ids) == batch {
			continue
		}
		t := time.NewTimer(s.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// process handles one claimed notification according to its state.
func (s *Service) process(ctx context.Context, id string) {
	r, err := s.st.Get(ctx, id)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, store.ErrBadID) {
		s.unschedule(ctx, id)
		return
	}
	if err != nil {
		s.log.Warn("load notification", "notification_id", id, "err", err)
		return // the lease brings it back
	}
	now := s.now()
	switch r.State {
	case notifierv1.Notification_STATE_QUEUED, notifierv1.Notification_STATE_SENDING:
		// SENDING here means a replica stopped mid-send: send again. A duplicate Package 0
		// with the same session id makes the device open one session (OMA-TS-DM_Notification
		// §6.2.2.10, PROTOCOL.md §9.1).
		if now.Before(r.NextAt) {
			s.schedule(ctx, r.ID, r.NextAt)
			return
		}
		s.attempt(ctx, r)
	case notifierv1.Notification_STATE_SENT, notifierv1.Notification_STATE_DELIVERED:
		if now.Before(r.ExpireAt) {
			s.schedule(ctx, r.ID, r.ExpireAt)
			return
		}
		if err := s.finish(ctx, r, notifierv1.Notification_STATE_EXPIRED, ""); err != nil && !errors.Is(err, store.ErrConflict) {
			s.log.Warn("expire notification", "notification_id", id, "err", err)
		}
	default:
		s.unschedule(ctx, id)
	}
}

// attempt sends the notification once.
func (s *Service) attempt(ctx context.Context, r *store.Record) {
	tgt, err := s.target(ctx, r.DeviceID)
	if err != nil {
		var te *TargetError
		s.failAttempt(ctx, r, err, errors.As(err, &te), false)
		return
	}
	prov, err := s.router.Route(tgt.GetMsisdn(), tgt.GetLabels())
	if err != nil {
		s.failAttempt(ctx, r, err, true, false)
		return
	}
	p := s.providers[prov]
	if p == nil {
		s.failAttempt(ctx, r, errors.New("provider "+prov+" is not configured"), true, false)
		return
	}
	segs, err := s.encode(r, tgt.GetServerId(), tgt.GetServerKeyB64Md5(), tgt.GetServerNonce())
	if err != nil {
		s.failAttempt(ctx, r, err, true, false)
		return
	}
	if lim, ok := s.cfg.RateLimits[prov]; ok {
		wait, err := s.st.Take(ctx, prov, lim.Rate, lim.Burst, len(segs))
		if err != nil {
			s.log.Warn("rate limit", "provider", prov, "err", err)
			return // the lease brings it back
		}
		if wait > 0 {
			s.schedule(ctx, r.ID, s.now().Add(wait))
			return
		}
	}
	r.State, r.Provider, r.Updated = notifierv1.Notification_STATE_SENDING, prov, s.now()
	r.Attempts++
	if err := s.st.Update(ctx, r); err != nil {
		s.logUpdate(r, err)
		return
	}
	s.logState(ctx, r, "sending")
	sctx, cancel := context.WithTimeout(ctx, s.cfg.SendTimeout)
	ids, err := p.Send(sctx, provider.Message{NotificationID: r.ID, MSISDN: tgt.GetMsisdn(), UDHSegments: segs})
	cancel()
	if err != nil {
		s.failAttempt(ctx, r, err, provider.IsPermanent(err), true)
		return
	}
	now := s.now()
	r.State, r.ProviderIDs, r.Delivered, r.LastError = notifierv1.Notification_STATE_SENT, ids, nil, ""
	r.Updated, r.ExpireAt = now, now.Add(s.cfg.AnswerTimeout)
	// Map the ids first so that an early delivery receipt finds the notification.
	if err := s.st.MapProviderIDs(ctx, prov, r.ID, ids); err != nil {
		s.log.Warn("map provider ids", "notification_id", r.ID, "err", err)
	}
	if err := s.st.Update(ctx, r); err != nil {
		s.logUpdate(r, err)
		return
	}
	s.logState(ctx, r, "sent")
	s.schedule(ctx, r.ID, r.ExpireAt)
}

// encode builds the Package 0 (OMA-TS-DM_Notification §6.2: digest over the trigger with the
// server key and the device-issued server nonce), wraps it in the WSP push PDU (§6.3.1) and
// splits it into SMS user data with the WDP port and concatenation headers (PROTOCOL.md §9.2).
func (s *Service) encode(r *store.Record, serverID, key string, nonce []byte) ([][]byte, error) {
	initiator := pkg0.InitiatorServer
	if r.Initiator == notifierv1.Initiator_INITIATOR_USER {
		initiator = pkg0.InitiatorClient
	}
	b, err := pkg0.Build(pkg0.Trigger{Version: s.cfg.PKG0Version, UIMode: pkg0.UIMode(r.UIMode), Initiator: initiator,
		SessionID: r.SessionID, ServerID: serverID}, key, nonce)
	if err != nil {
		return nil, err
	}
	// TID and concatenation reference only need to differ between messages to one device.
	tid := byte(r.SessionID) ^ byte(r.Attempts)
	segs, err := wappush.Segments(wappush.DMNotificationPDU(tid, b), byte(r.SessionID>>8)+byte(r.Attempts), wappush.PortWAPPush, wappush.PortWSPConnectionless)
	if err != nil {
		return nil, err
	}
	out := make([][]byte, len(segs))
	for i, sg := range segs {
		out[i] = sg.UD
	}
	return out, nil
}

// failAttempt records a failed attempt: FAILED when permanent or out of attempts, else
// QUEUED again after the back-off. counted says r.Attempts already includes this attempt.
func (s *Service) failAttempt(ctx context.Context, r *store.Record, cause error, permanent, counted bool) {
	if !counted {
		r.Attempts++
	}
	if permanent || r.Attempts >= s.cfg.MaxAttempts {
		if err := s.finish(ctx, r, notifierv1.Notification_STATE_FAILED, cause.Error()); err != nil {
			s.logUpdate(r, err)
		}
		return
	}
	now := s.now()
	r.State, r.LastError, r.Updated = notifierv1.Notification_STATE_QUEUED, cause.Error(), now
	r.NextAt = now.Add(s.backoff(r.Attempts))
	if err := s.st.Update(ctx, r); err != nil {
		s.logUpdate(r, err)
		return
	}
	s.logState(ctx, r, "retry")
	s.schedule(ctx, r.ID, r.NextAt)
}

// backoff is BackoffMin·2^(attempt-1), capped at BackoffMax, jittered to [d/2, d].
func (s *Service) backoff(attempt int) time.Duration {
	d := s.cfg.BackoffMin
	for i := 1; i < attempt && d < s.cfg.BackoffMax; i++ {
		d *= 2
	}
	d = min(d, s.cfg.BackoffMax)
	return d/2 + rand.N(d/2+1)
}

// finish moves r to a final state (releasing the device's outstanding slot) and takes it
// off the due set.
func (s *Service) finish(ctx context.Context, r *store.Record, st notifierv1.Notification_State, lastErr string) error {
	r.State, r.Updated = st, s.now()
	if lastErr != "" {
		r.LastError = lastErr
	}
	if err := s.st.Update(ctx, r); err != nil {
		return err
	}
	s.logState(ctx, r, "final")
	s.unschedule(ctx, r.ID)
	return nil
}

func (s *Service) schedule(ctx context.Context, id string, t time.Time) {
	if err := s.st.Schedule(ctx, id, t); err != nil {
		s.log.Warn("schedule notification", "notification_id", id, "err", err)
	}
}

func (s *Service) unschedule(ctx context.Context, id string) {
	if err := s.st.Unschedule(ctx, id); err != nil {
		s.log.Warn("unschedule notification", "notification_id", id, "err", err)
	}
}

// logState logs every state change and queues it as a notification_state_changed event
// (event_id as Nats-Msg-Id) for publishEvents, off the caller's path; the notification
// record in Redis stays the source of truth when NATS is unreachable.
func (s *Service) logState(ctx context.Context, r *store.Record, what string) {
	s.log.InfoContext(ctx, "notification state", "notification_id", r.ID, "device_id", r.DeviceID,
		"state", r.State.String(), "change", what, "session_id", pkg0.SessionIDHex(r.SessionID),
		"attempts", r.Attempts, "provider", r.Provider, "last_error", r.LastError)
	if s.stateCounter != nil {
		s.stateCounter.Add(ctx, 1, metric.WithAttributes(attribute.String("provider", r.Provider), attribute.String("state", r.State.String())))
	}
	if s.js == nil {
		return
	}
	ev := &eventsv1.Event{EventId: events.NewID(), DeviceId: r.DeviceID, Time: timestamppb.New(s.now()),
		Payload: &eventsv1.Event_NotificationStateChanged{NotificationStateChanged: &eventsv1.NotificationStateChanged{Notification: toProto(r)}}}
	b, err := proto.Marshal(ev)
	if err != nil {
		return
	}
	msg := &nats.Msg{Subject: events.Subject(ev), Data: b, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgIDHeader, ev.EventId)
	select {
	case s.events <- msg:
	default:
		s.log.Warn("notification event queue full; event dropped", "notification_id", r.ID, "device_id", r.DeviceID)
	}
}

// publishEvents publishes the queued notification events one after the other (in the
// order the states changed), each with its own timeout, until ctx ends; what is queued
// then gets a last short chance.
func (s *Service) publishEvents(ctx context.Context) {
	publish := func(pctx context.Context, msg *nats.Msg) {
		pctx, cancel := context.WithTimeout(pctx, 5*time.Second)
		defer cancel()
		if _, err := s.js.PublishMsg(pctx, msg); err != nil {
			s.log.Warn("publish notification event", "subject", msg.Subject, "err", err)
		}
	}
	for {
		select {
		case msg := <-s.events:
			publish(ctx, msg)
		case <-ctx.Done():
			last, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			for {
				select {
				case msg := <-s.events:
					publish(last, msg)
				default:
					return
				}
			}
		}
	}
}

func (s *Service) logUpdate(r *store.Record, err error) {
	if errors.Is(err, store.ErrConflict) {
		s.log.Info("notification changed concurrently", "notification_id", r.ID, "device_id", r.DeviceID)
		return
	}
	s.log.Warn("update notification", "notification_id", r.ID, "device_id", r.DeviceID, "err", err)
}

// readReceipts applies one provider's delivery receipts until ctx ends or the channel closes.
func (s *Service) readReceipts(ctx context.Context, prov string, ch <-chan provider.Receipt) {
	for {
		select {
		case <-ctx.Done():
			return
		case rc, ok := <-ch:
			if !ok {
				return
			}
			rctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			s.applyReceipt(rctx, prov, rc)
			cancel()
		}
	}
}

// applyReceipt marks a notification DELIVERED once every segment has a delivery receipt
// (SMPP §5.2.12, Appendix B), or retries it after a final delivery failure. A few short
// retries cover the receipt racing the SENT update.
func (s *Service) applyReceipt(ctx context.Context, prov string, rc provider.Receipt) {
	for try := 0; try < 4; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(try) * 100 * time.Millisecond):
			}
		}
		id, err := s.st.ByProviderID(ctx, prov, rc.MessageID)
		if err != nil || id == "" {
			continue
		}
		r, err := s.st.Get(ctx, id)
		if err != nil {
			continue
		}
		if store.Final(r.State) || !slices.Contains(r.ProviderIDs, rc.MessageID) {
			return // answered already, or a receipt of an earlier attempt
		}
		if r.State != notifierv1.Notification_STATE_SENT && r.State != notifierv1.Notification_STATE_DELIVERED {
			continue
		}
		if rc.Failed {
			s.failAttempt(ctx, r, errors.New("delivery receipt: "+rc.Status), false, true)
			return
		}
		if !rc.Delivered || slices.Contains(r.Delivered, rc.MessageID) {
			return
		}
		r.Delivered = append(r.Delivered, rc.MessageID)
		changed := false
		if len(r.Delivered) >= len(r.ProviderIDs) && r.State == notifierv1.Notification_STATE_SENT {
			r.State, changed = notifierv1.Notification_STATE_DELIVERED, true
		}
		r.Updated = s.now()
		if err := s.st.Update(ctx, r); errors.Is(err, store.ErrConflict) {
			continue
		} else if err != nil {
			s.logUpdate(r, err)
			return
		}
		if changed {
			s.logState(ctx, r, "delivered")
		}
		return
	}
	s.log.Info("delivery receipt for no known notification", "provider", prov, "provider_message_id", rc.MessageID)
}
