package notifier

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/apierr"
	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/internal/testredis"
)

// apiClient serves a notifier's API (no worker, no consumers) for the session tier of st on
// loopback and returns a client of it.
func apiClient(t *testing.T, st *e2e.Stack) notifierv1.NotifierServiceClient {
	t.Helper()
	svc, err := New(context.Background(), Config{
		RedisURL: testredis.URL(t), RedisPrefix: st.Prefix, SessionAddr: strings.Join(st.GRPCAddrs, ","),
		Routes: "default=log", PKG0Version: 11, MaxAttempts: 2, BackoffMin: 10 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
		AnswerTimeout: time.Minute, PollInterval: 20 * time.Millisecond, Lease: 10 * time.Second, SendTimeout: 2 * time.Second,
		Concurrency: 2, MaxEventAge: time.Hour,
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	svc.Register(g)
	go func() { _ = g.Serve(lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		g.Stop()
		svc.Close()
	})
	return notifierv1.NewNotifierServiceClient(conn)
}

// badFields returns the fields of an InvalidArgument status's BadRequest, in order.
func badFields(t *testing.T, err error) []string {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != codes.InvalidArgument {
		t.Fatalf("status %v, want InvalidArgument", err)
	}
	var fields []string
	for _, d := range st.Details() {
		if br, ok := d.(*errdetails.BadRequest); ok {
			for _, v := range br.GetFieldViolations() {
				if v.GetDescription() == "" {
					t.Errorf("violation of %s without a description", v.GetField())
				}
				fields = append(fields, v.GetField())
			}
		}
	}
	return fields
}

// errorInfo returns the ErrorInfo of a status with the wanted code.
func errorInfo(t *testing.T, err error, code codes.Code) *errdetails.ErrorInfo {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code {
		t.Fatalf("status %v, want %v", err, code)
	}
	for _, d := range st.Details() {
		if ei, ok := d.(*errdetails.ErrorInfo); ok {
			if ei.GetDomain() != apierr.Domain {
				t.Errorf("ErrorInfo domain %q", ei.GetDomain())
			}
			return ei
		}
	}
	t.Fatalf("%v carries no ErrorInfo", err)
	return nil
}

// TestAPIErrors: the API's errors are built like the other services' (internal/apierr):
// invalid requests name every bad field in a BadRequest, and NotFound and
// FailedPrecondition carry an ErrorInfo with a reason and the id concerned; the codes are
// the documented ones.
func TestAPIErrors(t *testing.T) {
	st := e2e.Start(t, e2e.Options{Workers: 1})
	c := apiClient(t, st)
	ctx := context.Background()

	_, err := c.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{Reason: strings.Repeat("r", 300), RequestId: strings.Repeat("i", 200),
		UiMode: 9, Initiator: 7})
	if got, want := strings.Join(badFields(t, err), ","), "device_id,reason,request_id,ui_mode,initiator"; got != want {
		t.Errorf("NotifyDevice violations %s, want %s", got, want)
	}
	_, err = c.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: strings.Repeat("d", 257)})
	if got := strings.Join(badFields(t, err), ","); got != "device_id" {
		t.Errorf("long device_id: violations %s", got)
	}
	_, err = c.ListNotifications(ctx, &notifierv1.ListNotificationsRequest{PageSize: -1, PageToken: "%%%"})
	if got := strings.Join(badFields(t, err), ","); got != "device_id,page_size,page_token" {
		t.Errorf("ListNotifications violations %s", got)
	}
	_, err = c.ListNotifications(ctx, &notifierv1.ListNotificationsRequest{DeviceId: "IMEI:a", PageToken: encodeToken(5, "IMEI:b")})
	if got := strings.Join(badFields(t, err), ","); got != "page_token" {
		t.Errorf("another device's page token: violations %s", got)
	}

	_, err = c.GetNotification(ctx, &notifierv1.GetNotificationRequest{NotificationId: "bogus"})
	if ei := errorInfo(t, err, codes.NotFound); ei.GetReason() != "NOT_FOUND" || ei.GetMetadata()["notification_id"] != "bogus" {
		t.Errorf("GetNotification: %v", ei)
	}

	_, err = c.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:nobody"})
	if ei := errorInfo(t, err, codes.FailedPrecondition); ei.GetReason() != "UNKNOWN_DEVICE" || ei.GetMetadata()["device_id"] != "IMEI:nobody" {
		t.Errorf("unknown device: %v", ei)
	}
	if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: "IMEI:no-msisdn",
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "c", Secret: "client-pw"},
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dms.example", Secret: "server-pw"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = c.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:no-msisdn"})
	if ei := errorInfo(t, err, codes.FailedPrecondition); ei.GetReason() != "NO_MSISDN" || ei.GetMetadata()["device_id"] != "IMEI:no-msisdn" ||
		!strings.Contains(status.Convert(err).Message(), "no MSISDN") {
		t.Errorf("no MSISDN: %v %v", ei, err)
	}
}
