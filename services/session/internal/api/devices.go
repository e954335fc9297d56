package api

import (
	"context"
	"errors"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// Devices implements dmgrid.device.v1.DeviceService.
type Devices struct {
	devicev1.UnimplementedDeviceServiceServer
	St    *store.Store
	Relay Notifier // optional: told about the device_changed events
	Now   func() time.Time
	// Propagator (optional) carries the API call's trace into the events it commits.
	Propagator propagation.TextMapPropagator
}

// notify tells the relay that the device's outbox has a new event.
func (s *Devices) notify(id string) {
	if s.Relay != nil {
		s.Relay.Notify(id)
	}
}

// changedEvent builds a device_changed event (labels, MSISDN, deletion), which the store
// appends to the device's outbox with the change itself, so the inventory keeps labels
// without reading accounts.
func (s *Devices) changedEvent(ctx context.Context, id string, labels map[string]string, msisdn string, deleted bool) ([]byte, error) {
	return frame(ctx, s.Propagator, &eventsv1.Event{DeviceId: id, Time: timestamppb.New(s.Now()),
		Payload: &eventsv1.Event_DeviceChanged{DeviceChanged: &eventsv1.DeviceChanged{Labels: labels, Msisdn: msisdn, Deleted: deleted}}})
}

var (
	labelKeyRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9_.-]{0,61}[a-z0-9])?$`)
	msisdnRE   = regexp.MustCompile(`^\+?[0-9]{5,15}$`)
)

func validDeviceID(id string) error {
	switch {
	case id == "":
		return invalid("device_id", "required")
	case len(id) > 256:
		return invalid("device_id", "longer than 256 bytes")
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f {
			return invalid("device_id", "must not contain white space or control characters")
		}
	}
	return nil
}

func validLabels(field string, labels map[string]string) error {
	if len(labels) > 64 {
		return invalid(field, "more than 64 labels")
	}
	for k, v := range labels {
		if !labelKeyRE.MatchString(k) {
			return invalid(field, "label key "+k+" must be 1-63 lower-case letters, digits, '_', '.', '-'")
		}
		if len(v) > 255 || strings.ContainsAny(v, "\x00\n\r") {
			return invalid(field, "label "+k+" value longer than 255 bytes or with control characters")
		}
	}
	return nil
}

// account builds the stored account from the request: secrets become B64(MD5(name:secret))
// and are never kept as given (a basic server credential is sealed by the store).
func account(d *devicev1.Device, field string, requireClient bool) (store.NewDevice, error) {
	nd := store.NewDevice{Account: engine.Account{DeviceID: d.GetDeviceId(), ServerID: d.GetServerId(), MSISDN: d.GetMsisdn()}, Labels: d.GetLabels()}
	ca := d.GetClientAuth()
	if ca == nil || ca.Type == devicev1.AuthType_AUTH_TYPE_UNSPECIFIED {
		if requireClient {
			return nd, invalid(field+".client_auth.type", "required (AUTH_TYPE_NONE to disable authentication)")
		}
	} else {
		t, ok := authFromProto[ca.Type]
		if !ok {
			return nd, invalid(field+".client_auth.type", "unknown auth type")
		}
		nd.Account.ClientAuth = t
		if t != engine.AuthNone {
			if ca.Name == "" || ca.Secret == "" {
				return nd, invalid(field+".client_auth", "name and secret are required for "+string(t))
			}
			if len(ca.Name) > 128 || len(ca.Secret) > 256 {
				return nd, invalid(field+".client_auth", "name or secret too long")
			}
			nd.Account.ClientName = ca.Name
			nd.Account.ClientKey = dmauth.Key(ca.Name, ca.Secret)
		}
	}
	sa := d.GetServerAuth()
	if sa != nil && sa.Type != devicev1.AuthType_AUTH_TYPE_UNSPECIFIED && sa.Type != devicev1.AuthType_AUTH_TYPE_NONE {
		t, ok := authFromProto[sa.Type]
		if !ok {
			return nd, invalid(field+".server_auth.type", "unknown auth type")
		}
		if sa.Name == "" || sa.Secret == "" {
			return nd, invalid(field+".server_auth", "name and secret are required for "+string(t))
		}
		nd.Account.ServerAuth, nd.Account.ServerName = t, sa.Name
		nd.Account.ServerKey = dmauth.Key(sa.Name, sa.Secret)
		if t == engine.AuthBasic {
			nd.ServerBasicCred = dmauth.BasicCred(sa.Name, sa.Secret)
		}
	}
	if nd.Account.MSISDN != "" && !msisdnRE.MatchString(nd.Account.MSISDN) {
		return nd, invalid(field+".msisdn", "must be an E.164 number such as +4915112345678")
	}
	if len(nd.Account.ServerID) > 256 {
		return nd, invalid(field+".server_id", "longer than 256 bytes")
	}
	return nd, validLabels(field+".labels", nd.Labels)
}

// CreateDevice creates an account. A repeated call with the same request_id returns the
// device instead of AlreadyExists.
func (s *Devices) CreateDevice(ctx context.Context, req *devicev1.CreateDeviceRequest) (*devicev1.CreateDeviceResponse, error) {
	d := req.GetDevice()
	if d == nil {
		return nil, invalid("device", "required")
	}
	if err := validDeviceID(d.DeviceId); err != nil {
		return nil, err
	}
	nd, err := account(d, "device", true)
	if err != nil {
		return nil, err
	}
	nd.RequestID = req.GetRequestId()
	// The first nonce is ours to choose; the device learns it from its first challenge.
	if nd.Account.ClientNonce, err = dmauth.NewNonce(); err != nil {
		return nil, withInfo(codes.Internal, "NONCE", "make nonce", nil)
	}
	if nd.Event, err = s.changedEvent(ctx, d.DeviceId, nd.Labels, nd.Account.MSISDN, false); err != nil {
		return nil, status.Errorf(codes.Internal, "encode event: %v", err)
	}
	err = s.St.CreateDevice(ctx, nd, s.Now())
	if errors.Is(err, store.ErrExists) && nd.RequestID != "" {
		if got, gerr := s.St.GetDevice(ctx, d.DeviceId); gerr == nil && got.RequestID == nd.RequestID {
			return &devicev1.CreateDeviceResponse{Device: deviceToProto(got)}, nil
		}
	}
	if err != nil {
		return nil, storeErr(err, "device "+d.DeviceId, map[string]string{"device_id": d.DeviceId})
	}
	s.notify(d.DeviceId)
	got, err := s.St.GetDevice(ctx, d.DeviceId)
	if err != nil {
		return nil, storeErr(err, "device "+d.DeviceId, nil)
	}
	return &devicev1.CreateDeviceResponse{Device: deviceToProto(got)}, nil
}

// GetDevice returns a device without its secrets.
func (s *Devices) GetDevice(ctx context.Context, req *devicev1.GetDeviceRequest) (*devicev1.GetDeviceResponse, error) {
	if err := validDeviceID(req.GetDeviceId()); err != nil {
		return nil, err
	}
	d, err := s.St.GetDevice(ctx, req.DeviceId)
	if err != nil {
		return nil, storeErr(err, "device "+req.DeviceId, map[string]string{"device_id": req.DeviceId})
	}
	return &devicev1.GetDeviceResponse{Device: deviceToProto(d)}, nil
}

// ListDevices pages through devices in id order; labels filter by equality.
func (s *Devices) ListDevices(ctx context.Context, req *devicev1.ListDevicesRequest) (*devicev1.ListDevicesResponse, error) {
	n := int(req.GetPageSize())
	switch {
	case n < 0:
		return nil, invalid("page_size", "must not be negative")
	case n == 0:
		n = 50
	case n > 1000:
		n = 1000
	}
	after, err := store.DecodePageToken(req.GetPageToken())
	if err != nil {
		return nil, invalid("page_token", "not a token this service issued")
	}
	if err := validLabels("labels", req.GetLabels()); err != nil {
		return nil, err
	}
	// One label selects the index; the others filter the page.
	var k, v string
	for lk, lv := range req.GetLabels() {
		if k == "" || lk < k {
			k, v = lk, lv
		}
	}
	devs, next, err := s.St.ListDevices(ctx, k, v, after, n)
	if err != nil {
		return nil, storeErr(err, "devices", nil)
	}
	resp := &devicev1.ListDevicesResponse{NextPageToken: store.EncodePageToken(next)}
outer:
	for _, d := range devs {
		for lk, lv := range req.GetLabels() {
			if d.Labels[lk] != lv {
				continue outer
			}
		}
		resp.Devices = append(resp.Devices, deviceToProto(d))
	}
	return resp, nil
}

// UpdateDevice changes the fields named in update_mask (all settable fields when it is
// empty or "*").
func (s *Devices) UpdateDevice(ctx context.Context, req *devicev1.UpdateDeviceRequest) (*devicev1.UpdateDeviceResponse, error) {
	d := req.GetDevice()
	if d == nil {
		return nil, invalid("device", "required")
	}
	if err := validDeviceID(d.DeviceId); err != nil {
		return nil, err
	}
	etag, ok := etagInt(d.Etag)
	if !ok {
		return nil, invalid("device.etag", "not an etag this service issued")
	}
	upd, err := account(d, "device", false)
	if err != nil {
		return nil, err
	}
	paths := req.GetUpdateMask().GetPaths()
	switch {
	case len(paths) == 0:
		paths = settableFields
	case slices.Contains(paths, "*"):
		// "*" is a full replacement (AIP-134); with other paths it is ambiguous.
		if len(paths) != 1 {
			return nil, invalid("update_mask", `"*" must be the only path`)
		}
		paths = settableFields
	}
	// The fields outside the mask come from a read of the device, and the store writes only
	// if the device is still as read (compare-and-set on the etag read), so no concurrent
	// change is overwritten. With an etag the caller asked for exactly that version; without
	// one, a conflict means another update came in between: merge again onto it.
	var got *store.Device
	for attempt := 0; ; attempt++ {
		cur, err := s.St.GetDevice(ctx, d.DeviceId)
		if err != nil {
			return nil, storeErr(err, "device "+d.DeviceId, map[string]string{"device_id": d.DeviceId})
		}
		if etag != 0 && cur.Etag != etag {
			return nil, storeErr(store.ErrConflict, "device "+d.DeviceId, map[string]string{"device_id": d.DeviceId})
		}
		nd, err := mergeUpdate(cur, upd, paths)
		if err != nil {
			return nil, err
		}
		if nd.Event, err = s.changedEvent(ctx, d.DeviceId, nd.Labels, nd.Account.MSISDN, false); err != nil {
			return nil, status.Errorf(codes.Internal, "encode event: %v", err)
		}
		got, err = s.St.UpdateDevice(ctx, cur, nd, s.Now())
		if err == nil {
			break
		}
		if etag != 0 || !errors.Is(err, store.ErrConflict) || attempt == 2 {
			return nil, storeErr(err, "device "+d.DeviceId, map[string]string{"device_id": d.DeviceId})
		}
	}
	s.notify(d.DeviceId)
	return &devicev1.UpdateDeviceResponse{Device: deviceToProto(got)}, nil
}

// settableFields are the fields UpdateDevice replaces for an empty update_mask or "*".
var settableFields = []string{"client_auth", "server_auth", "server_id", "msisdn", "labels"}

// mergeUpdate is cur with the fields named in paths taken from upd. A basic server
// credential outside the mask is kept: opened (and sealed again by the store), or as stored
// when this worker has no key to open it. One inside the mask is replaced, and a new basic
// credential needs the key (the store's update fails with store.ErrNoSealingKey).
func mergeUpdate(cur *store.Device, upd store.NewDevice, paths []string) (store.NewDevice, error) {
	nd := store.NewDevice{Account: cur.Account, Labels: cur.Labels, RequestID: cur.RequestID,
		ServerBasicCred: cur.Account.ServerBasicCred, ServerBasicSealed: cur.ServerBasicSealed}
	for _, p := range paths {
		switch p {
		case "client_auth":
			if upd.Account.ClientAuth == "" {
				return nd, invalid("device.client_auth.type", "required when client_auth is updated")
			}
			nd.Account.ClientAuth, nd.Account.ClientName, nd.Account.ClientKey = upd.Account.ClientAuth, upd.Account.ClientName, upd.Account.ClientKey
		case "server_auth":
			nd.Account.ServerAuth, nd.Account.ServerName, nd.Account.ServerKey = upd.Account.ServerAuth, upd.Account.ServerName, upd.Account.ServerKey
			nd.ServerBasicCred, nd.ServerBasicSealed = upd.ServerBasicCred, ""
		case "server_id":
			nd.Account.ServerID = upd.Account.ServerID
		case "msisdn":
			nd.Account.MSISDN = upd.Account.MSISDN
		case "labels":
			nd.Labels = upd.Labels
		default:
			return nd, invalid("update_mask", "unknown or immutable field "+p)
		}
	}
	return nd, nil
}

// DeleteDevice removes a device. Its queued commands become CANCELLED and its in-flight
// ones FAILED, each with a command_state_changed event, then the device_changed(deleted)
// event: the store appends them all to the outbox in the delete's atomic step, which also
// compares the etag. Three Redis round trips (store.DeleteDevice).
func (s *Devices) DeleteDevice(ctx context.Context, req *devicev1.DeleteDeviceRequest) (*devicev1.DeleteDeviceResponse, error) {
	if err := validDeviceID(req.GetDeviceId()); err != nil {
		return nil, err
	}
	etag, ok := etagInt(req.GetEtag())
	if !ok {
		return nil, invalid("etag", "not an etag this service issued")
	}
	now := s.Now()
	deleted, err := s.changedEvent(ctx, req.DeviceId, map[string]string{}, "", true)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "encode event: %v", err)
	}
	ev := func(c *engine.Command) []byte { b, _ := commandEvent(ctx, s.Propagator, c, now); return b } // marshalling our own event cannot fail
	if err := s.St.DeleteDevice(ctx, req.DeviceId, etag, now, ev, deleted); err != nil {
		return nil, storeErr(err, "device "+req.DeviceId, map[string]string{"device_id": req.DeviceId})
	}
	s.notify(req.DeviceId)
	return &devicev1.DeleteDeviceResponse{}, nil
}
