package api

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/services/session/internal/store"
)

// probe is a go-redis hook that counts round trips (one per command, one per pipeline; a
// script is one command, an EVALSHA that misses the script cache and its EVAL are two) and
// can run a function right after the next round trip completes (another client's change
// landing between two of a handler's Redis calls) or after every round trip (another
// client's view of the state between them).
type probe struct {
	n     atomic.Int64
	mu    sync.Mutex
	after func()
	every func()
}

func (p *probe) DialHook(next redis.DialHook) redis.DialHook { return next }

func (p *probe) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		p.n.Add(1)
		err := next(ctx, cmd)
		p.fire()
		return err
	}
}

func (p *probe) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		p.n.Add(1)
		err := next(ctx, cmds)
		p.fire()
		return err
	}
}

// afterNext arms f to run once after the next round trip.
func (p *probe) afterNext(f func()) {
	p.mu.Lock()
	p.after = f
	p.mu.Unlock()
}

// afterEach runs f after every round trip until it is called with nil.
func (p *probe) afterEach(f func()) {
	p.mu.Lock()
	p.every = f
	p.mu.Unlock()
}

func (p *probe) fire() {
	p.mu.Lock()
	f, g := p.after, p.every
	p.after = nil
	p.mu.Unlock()
	if f != nil {
		f()
	}
	if g != nil {
		g()
	}
}

// rig is a store on real Redis whose client carries a probe, and a second store on the same
// keys through a client without it (the "other API replica").
type rig struct {
	st, other *store.Store
	probe     *probe
}

func newRig(t *testing.T) *rig {
	t.Helper()
	prefix := testredis.Prefix(t)
	rdb := testredis.Client(t)
	p := &probe{}
	rdb.AddHook(p)
	return &rig{st: store.New(rdb, prefix, store.Options{}), other: store.New(testredis.Client(t), prefix, store.Options{}), probe: p}
}

func fixedNow() time.Time { return time.Unix(1_800_000_000, 0).UTC() }

func reason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.Reason
		}
	}
	return ""
}

func createDevice(t *testing.T, s *Devices, id string, labels map[string]string) *devicev1.Device {
	t.Helper()
	resp, err := s.CreateDevice(context.Background(), &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: id,
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_NONE}, Labels: labels}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Device
}

// TestDeleteDeviceEtag: the etag of DeleteDevice is compared in the same atomic step as the
// delete. A stale etag is refused (Aborted, CONCURRENT_MODIFICATION) and the device stays;
// an UpdateDevice from another replica that lands between the handler's Redis calls can
// never succeed together with a delete made with the etag it replaced; the right etag
// deletes.
func TestDeleteDeviceEtag(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	other := &Devices{St: r.other, Now: fixedNow}
	const id = "IMEI:del-1"
	first := createDevice(t, devs, id, map[string]string{"fleet": "a"})

	// Stale: the device was updated after the caller read it.
	upd, err := other.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Etag: first.Etag, Msisdn: "+4915100000001"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: id, Etag: first.Etag})
	if status.Code(err) != codes.Aborted || reason(err) != "CONCURRENT_MODIFICATION" {
		t.Fatalf("delete with a stale etag: %v (reason %q), want Aborted CONCURRENT_MODIFICATION", err, reason(err))
	}
	if got, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id}); err != nil || got.Device.Etag != upd.Device.Etag {
		t.Fatalf("after a refused delete: %v, %v", err, got)
	}

	// Race: another replica updates the device right after the delete handler's first Redis
	// round trip (where a separate etag check used to read the account). Delete and update
	// both carry the same etag, so exactly one of them may succeed.
	cur := upd.Device
	var updErr error
	r.probe.afterNext(func() {
		_, updErr = other.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Etag: cur.Etag, Msisdn: "+4915100000002"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	})
	_, delErr := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: id, Etag: cur.Etag})
	got, getErr := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id})
	switch {
	case delErr == nil && updErr == nil:
		t.Fatalf("delete and a concurrent update with the same etag %q both succeeded: the update was lost", cur.Etag)
	case delErr == nil:
		if status.Code(updErr) != codes.NotFound || status.Code(getErr) != codes.NotFound {
			t.Fatalf("delete won: update %v, get %v; want both NotFound", updErr, getErr)
		}
	case updErr == nil:
		if status.Code(delErr) != codes.Aborted || reason(delErr) != "CONCURRENT_MODIFICATION" || getErr != nil || got.Device.Msisdn != "+4915100000002" {
			t.Fatalf("update won: delete %v, device %v %v; want Aborted and the updated device", delErr, got, getErr)
		}
	default:
		t.Fatalf("neither succeeded: delete %v, update %v", delErr, updErr)
	}

	// The right etag deletes; the labels index forgets the device; a device_changed event
	// marks the deletion; deleting again is NotFound, with or without an etag.
	const id2 = "IMEI:del-2"
	d2 := createDevice(t, devs, id2, map[string]string{"fleet": "b"})
	if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: id2, Etag: d2.Etag}); err != nil {
		t.Fatalf("delete with the current etag: %v", err)
	}
	if _, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id2}); status.Code(err) != codes.NotFound {
		t.Fatalf("deleted device: %v", err)
	}
	if list, err := devs.ListDevices(ctx, &devicev1.ListDevicesRequest{Labels: map[string]string{"fleet": "b"}}); err != nil || len(list.Devices) != 0 {
		t.Fatalf("label index after delete: %v %v", list, err)
	}
	// The outbox outlives the account (its pending events still go out): created, deleted.
	evs, err := r.st.ReadOutbox(ctx, id2, 10)
	if err != nil || len(evs) != 2 {
		t.Fatalf("outbox after delete: %d events, %v", len(evs), err)
	}
	var ev eventsv1.Event
	if err := proto.Unmarshal(evs[1], &ev); err != nil || !ev.GetDeviceChanged().GetDeleted() {
		t.Fatalf("delete event: %v %v", &ev, err)
	}
	for _, etag := range []string{"", d2.Etag} {
		if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: id2, Etag: etag}); status.Code(err) != codes.NotFound {
			t.Fatalf("delete of a missing device (etag %q): %v", etag, err)
		}
	}
	// Without an etag the delete is unconditional.
	d3 := createDevice(t, devs, "IMEI:del-3", nil)
	if _, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: d3.DeviceId, Msisdn: "+4915100000003"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := devs.DeleteDevice(ctx, &devicev1.DeleteDeviceRequest{DeviceId: d3.DeviceId}); err != nil {
		t.Fatalf("delete without an etag: %v", err)
	}
}

// TestUpdateDeviceReturnsStored: UpdateDevice answers with the device as stored (the store's
// update returns it) in four Redis round trips: the read the update_mask merge needs, the
// compare-and-set script, the label indexes and the device_changed event. It used to read
// the device twice more.
func TestUpdateDeviceReturnsStored(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	const id = "IMEI:upd-1"
	d := createDevice(t, devs, id, map[string]string{"fleet": "a"})
	// The first update loads the script into Redis's cache; the second one is counted.
	resp, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Etag: d.Etag, Msisdn: "+4915100000001"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	if err != nil {
		t.Fatal(err)
	}
	before := r.probe.n.Load()
	resp2, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Etag: resp.Device.Etag, Labels: map[string]string{"fleet": "b"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n := r.probe.n.Load() - before; n > 4 {
		t.Fatalf("UpdateDevice took %d Redis round trips, want at most 4", n)
	}
	got, err := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(resp2.Device, got.Device) {
		t.Fatalf("UpdateDevice returned\n%v\nGetDevice returns\n%v", resp2.Device, got.Device)
	}
	if got.Device.Etag == resp.Device.Etag || got.Device.Msisdn != "+4915100000001" || got.Device.Labels["fleet"] != "b" {
		t.Fatalf("after the update: %v", got.Device)
	}
	if list, err := devs.ListDevices(ctx, &devicev1.ListDevicesRequest{Labels: map[string]string{"fleet": "a"}}); err != nil || len(list.Devices) != 0 {
		t.Fatalf("old label still indexed: %v %v", list, err)
	}
	// A stale etag is refused and changes nothing.
	_, err = devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Etag: resp.Device.Etag, Msisdn: "+4915100000009"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	if status.Code(err) != codes.Aborted || reason(err) != "CONCURRENT_MODIFICATION" {
		t.Fatalf("update with a stale etag: %v", err)
	}
	if again, _ := devs.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id}); !proto.Equal(again.Device, got.Device) {
		t.Fatalf("a refused update changed the device: %v", again.Device)
	}
	if _, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: "IMEI:none", Msisdn: "+4915100000009"},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}}); status.Code(err) != codes.NotFound {
		t.Fatalf("update of a missing device: %v", err)
	}
}

// TestUpdateDeviceWithoutEtagKeepsConcurrentChange: an update without an etag that changes
// only the masked fields does not write back a stale copy of the others when another
// replica changed them between its read and its write (the merge is based on a read, so
// the write is a compare-and-set on that read's etag, retried on a conflict).
func TestUpdateDeviceWithoutEtagKeepsConcurrentChange(t *testing.T) {
	ctx := context.Background()
	r := newRig(t)
	devs := &Devices{St: r.st, Now: fixedNow}
	other := &Devices{St: r.other, Now: fixedNow}
	const id = "IMEI:upd-2"
	createDevice(t, devs, id, map[string]string{"fleet": "a"})
	var otherErr error
	r.probe.afterNext(func() {
		_, otherErr = other.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Msisdn: "+4915100000001"},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"msisdn"}}})
	})
	resp, err := devs.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, Labels: map[string]string{"fleet": "b"}},
		UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"labels"}}})
	if err != nil || otherErr != nil {
		t.Fatalf("updates: %v, %v", err, otherErr)
	}
	if resp.Device.Msisdn != "+4915100000001" || resp.Device.Labels["fleet"] != "b" {
		t.Fatalf("after two updates of different fields: %v", resp.Device)
	}
}

// TestSealedCredentialKeptWithoutKey: a worker without DMGRID_SECRET_KEY cannot open a
// device's sealed basic server credential, and an UpdateDevice it serves keeps the sealed
// credential as stored (it used to rewrite the account without it): a worker with the key
// still reads it afterwards. An update that sets a basic server credential needs the key:
// FAILED_PRECONDITION (NO_SEALING_KEY), as for CreateDevice, and nothing changes. One that
// replaces server_auth with another type drops the old credential, as asked.
func TestSealedCredentialKeptWithoutKey(t *testing.T) {
	ctx := context.Background()
	prefix := testredis.Prefix(t)
	sealer, err := store.NewSealer(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	keyed := store.New(testredis.Client(t), prefix, store.Options{Sealer: sealer})
	withKey := &Devices{St: keyed, Now: fixedNow}
	noKey := &Devices{St: store.New(testredis.Client(t), prefix, store.Options{}), Now: fixedNow}
	const id = "IMEI:sealed-1"
	basic := func(secret string) *devicev1.AuthConfig {
		return &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_BASIC, Name: "srv", Secret: secret}
	}
	if _, err := withKey.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: id,
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_NONE}, ServerAuth: basic("pw")}}); err != nil {
		t.Fatal(err)
	}
	cred := func() string {
		t.Helper()
		d, err := keyed.GetDevice(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return d.Account.ServerBasicCred
	}

	for _, paths := range [][]string{{"labels"}, {"msisdn", "server_id"}} {
		if _, err := noKey.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id,
			Labels: map[string]string{"fleet": "b"}, Msisdn: "+4915100000001", ServerId: "dms"}, UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}}); err != nil {
			t.Fatalf("update %v without the key: %v", paths, err)
		}
		if got := cred(); got != dmauth.BasicCred("srv", "pw") {
			t.Fatalf("after an update of %v without the key the credential reads %q", paths, got)
		}
	}

	before, err := noKey.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, mask := range []*fieldmaskpb.FieldMask{{Paths: []string{"server_auth"}}, nil} {
		_, err := noKey.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id, ServerAuth: basic("pw2"),
			ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_NONE}}, UpdateMask: mask})
		if status.Code(err) != codes.FailedPrecondition || reason(err) != "NO_SEALING_KEY" {
			t.Fatalf("basic server_auth without the key (mask %v): %v (reason %q), want FailedPrecondition NO_SEALING_KEY", mask, err, reason(err))
		}
	}
	if after, err := noKey.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: id}); err != nil || !proto.Equal(after.Device, before.Device) || cred() != dmauth.BasicCred("srv", "pw") {
		t.Fatalf("a refused update changed the device: %v %v", after, err)
	}
	if _, err := noKey.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: "IMEI:sealed-2",
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_NONE}, ServerAuth: basic("pw")}}); status.Code(err) != codes.FailedPrecondition || reason(err) != "NO_SEALING_KEY" {
		t.Fatalf("create with a basic server credential without the key: %v", err)
	}

	resp, err := noKey.UpdateDevice(ctx, &devicev1.UpdateDeviceRequest{Device: &devicev1.Device{DeviceId: id,
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "srv", Secret: "pw3"}}, UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"server_auth"}}})
	if err != nil || resp.Device.ServerAuth.GetType() != devicev1.AuthType_AUTH_TYPE_MD5 || cred() != "" {
		t.Fatalf("server_auth replaced by MD5 without the key: %v %v, credential %q", resp, err, cred())
	}
}
