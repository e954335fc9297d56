package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/services/notifier"
)

// startNotifier serves a notifier (log provider) for st on loopback and returns its address;
// opts adjust its configuration (TLS, say).
func startNotifier(t *testing.T, st *e2e.Stack, opts ...func(*notifier.Config)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cfg := notifier.Config{
		RedisURL: testredis.URL(t), RedisPrefix: st.Prefix, SessionAddr: strings.Join(st.GRPCAddrs, ","),
		Routes: "default=log", PKG0Version: 11, MaxAttempts: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		AnswerTimeout: time.Minute, PollInterval: 20 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: 2 * time.Second,
		Concurrency: 2, MaxEventAge: time.Hour,
	}
	for _, o := range opts {
		o(&cfg)
	}
	svc, err := notifier.New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = svc.Serve(ctx, lis)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		svc.Close()
	})
	return lis.Addr().String()
}

func TestNotifyCommands(t *testing.T) {
	st := e2e.Start(t, e2e.Options{Workers: 1})
	if _, err := st.Devices.CreateDevice(context.Background(), &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
		DeviceId:   "IMEI:dmctl-notify",
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "c", Secret: "client-pw"},
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dms.example", Secret: "server-pw"},
		Msisdn:     "+4915100000001",
	}}); err != nil {
		t.Fatal(err)
	}
	a := &apiT{t: t, st: st, addr: startNotifier(t, st)}

	out := a.ok("notify", "IMEI:dmctl-notify", "--ui-mode", "background", "--reason", "dmctl test")
	id := field(t, out, "notification_id")
	if field(t, out, "device_id") != "IMEI:dmctl-notify" || field(t, out, "ui_mode") != "background" || field(t, out, "reason") != "dmctl test" {
		t.Fatalf("notify printed:\n%s", out)
	}
	// Coalesced: the second call shows the same notification, with a note on stderr.
	code, out2, errOut := a.run("notify", "IMEI:dmctl-notify", "-o", "json")
	var resp notifierv1.NotifyDeviceResponse
	unmarshal(t, out2, &resp)
	if code != 0 || !resp.Coalesced || resp.Notification.NotificationId != id || errOut != "" {
		t.Fatalf("second notify: exit %d %v %q", code, &resp, errOut)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out = a.ok("notification", "get", id)
		if field(t, out, "state") == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("notification never sent:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if field(t, out, "provider") != "log" || field(t, out, "attempts") != "1" {
		t.Fatalf("get printed:\n%s", out)
	}
	var n notifierv1.Notification
	unmarshal(t, a.ok("notification", "get", id, "-o", "json"), &n)
	if n.NotificationId != id || n.State != notifierv1.Notification_STATE_SENT || n.SessionIdHex == "" {
		t.Fatalf("get -o json = %v", &n)
	}
	ls := lines(a.ok("notification", "list", "IMEI:dmctl-notify"))
	if len(ls) != 2 || !strings.HasPrefix(ls[0], "NOTIFICATION_ID") || !strings.Contains(ls[1], id) || !strings.Contains(ls[1], "sent") {
		t.Fatalf("list printed:\n%s", strings.Join(ls, "\n"))
	}
	var list notifierv1.ListNotificationsResponse
	unmarshal(t, a.ok("notification", "list", "IMEI:dmctl-notify", "--all", "-o", "json"), &list)
	if len(list.Notifications) != 1 {
		t.Fatalf("list -o json = %v", &list)
	}

	a.fails(1, []string{"notify", "IMEI:unknown"}, "FailedPrecondition")
	a.fails(1, []string{"notification", "get", "nope"}, "NotFound")
	a.fails(2, []string{"notify", "IMEI:x", "--ui-mode", "7"}, "--ui-mode")
	a.fails(2, []string{"notify"}, "notify")
	a.fails(2, []string{"notification", "frob"}, "unknown notification subcommand")
}
