package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"
	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/events"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

var authTypes = map[dmauth.Type]devicev1.AuthType{
	dmauth.TypeBasic: devicev1.AuthType_AUTH_TYPE_BASIC,
	dmauth.TypeMD5:   devicev1.AuthType_AUTH_TYPE_MD5,
	dmauth.TypeMAC:   devicev1.AuthType_AUTH_TYPE_HMAC,
}

// provision creates the device account and a dmsim device that knows the same secret.
func provision(t *testing.T, st *Stack, id string, auth dmauth.Type, enc syncml.Encoding, mod func(*dmsim.Config)) *dmsim.Device {
	t.Helper()
	ctx := context.Background()
	// Basic credentials are "name:secret": a name must not contain ':' (RFC 7617 §2).
	user := "user-" + strings.ReplaceAll(id, ":", "_")
	_, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
		DeviceId:   id,
		ClientAuth: &devicev1.AuthConfig{Type: authTypes[auth], Name: user, Secret: "pw-" + id},
		Labels:     map[string]string{"suite": "e2e"},
	}})
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	cfg := dmsim.Config{DevID: id, AuthType: auth, ClientName: user, ClientSecret: "pw-" + id,
		Encoding: enc, ServerURL: st.URL, FwV: "fw-" + id}
	if mod != nil {
		mod(&cfg)
	}
	return dmsim.NewDevice(cfg)
}

func enqueue(t *testing.T, st *Stack, id string, group commandv1.Group, ops ...*commandv1.Operation) []*commandv1.Command {
	t.Helper()
	resp, err := st.Commands.EnqueueCommands(context.Background(), &commandv1.EnqueueCommandsRequest{DeviceId: id, Operations: ops, Group: group})
	if err != nil {
		t.Fatalf("enqueue: %v", err)
	}
	return resp.Commands
}

func get(uri string) *commandv1.Operation {
	return &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: uri}
}

func replace(uri string, data []byte) *commandv1.Operation {
	return &commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_REPLACE, TargetUri: uri, Data: data}
}

func command(t *testing.T, st *Stack, id string) *commandv1.Command {
	t.Helper()
	r, err := st.Commands.GetCommand(context.Background(), &commandv1.GetCommandRequest{CommandId: id})
	if err != nil {
		t.Fatalf("get command: %v", err)
	}
	return r.Command
}

func transport() *dmsim.HTTPTransport {
	return &dmsim.HTTPTransport{Client: &http.Client{Timeout: 30 * time.Second}}
}

func run(t *testing.T, d *dmsim.Device, opt dmsim.SessionOptions) *dmsim.SessionReport {
	t.Helper()
	// Generous: the large-object sessions are hundreds of messages, and -race is slow.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := d.RunSession(ctx, transport(), opt)
	if err != nil {
		t.Fatalf("session of %s: %v", d.DevID(), err)
	}
	// dmsim notes server protocol slips as warnings (MsgID order, missing 213, a reply
	// over the device's MaxMsgSize, ...): a correct server causes none.
	if len(rep.Warnings) > 0 {
		t.Fatalf("session of %s: protocol warnings: %v", d.DevID(), rep.Warnings)
	}
	return rep
}

// The session suite runs against a single Redis and against a Redis Cluster.
func TestSessions(t *testing.T) {
	for _, cluster := range []bool{false, true} {
		name := "redis"
		if cluster {
			name = "redis-cluster"
			if testing.Short() {
				t.Skip("cluster suite skipped in -short mode")
			}
		}
		t.Run(name, func(t *testing.T) {
			st := Start(t, Options{Workers: 2, Cluster: cluster})
			t.Run("auth-and-commands", func(t *testing.T) { testAuthAndCommands(t, st) })
			t.Run("wrong-password", func(t *testing.T) { testWrongPassword(t, st) })
			t.Run("multi-message", func(t *testing.T) { testMultiMessage(t, st) })
			t.Run("retransmission", func(t *testing.T) { testRetransmission(t, st) })
			t.Run("abort", func(t *testing.T) { testAbort(t, st) })
			t.Run("atomic", func(t *testing.T) { testAtomic(t, st) })
		})
	}
}

func testAuthAndCommands(t *testing.T, st *Stack) {
	before := []int64{st.Workers[0].Sessions.Handled.Load(), st.Workers[1].Sessions.Handled.Load()}
	for _, auth := range []dmauth.Type{dmauth.TypeMD5, dmauth.TypeMAC, dmauth.TypeBasic} {
		for _, enc := range []syncml.Encoding{syncml.EncodingXML, syncml.EncodingWBXML} {
			t.Run(string(auth)+"/"+enc.String(), func(t *testing.T) {
				id := fmt.Sprintf("IMEI:%s-%s", strings.TrimPrefix(string(auth), "syncml:auth-"), enc)
				d := provision(t, st, id, auth, enc, nil)
				cmds := enqueue(t, st, id, commandv1.Group_GROUP_UNSPECIFIED,
					get("./DevDetail/FwV"), replace("./FUMO/FwPkg1/Download/PkgURL", []byte("https://dl.example.com/fw.bin")), get("./Nope/Missing"))
				rep := run(t, d, dmsim.SessionOptions{})
				if !rep.Authenticated || !rep.Ended {
					t.Fatalf("session not authenticated/ended: %+v", rep)
				}
				c := command(t, st, cmds[0].CommandId)
				if c.State != commandv1.Command_STATE_COMPLETED || c.StatusCode != 200 || len(c.Results) != 1 || string(c.Results[0].Data) != "fw-"+id {
					t.Fatalf("Get FwV = %v %d %v", c.State, c.StatusCode, c.Results)
				}
				if c := command(t, st, cmds[1].CommandId); c.State != commandv1.Command_STATE_COMPLETED {
					t.Fatalf("Replace = %v %d", c.State, c.StatusCode)
				}
				if v, _ := d.Tree().Get("./FUMO/FwPkg1/Download/PkgURL"); string(v) != "https://dl.example.com/fw.bin" {
					t.Fatalf("device value = %q", v)
				}
				if c := command(t, st, cmds[2].CommandId); c.State != commandv1.Command_STATE_FAILED || c.StatusCode != 404 {
					t.Fatalf("Get of a missing node = %v %d", c.State, c.StatusCode)
				}
				// A second session: the rotated nonce works, nothing is left to do.
				rep = run(t, d, dmsim.SessionOptions{})
				if !rep.Authenticated || rep.AuthRetries != 0 {
					t.Fatalf("second session needed %d auth retries", rep.AuthRetries)
				}
			})
		}
	}
	// Messages were spread over both workers (round robin through the gateway).
	for i, w := range st.Workers {
		if w.Sessions.Handled.Load()-before[i] < 5 {
			t.Fatalf("worker %d handled only %d messages", i, w.Sessions.Handled.Load()-before[i])
		}
	}
	// Events reached JetStream through the outbox relay.
	js, err := jetstream.New(st.NC)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		s, err := js.Stream(context.Background(), "DMGRID_EVENTS")
		if err != nil {
			return false
		}
		info, err := s.Info(context.Background())
		return err == nil && info.State.Msgs >= 6*5
	}, "events in the stream")
}

func waitFor(t *testing.T, within time.Duration, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func testWrongPassword(t *testing.T, st *Stack) {
	id := "IMEI:wrongpw"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, nil)
	cmds := enqueue(t, st, id, 0, get("./DevInfo/Mod"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rep, err := d.RunSession(ctx, transport(), dmsim.SessionOptions{Faults: dmsim.Faults{WrongPassword: true}})
	if err == nil && rep.Authenticated {
		t.Fatal("wrong password authenticated")
	}
	if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_QUEUED {
		t.Fatalf("command after failed auth = %v", c.State)
	}
	// An unknown device gets a challenge and nothing else.
	ghost := dmsim.NewDevice(dmsim.Config{DevID: "IMEI:ghost", AuthType: dmauth.TypeMD5, ClientName: "x", ClientSecret: "y", ServerURL: st.URL})
	if rep, err := ghost.RunSession(ctx, transport(), dmsim.SessionOptions{}); err == nil && rep.Authenticated {
		t.Fatal("unknown device authenticated")
	}
	n, err := st.Redis.Keys(ctx, st.Prefix+":{d:IMEI:ghost}:*").Result()
	if err == nil && len(n) > 0 {
		t.Fatalf("unknown device left state: %v", n)
	}
}

func testMultiMessage(t *testing.T, st *Stack) {
	id := "IMEI:multi"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, func(c *dmsim.Config) { c.MaxMsgSize = 1500 })
	var ops []*commandv1.Operation
	for i := 0; i < 40; i++ {
		ops = append(ops, get("./DevInfo/Mod"))
	}
	cmds := enqueue(t, st, id, 0, ops...)
	var largest int
	rep := run(t, d, dmsim.SessionOptions{Observe: func(sent bool, _ int, body []byte, _ syncml.Encoding) {
		if !sent && len(body) > largest {
			largest = len(body)
		}
	}})
	if largest > 1500 {
		t.Fatalf("server sent a %d-byte message to a device with MaxMsgSize 1500", largest)
	}
	if rep.MessagesReceived < 3 {
		t.Fatalf("40 Gets fit in %d server messages", rep.MessagesReceived)
	}
	for _, c := range cmds {
		if c := command(t, st, c.CommandId); c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 1 {
			t.Fatalf("%s = %v after %d attempts", c.CommandId, c.State, c.Attempts)
		}
	}
}

func testRetransmission(t *testing.T, st *Stack) {
	id := "IMEI:retx"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, nil)
	cmds := enqueue(t, st, id, 0, get("./DevInfo/Man"), replace("./FUMO/FwPkg1/PkgName", []byte("pkg")))
	rep := run(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{DropReplyAfterMsg: 2, RetransmitMsg: 3}})
	if rep.Retransmissions == 0 {
		t.Fatal("no retransmission happened")
	}
	for _, c := range cmds {
		if c := command(t, st, c.CommandId); c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 1 {
			t.Fatalf("%s = %v after %d attempts (ran twice?)", c.CommandId, c.State, c.Attempts)
		}
	}
}

func testAbort(t *testing.T, st *Stack) {
	id := "IMEI:abort"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, nil)
	cmds := enqueue(t, st, id, 0, get("./DevInfo/Man"))
	// Abort right after the server's first package arrives: the Get was sent, unanswered.
	// Message 1 is challenged (the device does not know its nonce yet), message 2's reply
	// carries the Get; the device then aborts.
	rep, err := d.RunSession(context.Background(), transport(), dmsim.SessionOptions{Faults: dmsim.Faults{AbortAfterMsg: 2}})
	if err != nil && !rep.Aborted {
		t.Fatalf("abort session: %v", err)
	}
	if !rep.Aborted {
		t.Fatal("session not aborted")
	}
	c := command(t, st, cmds[0].CommandId)
	if c.State != commandv1.Command_STATE_QUEUED {
		t.Fatalf("after abort the command is %v, want queued again", c.State)
	}
	run(t, d, dmsim.SessionOptions{})
	if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 2 {
		t.Fatalf("after the next session: %v attempts %d", c.State, c.Attempts)
	}
}

func testAtomic(t *testing.T, st *Stack) {
	id := "IMEI:atomic"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, nil)
	cmds := enqueue(t, st, id, commandv1.Group_GROUP_ATOMIC,
		replace("./FUMO/FwPkg1/PkgName", []byte("a")), replace("./Does/Not/Exist", []byte("b")))
	run(t, d, dmsim.SessionOptions{})
	for _, c := range cmds {
		if c := command(t, st, c.CommandId); c.State != commandv1.Command_STATE_FAILED {
			t.Fatalf("atomic member %s = %v %d, want failed (rolled back)", c.Operation.TargetUri, c.State, c.StatusCode)
		}
	}
	if v, _ := d.Tree().Get("./FUMO/FwPkg1/PkgName"); string(v) == "a" {
		t.Fatal("atomic group was not rolled back on the device")
	}
	// Group members are refused inside Atomic by the API when DM forbids them.
	_, err := st.Commands.EnqueueCommands(context.Background(), &commandv1.EnqueueCommandsRequest{DeviceId: id, Group: commandv1.Group_GROUP_ATOMIC, Operations: []*commandv1.Operation{get("./A")}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("Get inside Atomic: %v", err)
	}
}

// TestLargeObjects sends 1 MiB each way in chunks: the server's Replace to a device with an
// 8 KiB MaxMsgSize, and the device's Results to a server with a 16 KiB MaxMsgSize.
func TestLargeObjects(t *testing.T) {
	st := Start(t, Options{Workers: 2, ServerMaxMsgSize: 16 << 10})
	for _, enc := range []syncml.Encoding{syncml.EncodingXML, syncml.EncodingWBXML} {
		t.Run(enc.String(), func(t *testing.T) {
			id := "IMEI:lo-" + enc.String()
			d := provision(t, st, id, dmauth.TypeMD5, enc, func(c *dmsim.Config) { c.MaxMsgSize = 8 << 10; c.MaxObjSize = 2 << 20 })
			down := make([]byte, 1<<20)
			rand.Read(down)
			up := bytes.Repeat([]byte("0123456789abcdef"), (1<<20)/16)
			if err := d.Tree().Set("./FUMO/FwPkg1/PkgName", up); err != nil {
				t.Fatal(err)
			}
			cmds := enqueue(t, st, id, 0,
				&commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_REPLACE, TargetUri: "./FUMO/FwPkg1/Update/PkgData", Data: down, Format: "bin"},
				get("./FUMO/FwPkg1/PkgName"))
			var largestIn, largestOut int
			run(t, d, dmsim.SessionOptions{MaxMessages: 2000, Observe: func(sent bool, n int, body []byte, _ syncml.Encoding) {
				if n < 8 && os.Getenv("DMGRID_TEST_LOG") != "" {
					t.Logf("sent=%v msg %d: %d bytes\n%.600s", sent, n, len(body), body)
				}
				if sent && len(body) > largestOut {
					largestOut = len(body)
				}
				if !sent && len(body) > largestIn {
					largestIn = len(body)
				}
			}})
			if largestIn > 8<<10 || largestOut > 16<<10 {
				t.Fatalf("message sizes: server→device %d (limit 8 KiB), device→server %d (limit 16 KiB)", largestIn, largestOut)
			}
			if got, _ := d.Tree().Get("./FUMO/FwPkg1/Update/PkgData"); !bytes.Equal(got, down) {
				t.Fatalf("device reassembled %d bytes, want the 1 MiB sent", len(got))
			}
			if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_COMPLETED {
				t.Fatalf("Replace 1 MiB = %v %d %s", c.State, c.StatusCode, c.Error)
			}
			c := command(t, st, cmds[1].CommandId)
			if c.State != commandv1.Command_STATE_COMPLETED || len(c.Results) != 1 || !bytes.Equal(c.Results[0].Data, up) {
				t.Fatalf("Get 1 MiB = %v %d, %d results", c.State, c.StatusCode, len(c.Results))
			}
		})
	}
}

// failingTransport loses the connection for good after n posts (the device vanishes).
type failingTransport struct {
	dmsim.Transport
	n    int
	sent atomic.Int64
}

func (f *failingTransport) Post(ctx context.Context, url string, body []byte, ct, h string) ([]byte, string, error) {
	if f.sent.Add(1) > int64(f.n) {
		return nil, "", errors.New("device went out of coverage")
	}
	return f.Transport.Post(ctx, url, body, ct, h)
}

// TestIdleTimeoutRequeues: a device that goes silent in a session gets its unanswered
// command again in its next session after the idle timeout, and the silent session ends:
// exactly one session_ended (TIMED_OUT, with the one message it had, dated when the
// timeout passed) reaches the stream, before the next session's start and end.
func TestIdleTimeoutRequeues(t *testing.T) {
	st := Start(t, Options{Workers: 2, IdleTimeout: time.Second, MaxAttempts: 3})
	id := "IMEI:idle"
	d := provision(t, st, id, dmauth.TypeMD5, syncml.EncodingXML, nil)
	cmds := enqueue(t, st, id, 0, get("./DevInfo/Lang"))
	ft := &failingTransport{Transport: transport(), n: 2} // challenge + authenticated Pkg1, then silence
	silentSince := time.Now()
	if _, err := d.RunSession(context.Background(), ft, dmsim.SessionOptions{MaxTransportRetries: -1}); err == nil {
		t.Fatal("session survived a dead transport")
	}
	if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_SENT {
		t.Fatalf("command = %v, want sent", c.State)
	}
	time.Sleep(1500 * time.Millisecond) // past the idle timeout
	rep := run(t, d, dmsim.SessionOptions{})
	c := command(t, st, cmds[0].CommandId)
	if c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 2 {
		t.Fatalf("after the idle timeout and a new session: %v attempts %d", c.State, c.Attempts)
	}

	// The stream: started (silent session), ended TIMED_OUT, started (new), ended COMPLETED.
	ctx := context.Background()
	js, err := jetstream.New(st.NC)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := js.OrderedConsumer(ctx, "DMGRID_EVENTS", jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{events.KindSubject("session_started", id), events.KindSubject("session_ended", id)}})
	if err != nil {
		t.Fatal(err)
	}
	var got []*eventsv1.Event
	deadline := time.Now().Add(10 * time.Second)
	for len(got) < 4 && time.Now().Before(deadline) {
		msg, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		ev := &eventsv1.Event{}
		if err := proto.Unmarshal(msg.Data(), ev); err != nil {
			t.Fatal(err)
		}
		got = append(got, ev)
	}
	if len(got) != 4 {
		t.Fatalf("%d session events, want 4: %v", len(got), got)
	}
	silent := got[0].GetSessionStarted().GetSessionId()
	to := got[1].GetSessionEnded()
	if silent == "" || to.GetSessionId() != silent || to.GetOutcome() != eventsv1.SessionEnded_OUTCOME_TIMED_OUT || to.GetMessages() != 1 {
		t.Fatalf("after the silent session's start: %v, want its session_ended TIMED_OUT with 1 message", got[1])
	}
	if at := got[1].GetTime().AsTime(); at.Before(silentSince.Add(time.Second)) || at.After(got[2].GetTime().AsTime()) {
		t.Fatalf("TIMED_OUT dated %v: not when the idle timeout passed (silent since %v, next session %v)", at, silentSince, got[2].GetTime().AsTime())
	}
	if got[2].GetSessionStarted().GetSessionId() != rep.SessionID || got[3].GetSessionEnded().GetSessionId() != rep.SessionID ||
		got[3].GetSessionEnded().GetOutcome() != eventsv1.SessionEnded_OUTCOME_COMPLETED {
		t.Fatalf("the next session's events: %v %v, want session %s started and COMPLETED", got[2], got[3], rep.SessionID)
	}
	if msg, err := cons.Next(jetstream.FetchMaxWait(500 * time.Millisecond)); err == nil {
		t.Fatalf("a fifth session event: %s", msg.Subject())
	}
}

// TestFleetConcurrent serves 1,000 devices with queued commands at once: every command is
// completed exactly once.
func TestFleetConcurrent(t *testing.T) {
	n := 1000
	if testing.Short() {
		n = 100
	}
	st := Start(t, Options{Workers: 2})
	ctx := context.Background()
	fleet := dmsim.NewFleet(n, 42, dmsim.Config{ServerURL: st.URL, AuthType: dmauth.TypeMD5, ClientSecret: "fleet-secret"}, func(i int, c *dmsim.Config) {
		c.ClientName = fmt.Sprintf("fleet-%d", i)
		if i%2 == 1 {
			c.Encoding = syncml.EncodingWBXML
		}
	})
	var ids []string
	for _, d := range fleet.Devices {
		cfg := d.Config()
		if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
			DeviceId: cfg.DevID, ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: cfg.ClientName, Secret: cfg.ClientSecret}}}); err != nil {
			t.Fatal(err)
		}
		for _, c := range enqueue(t, st, cfg.DevID, 0, get("./DevDetail/FwV"), replace("./FUMO/FwPkg1/PkgName", []byte("v2"))) {
			ids = append(ids, c.CommandId)
		}
	}
	start := time.Now()
	results := fleet.Run(ctx, transport(), 64, dmsim.SessionOptions{})
	for _, r := range results {
		if r.Err != nil || !r.Report.Ended {
			t.Fatalf("%s: %v", r.Device.DevID(), r.Err)
		}
	}
	t.Logf("%d sessions in %v", n, time.Since(start))
	for _, id := range ids {
		c := command(t, st, id)
		if c.State != commandv1.Command_STATE_COMPLETED || c.Attempts != 1 {
			t.Fatalf("%s = %v after %d attempts", id, c.State, c.Attempts)
		}
	}
}

// TestNotificationInitiatedFUMOWithServerAuth: a session answering a Package 0 (Alert 1200
// with the trigger's session id), mutual MD5 authentication (the device checks the server's
// credentials), a FUMO Replace+Exec answered 202, and the device's Generic Alert carrying the
// Exec's Correlator in the next session, published as an event.
func TestNotificationInitiatedFUMOWithServerAuth(t *testing.T) {
	st := Start(t, Options{Workers: 2})
	ctx := context.Background()
	id := "IMEI:fumo"
	if _, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{
		DeviceId:   id,
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "fumo-client", Secret: "client-pw"},
		ServerAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_MD5, Name: "dms.example", Secret: "server-pw"},
	}}); err != nil {
		t.Fatal(err)
	}
	d := dmsim.NewDevice(dmsim.Config{DevID: id, AuthType: dmauth.TypeMD5, ClientName: "fumo-client", ClientSecret: "client-pw",
		ServerName: "dms.example", ServerSecret: "server-pw", ServerURL: st.URL})
	alerts := make(chan *nats.Msg, 8)
	sub, err := st.NC.ChanSubscribe(events.KindSubject("generic_alert_received", id), alerts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	cmds := enqueue(t, st, id, commandv1.Group_GROUP_SEQUENCE,
		replace("./FUMO/FwPkg1/DownloadAndUpdate/PkgURL", []byte("https://dl.example.com/fw2.bin")),
		&commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_EXEC, TargetUri: "./FUMO/FwPkg1/DownloadAndUpdate", Correlator: "corr-77"})
	rep := run(t, d, dmsim.SessionOptions{SessionID: "1A2B"})
	if rep.SessionID != "1A2B" || rep.Initiator != dmsim.InitiatorServer {
		t.Fatalf("session %s initiator %v", rep.SessionID, rep.Initiator)
	}
	if !rep.ServerAuthChecked || !rep.ServerAuthenticated {
		t.Fatalf("the device did not authenticate the server: checked=%v ok=%v", rep.ServerAuthChecked, rep.ServerAuthenticated)
	}
	if c := command(t, st, cmds[1].CommandId); c.State != commandv1.Command_STATE_COMPLETED || c.StatusCode != 202 {
		t.Fatalf("Exec = %v %d", c.State, c.StatusCode)
	}
	run(t, d, dmsim.SessionOptions{}) // the device reports the update result
	select {
	case m := <-alerts:
		var ev eventsv1.Event
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		ga := ev.GetGenericAlertReceived()
		if ga.GetCorrelator() != "corr-77" || ga.GetType() != "org.openmobilealliance.dm.firmwareupdate.downloadandupdate" || string(ga.GetData()) != "200" {
			t.Fatalf("generic alert event = %+v", ga)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no generic alert event")
	}
	// The alert's result is attached to the Exec it reports on.
	exec := command(t, st, cmds[1].CommandId)
	if len(exec.Results) != 1 || string(exec.Results[0].Data) != "200" || exec.Results[0].Uri != "./FUMO/FwPkg1" ||
		exec.Results[0].MimeType != "org.openmobilealliance.dm.firmwareupdate.downloadandupdate" {
		t.Fatalf("Exec results after the generic alert = %v", exec.Results)
	}
}

// TestAPIMisuse: bad requests get InvalidArgument with the offending field, unknown things
// NotFound, impossible changes FailedPrecondition; nothing stored changes.
func TestAPIMisuse(t *testing.T) {
	st := Start(t, Options{Workers: 1})
	ctx := context.Background()
	field := func(err error) string {
		for _, d := range status.Convert(err).Details() {
			if br, ok := d.(*errdetails.BadRequest); ok && len(br.FieldViolations) > 0 {
				return br.FieldViolations[0].Field
			}
		}
		return ""
	}
	_, err := st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: "IMEI:x"}})
	if status.Code(err) != codes.InvalidArgument || field(err) != "device.client_auth.type" {
		t.Fatalf("missing client auth: %v (field %q)", err, field(err))
	}
	_, err = st.Devices.CreateDevice(ctx, &devicev1.CreateDeviceRequest{Device: &devicev1.Device{DeviceId: "IMEI x",
		ClientAuth: &devicev1.AuthConfig{Type: devicev1.AuthType_AUTH_TYPE_NONE}}})
	if status.Code(err) != codes.InvalidArgument || field(err) != "device_id" {
		t.Fatalf("device id with a space: %v", err)
	}
	if _, err := st.Devices.GetDevice(ctx, &devicev1.GetDeviceRequest{DeviceId: "IMEI:none"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown device: %v", err)
	}
	_, err = st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: "IMEI:none", Operations: []*commandv1.Operation{get("./A")}})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("enqueue for an unknown device: %v", err)
	}
	d := provision(t, st, "IMEI:misuse", dmauth.TypeMD5, syncml.EncodingXML, nil)
	for _, c := range []struct {
		op    *commandv1.Operation
		field string
	}{
		{get("../etc/passwd"), "operations[0].target_uri"},
		{get(""), "operations[0].target_uri"},
		{&commandv1.Operation{TargetUri: "./A"}, "operations[0].type"},
		{&commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_GET, TargetUri: "./A", Data: []byte("x")}, "operations[0].data"},
		{&commandv1.Operation{Type: commandv1.OperationType_OPERATION_TYPE_REPLACE, TargetUri: "./A", Data: []byte("x"), Format: "jpeg"}, "operations[0].format"},
	} {
		_, err := st.Commands.EnqueueCommands(ctx, &commandv1.EnqueueCommandsRequest{DeviceId: d.DevID(), Operations: []*commandv1.Operation{c.op}})
		if status.Code(err) != codes.InvalidArgument || field(err) != c.field {
			t.Fatalf("%+v: %v (field %q, want %q)", c.op, err, field(err), c.field)
		}
	}
	cmds := enqueue(t, st, d.DevID(), 0, get("./DevInfo/Man"))
	run(t, d, dmsim.SessionOptions{})
	_, err = st.Commands.CancelCommand(ctx, &commandv1.CancelCommandRequest{CommandId: cmds[0].CommandId})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("cancel of a completed command: %v", err)
	}
	if c := command(t, st, cmds[0].CommandId); c.State != commandv1.Command_STATE_COMPLETED {
		t.Fatalf("a refused cancel changed the command: %v", c.State)
	}
	if _, err := st.Commands.GetCommand(ctx, &commandv1.GetCommandRequest{CommandId: "garbage"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad command id: %v", err)
	}
	_, err = st.Devices.ListDevices(ctx, &devicev1.ListDevicesRequest{PageToken: "!!"})
	if status.Code(err) != codes.InvalidArgument || field(err) != "page_token" {
		t.Fatalf("bad page token: %v", err)
	}
}

// TestDevDetailPolicy: a device whose DevDetail was not collected within DevDetailEvery gets
// Gets of its DevDetail leaves in its next session, without anyone enqueueing them; a second
// session inside the period gets none.
func TestDevDetailPolicy(t *testing.T) {
	st := Start(t, Options{Workers: 2, DevDetailEvery: time.Hour})
	d := provision(t, st, "IMEI:policy", dmauth.TypeMD5, syncml.EncodingWBXML, nil)
	rep := run(t, d, dmsim.SessionOptions{})
	got := map[string]int{}
	for _, c := range rep.Commands {
		if c.Kind == "Get" {
			got[c.Target] = c.Status
		}
	}
	for _, leaf := range []string{"DevTyp", "FwV", "SwV", "HwV", "LrgObj"} {
		if got["./DevDetail/"+leaf] != 200 {
			t.Fatalf("policy Gets = %v", got)
		}
	}
	list, err := st.Commands.ListCommands(context.Background(), &commandv1.ListCommandsRequest{DeviceId: d.DevID()})
	if err != nil {
		t.Fatal(err)
	}
	fw := ""
	for _, c := range list.Commands {
		if c.Operation.TargetUri == "./DevDetail/FwV" && len(c.Results) == 1 {
			fw = string(c.Results[0].Data)
		}
	}
	if fw != "fw-IMEI:policy" {
		t.Fatalf("FwV collected by the policy = %q", fw)
	}
	rep = run(t, d, dmsim.SessionOptions{})
	for _, c := range rep.Commands {
		if c.Kind == "Get" {
			t.Fatalf("second session within the period got %s %s", c.Kind, c.Target)
		}
	}
}
