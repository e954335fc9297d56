package notifier

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"
	sessionv1 "github.com/dmgrid/dmgrid/proto/dmgrid/session/v1"

	"github.com/dmgrid/dmgrid/internal/apierr"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/services/notifier/internal/store"
)

// Errors leave the API as gRPC statuses with details (AIP-193, internal/apierr):
// InvalidArgument carries a google.rpc.BadRequest with one violation per bad field,
// NotFound, FailedPrecondition and Aborted an ErrorInfo with a reason; Unavailable (Redis
// or the session tier unreachable) is a plain status.

// API implements dmgrid.notifier.v1.NotifierService.
type API struct {
	notifierv1.UnimplementedNotifierServiceServer
	s *Service
}

// Request limits.
const (
	maxDeviceID  = 256
	maxReason    = 256
	maxRequestID = 128
	defaultPage  = 50
	maxPage      = 500
	rpcTimeout   = 10 * time.Second
)

// NotifyDevice queues a notification (coalesced per device).
func (a *API) NotifyDevice(ctx context.Context, req *notifierv1.NotifyDeviceRequest) (*notifierv1.NotifyDeviceResponse, error) {
	r, out, err := a.s.notify(ctx, req)
	if err != nil {
		return nil, err
	}
	return &notifierv1.NotifyDeviceResponse{Notification: toProto(r), Coalesced: out == store.Coalesced}, nil
}

// GetNotification returns one notification.
func (a *API) GetNotification(ctx context.Context, req *notifierv1.GetNotificationRequest) (*notifierv1.GetNotificationResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	r, err := a.s.st.Get(ctx, req.GetNotificationId())
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrBadID):
		id := req.GetNotificationId()
		return nil, apierr.Info(codes.NotFound, "NOT_FOUND", "notification "+id+" not found", map[string]string{"notification_id": id})
	case err != nil:
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &notifierv1.GetNotificationResponse{Notification: toProto(r)}, nil
}

// ListNotifications pages through a device's notifications, newest first.
func (a *API) ListNotifications(ctx context.Context, req *notifierv1.ListNotificationsRequest) (*notifierv1.ListNotificationsResponse, error) {
	var v apierr.Violations
	if req.GetDeviceId() == "" || len(req.GetDeviceId()) > maxDeviceID {
		v.Add("device_id", "must be 1 to 256 bytes")
	}
	n := int(req.GetPageSize())
	switch {
	case n < 0:
		v.Add("page_size", "must not be negative")
	case n == 0:
		n = defaultPage
	case n > maxPage:
		n = maxPage
	}
	offset := 0
	if t := req.GetPageToken(); t != "" {
		o, err := decodeToken(t, req.GetDeviceId())
		if err != nil {
			v.Add("page_token", "not valid for this request")
		}
		offset = o
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	recs, next, err := a.s.st.List(ctx, req.GetDeviceId(), offset, n)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &notifierv1.ListNotificationsResponse{}
	for _, r := range recs {
		resp.Notifications = append(resp.Notifications, toProto(r))
	}
	if next > 0 {
		resp.NextPageToken = encodeToken(next, req.GetDeviceId())
	}
	return resp, nil
}

// Page tokens are base64url("<offset>:<device id>") so that a token is refused for another
// device.
func encodeToken(offset int, deviceID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.Itoa(offset) + ":" + deviceID))
}

func decodeToken(t, deviceID string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(t)
	if err != nil {
		return 0, err
	}
	for i, c := range b {
		if c == ':' {
			o, err := strconv.Atoi(string(b[:i]))
			if err != nil || o < 0 || string(b[i+1:]) != deviceID {
				return 0, errors.New("bad page token")
			}
			return o, nil
		}
	}
	return 0, errors.New("bad page token")
}

func toProto(r *store.Record) *notifierv1.Notification {
	n := &notifierv1.Notification{
		NotificationId:     r.ID,
		DeviceId:           r.DeviceID,
		State:              r.State,
		SessionId:          uint32(r.SessionID),
		SessionIdHex:       pkg0.SessionIDHex(r.SessionID),
		Attempts:           int32(r.Attempts),
		Provider:           r.Provider,
		ProviderMessageIds: r.ProviderIDs,
		LastError:          r.LastError,
		CreateTime:         timestamppb.New(r.Created),
		UpdateTime:         timestamppb.New(r.Updated),
		Reason:             r.Reason,
		UiMode:             r.UIMode,
		Initiator:          r.Initiator,
	}
	return n
}

// target asks the session tier for the device's Package 0 inputs and maps "cannot notify"
// to FAILED_PRECONDITION.
func (s *Service) target(ctx context.Context, deviceID string) (*sessionv1.GetNotificationTargetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	t, err := s.sess.GetNotificationTarget(ctx, &sessionv1.GetNotificationTargetRequest{DeviceId: deviceID})
	if err != nil {
		if status.Code(err) == codes.NotFound {
			return nil, &TargetError{DeviceID: deviceID, Code: "UNKNOWN_DEVICE", Reason: "unknown device"}
		}
		return nil, fmt.Errorf("get notification target of %s: %w", deviceID, err)
	}
	switch {
	case t.GetMsisdn() == "":
		return nil, &TargetError{DeviceID: deviceID, Code: "NO_MSISDN", Reason: "the device has no MSISDN"}
	case t.GetServerKeyB64Md5() == "":
		return nil, &TargetError{DeviceID: deviceID, Code: "NO_SERVER_CREDENTIAL", Reason: "the device has no server credential to sign a Package 0 with"}
	case t.GetServerId() == "":
		return nil, &TargetError{DeviceID: deviceID, Code: "NO_SERVER_ID", Reason: "the device has no server identifier"}
	}
	return t, nil
}

// sessionTierError is a failed call to the session tier: Unavailable to API clients, with
// the session tier's own error kept (Unwrap) so that the event consumers can tell an outage
// (Unavailable, DeadlineExceeded, ResourceExhausted) from a failure of one event.
type sessionTierError struct{ err error }

func (e *sessionTierError) Error() string { return e.err.Error() }
func (e *sessionTierError) Unwrap() error { return e.err }

// GRPCStatus is what API clients get.
func (e *sessionTierError) GRPCStatus() *status.Status {
	return status.New(codes.Unavailable, e.err.Error())
}

// TargetError says a device cannot be notified (unknown, no MSISDN, no server credential).
type TargetError struct {
	DeviceID string
	Code     string // machine-readable: the ErrorInfo reason (UNKNOWN_DEVICE, NO_MSISDN, ...)
	Reason   string // for people
}

func (e *TargetError) Error() string { return "cannot notify " + e.DeviceID + ": " + e.Reason }

// GRPCStatus maps the error to FAILED_PRECONDITION with an ErrorInfo (AIP-193).
func (e *TargetError) GRPCStatus() *status.Status {
	return status.Convert(apierr.Info(codes.FailedPrecondition, e.Code, e.Error(), map[string]string{"device_id": e.DeviceID}))
}

// notify creates (or coalesces into) the device's notification.
func (s *Service) notify(ctx context.Context, req *notifierv1.NotifyDeviceRequest) (*store.Record, store.Outcome, error) {
	dev := req.GetDeviceId()
	var v apierr.Violations
	if dev == "" || len(dev) > maxDeviceID {
		v.Add("device_id", "must be 1 to 256 bytes")
	}
	if len(req.GetReason()) > maxReason {
		v.Add("reason", "longer than 256 bytes")
	}
	if len(req.GetRequestId()) > maxRequestID {
		v.Add("request_id", "longer than 128 bytes")
	}
	if req.GetUiMode() < 0 || req.GetUiMode() > notifierv1.UIMode_UI_MODE_USER_INTERACTION {
		v.Add("ui_mode", "unknown value")
	}
	if req.GetInitiator() < 0 || req.GetInitiator() > notifierv1.Initiator_INITIATOR_USER {
		v.Add("initiator", "unknown value")
	}
	if err := v.Err(); err != nil {
		return nil, 0, err
	}
	if _, err := s.target(ctx, dev); err != nil {
		var te *TargetError
		if errors.As(err, &te) {
			return nil, 0, err
		}
		return nil, 0, &sessionTierError{err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	initiator := req.GetInitiator()
	if initiator == notifierv1.Initiator_INITIATOR_UNSPECIFIED {
		initiator = notifierv1.Initiator_INITIATOR_SERVER
	}
	// At most two rounds: the second only after an expired outstanding one was retired.
	for round := 0; round < 2; round++ {
		now := s.now()
		r := &store.Record{ID: store.NewID(dev, randomHex(8)), DeviceID: dev, State: notifierv1.Notification_STATE_QUEUED,
			SessionID: randomSessionID(), Reason: req.GetReason(), UIMode: req.GetUiMode(), Initiator: initiator,
			Created: now, Updated: now, NextAt: now}
		got, out, err := s.st.Create(ctx, r, req.GetRequestId())
		if err != nil {
			return nil, 0, status.Error(codes.Unavailable, err.Error())
		}
		switch out {
		case store.Created:
			s.logState(ctx, got, "created")
			s.wake()
		case store.Coalesced:
			if s.retireIfExpired(ctx, got) && round == 0 {
				continue
			}
			if got.State == notifierv1.Notification_STATE_QUEUED {
				// Self-repair: a replica that stopped between storing the record and queueing
				// it left it outside the due set; NX keeps an existing (claimed) score.
				if err := s.st.ScheduleNX(ctx, got.ID, got.NextAt); err != nil {
					return nil, 0, status.Error(codes.Unavailable, err.Error())
				}
			}
		}
		return got, out, nil
	}
	return nil, 0, apierr.Info(codes.Aborted, "CONCURRENT_MODIFICATION", "the device's notification changed concurrently; retry",
		map[string]string{"device_id": dev})
}

// retireIfExpired marks an outstanding SENT/DELIVERED notification whose answer time passed
// EXPIRED, so that the device may be notified again; it reports whether it did.
func (s *Service) retireIfExpired(ctx context.Context, r *store.Record) bool {
	if (r.State != notifierv1.Notification_STATE_SENT && r.State != notifierv1.Notification_STATE_DELIVERED) ||
		r.ExpireAt.IsZero() || s.now().Before(r.ExpireAt) {
		return false
	}
	return s.finish(ctx, r, notifierv1.Notification_STATE_EXPIRED, "") == nil
}

// wake nudges the local worker loop.
func (s *Service) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}

// randomSessionID picks the trigger's 16-bit session id (OMA-TS-DM_Notification §6.2.2.10)
// at random, never 0.
func randomSessionID() uint16 {
	var b [2]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return max(binary.BigEndian.Uint16(b[:]), 1)
}
