package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// tinyServer answers Pkg1 with 212 (or refuses every Cred with 401 + Chal when refuse is
// set) and a Get of ./DevDetail/FwV, then ends the session.
func tinyServer(t *testing.T, refuse bool) (*httptest.Server, *sync.Map) {
	t.Helper()
	seen := &sync.Map{} // DevId → messages
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		enc := syncml.ParseContentType(r.Header.Get("Content-Type"))
		m, _, err := syncml.Decode(body, enc, syncml.Limits{})
		if err != nil {
			t.Errorf("decode: %v", err)
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		h := m.Header
		n, _ := seen.LoadOrStore(h.Source.LocURI, new(int))
		cnt := n.(*int)
		*cnt++
		status := func(ref, cmd, code string) syncml.Command {
			return syncml.Command{Kind: syncml.KindStatus, MsgRef: h.MsgID, CmdRef: ref, Cmd: cmd, Data: code}
		}
		hdr := status("0", "SyncHdr", "212")
		var cmds []syncml.Command
		if refuse {
			hdr.Data = "401"
			hdr.Chal = &syncml.Chal{Meta: &syncml.Meta{Type: "syncml:auth-md5", Format: "b64", NextNonce: dmauth.EncodeNonce([]byte("n"))}}
		}
		cmds = append(cmds, hdr)
		if h.MsgID == "1" || refuse {
			for _, c := range m.Body.Commands {
				if c.Kind != syncml.KindStatus {
					cmds = append(cmds, status(c.CmdID, c.Kind.String(), hdr.Data))
				}
			}
			if !refuse {
				cmds = append(cmds, syncml.Command{Kind: syncml.KindGet, Items: []syncml.Item{{Target: &syncml.Locator{LocURI: "./DevDetail/FwV"}}}})
			}
		}
		for i := range cmds {
			cmds[i].CmdID = strconv.Itoa(i + 1)
		}
		reply := &syncml.Message{
			Header: syncml.Header{VerDTD: "1.2", VerProto: "DM/1.2", SessionID: h.SessionID, MsgID: h.MsgID,
				Target: syncml.Locator{LocURI: h.Source.LocURI}, Source: syncml.Locator{LocURI: "http://srv/dm"}},
			Body: syncml.Body{Commands: cmds, Final: true},
		}
		b, err := syncml.Encode(reply, enc)
		if err != nil {
			t.Errorf("encode: %v", err)
		}
		w.Header().Set("Content-Type", enc.ContentType())
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv, seen
}

func TestRunSingleDevice(t *testing.T) {
	srv, seen := tinyServer(t, false)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "--url", srv.URL, "--auth", "md5", "--name", "u", "--secret", "s",
		"--nonce", "AAAAAA==", "--encoding", "wbxml", "--device-id", "IMEI:490154203237518", "-v"}, &out, &errOut)
	if err != nil {
		t.Fatalf("run: %v\n%s%s", err, out.String(), errOut.String())
	}
	s := out.String()
	for _, want := range []string{"IMEI:490154203237518 session", ": ok;", "2 msgs sent", "1×200", "1 sessions, 0 failed", "-> device message 1", "<Alert>", "./DevDetail/FwV"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
	if _, ok := seen.Load("IMEI:490154203237518"); !ok {
		t.Error("server never saw the device")
	}
}

func TestRunFleetFromEnv(t *testing.T) {
	srv, seen := tinyServer(t, false)
	t.Setenv("DMSIM_URL", srv.URL)
	t.Setenv("DMSIM_DEVICES", "6")
	t.Setenv("DMSIM_CONCURRENCY", "3")
	var out bytes.Buffer
	if err := run(context.Background(), []string{"run", "--sessions", "2"}, &out, io.Discard); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "12 sessions, 0 failed") {
		t.Errorf("output:\n%s", out.String())
	}
	n := 0
	seen.Range(func(k, v any) bool {
		n++
		if *(v.(*int)) != 4 {
			t.Errorf("%v sent %d messages, want 4 (2 sessions × 2)", k, *(v.(*int)))
		}
		return true
	})
	if n != 6 {
		t.Errorf("%d devices, want 6", n)
	}
}

func TestRunFailedSession(t *testing.T) {
	srv, _ := tinyServer(t, true)
	var out, errOut bytes.Buffer
	err := run(context.Background(), []string{"run", "--url", srv.URL, "--auth", "md5", "--name", "u", "--secret", "s"}, &out, &errOut)
	if err == nil || exitCode(err, io.Discard) != 1 {
		t.Fatalf("refused credentials: err %v", err)
	}
	if !strings.Contains(out.String(), "FAILED") || !strings.Contains(out.String(), "1 sessions, 1 failed") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	t.Setenv("DMSIM_URL", "")
	for _, args := range [][]string{
		nil,
		{"fly"},
		{"run"},
		{"run", "--url", "http://x", "--encoding", "json"},
		{"run", "--url", "http://x", "--auth", "kerberos"},
		{"run", "--url", "http://x", "--auth", "md5"},
		{"run", "--url", "http://x", "--session-id", "XYZ"},
		{"run", "--url", "http://x", "--nonce", "***"},
		{"run", "--url", "http://x", "--devices", "0"},
		{"run", "--url", "http://x", "extra"},
	} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if code := exitCode(err, io.Discard); code != 2 {
			t.Errorf("%q: exit %d (%v), want 2", args, code, err)
		}
	}
	if got, err := sessionID("0x01a2"); err != nil || got != "1A2" {
		t.Errorf("sessionID = %q, %v", got, err)
	}
}
