package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/pkg/syncml"
	"github.com/dmgrid/dmgrid/pkg/syncmlpb"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// Notifier is told which devices have new events in their outbox (the outbox relay).
type Notifier interface{ Notify(deviceID string) }

// Sessions implements dmgrid.session.v1.SessionService: one device message in, the reply out.
type Sessions struct {
	sessionv1.UnimplementedSessionServiceServer
	St     *store.Store
	Engine *engine.Engine
	Relay  Notifier
	Log    *slog.Logger
	Now    func() time.Time
	// ChallengeLimit bounds challenges per device id per ChallengeWindow for unknown
	// devices and failed authentication.
	ChallengeLimit  int64
	ChallengeWindow time.Duration
	// Handled counts messages this worker processed (tests check that load spreads).
	Handled atomic.Int64
	// Metrics and Propagator are optional (nil: not recorded / no trace parent on events).
	Metrics    *Metrics
	Propagator propagation.TextMapPropagator
}

// maxCommitAttempts bounds retries when two workers race on one session.
const maxCommitAttempts = 4

// HandleMessage runs the engine on one message: load (one Redis round trip), process,
// commit (one round trip, compare-and-set on the session version; retried on conflict).
func (s *Sessions) HandleMessage(ctx context.Context, req *sessionv1.HandleMessageRequest) (*sessionv1.HandleMessageResponse, error) {
	s.Handled.Add(1)
	tr := req.GetTransport()
	enc := syncmlpb.EncodingFromProto(tr.GetEncoding())
	m, err := syncmlpb.FromProto(req.GetMessage())
	if err != nil {
		s.refused(ctx, enc, outcomeUnconvertible)
		return nil, invalid("message", err.Error())
	}
	in := engine.Input{
		Msg:        m,
		Encoding:   enc,
		BodyHash:   tr.GetBodyMd5(),
		HMACHeader: tr.GetHmacHeader(),
		Now:        s.Now(),
	}
	dev, sid := m.Header.Source.LocURI, m.Header.SessionID
	resp := &sessionv1.HandleMessageResponse{DeviceId: dev, SessionId: sid, HttpStatus: 200}
	if refusal, ok := s.Engine.Check(in); !ok {
		// Refused before touching any state: the engine built the SyncML Status.
		s.refused(ctx, enc, refusal.Outcome)
		resp.Reply = syncmlpb.ToProto(refusal.Reply)
		return resp, nil
	}
	resp, err = s.handle(ctx, in, resp)
	if err != nil {
		s.refused(ctx, enc, outcomeError)
	}
	return resp, err
}

// Outcomes of messages that dmgrid_session_messages_total counts besides the engine's
// (engine.Output.Outcome): refused before or instead of the engine's work, or failed.
const (
	// outcomeRateLimited: a challenge refused with HTTP 429 (challenge rate limit).
	outcomeRateLimited = "rate limited"
	// outcomeUnconvertible: a message that does not convert (gRPC INVALID_ARGUMENT).
	outcomeUnconvertible = "unconvertible"
	// outcomeError: the worker could not process it (gRPC UNAVAILABLE, ABORTED, INTERNAL).
	outcomeError = "error"
)

// handle is HandleMessage for a message that passed Check.
func (s *Sessions) handle(ctx context.Context, in engine.Input, resp *sessionv1.HandleMessageResponse) (*sessionv1.HandleMessageResponse, error) {
	m := in.Msg
	dev, sid := resp.DeviceId, resp.SessionId
	needLO := engine.NeedsLOBuffer(m)
	for attempt := 0; attempt < maxCommitAttempts; attempt++ {
		st, err := s.St.Load(ctx, dev, sid, in.BodyHash, needLO)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "load state: %v", err)
		}
		out := s.Engine.ProcessChecked(st, in)
		if out.AuthFailure && s.ChallengeLimit > 0 {
			ok, err := s.St.AllowChallenge(ctx, dev, s.ChallengeLimit, s.ChallengeWindow)
			if err != nil {
				return nil, status.Errorf(codes.Unavailable, "rate limit: %v", err)
			}
			if !ok {
				s.Log.Warn("challenge rate limit", "device_id", dev, "session_id", sid, "msg_id", m.Header.MsgID)
				s.refused(ctx, in.Encoding, outcomeRateLimited)
				if mt := s.Metrics; mt != nil {
					mt.add(ctx, mt.authFailures, 1) // it failed authentication like the ones challenged
				}
				resp.HttpStatus = 429
				return resp, nil
			}
		}
		evs, err := s.encodeEvents(ctx, out.Events, dev, in.Now)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "encode events: %v", err)
		}
		reply := syncmlpb.ToProto(out.Reply) // the response's, and the session's retransmission copy
		err = s.St.Commit(ctx, dev, sid, st, out, evs, reply)
		if errors.Is(err, store.ErrConflict) {
			if mt := s.Metrics; mt != nil {
				mt.add(ctx, mt.conflicts, 1)
			}
			continue
		}
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "commit: %v", err)
		}
		s.correlate(ctx, dev, out.Events, in.Now)
		if len(evs) > 0 && s.Relay != nil {
			s.Relay.Notify(dev)
		}
		s.record(ctx, in.Encoding.String(), out)
		if s.Log.Enabled(ctx, slog.LevelDebug) {
			s.Log.LogAttrs(ctx, slog.LevelDebug, "message", slog.String("device_id", dev), slog.String("session_id", sid),
				slog.String("msg_id", m.Header.MsgID), slog.String("outcome", out.Outcome), slog.Int("commands_changed", len(out.Commands)),
				slog.Int("events", len(evs)), slog.Int("attempt", attempt+1))
		}
		resp.Reply = reply
		if a := st.Account; a != nil && a.ServerAuth == engine.AuthHMAC {
			resp.ReplyAuth = &sessionv1.ReplyAuth{Username: a.ServerName, KeyB64Md5: a.ServerKey, Nonce: a.ServerNonce}
			if out.NewServerNonce != nil {
				resp.ReplyAuth.Nonce = out.NewServerNonce
			}
		}
		return resp, nil
	}
	// Another worker kept winning: the gateway answers 503 and the device retries the
	// same message, which then finds the committed state (retransmission cache).
	return nil, status.Error(codes.Aborted, "session changed concurrently; retry")
}

// refused counts a message that committed nothing and produced no engine output to record.
func (s *Sessions) refused(ctx context.Context, enc syncml.Encoding, outcome string) {
	if m := s.Metrics; m != nil {
		m.add(ctx, m.messages, 1, attribute.String("encoding", enc.String()), attribute.String("outcome", outcome))
	}
}

// record counts a message the engine handled (committed, or answered without a change).
func (s *Sessions) record(ctx context.Context, enc string, out engine.Output) {
	m := s.Metrics
	if m == nil {
		return
	}
	m.add(ctx, m.messages, 1, attribute.String("encoding", enc), attribute.String("outcome", out.Outcome))
	if out.AuthFailure {
		m.add(ctx, m.authFailures, 1)
	}
	for _, e := range out.Events {
		switch e.Kind {
		case engine.EventSessionEnded:
			m.add(ctx, m.sessionsEnd, 1, attribute.String("outcome", e.Outcome))
		case engine.EventCommandStateChanged:
			m.add(ctx, m.commands, 1, attribute.String("state", string(e.Command.State)))
		}
	}
}

func (s *Sessions) encodeEvents(ctx context.Context, evs []engine.Event, dev string, now time.Time) ([][]byte, error) {
	if len(evs) == 0 {
		return nil, nil
	}
	out := make([][]byte, 0, len(evs))
	for _, e := range evs {
		b, err := frame(ctx, s.Propagator, eventToProto(e, dev, now))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.Kind, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// GetNotificationTarget gives the notifier the Package 0 inputs of a device.
func (s *Sessions) GetNotificationTarget(ctx context.Context, req *sessionv1.GetNotificationTargetRequest) (*sessionv1.GetNotificationTargetResponse, error) {
	if err := validDeviceID(req.GetDeviceId()); err != nil {
		return nil, err
	}
	d, err := s.St.GetDevice(ctx, req.DeviceId)
	if err != nil {
		return nil, storeErr(err, "device "+req.DeviceId, map[string]string{"device_id": req.DeviceId})
	}
	a := d.Account
	sid := a.ServerID
	if sid == "" {
		sid = a.ServerName
	}
	return &sessionv1.GetNotificationTargetResponse{DeviceId: a.DeviceID, Msisdn: a.MSISDN, ServerId: sid,
		ServerKeyB64Md5: a.ServerKey, ServerNonce: a.ServerNonce, Labels: d.Labels}, nil
}

// correlate attaches each Generic Alert that carries a Correlator to the Exec command it
// reports on (the asynchronous result of FUMO and similar operations). It runs after the
// commit, off the common path (only messages with such alerts), and a failure is logged:
// the alert itself is already committed as an event.
func (s *Sessions) correlate(ctx context.Context, dev string, evs []engine.Event, now time.Time) {
	for _, e := range evs {
		if e.Kind != engine.EventGenericAlert || e.Correlator == "" {
			continue
		}
		item := engine.ResultItem{URI: e.SourceURI, Format: e.Format, MIME: e.AlertType, Data: e.Data}
		ev := func(c *engine.Command) []byte { b, _ := commandEvent(ctx, s.Propagator, c, now); return b } // marshalling our own event cannot fail
		if _, err := s.St.AttachAlert(ctx, dev, e.Correlator, item, now, ev); err != nil {
			s.Log.Warn("attach generic alert", "device_id", dev, "correlator", e.Correlator, "err", err)
		}
	}
}
