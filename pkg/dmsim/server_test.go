package dmsim_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// This file is a small scripted DM server for the tests: every POST is decoded and validated
// with pkg/syncml, handed to a step function that plays one server message of a scenario from
// PROTOCOL.md §3, and the reply is encoded in the request's encoding. Replies are cached per
// (SessionID, MsgID) and replayed for a retransmitted message, as PROTOCOL.md §12.11 asks of
// a server.

const (
	clientName   = "dmclient01"
	clientSecret = "clientSecret!"
	serverName   = "com.example.dms"
	serverSecret = "serverSecret!"
)

// exchange is one device message as the scripted server saw it.
type exchange struct {
	ss   *scriptServer
	step int // 1-based number of the message in the scenario (retransmissions excluded)
	msg  *syncml.Message
	body []byte
	enc  syncml.Encoding
	hmac string
	path string // request URI: path and query
}

type scriptServer struct {
	t    *testing.T
	srv  *httptest.Server
	step func(x *exchange) *syncml.Message

	mu       sync.Mutex
	posts    []*exchange // every POST, retransmissions included
	steps    int
	msgID    int
	cache    map[string][]byte
	noCache  bool        // answer a retransmission by running the step again
	httpFail map[int]int // POST number → HTTP status to answer instead of SyncML

	maxMsgSize, maxObjSize int
	respURI                string // path+query, e.g. "/dm?s=abc"
	cred                   func(x *exchange) *syncml.Cred
}

func newScriptServer(t *testing.T, step func(x *exchange) *syncml.Message) *scriptServer {
	t.Helper()
	ss := &scriptServer{t: t, step: step, cache: map[string][]byte{}, httpFail: map[int]int{}}
	ss.srv = httptest.NewServer(ss)
	t.Cleanup(ss.srv.Close)
	return ss
}

func (ss *scriptServer) URL() string { return ss.srv.URL + "/dm" }

func (ss *scriptServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		ss.t.Errorf("server: read body: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	x := &exchange{ss: ss, body: body, hmac: r.Header.Get(dmauth.HMACHeaderName), path: r.URL.RequestURI()}
	ss.posts = append(ss.posts, x)
	if code := ss.httpFail[len(ss.posts)]; code != 0 {
		w.WriteHeader(code)
		return
	}
	if r.Header.Get("Content-Length") == "" || r.ContentLength != int64(len(body)) {
		ss.t.Errorf("server: POST without exact Content-Length")
	}
	x.enc = syncml.ParseContentType(r.Header.Get("Content-Type"))
	if x.enc == syncml.EncodingUnknown {
		ss.t.Errorf("server: Content-Type %q", r.Header.Get("Content-Type"))
	}
	x.msg, _, err = syncml.Decode(body, x.enc, syncml.Limits{})
	if err != nil {
		ss.t.Errorf("server: decode device message: %v", err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	if err := syncml.Validate(x.msg); err != nil {
		ss.t.Errorf("server: device message %s is invalid: %v", x.msg.Header.MsgID, err)
	}
	key := x.msg.Header.SessionID + "/" + x.msg.Header.MsgID
	if b, ok := ss.cache[key]; ok && !ss.noCache {
		w.Header().Set("Content-Type", x.enc.ContentType())
		_, _ = w.Write(b)
		return
	}
	ss.steps++
	x.step = ss.steps
	reply := ss.step(x)
	if reply == nil {
		ss.t.Errorf("server: device sent message %d after the scenario ended", x.step)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	b, err := syncml.Encode(reply, x.enc)
	if err != nil {
		ss.t.Errorf("server: encode reply: %v", err)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	ss.cache[key] = b
	w.Header().Set("Content-Type", x.enc.ContentType())
	_, _ = w.Write(b)
}

// exchanges returns the distinct device messages (retransmissions skipped).
func (ss *scriptServer) exchanges() []*exchange {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	var out []*exchange
	for _, x := range ss.posts {
		if x.step > 0 {
			out = append(out, x)
		}
	}
	return out
}

// body returns the body of POST i (0-based).
func (ss *scriptServer) body(i int) string {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return string(ss.posts[i].body)
}

func (ss *scriptServer) postCount() int {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return len(ss.posts)
}

// reply builds a server message answering x; CmdIDs left empty are numbered in order.
func (x *exchange) reply(final bool, cmds ...syncml.Command) *syncml.Message {
	ss := x.ss
	ss.msgID++
	h := syncml.Header{
		VerDTD:    "1.2",
		VerProto:  "DM/1.2",
		SessionID: x.msg.Header.SessionID,
		MsgID:     strconv.Itoa(ss.msgID),
		Target:    syncml.Locator{LocURI: x.msg.Header.Source.LocURI},
		Source:    syncml.Locator{LocURI: ss.URL(), LocName: serverName},
	}
	if ss.maxMsgSize > 0 || ss.maxObjSize > 0 {
		h.Meta = &syncml.Meta{}
		if ss.maxMsgSize > 0 {
			h.Meta.MaxMsgSize = strconv.Itoa(ss.maxMsgSize)
		}
		if ss.maxObjSize > 0 {
			h.Meta.MaxObjSize = strconv.Itoa(ss.maxObjSize)
		}
	}
	if ss.respURI != "" {
		h.RespURI = ss.srv.URL + ss.respURI
	}
	if ss.cred != nil {
		h.Cred = ss.cred(x)
	}
	n := 0
	number(cmds, &n)
	return &syncml.Message{Header: h, Body: syncml.Body{Commands: cmds, Final: final}}
}

func number(cmds []syncml.Command, n *int) {
	for i := range cmds {
		if cmds[i].CmdID == "" {
			*n++
			cmds[i].CmdID = strconv.Itoa(*n)
		}
		number(cmds[i].Commands, n)
	}
}

// hdrStatus is the server's Status for the device's SyncHdr.
func (x *exchange) hdrStatus(code int, chal *syncml.Chal) syncml.Command {
	h := x.msg.Header
	return syncml.Command{
		Kind: syncml.KindStatus, MsgRef: h.MsgID, CmdRef: "0", Cmd: "SyncHdr",
		TargetRefs: []string{h.Target.LocURI}, SourceRefs: []string{h.Source.LocURI},
		Chal: chal, Data: strconv.Itoa(code),
	}
}

// statusAll answers every device command (Alerts, Replace) with code; Results get none
// (PROTOCOL.md §3: no Status for a Results whose code would be 200).
func (x *exchange) statusAll(code int) []syncml.Command {
	var out []syncml.Command
	for _, c := range x.msg.Body.Commands {
		switch c.Kind {
		case syncml.KindStatus, syncml.KindResults:
			continue
		}
		out = append(out, syncml.Command{Kind: syncml.KindStatus, MsgRef: x.msg.Header.MsgID, CmdRef: c.CmdID, Cmd: c.Kind.String(), Data: strconv.Itoa(code)})
	}
	return out
}

// with prepends the SyncHdr status and appends more commands.
func with(first syncml.Command, groups ...[]syncml.Command) []syncml.Command {
	out := []syncml.Command{first}
	for _, g := range groups {
		out = append(out, g...)
	}
	return out
}

func chal(typ dmauth.Type, nonce []byte) *syncml.Chal {
	m := &syncml.Meta{Type: string(typ), Format: "b64"}
	if nonce != nil {
		m.NextNonce = dmauth.EncodeNonce(nonce)
	}
	return &syncml.Chal{Meta: m}
}

func loc(uri string) *syncml.Locator { return &syncml.Locator{LocURI: uri} }

func getCmd(targets ...string) syncml.Command {
	c := syncml.Command{Kind: syncml.KindGet}
	for _, t := range targets {
		c.Items = append(c.Items, syncml.Item{Target: loc(t)})
	}
	return c
}

func itemCmd(k syncml.Kind, target, data string, meta *syncml.Meta) syncml.Command {
	it := syncml.Item{Target: loc(target), Meta: meta}
	if k == syncml.KindAdd || k == syncml.KindReplace {
		it.Data = syncml.TextData(data)
	}
	return syncml.Command{Kind: k, Items: []syncml.Item{it}}
}

func replaceCmd(target, data string) syncml.Command {
	return itemCmd(syncml.KindReplace, target, data, nil)
}

func addCmd(target, data string) syncml.Command { return itemCmd(syncml.KindAdd, target, data, nil) }

func deleteCmd(target string) syncml.Command { return itemCmd(syncml.KindDelete, target, "", nil) }

func execCmd(target, correlator string) syncml.Command {
	c := itemCmd(syncml.KindExec, target, "", nil)
	c.Correlator = correlator
	return c
}

func copyCmd(target, source string) syncml.Command {
	return syncml.Command{Kind: syncml.KindCopy, Items: []syncml.Item{{Target: loc(target), Source: loc(source)}}}
}

func container(k syncml.Kind, children ...syncml.Command) syncml.Command {
	return syncml.Command{Kind: k, Commands: children}
}

func alertCmd(code int, items ...string) syncml.Command {
	c := syncml.Command{Kind: syncml.KindAlert, Data: strconv.Itoa(code)}
	for _, d := range items {
		c.Items = append(c.Items, syncml.Item{Data: syncml.TextData(d)})
	}
	return c
}

// cmds returns the device's commands of one kind.
func cmds(m *syncml.Message, k syncml.Kind) []syncml.Command {
	var out []syncml.Command
	for _, c := range m.Body.Commands {
		if c.Kind == k {
			out = append(out, c)
		}
	}
	return out
}

// statusOf returns the code of the device's Status for server command cmd (by name) whose
// TargetRefs include target ("" matches a Status without TargetRef); "" if none.
func statusOf(m *syncml.Message, cmd, target string) string {
	for _, c := range m.Body.Commands {
		if c.Kind != syncml.KindStatus || c.Cmd != cmd {
			continue
		}
		if target == "" && len(c.TargetRefs) == 0 {
			return c.Data
		}
		for _, t := range c.TargetRefs {
			if t == target {
				return c.Data
			}
		}
	}
	return ""
}

// hdrStatusOf returns the device's Status for the server's SyncHdr.
func hdrStatusOf(t *testing.T, m *syncml.Message) syncml.Command {
	t.Helper()
	for _, c := range m.Body.Commands {
		if c.Kind == syncml.KindStatus && c.Cmd == "SyncHdr" {
			return c
		}
	}
	t.Fatalf("device message %s has no Status for the server SyncHdr", m.Header.MsgID)
	return syncml.Command{}
}

// resultsFor returns the Results items the device sent for the Get with the given target.
func resultsFor(m *syncml.Message, target string) []syncml.Item {
	var out []syncml.Item
	for _, c := range cmds(m, syncml.KindResults) {
		for _, it := range c.Items {
			if it.Source != nil && it.Source.LocURI == target {
				out = append(out, it)
			}
		}
	}
	return out
}

func encodings() []syncml.Encoding {
	return []syncml.Encoding{syncml.EncodingXML, syncml.EncodingWBXML}
}

func newTestDevice(enc syncml.Encoding, url string, mod func(*dmsim.Config)) *dmsim.Device {
	cfg := dmsim.Config{
		DevID:        "IMEI:493005100592800",
		Man:          "Example Devices Inc.",
		Mod:          "EX-100",
		FwV:          "1.0.7",
		SwV:          "EX-OS 1.4.2",
		LrgObj:       true,
		Encoding:     enc,
		AuthType:     dmauth.TypeMD5,
		ClientName:   clientName,
		ClientSecret: clientSecret,
		ServerURL:    url,
	}
	if mod != nil {
		mod(&cfg)
	}
	return dmsim.NewDevice(cfg)
}

func run(t *testing.T, d *dmsim.Device, opt dmsim.SessionOptions) (*dmsim.SessionReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if opt.RetryBackoff == 0 {
		opt.RetryBackoff = time.Millisecond
	}
	return d.RunSession(ctx, &dmsim.HTTPTransport{}, opt)
}

func mustRun(t *testing.T, d *dmsim.Device, opt dmsim.SessionOptions) *dmsim.SessionReport {
	t.Helper()
	rep, err := run(t, d, opt)
	if err != nil {
		t.Fatalf("RunSession: %v\nreport: %s\nwarnings: %q", err, rep.Summary(), rep.Warnings)
	}
	if !rep.Ended {
		t.Fatalf("session did not end normally: %s", rep.Summary())
	}
	return rep
}

// acceptPkg1 is the usual second step: 212 and statuses for the device's Pkg1.
func acceptPkg1(x *exchange, final bool, more ...syncml.Command) *syncml.Message {
	return x.reply(final, with(x.hdrStatus(212, nil), x.statusAll(200), more)...)
}

// endSession is a final server package with only the SyncHdr status (PROTOCOL.md §3).
func endSession(x *exchange) *syncml.Message { return x.reply(true, x.hdrStatus(200, nil)) }
