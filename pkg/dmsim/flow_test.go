package dmsim_test

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// A server package spread over messages (PROTOCOL.md §3.1): while the server's messages lack
// Final the device answers with its statuses (and Results) and Alert 1222 when it has nothing
// but statuses, never with Final; every message goes to the latest RespURI.
func TestMultiMessageServerPackage(t *testing.T) {
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			ss := newScriptServer(t, nil)
			ss.step = func(x *exchange) *syncml.Message {
				if x.step > 1 && x.path != "/dm?s="+strconv.Itoa(x.step-1) {
					t.Errorf("message %d posted to %q, want the latest RespURI", x.step, x.path)
				}
				ss.respURI = "/dm?s=" + strconv.Itoa(x.step)
				m := x.msg
				switch x.step {
				case 1:
					return acceptPkg1(x, false, getCmd("./DevInfo/Mod"))
				case 2:
					if m.Body.Final {
						t.Error("Final while the server package is open")
					}
					if resultsFor(m, "./DevInfo/Mod") == nil {
						t.Error("no Results in the reply to a non-final message")
					}
					if a := cmds(m, syncml.KindAlert); len(a) != 0 {
						t.Errorf("Alert %+v although the reply carries Results", a)
					}
					return x.reply(false, x.hdrStatus(200, nil), replaceCmd("./FUMO/FwPkg1/PkgName", "n"))
				case 3:
					if m.Body.Final {
						t.Error("Final while the server package is open")
					}
					if a := cmds(m, syncml.KindAlert); len(a) != 1 || a[0].Data != "1222" {
						t.Errorf("reply with only statuses must carry Alert 1222, got %+v", a)
					}
					if statusOf(m, "Replace", "./FUMO/FwPkg1/PkgName") != "200" {
						t.Error("Replace not answered")
					}
					return x.reply(true, x.hdrStatus(200, nil), syncml.Command{Kind: syncml.KindStatus, MsgRef: m.Header.MsgID, CmdRef: cmds(m, syncml.KindAlert)[0].CmdID, Cmd: "Alert", Data: "200"}, getCmd("./DevDetail/HwV"))
				case 4:
					if !m.Body.Final {
						t.Error("no Final after the server closed its package")
					}
					if it := resultsFor(m, "./DevDetail/HwV"); len(it) != 1 {
						t.Errorf("Results %+v", it)
					}
					return endSession(x)
				}
				return nil
			}
			d := newTestDevice(enc, ss.URL(), nil)
			rep := mustRun(t, d, dmsim.SessionOptions{})
			if rep.MessagesSent != 4 || len(rep.Warnings) > 0 {
				t.Errorf("report %s, warnings %q", rep.Summary(), rep.Warnings)
			}
		})
	}
}

// twoStepServer: Pkg1 → a Get; then the end.
func twoStepServer(t *testing.T) *scriptServer {
	return newScriptServer(t, func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			return acceptPkg1(x, true, replaceCmd("./FUMO/FwPkg1/PkgName", "once"), getCmd("./DevInfo/Mod"))
		case 2:
			return endSession(x)
		}
		return nil
	})
}

// Retransmission (PROTOCOL.md §12.11): a lost reply makes the device re-POST the same bytes;
// a server that replays its cached reply executes nothing twice. RetransmitMsg checks the two
// replies are identical and fails the session when they are not.
func TestRetransmission(t *testing.T) {
	t.Run("drop-reply", func(t *testing.T) {
		ss := twoStepServer(t)
		d := newTestDevice(syncml.EncodingWBXML, ss.URL(), nil)
		rep := mustRun(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{DropReplyAfterMsg: 2}})
		if ss.postCount() != 3 || len(ss.exchanges()) != 2 {
			t.Errorf("%d POSTs for %d messages, want 3 for 2", ss.postCount(), len(ss.exchanges()))
		}
		if rep.Retransmissions != 1 || rep.MessagesSent != 2 || rep.Posts != 3 {
			t.Errorf("report %s (posts %d)", rep.Summary(), rep.Posts)
		}
		if ss.body(1) != ss.body(2) {
			t.Error("retransmission is not the same bytes")
		}
	})
	t.Run("retransmit-identical", func(t *testing.T) {
		ss := twoStepServer(t)
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		rep := mustRun(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{RetransmitMsg: 1}})
		if ss.postCount() != 3 || rep.Retransmissions != 1 {
			t.Errorf("%d POSTs, report %s", ss.postCount(), rep.Summary())
		}
		if recs := rep.Find("Replace", "./FUMO/FwPkg1/PkgName"); len(recs) != 1 {
			t.Errorf("Replace executed %d times", len(recs))
		}
	})
	t.Run("retransmit-differs", func(t *testing.T) {
		ss := twoStepServer(t)
		ss.noCache = true // a server that runs the message again: its MsgID moves on
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		rep, err := run(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{RetransmitMsg: 1}})
		if err == nil || !strings.Contains(err.Error(), "different replies") {
			t.Fatalf("different replies to a retransmission: err %v, report %s", err, rep.Summary())
		}
	})
	t.Run("http-503-then-ok", func(t *testing.T) {
		ss := twoStepServer(t)
		ss.httpFail[2] = http.StatusServiceUnavailable
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		rep := mustRun(t, d, dmsim.SessionOptions{})
		if rep.Retransmissions != 1 || ss.postCount() != 3 {
			t.Errorf("report %s, %d POSTs", rep.Summary(), ss.postCount())
		}
		if ss.body(1) != ss.body(2) {
			t.Error("re-POST after 503 is not the same bytes")
		}
	})
	t.Run("http-403-fails", func(t *testing.T) {
		ss := twoStepServer(t)
		ss.httpFail[1] = http.StatusForbidden
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		_, err := run(t, d, dmsim.SessionOptions{})
		var he *dmsim.HTTPError
		if !errors.As(err, &he) || he.StatusCode != 403 || ss.postCount() != 1 {
			t.Errorf("err %v after %d POSTs, want one POST and an HTTPError 403", err, ss.postCount())
		}
	})
}

// Session abort (PROTOCOL.md §3, OMA-TS-DM_Protocol §2.3.1).
func TestAbort(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		ss := newScriptServer(t, func(x *exchange) *syncml.Message {
			switch x.step {
			case 1:
				return acceptPkg1(x, true, getCmd("./DevInfo/Mod"))
			case 2:
				a := cmds(x.msg, syncml.KindAlert)
				if len(a) != 1 || a[0].Data != "1223" || !x.msg.Body.Final {
					t.Errorf("abort message alerts %+v final %v", a, x.msg.Body.Final)
				}
				if len(cmds(x.msg, syncml.KindResults)) != 0 {
					t.Error("commands executed after deciding to abort")
				}
				return x.reply(true, with(x.hdrStatus(200, nil), x.statusAll(200))...)
			}
			return nil
		})
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		rep, err := run(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{AbortAfterMsg: 1}})
		if err != nil || !rep.Aborted || rep.AbortedBy != "client" || rep.MessagesSent != 2 {
			t.Errorf("err %v report %s", err, rep.Summary())
		}
	})
	t.Run("server", func(t *testing.T) {
		ss := newScriptServer(t, func(x *exchange) *syncml.Message {
			if x.step == 1 {
				return acceptPkg1(x, true, alertCmd(1223))
			}
			return nil // the device must not answer a server abort
		})
		d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
		rep, err := run(t, d, dmsim.SessionOptions{})
		if err != nil || !rep.Aborted || rep.AbortedBy != "server" || ss.postCount() != 1 {
			t.Errorf("err %v report %s, %d POSTs", err, rep.Summary(), ss.postCount())
		}
	})
}

// A session answering a Package 0 uses Alert 1200 and the trigger's session id.
func TestServerInitiatedSession(t *testing.T) {
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		if x.msg.Header.SessionID != "1A2B" {
			t.Errorf("SessionID %q", x.msg.Header.SessionID)
		}
		checkPkg1(t, x.msg, "1200", "IMEI:493005100592800")
		return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
	})
	d := newTestDevice(syncml.EncodingWBXML, ss.URL(), nil)
	rep := mustRun(t, d, dmsim.SessionOptions{SessionID: "1A2B"})
	if rep.Initiator != dmsim.InitiatorServer || rep.SessionID != "1A2B" {
		t.Errorf("report %s", rep.Summary())
	}
}

// A cancelled context stops the session with the context's error.
func TestContextCancel(t *testing.T) {
	ss := twoStepServer(t)
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := d.RunSession(ctx, &dmsim.HTTPTransport{}, dmsim.SessionOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
