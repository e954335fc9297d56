// Package api serves dmgrid.inventory.v1.InventoryService from the inventory store: it
// validates requests, turns filters into store queries and page tokens into positions.
package api

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"hash/fnv"
	"strconv"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/services/inventory/internal/store"
)

// Reader is what the API needs from the inventory store.
type Reader interface {
	GetDevice(ctx context.Context, id string) (*inventoryv1.Device, error)
	Devices(ctx context.Context, ids []string) ([]*inventoryv1.Device, error)
	List(ctx context.Context, f *store.Filter, after string, limit int) ([]string, string, error)
	Count(ctx context.Context, f *store.Filter) (int64, error)
	Tree(ctx context.Context, id, root string) ([]*inventoryv1.TreeNode, error)
	Aggregate(ctx context.Context, f *store.Filter, fields []store.Field) (int64, [][]store.Bucket, error)
}

// Limits of requests.
const (
	defaultPageSize = 100
	maxPageSize     = 1000
	maxDeviceID     = 256
	maxValue        = 1024 // a filter's string value
	maxLabels       = 16
	maxLabelKey     = 63 // as dmgrid.device.v1 labels
	maxLabelValue   = 255
)

// Inventory implements InventoryService.
type Inventory struct {
	inventoryv1.UnimplementedInventoryServiceServer
	St Reader
}

func checkDeviceID(id string) error {
	if id == "" || len(id) > maxDeviceID {
		return invalid("device_id", "must be 1 to 256 bytes")
	}
	return nil
}

// GetDevice implements InventoryService.GetDevice.
func (a *Inventory) GetDevice(ctx context.Context, req *inventoryv1.GetDeviceRequest) (*inventoryv1.GetDeviceResponse, error) {
	if err := checkDeviceID(req.GetDeviceId()); err != nil {
		return nil, err
	}
	d, err := a.St.GetDevice(ctx, req.GetDeviceId())
	if err != nil {
		return nil, storeErr(err, "device "+req.GetDeviceId(), map[string]string{"device_id": req.GetDeviceId()})
	}
	return &inventoryv1.GetDeviceResponse{Device: d}, nil
}

// ListDevices implements InventoryService.ListDevices.
func (a *Inventory) ListDevices(ctx context.Context, req *inventoryv1.ListDevicesRequest) (*inventoryv1.ListDevicesResponse, error) {
	var v violations
	f := toFilter(req.GetFilter(), "filter", &v)
	size := int(req.GetPageSize())
	switch {
	case size < 0:
		v.Add("page_size", "must not be negative")
	case size == 0:
		size = defaultPageSize
	case size > maxPageSize:
		size = maxPageSize
	}
	after := ""
	if req.GetPageToken() != "" {
		var desc string
		after, desc = parseToken(req.GetPageToken(), filterHash(req.GetFilter()))
		if desc != "" {
			v.Add("page_token", desc)
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	ids, next, err := a.St.List(ctx, f, after, size)
	if err != nil {
		return nil, storeErr(err, "list devices", nil)
	}
	resp := &inventoryv1.ListDevicesResponse{}
	if len(ids) > 0 {
		devs, err := a.St.Devices(ctx, ids)
		if err != nil {
			return nil, storeErr(err, "list devices", nil)
		}
		for _, d := range devs {
			if d != nil {
				resp.Devices = append(resp.Devices, d)
			}
		}
	}
	if next != "" {
		resp.NextPageToken = makeToken(filterHash(req.GetFilter()), next)
	}
	return resp, nil
}

// CountDevices implements InventoryService.CountDevices.
func (a *Inventory) CountDevices(ctx context.Context, req *inventoryv1.CountDevicesRequest) (*inventoryv1.CountDevicesResponse, error) {
	var v violations
	f := toFilter(req.GetFilter(), "filter", &v)
	if err := v.Err(); err != nil {
		return nil, err
	}
	n, err := a.St.Count(ctx, f)
	if err != nil {
		return nil, storeErr(err, "count devices", nil)
	}
	return &inventoryv1.CountDevicesResponse{Count: n}, nil
}

// GetDeviceTree implements InventoryService.GetDeviceTree.
func (a *Inventory) GetDeviceTree(ctx context.Context, req *inventoryv1.GetDeviceTreeRequest) (*inventoryv1.GetDeviceTreeResponse, error) {
	var v violations
	if id := req.GetDeviceId(); id == "" || len(id) > maxDeviceID {
		v.Add("device_id", "must be 1 to 256 bytes")
	}
	root := "."
	if raw := req.GetUri(); raw != "" && raw != "." {
		u, err := dmtree.ParseURI(raw, dmtree.DefaultLimits)
		switch {
		case err != nil:
			v.Add("uri", "not a DM tree URI: "+err.Error())
		case u.Query().Kind != dmtree.QueryNone:
			v.Add("uri", "must not have a ?prop= or ?list= query")
		default:
			root = u.String()
		}
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	nodes, err := a.St.Tree(ctx, req.GetDeviceId(), root)
	if err != nil {
		return nil, storeErr(err, "device "+req.GetDeviceId(), map[string]string{"device_id": req.GetDeviceId()})
	}
	return &inventoryv1.GetDeviceTreeResponse{Nodes: nodes}, nil
}

var fieldOf = map[inventoryv1.DeviceField]store.Field{
	inventoryv1.DeviceField_DEVICE_FIELD_MANUFACTURER:         store.FieldMan,
	inventoryv1.DeviceField_DEVICE_FIELD_MODEL:                store.FieldMod,
	inventoryv1.DeviceField_DEVICE_FIELD_DM_VERSION:           store.FieldDmV,
	inventoryv1.DeviceField_DEVICE_FIELD_LANGUAGE:             store.FieldLang,
	inventoryv1.DeviceField_DEVICE_FIELD_DEVICE_TYPE:          store.FieldDevTyp,
	inventoryv1.DeviceField_DEVICE_FIELD_OEM:                  store.FieldOEM,
	inventoryv1.DeviceField_DEVICE_FIELD_FIRMWARE_VERSION:     store.FieldFwV,
	inventoryv1.DeviceField_DEVICE_FIELD_SOFTWARE_VERSION:     store.FieldSwV,
	inventoryv1.DeviceField_DEVICE_FIELD_HARDWARE_VERSION:     store.FieldHwV,
	inventoryv1.DeviceField_DEVICE_FIELD_LAST_SESSION_OUTCOME: store.FieldOutcome,
}

// AggregateDevices implements InventoryService.AggregateDevices.
func (a *Inventory) AggregateDevices(ctx context.Context, req *inventoryv1.AggregateDevicesRequest) (*inventoryv1.AggregateDevicesResponse, error) {
	var v violations
	f := toFilter(req.GetFilter(), "filter", &v)
	by := req.GetGroupBy()
	if len(by) == 0 {
		by = []inventoryv1.DeviceField{inventoryv1.DeviceField_DEVICE_FIELD_MODEL, inventoryv1.DeviceField_DEVICE_FIELD_FIRMWARE_VERSION}
	}
	seen := map[inventoryv1.DeviceField]bool{}
	for i, fl := range by {
		name := "group_by[" + strconv.Itoa(i) + "]"
		if _, ok := fieldOf[fl]; !ok {
			v.Add(name, "not a DeviceField that can be grouped by")
		} else if seen[fl] {
			v.Add(name, "field given twice")
		}
		seen[fl] = true
	}
	if err := v.Err(); err != nil {
		return nil, err
	}
	fields := make([]store.Field, len(by))
	for i, fl := range by {
		fields[i] = fieldOf[fl]
	}
	total, aggs, err := a.St.Aggregate(ctx, f, fields)
	if err != nil {
		return nil, storeErr(err, "aggregate devices", nil)
	}
	resp := &inventoryv1.AggregateDevicesResponse{TotalCount: total}
	for i, fl := range by {
		ag := &inventoryv1.Aggregation{Field: fl, MissingCount: total}
		for _, b := range aggs[i] {
			ag.Buckets = append(ag.Buckets, &inventoryv1.Bucket{Value: b.Value, Count: b.Count})
			ag.MissingCount -= b.Count
		}
		// Without a last-seen range the counts are not one snapshot: events applied in
		// between may skew them.
		ag.MissingCount = max(ag.MissingCount, 0)
		resp.Aggregations = append(resp.Aggregations, ag)
	}
	return resp, nil
}

// toFilter validates a DeviceFilter (field paths under prefix) and converts it.
func toFilter(pf *inventoryv1.DeviceFilter, prefix string, v *violations) *store.Filter {
	f := &store.Filter{Eq: map[store.Field]string{}}
	if pf == nil {
		return f
	}
	for _, c := range []struct {
		name  string
		field store.Field
		value string
	}{
		{"manufacturer", store.FieldMan, pf.GetManufacturer()},
		{"model", store.FieldMod, pf.GetModel()},
		{"dm_version", store.FieldDmV, pf.GetDmVersion()},
		{"language", store.FieldLang, pf.GetLanguage()},
		{"device_type", store.FieldDevTyp, pf.GetDeviceType()},
		{"oem", store.FieldOEM, pf.GetOem()},
		{"firmware_version", store.FieldFwV, pf.GetFirmwareVersion()},
		{"software_version", store.FieldSwV, pf.GetSoftwareVersion()},
		{"hardware_version", store.FieldHwV, pf.GetHardwareVersion()},
	} {
		if c.value == "" {
			continue
		}
		if len(c.value) > maxValue {
			v.Add(prefix+"."+c.name, "longer than 1024 bytes")
			continue
		}
		f.Eq[c.field] = c.value
	}
	if o := pf.GetLastSessionOutcome(); o != eventsv1.SessionEnded_OUTCOME_UNSPECIFIED {
		if _, ok := eventsv1.SessionEnded_Outcome_name[int32(o)]; !ok {
			v.Add(prefix+".last_session_outcome", "unknown outcome "+strconv.Itoa(int(o)))
		} else {
			f.Eq[store.FieldOutcome] = o.String()
		}
	}
	if n := len(pf.GetLabels()); n > maxLabels {
		v.Add(prefix+".labels", "at most 16 labels")
	}
	for k, val := range pf.GetLabels() {
		name := prefix + ".labels[" + strconv.Quote(k) + "]"
		switch {
		case k == "" || len(k) > maxLabelKey:
			v.Add(name, "label keys are 1 to 63 bytes")
		case len(val) > maxLabelValue:
			v.Add(name, "label values are at most 255 bytes")
		default:
			if f.Labels == nil {
				f.Labels = map[string]string{}
			}
			f.Labels[k] = val
		}
	}
	after, okA := timeBound(pf.GetLastSeenAfter(), prefix+".last_seen_after", v)
	before, okB := timeBound(pf.GetLastSeenBefore(), prefix+".last_seen_before", v)
	if okA {
		// Last-seen times are kept in milliseconds: strictly after t means after its
		// millisecond (floor), strictly before t means before the next one (ceiling).
		ms := after.UnixMilli()
		f.SeenAfter = &ms
	}
	if okB {
		ms := before.UnixMilli()
		if before.Sub(time.UnixMilli(ms)) > 0 {
			ms++
		}
		f.SeenBefore = &ms
	}
	if okA && okB && !before.After(after) {
		v.Add(prefix+".last_seen_before", "must be after last_seen_after")
	}
	return f
}

func timeBound(ts *timestamppb.Timestamp, field string, v *violations) (time.Time, bool) {
	if ts == nil {
		return time.Time{}, false
	}
	if err := ts.CheckValid(); err != nil {
		v.Add(field, "not a valid timestamp: "+err.Error())
		return time.Time{}, false
	}
	return ts.AsTime(), true
}

// Page tokens are base64url of: version (1 byte), a hash of the request's filter (8 bytes,
// so a token cannot be replayed with another filter, AIP-158), the last device id returned.
// The position is a device id, not an offset, so paging is stable while devices come and go.
const tokenVersion = 1

func filterHash(f *inventoryv1.DeviceFilter) uint64 {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(f)
	h := fnv.New64a()
	h.Write(b)
	return h.Sum64()
}

func makeToken(hash uint64, after string) string {
	b := make([]byte, 9, 9+len(after))
	b[0] = tokenVersion
	binary.BigEndian.PutUint64(b[1:], hash)
	return base64.RawURLEncoding.EncodeToString(append(b, after...))
}

// parseToken returns the position in a token, or a description of what is wrong with it.
func parseToken(tok string, hash uint64) (string, string) {
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) < 10 || len(b) > 9+maxDeviceID || b[0] != tokenVersion {
		return "", "not a page token returned by ListDevices"
	}
	if binary.BigEndian.Uint64(b[1:9]) != hash {
		return "", "the page token was returned for a different filter"
	}
	return string(b[9:]), ""
}
