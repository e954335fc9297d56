package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"
)

// inventoryCmd runs "inventory get|list|count|tree|stats" against the inventory tier's
// dmgrid.inventory.v1.InventoryService. The inventory is a tier of its own:
// DMGRID_INVENTORY_ADDR, when set, replaces the default address (an explicit --addr still
// wins).
func inventoryCmd(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	if a := os.Getenv("DMGRID_INVENTORY_ADDR"); a != "" && g.addr == defaultGlobals().addr {
		g.addr = a
	}
	if len(args) < 1 {
		return usageError{"inventory needs a subcommand: get, list, count, tree or stats"}
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "get":
		return inventoryGet(ctx, g, args, stdout, stderr)
	case "list":
		return inventoryList(ctx, g, args, stdout, stderr)
	case "count":
		return inventoryCount(ctx, g, args, stdout, stderr)
	case "tree":
		return inventoryTree(ctx, g, args, stdout, stderr)
	case "stats":
		return inventoryStats(ctx, g, args, stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown inventory subcommand %q", sub)}
}

var outcomeNames = map[string]eventsv1.SessionEnded_Outcome{
	"completed":   eventsv1.SessionEnded_OUTCOME_COMPLETED,
	"aborted":     eventsv1.SessionEnded_OUTCOME_ABORTED,
	"auth-failed": eventsv1.SessionEnded_OUTCOME_AUTH_FAILED,
	"timed-out":   eventsv1.SessionEnded_OUTCOME_TIMED_OUT,
	"error":       eventsv1.SessionEnded_OUTCOME_ERROR,
}

func outcomeName(o eventsv1.SessionEnded_Outcome) string {
	for n, v := range outcomeNames {
		if v == o {
			return n
		}
	}
	return "-"
}

// fieldNames are the --by values of "inventory stats".
var fieldNames = map[string]inventoryv1.DeviceField{
	"manufacturer": inventoryv1.DeviceField_DEVICE_FIELD_MANUFACTURER,
	"model":        inventoryv1.DeviceField_DEVICE_FIELD_MODEL,
	"dm-version":   inventoryv1.DeviceField_DEVICE_FIELD_DM_VERSION,
	"language":     inventoryv1.DeviceField_DEVICE_FIELD_LANGUAGE,
	"type":         inventoryv1.DeviceField_DEVICE_FIELD_DEVICE_TYPE,
	"oem":          inventoryv1.DeviceField_DEVICE_FIELD_OEM,
	"firmware":     inventoryv1.DeviceField_DEVICE_FIELD_FIRMWARE_VERSION,
	"software":     inventoryv1.DeviceField_DEVICE_FIELD_SOFTWARE_VERSION,
	"hardware":     inventoryv1.DeviceField_DEVICE_FIELD_HARDWARE_VERSION,
	"outcome":      inventoryv1.DeviceField_DEVICE_FIELD_LAST_SESSION_OUTCOME,
}

func fieldName(f inventoryv1.DeviceField) string {
	for n, v := range fieldNames {
		if v == f {
			return n
		}
	}
	return f.String()
}

// filterFlags are the DeviceFilter flags of list, count and stats.
type filterFlags struct {
	man, model, fw, sw, hw, typ, oem, lang, dmv, outcome string
	labels                                               labelsFlag
	seenAfter, seenBefore                                string
}

func (f *filterFlags) register(fs *flag.FlagSet) {
	f.labels = labelsFlag{}
	fs.StringVar(&f.man, "man", "", "manufacturer (./DevInfo/Man) equals")
	fs.StringVar(&f.model, "model", "", "model (./DevInfo/Mod) equals")
	fs.StringVar(&f.fw, "fw", "", "firmware version (./DevDetail/FwV) equals")
	fs.StringVar(&f.sw, "sw", "", "software version (./DevDetail/SwV) equals")
	fs.StringVar(&f.hw, "hw", "", "hardware version (./DevDetail/HwV) equals")
	fs.StringVar(&f.typ, "type", "", "device type (./DevDetail/DevTyp) equals")
	fs.StringVar(&f.oem, "oem", "", "OEM (./DevDetail/OEM) equals")
	fs.StringVar(&f.lang, "lang", "", "language (./DevInfo/Lang) equals")
	fs.StringVar(&f.dmv, "dm-version", "", "DM version (./DevInfo/DmV) equals")
	fs.StringVar(&f.outcome, "outcome", "", "last session outcome: completed, aborted, auth-failed, timed-out or error")
	fs.Var(f.labels, "label", "has label k=v (repeatable)")
	fs.StringVar(&f.seenAfter, "seen-after", "", "last seen after: RFC 3339 time or a duration ago (24h)")
	fs.StringVar(&f.seenBefore, "seen-before", "", "last seen before: RFC 3339 time or a duration ago (24h)")
}

// filter builds the DeviceFilter; now anchors durations.
func (f *filterFlags) filter(now time.Time) (*inventoryv1.DeviceFilter, error) {
	pf := &inventoryv1.DeviceFilter{Manufacturer: f.man, Model: f.model, FirmwareVersion: f.fw, SoftwareVersion: f.sw,
		HardwareVersion: f.hw, DeviceType: f.typ, Oem: f.oem, Language: f.lang, DmVersion: f.dmv}
	if f.outcome != "" {
		o, ok := outcomeNames[f.outcome]
		if !ok {
			return nil, usageError{fmt.Sprintf("--outcome must be completed, aborted, auth-failed, timed-out or error, not %q", f.outcome)}
		}
		pf.LastSessionOutcome = o
	}
	if len(f.labels) > 0 {
		pf.Labels = f.labels
	}
	var err error
	if pf.LastSeenAfter, err = timeArg("--seen-after", f.seenAfter, now); err != nil {
		return nil, err
	}
	if pf.LastSeenBefore, err = timeArg("--seen-before", f.seenBefore, now); err != nil {
		return nil, err
	}
	return pf, nil
}

// timeArg reads an RFC 3339 time or a duration before now ("24h": a day ago).
func timeArg(name, v string, now time.Time) (*timestamppb.Timestamp, error) {
	if v == "" {
		return nil, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
		return timestamppb.New(t), nil
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return timestamppb.New(now.Add(-d)), nil
	}
	return nil, usageError{fmt.Sprintf("%s must be an RFC 3339 time (2026-03-01T12:00:00Z) or a duration ago (24h), not %q", name, v)}
}

func inventoryGet(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "inventory get", args, stdout, stderr, 1, 1, nil)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := inventoryv1.NewInventoryServiceClient(c.conn).GetDevice(cctx, &inventoryv1.GetDeviceRequest{DeviceId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp.GetDevice())
	}
	d := resp.GetDevice()
	di, dd, s := d.GetDevInfo(), d.GetDevDetail(), d.GetSessions()
	t := c.table()
	t.row("device_id:", d.GetDeviceId())
	for _, kv := range [][2]string{{"dev_id", di.GetDevId()}, {"man", di.GetMan()}, {"mod", di.GetMod()}, {"dm_v", di.GetDmV()},
		{"lang", di.GetLang()}, {"dev_typ", dd.GetDevTyp()}, {"oem", dd.GetOem()}, {"fw_v", dd.GetFwV()}, {"sw_v", dd.GetSwV()},
		{"hw_v", dd.GetHwV()}, {"lrg_obj", dd.GetLrgObj()}} {
		t.row(kv[0]+":", orDash(kv[1]))
	}
	t.row("labels:", orDash(formatLabels(d.GetLabels())))
	t.row("first_seen:", formatTime(d.GetFirstSeenTime()))
	t.row("last_seen:", formatTime(d.GetLastSeenTime()))
	t.row("last_session:", orDash(s.GetLastSessionId()))
	t.row("last_start:", formatTime(s.GetLastStartTime()))
	t.row("last_end:", formatTime(s.GetLastEndTime()))
	t.row("last_outcome:", outcomeName(s.GetLastOutcome()))
	t.row("sessions:", fmt.Sprintf("started %d, completed %d, aborted %d, auth-failed %d, timed-out %d, error %d",
		s.GetStartedCount(), s.GetCompletedCount(), s.GetAbortedCount(), s.GetAuthFailedCount(), s.GetTimedOutCount(), s.GetErrorCount()))
	t.row("update_time:", formatTime(d.GetUpdateTime()))
	return t.end()
}

func inventoryList(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var ff filterFlags
	var size int
	var token string
	var all bool
	c, _, err := apiCommand(ctx, g, "inventory list", args, stdout, stderr, 0, 0, func(fs *flag.FlagSet) {
		ff.register(fs)
		fs.IntVar(&size, "page-size", 0, "devices per page")
		fs.StringVar(&token, "page-token", "", "page to start at")
		fs.BoolVar(&all, "all", false, "follow page tokens to the end")
	})
	if err != nil {
		return err
	}
	defer c.close()
	n, err := pageSize(size)
	if err != nil {
		return err
	}
	f, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	req := &inventoryv1.ListDevicesRequest{Filter: f, PageSize: n, PageToken: token}
	api := inventoryv1.NewInventoryServiceClient(c.conn)
	out := &inventoryv1.ListDevicesResponse{}
	out.NextPageToken, err = c.pages("inventory", req.PageToken, all, func(ctx context.Context, token string) (string, error) {
		req.PageToken = token
		resp, err := api.ListDevices(ctx, req)
		if err != nil {
			return "", err
		}
		out.Devices = append(out.Devices, resp.GetDevices()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := c.table()
	t.row("DEVICE_ID", "MAN", "MOD", "FW_V", "SW_V", "LAST_SEEN", "OUTCOME")
	for _, d := range out.Devices {
		t.row(d.GetDeviceId(), orDash(d.GetDevInfo().GetMan()), orDash(d.GetDevInfo().GetMod()), orDash(d.GetDevDetail().GetFwV()),
			orDash(d.GetDevDetail().GetSwV()), formatTime(d.GetLastSeenTime()), outcomeName(d.GetSessions().GetLastOutcome()))
	}
	if err := t.end(); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		// A page may be short or even empty for a selective filter: the token still counts.
		fmt.Fprintf(c.stderr, "dmctl: more devices: --page-token %s (or --all)\n", out.NextPageToken)
	}
	return nil
}

func inventoryCount(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var ff filterFlags
	c, _, err := apiCommand(ctx, g, "inventory count", args, stdout, stderr, 0, 0, ff.register)
	if err != nil {
		return err
	}
	defer c.close()
	f, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := inventoryv1.NewInventoryServiceClient(c.conn).CountDevices(cctx, &inventoryv1.CountDevicesRequest{Filter: f})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	return c.write([]byte(strconv.FormatInt(resp.GetCount(), 10) + "\n"))
}

var sourceNames = map[inventoryv1.TreeNode_Source]string{
	inventoryv1.TreeNode_SOURCE_DEVICE_INFO:   "devinfo",
	inventoryv1.TreeNode_SOURCE_RESULTS:       "results",
	inventoryv1.TreeNode_SOURCE_GENERIC_ALERT: "alert",
}

func inventoryTree(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "inventory tree", args, stdout, stderr, 1, 2, nil)
	if err != nil {
		return err
	}
	defer c.close()
	req := &inventoryv1.GetDeviceTreeRequest{DeviceId: pos[0]}
	if len(pos) > 1 {
		req.Uri = pos[1]
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := inventoryv1.NewInventoryServiceClient(c.conn).GetDeviceTree(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := c.table()
	t.row("URI", "VALUE", "FORMAT", "SOURCE", "UPDATED")
	for _, n := range resp.GetNodes() {
		v := "(not carried: see command " + n.GetCommandId() + ")"
		if n.Data != nil {
			v = displayValue(n.Data)
		}
		t.row(n.GetUri(), v, orDash(n.GetFormat()), orDash(sourceNames[n.GetSource()]), formatTime(n.GetUpdateTime()))
	}
	return t.end()
}

func inventoryStats(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var ff filterFlags
	var by stringList
	c, _, err := apiCommand(ctx, g, "inventory stats", args, stdout, stderr, 0, 0, func(fs *flag.FlagSet) {
		ff.register(fs)
		fs.Var(&by, "by", "group by: model, firmware, manufacturer, software, hardware, type, oem, language, dm-version or outcome (repeatable; default model and firmware)")
	})
	if err != nil {
		return err
	}
	defer c.close()
	f, err := ff.filter(time.Now())
	if err != nil {
		return err
	}
	req := &inventoryv1.AggregateDevicesRequest{Filter: f}
	for _, b := range by {
		fl, ok := fieldNames[b]
		if !ok {
			return usageError{fmt.Sprintf("--by must be model, firmware, manufacturer, software, hardware, type, oem, language, dm-version or outcome, not %q", b)}
		}
		req.GroupBy = append(req.GroupBy, fl)
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := inventoryv1.NewInventoryServiceClient(c.conn).AggregateDevices(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := c.table()
	t.row("total:", strconv.FormatInt(resp.GetTotalCount(), 10))
	for _, ag := range resp.GetAggregations() {
		t.row("")
		t.row(strings.ToUpper(fieldName(ag.GetField())), "DEVICES")
		for _, b := range ag.GetBuckets() {
			v := b.GetValue()
			if ag.GetField() == inventoryv1.DeviceField_DEVICE_FIELD_LAST_SESSION_OUTCOME {
				v = outcomeName(eventsv1.SessionEnded_Outcome(eventsv1.SessionEnded_Outcome_value[v]))
			}
			t.row(v, strconv.FormatInt(b.GetCount(), 10))
		}
		if ag.GetMissingCount() > 0 {
			t.row("(none)", strconv.FormatInt(ag.GetMissingCount(), 10))
		}
	}
	return t.end()
}
