package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	commandv1 "github.com/dmgrid/dmgrid/proto/dmgrid/command/v1"
	devicev1 "github.com/dmgrid/dmgrid/proto/dmgrid/device/v1"

	"github.com/dmgrid/dmgrid/internal/e2e"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

const (
	devA    = "IMEI:dmctl-a"
	devB    = "IMEI:dmctl-b"
	userA   = "user-dmctl-a"
	userB   = "user-dmctl-b"
	secretA = "Sekr1t-A-never-printed"
	secretB = "Sekr1t-B-from-env"
)

// apiT runs dmctl against one stack and checks that no secret ever shows.
type apiT struct {
	t    *testing.T
	st   *e2e.Stack
	addr string
}

func (a *apiT) run(args ...string) (code int, stdout, stderr string) {
	a.t.Helper()
	return a.runCtx(context.Background(), args...)
}

func (a *apiT) runCtx(ctx context.Context, args ...string) (code int, stdout, stderr string) {
	a.t.Helper()
	var o, e bytes.Buffer
	code = runContext(ctx, append([]string{"--addr", a.addr}, args...), nil, &o, &e)
	for _, s := range []string{secretA, secretB} {
		if strings.Contains(o.String(), s) || strings.Contains(e.String(), s) {
			a.t.Errorf("dmctl %v printed a secret:\n%s\n%s", args, o.String(), e.String())
		}
	}
	return code, o.String(), e.String()
}

// ok runs dmctl and fails the test unless it exits 0 with nothing on stderr.
func (a *apiT) ok(args ...string) string {
	a.t.Helper()
	code, out, errOut := a.run(args...)
	if code != 0 || errOut != "" {
		a.t.Fatalf("dmctl %v: exit %d: %s", args, code, errOut)
	}
	return out
}

// fails runs dmctl, expects exit status code and a single stderr line containing each want.
func (a *apiT) fails(code int, args []string, want ...string) string {
	a.t.Helper()
	got, out, errOut := a.run(args...)
	if got != code {
		a.t.Fatalf("dmctl %v: exit %d, want %d (stdout %q, stderr %q)", args, got, code, out, errOut)
	}
	first := strings.SplitN(errOut, "\n", 2)[0]
	if code == 1 && strings.Count(errOut, "\n") != 1 {
		a.t.Fatalf("dmctl %v: error is not one line: %q", args, errOut)
	}
	for _, w := range want {
		if !strings.Contains(first, w) {
			a.t.Fatalf("dmctl %v: first stderr line %q does not contain %q", args, first, w)
		}
	}
	return first
}

func unmarshal(t *testing.T, s string, m proto.Message) {
	t.Helper()
	if err := protojson.Unmarshal([]byte(s), m); err != nil {
		t.Fatalf("output is not %s JSON: %v\n%s", m.ProtoReflect().Descriptor().FullName(), err, s)
	}
}

// field returns the value of a "key:  value" line of text output.
func field(t *testing.T, out, key string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			return strings.TrimSpace(v)
		}
	}
	t.Fatalf("no %q line in:\n%s", key, out)
	return ""
}

func lines(s string) []string {
	return strings.Split(strings.TrimRight(s, "\n"), "\n")
}

func session(ctx context.Context, d *dmsim.Device) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rep, err := d.RunSession(ctx, &dmsim.HTTPTransport{Client: &http.Client{Timeout: 30 * time.Second}}, dmsim.SessionOptions{})
	if err == nil && (!rep.Authenticated || !rep.Ended) {
		return errors.New("session not authenticated/ended")
	}
	return err
}

func runSession(t *testing.T, d *dmsim.Device) {
	t.Helper()
	if err := session(context.Background(), d); err != nil {
		t.Fatalf("session of %s: %v", d.DevID(), err)
	}
}

func newSim(st *e2e.Stack, id, user, secret string) *dmsim.Device {
	return dmsim.NewDevice(dmsim.Config{DevID: id, AuthType: dmauth.TypeMD5, ClientName: user, ClientSecret: secret,
		Encoding: syncml.EncodingXML, ServerURL: st.URL, FwV: "fw-" + id})
}

// watchers counts the consumers on the events stream: WatchCommands reads through a
// JetStream consumer (deduplicated events), created before it sends anything.
func watchers(t *testing.T, st *e2e.Stack) int {
	t.Helper()
	js, err := jetstream.New(st.NC)
	if err != nil {
		t.Fatal(err)
	}
	s, err := js.Stream(context.Background(), "DMGRID_EVENTS")
	if err != nil {
		t.Fatalf("events stream: %v", err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream info: %v", err)
	}
	return info.State.Consumers
}

// startWatch runs a dmctl watch in the background and returns once the server subscribed
// for it, so that no event of what the test does next can be missed.
func (a *apiT) startWatch(devID string, args ...string) <-chan [3]any {
	a.t.Helper()
	before := watchers(a.t, a.st)
	done := make(chan [3]any, 1)
	go func() {
		var o, e bytes.Buffer
		code := runContext(context.Background(), append([]string{"--addr", a.addr, "command", "watch", devID, "--timeout", "60s"}, args...), nil, &o, &e)
		done <- [3]any{code, o.String(), e.String()}
	}()
	deadline := time.Now().Add(10 * time.Second)
	for watchers(a.t, a.st) <= before {
		if time.Now().After(deadline) {
			a.t.Fatal("the watch did not subscribe within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	return done
}

func waitWatch(t *testing.T, done <-chan [3]any) (int, string, string) {
	t.Helper()
	select {
	case r := <-done:
		return r[0].(int), r[1].(string), r[2].(string)
	case <-time.After(90 * time.Second):
		t.Fatal("watch did not end")
	}
	return 0, "", ""
}

func TestAPI(t *testing.T) {
	st := e2e.Start(t, e2e.Options{})
	a := &apiT{t: t, st: st, addr: st.GRPCAddrs[0]}

	// Create: A with the secret on the command line, B with it from the environment.
	out := a.ok("device", "create", devA, "--client-auth", "md5", "--client-name", userA, "--client-secret", secretA,
		"--label", "suite=dmctl", "--label", "unit=a", "--msisdn", "+4915112345678", "--server-id", "dmgrid-test")
	if field(t, out, "device_id") != devA || field(t, out, "client_auth") != "md5 "+userA || field(t, out, "labels") != "suite=dmctl,unit=a" {
		t.Fatalf("create printed:\n%s", out)
	}
	t.Setenv("DMCTL_CLIENT_SECRET", secretB)
	out = a.ok("device", "create", devB, "--client-auth", "md5", "--client-name", userB, "--label", "suite=dmctl", "-o", "json")
	var created devicev1.Device
	unmarshal(t, out, &created)
	if created.DeviceId != devB || created.GetClientAuth().GetType() != devicev1.AuthType_AUTH_TYPE_MD5 || created.CreateTime == nil {
		t.Fatalf("create -o json = %v", &created)
	}
	// Again: ALREADY_EXISTS as one line.
	a.fails(1, []string{"device", "create", devB, "--client-auth", "md5", "--client-name", userB}, "dmctl: AlreadyExists: ")

	// Get, text and JSON.
	out = a.ok("device", "get", devA)
	for k, want := range map[string]string{"device_id": devA, "client_auth": "md5 " + userA, "server_auth": "none",
		"msisdn": "+4915112345678", "server_id": "dmgrid-test", "labels": "suite=dmctl,unit=a"} {
		if got := field(t, out, k); got != want {
			t.Fatalf("device get: %s = %q, want %q\n%s", k, got, want, out)
		}
	}
	if field(t, out, "etag") == "-" || !strings.HasPrefix(field(t, out, "create_time"), "20") {
		t.Fatalf("device get: no etag or create_time:\n%s", out)
	}
	out = a.ok("device", "get", devA, "-o", "json")
	var dev devicev1.Device
	unmarshal(t, out, &dev)
	if dev.DeviceId != devA || dev.ClientAuth.GetName() != userA || dev.ClientAuth.GetSecret() != "" || dev.Labels["unit"] != "a" || dev.Etag == "" {
		t.Fatalf("device get -o json = %v", &dev)
	}
	if !strings.Contains(out, `"device_id"`) {
		t.Fatalf("JSON does not use the proto field names:\n%s", out)
	}

	// List: text, JSON, paging.
	out = a.ok("device", "list", "--label", "suite=dmctl")
	if l := lines(out); len(l) != 3 || !strings.HasPrefix(l[0], "DEVICE_ID") || !strings.HasPrefix(l[1], devA+" ") || !strings.HasPrefix(l[2], devB+" ") {
		t.Fatalf("device list:\n%s", out)
	}
	out = a.ok("device", "list", "--label", "unit=a", "-o", "json")
	var list devicev1.ListDevicesResponse
	unmarshal(t, out, &list)
	if len(list.Devices) != 1 || list.Devices[0].DeviceId != devA || list.Devices[0].ClientAuth.GetName() != userA {
		t.Fatalf("device list --label unit=a = %v", &list)
	}
	code, out, errOut := a.run("device", "list", "--label", "suite=dmctl", "--page-size", "1")
	if code != 0 || len(lines(out)) != 2 || !strings.Contains(errOut, "--page-token ") {
		t.Fatalf("device list --page-size 1: exit %d:\n%s\n%s", code, out, errOut)
	}
	out = a.ok("device", "list", "--label", "suite=dmctl", "--page-size", "1", "--all", "-o", "json")
	list.Reset()
	unmarshal(t, out, &list)
	if len(list.Devices) != 2 || list.Devices[1].DeviceId != devB || list.NextPageToken != "" {
		t.Fatalf("device list --all = %v", &list)
	}

	// Enqueue a Get and a Replace (and a Replace with its value from a file).
	getID := strings.TrimSpace(a.ok("command", "enqueue", devA, "get", "./DevDetail/FwV"))
	out = a.ok("-o", "json", "command", "enqueue", devA, "replace", "./FUMO/FwPkg1/PkgName", "v2")
	var enq commandv1.EnqueueCommandsResponse
	unmarshal(t, out, &enq)
	if len(enq.Commands) != 1 || enq.Commands[0].State != commandv1.Command_STATE_QUEUED ||
		string(enq.Commands[0].Operation.GetData()) != "v2" || enq.Commands[0].Operation.GetType() != commandv1.OperationType_OPERATION_TYPE_REPLACE {
		t.Fatalf("enqueue replace -o json = %v", &enq)
	}
	replaceID := enq.Commands[0].CommandId
	file := filepath.Join(t.TempDir(), "url")
	if err := os.WriteFile(file, []byte("https://dl.example.com/fw.bin"), 0o600); err != nil {
		t.Fatal(err)
	}
	fileID := strings.TrimSpace(a.ok("command", "enqueue", devA, "replace", "./FUMO/FwPkg1/Download/PkgURL", "@"+file))
	if getID == "" || strings.Contains(getID, "\n") || fileID == "" {
		t.Fatalf("enqueue printed %q and %q, want one id each", getID, fileID)
	}
	if l := lines(a.ok("command", "enqueue", devA, "get", "./DevInfo/Man", "./DevInfo/Mod", "--sequence")); len(l) != 2 {
		t.Fatalf("enqueue of two Gets printed %d ids", len(l))
	}

	// The device's session runs them.
	simA := newSim(st, devA, userA, secretA)
	runSession(t, simA)
	if v, _ := simA.Tree().Get("./FUMO/FwPkg1/PkgName"); string(v) != "v2" {
		t.Fatalf("device PkgName = %q", v)
	}
	if v, _ := simA.Tree().Get("./FUMO/FwPkg1/Download/PkgURL"); string(v) != "https://dl.example.com/fw.bin" {
		t.Fatalf("device PkgURL = %q (the @file value)", v)
	}

	out = a.ok("command", "get", getID)
	if field(t, out, "state") != "completed" || field(t, out, "status_code") != "200" || field(t, out, "operation") != "get ./DevDetail/FwV" ||
		!strings.Contains(out, "\nresults:\n  ./DevDetail/FwV = fw-"+devA+"\n") {
		t.Fatalf("command get:\n%s", out)
	}
	var cmd commandv1.Command
	unmarshal(t, a.ok("command", "get", replaceID, "-o", "json"), &cmd)
	if cmd.CommandId != replaceID || cmd.State != commandv1.Command_STATE_COMPLETED || cmd.StatusCode != 200 || cmd.Attempts != 1 {
		t.Fatalf("command get -o json = %v", &cmd)
	}

	// List shows both, in queue order; --state filters.
	out = a.ok("command", "list", devA)
	l := lines(out)
	if len(l) != 6 || !strings.HasPrefix(l[0], "COMMAND_ID") ||
		!strings.HasPrefix(l[1], getID+" ") || !strings.Contains(l[1], " completed ") || !strings.Contains(l[1], " get ./DevDetail/FwV ") ||
		!strings.HasPrefix(l[2], replaceID+" ") || !strings.Contains(l[2], " 200 ") {
		t.Fatalf("command list:\n%s", out)
	}
	var cl commandv1.ListCommandsResponse
	unmarshal(t, a.ok("command", "list", devA, "--state", "completed", "--state", "failed", "--page-size", "2", "--all", "-o", "json"), &cl)
	if len(cl.Commands) != 5 || cl.Commands[0].CommandId != getID || cl.Commands[1].CommandId != replaceID || cl.NextPageToken != "" {
		t.Fatalf("command list --all -o json = %v", &cl)
	}
	if out := a.ok("command", "list", devA, "--state", "queued"); len(lines(out)) != 1 {
		t.Fatalf("command list --state queued (nothing queued):\n%s", out)
	}

	// Watch: the event of a command enqueued and run after the watch started.
	done := a.startWatch(devA, "--count", "1")
	// A node value that is not printable: shown as base64.
	if err := simA.Tree().Set("./FUMO/FwPkg1/PkgName", []byte("line1\nline2")); err != nil {
		t.Fatal(err)
	}
	watchedID := strings.TrimSpace(a.ok("command", "enqueue", devA, "get", "./FUMO/FwPkg1/PkgName"))
	sessionDone := make(chan error, 1)
	go func() { sessionDone <- session(context.Background(), simA) }()
	code, out, errOut = waitWatch(t, done)
	if code != 0 || errOut != "" {
		t.Fatalf("watch --count 1: exit %d: %s", code, errOut)
	}
	if l := lines(out); len(l) != 1 || !strings.Contains(l[0], " "+watchedID+" ") || !strings.Contains(l[0], " get ./FUMO/FwPkg1/PkgName") {
		t.Fatalf("watch --count 1 printed:\n%s", out)
	}
	if err := <-sessionDone; err != nil {
		t.Fatalf("session: %v", err)
	}
	out = a.ok("command", "get", watchedID)
	if field(t, out, "state") != "completed" || !strings.Contains(out, "  ./FUMO/FwPkg1/PkgName = b64:bGluZTEKbGluZTI=\n") {
		t.Fatalf("command get of a multi-line value:\n%s", out)
	}

	// Watch one command as JSON: it ends by itself once the command is final.
	watchedID = strings.TrimSpace(a.ok("command", "enqueue", devA, "get", "./DevDetail/SwV"))
	done = a.startWatch(devA, "--id", watchedID, "-o", "json")
	go func() { sessionDone <- session(context.Background(), simA) }()
	code, out, errOut = waitWatch(t, done)
	if err := <-sessionDone; err != nil {
		t.Fatalf("session: %v", err)
	}
	if code != 0 || errOut != "" {
		t.Fatalf("watch --id: exit %d: %s", code, errOut)
	}
	l = lines(out)
	for i, line := range l {
		var ev commandv1.WatchCommandsResponse
		unmarshal(t, line, &ev)
		if ev.Command.GetCommandId() != watchedID || ev.Time == nil {
			t.Fatalf("watch event %d = %v", i, &ev)
		}
		if last := i == len(l)-1; last != (ev.Command.State == commandv1.Command_STATE_COMPLETED) {
			t.Fatalf("watch event %d of %d in state %v:\n%s", i, len(l), ev.Command.State, out)
		}
	}

	// An interrupted watch ends quietly.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(200 * time.Millisecond); cancel() }()
	if code, out, errOut := a.runCtx(ctx, "command", "watch", devA); code != 0 || out != "" || errOut != "" {
		t.Fatalf("interrupted watch: exit %d %q %q", code, out, errOut)
	}

	// Cancel: a queued command, then a completed one.
	queued := strings.TrimSpace(a.ok("command", "enqueue", devA, "delete", "./FUMO/FwPkg1/PkgName"))
	if out := a.ok("command", "cancel", queued); out != "cancelled "+queued+"\n" {
		t.Fatalf("command cancel printed %q", out)
	}
	if out := a.ok("command", "get", queued); field(t, out, "state") != "cancelled" {
		t.Fatalf("cancelled command:\n%s", out)
	}
	a.fails(1, []string{"command", "cancel", getID}, "dmctl: FailedPrecondition: ", "no longer queued")

	// Bad input names the field; unknown ids are NotFound.
	a.fails(1, []string{"command", "enqueue", devA, "get", "../x"}, "dmctl: InvalidArgument: ", "field operations[0].target_uri: ", `".."`)
	a.fails(1, []string{"command", "enqueue", devA, "get", "./DevInfo/Mod", "/abs"}, "dmctl: InvalidArgument: ", "field operations[1].target_uri: ")
	a.fails(1, []string{"command", "enqueue", devA, "get", "./X", "--atomic"}, "dmctl: InvalidArgument: ", "field operations[0].type: ")
	a.fails(1, []string{"device", "create", "IMEI:dmctl-c", "--client-auth", "md5"}, "dmctl: InvalidArgument: ", "field device.client_auth: ")
	a.fails(1, []string{"device", "get", "IMEI:nope"}, "dmctl: NotFound: ")
	a.fails(1, []string{"command", "enqueue", "IMEI:nope", "get", "./DevInfo/Mod"}, "dmctl: NotFound: ")
	a.fails(1, []string{"command", "get", "nonsense"}, "dmctl: InvalidArgument: ", "field command_id: ")
	a.fails(1, []string{"command", "enqueue", devA, "replace", "./X", "@" + filepath.Join(t.TempDir(), "missing")}, "dmctl: read value: ", "no such file")

	// Device B (secret from the environment) authenticates with it.
	bID := strings.TrimSpace(a.ok("command", "enqueue", devB, "get", "./DevInfo/DevId"))
	runSession(t, newSim(st, devB, userB, secretB))
	if out := a.ok("command", "get", bID); !strings.Contains(out, "  ./DevInfo/DevId = "+devB+"\n") {
		t.Fatalf("command get for B:\n%s", out)
	}

	// Delete, then it is gone.
	a.fails(1, []string{"device", "delete", devB, "--etag", "bogus"}, "dmctl: ")
	if out := a.ok("device", "delete", devB); out != "deleted "+devB+"\n" {
		t.Fatalf("device delete printed %q", out)
	}
	a.fails(1, []string{"device", "get", devB}, "dmctl: NotFound: ")
}

func TestAPIUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"device"}, "device needs a subcommand"},
		{[]string{"device", "frob"}, "unknown device subcommand"},
		{[]string{"device", "get"}, "needs 1 argument"},
		{[]string{"device", "get", "a", "b"}, `unexpected argument "b"`},
		{[]string{"device", "create", "IMEI:1"}, "--client-auth"},
		{[]string{"device", "create", "IMEI:1", "--client-auth", "sha1"}, "--client-auth must be"},
		{[]string{"device", "create", "IMEI:1", "--client-auth", "none", "--server-name", "x"}, "need --server-auth"},
		{[]string{"device", "list", "--label", "novalue"}, "not key=value"},
		{[]string{"device", "list", "--page-size", "-1"}, "--page-size"},
		{[]string{"device", "get", "x", "-o", "yaml"}, "-o must be text or json"},
		{[]string{"device", "get", "x", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"command", "enqueue", "IMEI:1"}, "needs 2 argument"},
		{[]string{"command", "enqueue", "IMEI:1", "frob", "./x"}, `unknown operation "frob"`},
		{[]string{"command", "enqueue", "IMEI:1", "replace", "./x"}, "replace <uri> <value>"},
		{[]string{"command", "enqueue", "IMEI:1", "get"}, "get <uri>..."},
		{[]string{"command", "enqueue", "IMEI:1", "copy", "./a"}, "copy <source-uri> <target-uri>"},
		{[]string{"command", "enqueue", "IMEI:1", "get", "./a", "--format", "chr"}, "--format and --type apply"},
		{[]string{"command", "enqueue", "IMEI:1", "replace", "./a", "v", "--correlator", "c"}, "--correlator applies to exec"},
		{[]string{"command", "enqueue", "IMEI:1", "add", "./a", "--atomic", "--sequence"}, "exclude each other"},
		{[]string{"command", "enqueue", "IMEI:1", "replace", "./a", "-5"}, "flag provided but not defined: -5"},
		{[]string{"command", "list", "IMEI:1", "--state", "done"}, "--state must be"},
		{[]string{"command", "watch", "IMEI:1", "--count", "-1"}, "--count must not be negative"},
		{[]string{"--addr", "x", "syncml", "decode"}, "not syncml"},
	}
	for _, c := range cases {
		code, out, errOut := dmctl(t, nil, c.args...)
		first := strings.SplitN(errOut, "\n", 2)[0]
		if code != 2 || out != "" || !strings.HasPrefix(first, "dmctl: ") || !strings.Contains(first, c.want) {
			t.Errorf("dmctl %v: exit %d, first line %q, want exit 2 and %q", c.args, code, first, c.want)
		}
		if !strings.Contains(errOut, "\nusage: dmctl") {
			t.Errorf("dmctl %v: no usage text", c.args)
		}
	}
}

func TestHelpListsEverything(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"device", "get", "-h"}} {
		code, out, errOut := dmctl(t, nil, args...)
		if code != 0 || errOut != "" {
			t.Fatalf("dmctl %v: exit %d: %s", args, code, errOut)
		}
		for _, w := range []string{"syncml decode", "device create", "device get", "device list", "device delete",
			"command enqueue", "command get", "command list", "command cancel", "command watch",
			"--addr", "DMGRID_ADDR", "-o text|json", "--timeout", "DMCTL_CLIENT_SECRET", "DMCTL_SERVER_SECRET", "TLS", "@file"} {
			if !strings.Contains(out, w) {
				t.Fatalf("dmctl %v does not mention %q", args, w)
			}
		}
	}
}

func TestUnreachableServer(t *testing.T) {
	// The address comes from DMGRID_ADDR when --addr is not given.
	t.Setenv("DMGRID_ADDR", "127.0.0.1:1")
	code, _, errOut := dmctl(t, nil, "--timeout", "5s", "device", "get", "IMEI:1")
	if code != 1 || !strings.HasPrefix(errOut, "dmctl: Unavailable: ") || !strings.Contains(errOut, "127.0.0.1:1") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestDisplayValue(t *testing.T) {
	for in, want := range map[string]string{
		"fw-1.0":    "fw-1.0",
		"":          "",
		"grüße 1":   "grüße 1",
		"a\nb":      "b64:YQpi",
		"\x00\xff":  "b64:AP8=",
		"b64:AP8=":  "b64:YjY0OkFQOD0=",
		"tab\there": "b64:dGFiCWhlcmU=",
	} {
		if got := displayValue([]byte(in)); got != want {
			t.Errorf("displayValue(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEnqueueOperations(t *testing.T) {
	f := enqueueFlags{format: "chr", mimeType: "text/plain"}
	ops, err := f.operations("add", []string{"./A/B", "@@literal"})
	if err != nil || len(ops) != 1 || string(ops[0].Data) != "@literal" || ops[0].Format != "chr" || ops[0].MimeType != "text/plain" {
		t.Fatalf("add = %v, %v", ops, err)
	}
	ops, err = (&enqueueFlags{}).operations("add", []string{"./A/Interior"})
	if err != nil || ops[0].Data != nil {
		t.Fatalf("add without value = %v, %v (want no data)", ops, err)
	}
	ops, err = (&enqueueFlags{}).operations("replace", []string{"./A", ""})
	if err != nil || ops[0].Data == nil || len(ops[0].Data) != 0 {
		t.Fatalf("replace with an empty value = %v, %v (want empty, set data)", ops, err)
	}
	ops, err = (&enqueueFlags{correlator: "c1"}).operations("exec", []string{"./FUMO/FwPkg1/Update", "go"})
	if err != nil || ops[0].Type != commandv1.OperationType_OPERATION_TYPE_EXEC || ops[0].Correlator != "c1" || string(ops[0].Data) != "go" {
		t.Fatalf("exec = %v, %v", ops, err)
	}
	ops, err = (&enqueueFlags{}).operations("copy", []string{"./A", "./B"})
	if err != nil || ops[0].SourceUri != "./A" || ops[0].TargetUri != "./B" || ops[0].Data != nil {
		t.Fatalf("copy = %v, %v", ops, err)
	}
	ops, err = (&enqueueFlags{}).operations("delete", []string{"./A", "./B", "./C"})
	if err != nil || len(ops) != 3 || ops[2].TargetUri != "./C" || ops[2].Type != commandv1.OperationType_OPERATION_TYPE_DELETE {
		t.Fatalf("delete = %v, %v", ops, err)
	}
	bin := filepath.Join(t.TempDir(), "bin")
	if err := os.WriteFile(bin, []byte{0, 1, 2, 0xff}, 0o600); err != nil {
		t.Fatal(err)
	}
	ops, err = (&enqueueFlags{format: "bin"}).operations("replace", []string{"./A", "@" + bin})
	if err != nil || !bytes.Equal(ops[0].Data, []byte{0, 1, 2, 0xff}) {
		t.Fatalf("replace @file = %v, %v", ops, err)
	}
}

func TestParseArgsInterspersed(t *testing.T) {
	fs := newFlagSet("x")
	format := fs.String("format", "", "")
	pos, err := parseArgs(fs, []string{"IMEI:1", "--format", "int", "replace", "./A", "--", "-5"})
	if err != nil || *format != "int" || strings.Join(pos, " ") != "IMEI:1 replace ./A -5" {
		t.Fatalf("parseArgs = %q, %q, %v", pos, *format, err)
	}
}
