package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/services/notifier"
)

// smscScript is the Net::SMPP SMSC double of pkg/smpp's tests, used here by path.
const smscScript = "../../pkg/smpp/testdata/smsc.pl"

// smsc is a running smsc.pl: every submit_sm it decodes is kept with its short_message.
type smsc struct {
	addr   string
	stdin  io.WriteCloser
	mu     sync.Mutex
	events []map[string]any
}

// startSMSC runs the SMSC double on a free loopback port. Without Net::SMPP the test is
// skipped, or fails under CI=true (CI installs libnet-smpp-perl).
func startSMSC(t *testing.T, args ...string) *smsc {
	t.Helper()
	if out, err := exec.Command("perl", "-MNet::SMPP", "-MJSON::PP", "-e1").CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Net::SMPP not installed (apt-get install libnet-smpp-perl): %v: %s", err, out)
		}
		t.Skip("Net::SMPP not installed (apt-get install libnet-smpp-perl); skipping outside CI")
	}
	script, err := filepath.Abs(smscScript)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("perl", append([]string{script, "0", "--max-seconds", "600"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &smsc{}
	if s.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "READY "); ok {
				n, _ := strconv.Atoi(rest)
				ready <- n
				continue
			}
			var ev map[string]any
			if json.Unmarshal([]byte(line), &ev) == nil {
				s.mu.Lock()
				s.events = append(s.events, ev)
				s.mu.Unlock()
			}
		}
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = s.stdin.Close() // smsc.pl exits on EOF
		select {
		case <-exited:
		case <-time.After(3 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	select {
	case port := <-ready:
		s.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	case <-exited:
		t.Fatalf("smsc.pl exited: %s", stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("smsc.pl not ready")
	}
	return s
}

// submits returns the short_message bytes of every accepted submit_sm to dest.
func (s *smsc) submits(t *testing.T, dest string) [][]byte {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	var out [][]byte
	for _, ev := range s.events {
		if ev["event"] != "submit_sm" || ev["destination_addr"] != dest {
			continue
		}
		if st, _ := ev["status"].(float64); st != 0 {
			continue
		}
		if ec, _ := ev["esm_class"].(float64); int(ec)&0x40 == 0 {
			t.Fatalf("submit_sm without UDHI: %v", ev)
		}
		if dc, _ := ev["data_coding"].(float64); dc != 4 {
			t.Fatalf("submit_sm data_coding %v, want 8-bit (4)", dc)
		}
		b, err := hex.DecodeString(ev["short_message"].(string))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// runningNotifier is a notifier replica serving on loopback.
type runningNotifier struct {
	svc    *notifier.Service
	client notifierv1.NotifierServiceClient
	stop   func()
}

func notifierConfig(t *testing.T, st *Stack) notifier.Config {
	return notifier.Config{
		RedisURL: testredis.URL(t), RedisPrefix: st.Prefix, NATSURL: st.NATS.ClientURL(), EventsStream: "DMGRID_EVENTS",
		SessionAddr: strings.Join(st.GRPCAddrs, ","), Routes: "default=log", SMPPSource: "dmgrid",
		PKG0Version: 11, MaxAttempts: 3, BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		AnswerTimeout: time.Minute, PollInterval: 50 * time.Millisecond, Lease: 30 * time.Second,
		SendTimeout: 5 * time.Second, Concurrency: 4, MaxEventAge: time.Hour, Logger: st.log,
	}
}

// startNotifier starts a replica; background=false builds it without the worker and
// consumers (only the API runs), to leave queued work for another replica.
func startNotifier(t *testing.T, cfg notifier.Config, background bool) *runningNotifier {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	svc, err := notifier.New(ctx, cfg, nil)
	if err != nil {
		cancel()
		t.Fatalf("notifier: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	if background {
		go func() {
			defer close(done)
			if err := svc.Serve(ctx, lis); err != nil {
				t.Errorf("notifier serve: %v", err)
			}
		}()
	} else {
		g := grpc.NewServer()
		svc.Register(g)
		go func() { _ = g.Serve(lis) }()
		go func() {
			defer close(done)
			<-ctx.Done()
			g.Stop()
		}()
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	n := &runningNotifier{svc: svc, client: notifierv1.NewNotifierServiceClient(conn)}
	n.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			conn.Close()
			svc.Close()
		})
	}
	t.Cleanup(n.stop)
	return n
}

// createWakeable creates a device with an MSISDN and mutual MD5 auth, and its simulator.
func createWakeable(t *testing.T, st *Stack, id, msisdn string) *dmsim.Device {
	t.Helper()
	if _, err := st.Devices.CreateDevice(context.Background(), &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
		DeviceId:   id,
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "client-" + id, Secret: "client-pw"},
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dms.example", Secret: "server-pw"},
		Msisdn:     msisdn,
	}}); err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	return dmsim.NewDevice(dmsim.Config{DevID: id, AuthType: dmauth.TypeMD5, ClientName: "client-" + id, ClientSecret: "client-pw",
		ServerName: "dms.example", ServerSecret: "server-pw", ServerURL: st.URL})
}

// waitNotification polls until the notification is in state want (or fails on timeout).
func waitNotification(t *testing.T, c notifierv1.NotifierServiceClient, id string, want notifierv1.Notification_State, timeout time.Duration) *notifierv1.Notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last *notifierv1.Notification
	for time.Now().Before(deadline) {
		r, err := c.GetNotification(context.Background(), &notifierv1.GetNotificationRequest{NotificationId: id})
		if err != nil {
			t.Fatalf("get notification: %v", err)
		}
		last = r.Notification
		if last.State == want {
			return last
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("notification %s is %v (attempts %d, error %q), want %v", id, last.GetState(), last.GetAttempts(), last.GetLastError(), want)
	return nil
}

// outstanding returns the device's newest notification, waiting for one to exist.
func newestNotification(t *testing.T, c notifierv1.NotifierServiceClient, dev string, timeout time.Duration) *notifierv1.Notification {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		r, err := c.ListNotifications(context.Background(), &notifierv1.ListNotificationsRequest{DeviceId: dev, PageSize: 1})
		if err != nil {
			t.Fatalf("list notifications: %v", err)
		}
		if len(r.Notifications) > 0 {
			return r.Notifications[0]
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no notification for %s", dev)
	return nil
}

// waitSubmits waits for n submit_sm to dest.
func waitSubmits(t *testing.T, s *smsc, dest string, n int) [][]byte {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if got := s.submits(t, dest); len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no submit_sm to %s arrived", dest)
	return nil
}

// The whole wake-up path: a command enqueued with wake=true publishes WakeRequested; the
// notifier's consumer queues a notification; the worker builds the Package 0 with the
// device's server key and nonce and submits it over SMPP to the Net::SMPP SMSC; the
// simulated device verifies the captured SMS, opens a session with Alert 1200 and the
// trigger's session id, the command completes and the notification becomes ANSWERED.
func TestNotifyWakeOverSMPPAnswered(t *testing.T) {
	sms := startSMSC(t)
	st := Start(t, Options{})
	cfg := notifierConfig(t, st)
	cfg.Routes, cfg.SMPPAddr, cfg.SMPPSystemID, cfg.SMPPPassword = "+49=smpp,default=log", sms.addr, "dmgrid", "secret"
	n := startNotifier(t, cfg, true)
	id, msisdn := "IMEI:notify-smpp", "+491701234567"
	d := createWakeable(t, st, id, msisdn)

	resp, err := st.Commands.EnqueueCommands(context.Background(), &commandv1.EnqueueCommandsRequest{DeviceId: id,
		Operations: []*commandv1.Operation{get("./DevInfo/Mod")}, Wake: true})
	if err != nil {
		t.Fatal(err)
	}
	segs := waitSubmits(t, sms, "491701234567", 1)
	note := newestNotification(t, n.client, id, 10*time.Second)
	note = waitNotification(t, n.client, note.NotificationId, notifierv1.Notification_STATE_DELIVERED, 10*time.Second)
	if note.Provider != "smpp" || len(note.ProviderMessageIds) != len(segs) || note.Attempts != 1 || note.Reason == "" {
		t.Fatalf("notification after send: %+v", note)
	}
	sid, err := d.ReceivePackage0(segs)
	if err != nil {
		t.Fatalf("the device refused the notification: %v", err)
	}
	if sid != note.SessionIdHex {
		t.Fatalf("session id %s, notification says %s", sid, note.SessionIdHex)
	}
	rep := run(t, d, dmsim.SessionOptions{SessionID: sid})
	if rep.Initiator != dmsim.InitiatorServer || !rep.ServerAuthenticated {
		t.Fatalf("session: initiator %v server authenticated %v", rep.Initiator, rep.ServerAuthenticated)
	}
	if c := command(t, st, resp.Commands[0].CommandId); c.State != commandv1.Command_STATE_COMPLETED {
		t.Fatalf("command %v", c.State)
	}
	waitNotification(t, n.client, note.NotificationId, notifierv1.Notification_STATE_ANSWERED, 10*time.Second)

	// Every state change went out as an event: queued … answered for this notification.
	js, err := jetstream.New(st.NC)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[notifierv1.Notification_State]bool{}
	waitFor(t, 10*time.Second, func() bool {
		cons, err := js.OrderedConsumer(context.Background(), "DMGRID_EVENTS", jetstream.OrderedConsumerConfig{
			FilterSubjects: []string{events.KindSubject("notification_state_changed", id)}})
		if err != nil {
			return false
		}
		batch, err := cons.FetchNoWait(100)
		if err != nil {
			return false
		}
		for m := range batch.Messages() {
			var ev eventsv1.Event
			if proto.Unmarshal(m.Data(), &ev) == nil && ev.GetNotificationStateChanged().GetNotification().GetNotificationId() == note.NotificationId {
				seen[ev.GetNotificationStateChanged().GetNotification().GetState()] = true
			}
		}
		return seen[notifierv1.Notification_STATE_QUEUED] && seen[notifierv1.Notification_STATE_SENT] && seen[notifierv1.Notification_STATE_ANSWERED]
	}, "notification state events")

	// The notifier's /metrics counts the state changes by provider.
	rec := httptest.NewRecorder()
	n.svc.Telemetry().MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if body := rec.Body.String(); !strings.Contains(body, `dmgrid_notifier_notifications_total{`) || !strings.Contains(body, `state="STATE_ANSWERED"`) {
		t.Fatalf("notifier /metrics lacks the answered notification:\n%.2000s", body)
	}

	// The nonce rotated in that session: a new notification is signed with the new nonce,
	// and the old SMS is now stale for the device.
	if _, err := d.ReceivePackage0(segs); err == nil {
		t.Fatal("the device accepted a Package 0 signed with the previous nonce")
	}
	r, err := n.client.NotifyDevice(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: id, Reason: "again",
		UiMode: notifierv1.UIMode_UI_MODE_BACKGROUND})
	if err != nil || r.Coalesced {
		t.Fatalf("notify again: %v coalesced=%v", err, r.GetCoalesced())
	}
	again := waitSubmits(t, sms, "491701234567", len(segs)+1)[len(segs):]
	waitNotification(t, n.client, r.Notification.NotificationId, notifierv1.Notification_STATE_DELIVERED, 10*time.Second)
	p, err := d.ReceivePackage0Info(again)
	if err != nil || p.Resync || p.SessionID != r.Notification.SessionIdHex || p.Trigger.UIMode != 1 {
		t.Fatalf("second notification: %+v %v", p, err)
	}
}

// NotifyDevice refuses devices that cannot be notified, coalesces while one is
// outstanding and is idempotent with request_id.
func TestNotifyDeviceAPI(t *testing.T) {
	st := Start(t, Options{Workers: 1})
	cfg := notifierConfig(t, st)
	n := startNotifier(t, cfg, false) // API only: nothing is sent
	ctx := context.Background()
	if _, err := n.client.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:nobody"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("unknown device: %v", err)
	}
	createWakeable(t, st, "IMEI:no-msisdn", "")
	if _, err := n.client.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:no-msisdn"}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("no MSISDN: %v", err)
	}
	createWakeable(t, st, "IMEI:api", "+15550100")
	a, err := n.client.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:api", RequestId: "r1"})
	if err != nil || a.Coalesced || a.Notification.State != notifierv1.Notification_STATE_QUEUED {
		t.Fatalf("first: %+v %v", a, err)
	}
	b, err := n.client.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:api"})
	if err != nil || !b.Coalesced || b.Notification.NotificationId != a.Notification.NotificationId {
		t.Fatalf("second: %+v %v", b, err)
	}
	c, err := n.client.NotifyDevice(ctx, &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:api", RequestId: "r1"})
	if err != nil || c.Notification.NotificationId != a.Notification.NotificationId {
		t.Fatalf("retry: %+v %v", c, err)
	}
	if _, err := n.client.GetNotification(ctx, &notifierv1.GetNotificationRequest{NotificationId: "bogus"}); status.Code(err) != codes.NotFound {
		t.Fatalf("get bogus: %v", err)
	}
}

// A queued notification survives the replica that queued it: another replica sends it.
func TestNotifierRestartKeepsQueued(t *testing.T) {
	sms := startSMSC(t)
	st := Start(t, Options{})
	cfg := notifierConfig(t, st)
	cfg.Routes, cfg.SMPPAddr = "default=smpp", sms.addr
	first := startNotifier(t, cfg, false)
	d := createWakeable(t, st, "IMEI:restart", "+4930123456")
	r, err := first.client.NotifyDevice(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:restart"})
	if err != nil {
		t.Fatal(err)
	}
	first.stop()
	if got := sms.submits(t, "4930123456"); len(got) != 0 {
		t.Fatalf("sent before any worker ran: %d", len(got))
	}
	second := startNotifier(t, cfg, true)
	segs := waitSubmits(t, sms, "4930123456", 1)
	note := waitNotification(t, second.client, r.Notification.NotificationId, notifierv1.Notification_STATE_DELIVERED, 10*time.Second)
	if sid, err := d.ReceivePackage0(segs); err != nil || sid != note.SessionIdHex {
		t.Fatalf("device: %q %v (want %s)", sid, err, note.SessionIdHex)
	}
}

// A provider that cannot be reached is retried with back-off, then the notification is
// FAILED with the reason, and the device may be notified again.
func TestNotifierProviderDownFails(t *testing.T) {
	st := Start(t, Options{Workers: 1})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	cfg := notifierConfig(t, st)
	cfg.Routes, cfg.SMPPAddr = "default=smpp", dead
	n := startNotifier(t, cfg, true)
	createWakeable(t, st, "IMEI:down", "+4940123456")
	r, err := n.client.NotifyDevice(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:down"})
	if err != nil {
		t.Fatal(err)
	}
	note := waitNotification(t, n.client, r.Notification.NotificationId, notifierv1.Notification_STATE_FAILED, 20*time.Second)
	if note.Attempts != int32(cfg.MaxAttempts) || !strings.Contains(note.LastError, "smpp") || !strings.Contains(note.LastError, "refused") {
		t.Fatalf("failed notification: attempts %d error %q", note.Attempts, note.LastError)
	}
	again, err := n.client.NotifyDevice(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: "IMEI:down"})
	if err != nil || again.Coalesced {
		t.Fatalf("after FAILED: %+v %v", again, err)
	}
}

// countingProvider records when each message was sent and by which replica.
type countingProvider struct {
	replica string
	mu      *sync.Mutex
	sends   *[]send
}

type send struct {
	at      time.Time
	replica string
}

func (c *countingProvider) Send(_ context.Context, m notifier.Message) ([]string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	*c.sends = append(*c.sends, send{time.Now(), c.replica})
	return []string{fmt.Sprintf("%s-%d", c.replica, len(*c.sends))}, nil
}

// Two replicas share one token bucket per provider: together they stay under the limit.
func TestNotifierSharedRateLimit(t *testing.T) {
	st := Start(t, Options{Workers: 1})
	const rate, burst, devices = 5, 5, 25
	var mu sync.Mutex
	var sends []send
	reps := make([]*runningNotifier, 2)
	for i := range reps {
		cfg := notifierConfig(t, st)
		cfg.Routes = "default=count"
		cfg.Providers = map[string]notifier.Provider{"count": &countingProvider{replica: strconv.Itoa(i), mu: &mu, sends: &sends}}
		cfg.RateLimits = map[string]notifier.RateLimit{"count": {Rate: rate, Burst: burst}}
		reps[i] = startNotifier(t, cfg, true)
	}
	for i := 0; i < devices; i++ {
		id := fmt.Sprintf("IMEI:rate-%02d", i)
		createWakeable(t, st, id, fmt.Sprintf("+1555%04d", i))
		if _, err := reps[i%2].client.NotifyDevice(context.Background(), &notifierv1.NotifyDeviceRequest{DeviceId: id}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := len(sends)
		mu.Unlock()
		if n >= devices {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d sent", n, devices)
		}
		time.Sleep(50 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	byReplica := map[string]int{}
	for i, s := range sends {
		byReplica[s.replica]++
		// In any one-second window the bucket allows at most burst + rate·1s sends.
		in := 0
		for _, o := range sends[i:] {
			if o.at.Sub(s.at) < time.Second {
				in++
			}
		}
		if in > burst+rate+1 {
			t.Fatalf("%d sends within one second from send %d (limit %d/s, burst %d)", in, i, rate, burst)
		}
	}
	if span, min := sends[len(sends)-1].at.Sub(sends[0].at), time.Duration(devices-burst-1)*time.Second/rate; span < min {
		t.Fatalf("%d sends took %v, the limit allows no less than %v", len(sends), span, min)
	}
	if len(byReplica) != 2 {
		t.Fatalf("sends by replica: %v (want both replicas to send)", byReplica)
	}
	t.Logf("sends by replica: %v over %v", byReplica, sends[len(sends)-1].at.Sub(sends[0].at))
}
