package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"
)

// notifyCmd runs "notify <device-id>" and "notification get|list" against the notifier's
// dmgrid.notifier.v1.NotifierService. args[0] is "notify" or "notification". The notifier
// is a tier of its own: DMGRID_NOTIFIER_ADDR, when set, replaces the default address
// (an explicit --addr still wins).
func notifyCmd(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	if a := os.Getenv("DMGRID_NOTIFIER_ADDR"); a != "" && g.addr == defaultGlobals().addr {
		g.addr = a
	}
	if len(args) == 0 {
		return usageError{"notify needs a device id"}
	}
	if args[0] == "notify" {
		return notifyDevice(ctx, g, args[1:], stdout, stderr)
	}
	if len(args) < 2 {
		return usageError{"notification needs a subcommand: get or list"}
	}
	switch args[1] {
	case "get":
		return notificationGet(ctx, g, args[2:], stdout, stderr)
	case "list":
		return notificationList(ctx, g, args[2:], stdout, stderr)
	}
	return usageError{fmt.Sprintf("unknown notification subcommand %q", args[1])}
}

var uiModes = map[string]notifierv1.UIMode{
	"0": notifierv1.UIMode_UI_MODE_UNSPECIFIED, "not-specified": notifierv1.UIMode_UI_MODE_UNSPECIFIED,
	"1": notifierv1.UIMode_UI_MODE_BACKGROUND, "background": notifierv1.UIMode_UI_MODE_BACKGROUND,
	"2": notifierv1.UIMode_UI_MODE_INFORMATIVE, "informative": notifierv1.UIMode_UI_MODE_INFORMATIVE,
	"3": notifierv1.UIMode_UI_MODE_USER_INTERACTION, "user-interaction": notifierv1.UIMode_UI_MODE_USER_INTERACTION,
}

func notifyDevice(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var ui, reason, rid, initiator string
	c, pos, err := apiCommand(ctx, g, "notify", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		fs.StringVar(&ui, "ui-mode", "0", "trigger ui-mode: 0..3 or not-specified|background|informative|user-interaction")
		fs.StringVar(&reason, "reason", "", "why (logs, metrics)")
		fs.StringVar(&rid, "request-id", "", "idempotency key")
		fs.StringVar(&initiator, "initiator", "server", "trigger initiator: server or user")
	})
	if err != nil {
		return err
	}
	defer c.close()
	mode, ok := uiModes[ui]
	if !ok {
		return usageError{fmt.Sprintf("--ui-mode must be 0..3 or a mode name, not %q", ui)}
	}
	req := &notifierv1.NotifyDeviceRequest{DeviceId: pos[0], UiMode: mode, Reason: reason, RequestId: rid}
	switch initiator {
	case "server":
		req.Initiator = notifierv1.Initiator_INITIATOR_SERVER
	case "user":
		req.Initiator = notifierv1.Initiator_INITIATOR_USER
	default:
		return usageError{fmt.Sprintf("--initiator must be server or user, not %q", initiator)}
	}
	cctx, cancel := c.call()
	defer cancel()
	resp, err := notifierv1.NewNotifierServiceClient(c.conn).NotifyDevice(cctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	if resp.GetCoalesced() {
		fmt.Fprintln(c.stderr, "dmctl: the device already has an outstanding notification; showing it")
	}
	return c.printNotification(resp.GetNotification())
}

func notificationGet(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	c, pos, err := apiCommand(ctx, g, "notification get", args, stdout, stderr, 1, 1, nil)
	if err != nil {
		return err
	}
	defer c.close()
	cctx, cancel := c.call()
	defer cancel()
	resp, err := notifierv1.NewNotifierServiceClient(c.conn).GetNotification(cctx, &notifierv1.GetNotificationRequest{NotificationId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp.GetNotification())
	}
	return c.printNotification(resp.GetNotification())
}

func notificationState(s notifierv1.Notification_State) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "STATE_"))
}

func (c *client) printNotification(n *notifierv1.Notification) error {
	t := c.table()
	t.row("notification_id:", n.GetNotificationId())
	t.row("device_id:", n.GetDeviceId())
	t.row("state:", notificationState(n.GetState()))
	t.row("session_id:", fmt.Sprintf("%s (%d)", n.GetSessionIdHex(), n.GetSessionId()))
	t.row("ui_mode:", strings.ToLower(strings.TrimPrefix(n.GetUiMode().String(), "UI_MODE_")))
	t.row("attempts:", strconv.Itoa(int(n.GetAttempts())))
	if n.GetProvider() != "" {
		t.row("provider:", n.GetProvider())
	}
	if ids := n.GetProviderMessageIds(); len(ids) > 0 {
		t.row("provider_message_ids:", strings.Join(ids, ","))
	}
	if n.GetLastError() != "" {
		t.row("last_error:", n.GetLastError())
	}
	if n.GetReason() != "" {
		t.row("reason:", n.GetReason())
	}
	t.row("create_time:", formatTime(n.GetCreateTime()))
	t.row("update_time:", formatTime(n.GetUpdateTime()))
	return t.end()
}

func notificationList(ctx context.Context, g globals, args []string, stdout, stderr io.Writer) error {
	var size int
	var token string
	var all bool
	c, pos, err := apiCommand(ctx, g, "notification list", args, stdout, stderr, 1, 1, func(fs *flag.FlagSet) {
		fs.IntVar(&size, "page-size", 0, "notifications per page")
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
	api := notifierv1.NewNotifierServiceClient(c.conn)
	req := &notifierv1.ListNotificationsRequest{DeviceId: pos[0], PageSize: n, PageToken: token}
	out := &notifierv1.ListNotificationsResponse{}
	out.NextPageToken, err = c.pages("notifications", req.PageToken, all, func(ctx context.Context, token string) (string, error) {
		req.PageToken = token
		resp, err := api.ListNotifications(ctx, req)
		if err != nil {
			return "", err
		}
		out.Notifications = append(out.Notifications, resp.GetNotifications()...)
		return resp.GetNextPageToken(), nil
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := c.table()
	t.row("NOTIFICATION_ID", "STATE", "SESSION", "ATTEMPTS", "PROVIDER", "UPDATED")
	for _, x := range out.Notifications {
		t.row(x.GetNotificationId(), notificationState(x.GetState()), x.GetSessionIdHex(), strconv.Itoa(int(x.GetAttempts())),
			x.GetProvider(), formatTime(x.GetUpdateTime()))
	}
	if err := t.end(); err != nil {
		return err
	}
	if out.NextPageToken != "" {
		fmt.Fprintf(c.stderr, "dmctl: more notifications: --page-token %s (or --all)\n", out.NextPageToken)
	}
	return nil
}
