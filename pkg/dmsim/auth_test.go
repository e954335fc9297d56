package dmsim_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

var (
	nonce1 = []byte("0123456789abcdef")
	nonce2 = []byte("fedcba9876543210")
	nonce3 = []byte("ABCDEFGHIJKLMNOP")
)

// checkPkg1 asserts the first-package content of PROTOCOL.md §3: Alert 1200/1201 and a
// Replace naming every DevInfo leaf by Source LocURI.
func checkPkg1(t *testing.T, m *syncml.Message, alert string, devID string) {
	t.Helper()
	var codes []string
	for _, a := range cmds(m, syncml.KindAlert) {
		codes = append(codes, a.Data)
	}
	if len(codes) == 0 || codes[0] != alert {
		t.Errorf("Pkg1 alerts %v, want %s first", codes, alert)
	}
	reps := cmds(m, syncml.KindReplace)
	if len(reps) != 1 {
		t.Fatalf("Pkg1 has %d Replace commands, want 1", len(reps))
	}
	got := map[string]string{}
	for _, it := range reps[0].Items {
		if it.Source == nil || it.Target != nil || it.Data == nil {
			t.Errorf("DevInfo Item %+v must carry Source and Data only", it)
			continue
		}
		got[it.Source.LocURI] = it.Data.Value
	}
	want := map[string]string{
		"./DevInfo/DevId": devID, "./DevInfo/Man": "Example Devices Inc.", "./DevInfo/Mod": "EX-100",
		"./DevInfo/DmV": "1.2", "./DevInfo/Lang": "en-US",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("DevInfo %s = %q, want %q", k, got[k], v)
		}
	}
	if m.Header.Source.LocURI != devID {
		t.Errorf("SyncHdr Source %q, want the DevId %q", m.Header.Source.LocURI, devID)
	}
	if m.Header.Meta == nil || m.Header.Meta.MaxMsgSize != "10000" || m.Header.Meta.MaxObjSize != "524288" {
		t.Errorf("SyncHdr Meta %+v, want MaxMsgSize 10000 and MaxObjSize 524288", m.Header.Meta)
	}
	if !m.Body.Final {
		t.Error("Pkg1 without Final")
	}
}

// Scenario 1 (PROTOCOL.md §7.3): the first reply is 407 + Chal; the device re-sends Pkg1
// with an md5 Cred on the challenged nonce, same SessionID, next MsgID, to the RespURI; the
// server verifies it with dmauth and answers 212 with the nonce for the next session.
func TestMD5ChallengeFlow(t *testing.T) {
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			key := dmauth.Key(clientName, clientSecret)
			var sessionID string
			var ss *scriptServer
			ss = newScriptServer(t, func(x *exchange) *syncml.Message {
				h := x.msg.Header
				switch x.step {
				case 1:
					sessionID = h.SessionID
					checkPkg1(t, x.msg, "1201", "IMEI:493005100592800")
					// No nonce yet: the Cred is built on the empty nonce (vector M6).
					if h.Cred == nil || !dmauth.VerifyMD5(h.Cred.Data, key, nil) {
						t.Errorf("first Cred %+v is not md5 over the empty nonce", h.Cred)
					}
					if h.Source.LocName != clientName {
						t.Errorf("LocName %q, want %q", h.Source.LocName, clientName)
					}
					if h.SessionID != strings.ToUpper(h.SessionID) || strings.HasPrefix(h.SessionID, "0") {
						t.Errorf("SessionID %q is not upper-case hex without leading zeros", h.SessionID)
					}
					ss.respURI = "/dm?s=abc"
					return x.reply(true, with(x.hdrStatus(407, chal(dmauth.TypeMD5, nonce1)), x.statusAll(407))...)
				case 2:
					if x.path != "/dm?s=abc" {
						t.Errorf("retry posted to %q, want the RespURI", x.path)
					}
					if h.Target.LocURI != ss.srv.URL+"/dm?s=abc" {
						t.Errorf("retry Target %q, want the RespURI", h.Target.LocURI)
					}
					if h.SessionID != sessionID || h.MsgID != "2" {
						t.Errorf("retry SessionID %s MsgID %s, want %s and 2", h.SessionID, h.MsgID, sessionID)
					}
					if h.Cred == nil || h.Cred.Meta == nil || h.Cred.Meta.Type != "syncml:auth-md5" || h.Cred.Meta.Format != "b64" {
						t.Fatalf("retry Cred %+v", h.Cred)
					}
					if !dmauth.VerifyMD5(h.Cred.Data, key, nonce1) {
						t.Errorf("retry Cred does not verify with the challenged nonce")
					}
					if st := hdrStatusOf(t, x.msg); st.MsgRef != "1" || st.Data != "200" {
						t.Errorf("Status for server SyncHdr %+v", st)
					}
					checkPkg1(t, x.msg, "1201", "IMEI:493005100592800")
					return x.reply(true, with(x.hdrStatus(212, chal(dmauth.TypeMD5, nonce2)), x.statusAll(200))...)
				}
				return nil
			})
			d := newTestDevice(enc, ss.URL(), nil)
			rep := mustRun(t, d, dmsim.SessionOptions{})
			if rep.AuthRetries != 1 || rep.AuthStatus != 212 || !rep.Authenticated || rep.MessagesSent != 2 {
				t.Errorf("report %s", rep.Summary())
			}
			if !bytes.Equal(d.ClientNonce(), nonce2) || !bytes.Equal(rep.NextNonce, nonce2) {
				t.Errorf("stored nonce %q, want the 212 Chal nonce %q for the next session", d.ClientNonce(), nonce2)
			}
			if len(rep.Warnings) > 0 {
				t.Errorf("warnings: %q", rep.Warnings)
			}
		})
	}
}

// A 200 on the SyncHdr authenticates one message only: the next message carries Cred again,
// built on the Chal's NextNonce (PROTOCOL.md §7.3).
func TestMD5PerMessageAuth(t *testing.T) {
	key := dmauth.Key(clientName, clientSecret)
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		h := x.msg.Header
		switch x.step {
		case 1:
			if !dmauth.VerifyMD5(h.Cred.Data, key, nonce1) {
				t.Error("Pkg1 Cred not built on the configured nonce")
			}
			return x.reply(true, with(x.hdrStatus(200, chal(dmauth.TypeMD5, nonce2)), x.statusAll(200), []syncml.Command{getCmd("./DevInfo/Mod")})...)
		case 2:
			if h.Cred == nil || !dmauth.VerifyMD5(h.Cred.Data, key, nonce2) {
				t.Errorf("after 200 the next message must carry Cred on the new nonce, got %+v", h.Cred)
			}
			return endSession(x)
		}
		return nil
	})
	d := newTestDevice(syncml.EncodingXML, ss.URL(), func(c *dmsim.Config) { c.ClientNonce = nonce1 })
	mustRun(t, d, dmsim.SessionOptions{})
}

func TestBasicAuth(t *testing.T) {
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		h := x.msg.Header
		if x.step == 1 {
			if h.Cred == nil || h.Cred.Meta.Type != "syncml:auth-basic" || !dmauth.VerifyBasic(h.Cred.Data, clientName, dmauth.Key(clientName, clientSecret)) {
				t.Errorf("basic Cred %+v does not verify", h.Cred)
			}
			return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
		}
		return nil
	})
	d := newTestDevice(syncml.EncodingWBXML, ss.URL(), func(c *dmsim.Config) { c.AuthType = dmauth.TypeBasic })
	rep := mustRun(t, d, dmsim.SessionOptions{})
	if !rep.Authenticated || rep.MessagesSent != 1 {
		t.Errorf("report %s", rep.Summary())
	}
}

func TestWrongPasswordGivesUp(t *testing.T) {
	key := dmauth.Key(clientName, clientSecret)
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		if dmauth.VerifyMD5(x.msg.Header.Cred.Data, key, nonce1) {
			t.Error("a wrong password produced a valid Cred")
		}
		return x.reply(true, with(x.hdrStatus(401, chal(dmauth.TypeMD5, nonce1)), x.statusAll(401))...)
	})
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	rep, err := run(t, d, dmsim.SessionOptions{Faults: dmsim.Faults{WrongPassword: true}, MaxAuthRetries: 2})
	if err == nil || rep.Err == nil {
		t.Fatalf("session with a wrong password succeeded: %s", rep.Summary())
	}
	if n := len(ss.exchanges()); n != 3 {
		t.Errorf("device sent %d messages, want 1 + MaxAuthRetries(2)", n)
	}
	if rep.AuthStatus != 401 || rep.Authenticated {
		t.Errorf("report %s", rep.Summary())
	}
}

// Scenario 6 (PROTOCOL.md §7.2): syncml:auth-MAC. The server verifies x-syncml-hmac over the
// exact body bytes; a 401 + Chal(MAC) makes the device re-send Pkg1 signed with the new
// nonce; after 212 every message stays signed and the Chal nonce is kept for next session.
func TestHMAC(t *testing.T) {
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			key := dmauth.Key(clientName, clientSecret)
			verify := func(x *exchange, nonce []byte) bool {
				t.Helper()
				if x.msg.Header.Cred != nil {
					t.Errorf("auth-MAC must not put Cred in the SyncHdr")
				}
				h, err := dmauth.ParseHMACHeader(x.hmac)
				if err != nil {
					t.Errorf("x-syncml-hmac %q: %v", x.hmac, err)
					return false
				}
				if h.Username != clientName {
					t.Errorf("hmac username %q", h.Username)
				}
				tampered := append([]byte(nil), x.body...)
				tampered[len(tampered)-1] ^= 1
				if dmauth.VerifyHMAC(h, key, nonce, tampered) {
					t.Error("HMAC verified over a different body")
				}
				return dmauth.VerifyHMAC(h, key, nonce, x.body)
			}
			ss := newScriptServer(t, func(x *exchange) *syncml.Message {
				switch x.step {
				case 1: // stale nonce: refuse and challenge
					if verify(x, nonce2) {
						t.Error("first message verified with a nonce the device never had")
					}
					return x.reply(true, with(x.hdrStatus(401, chal(dmauth.TypeMAC, nonce2)), x.statusAll(401))...)
				case 2:
					if !verify(x, nonce2) {
						t.Error("re-sent Pkg1 not signed with the challenged nonce")
					}
					return x.reply(true, with(x.hdrStatus(212, chal(dmauth.TypeMAC, nonce3)), x.statusAll(200), []syncml.Command{getCmd("./DevDetail/FwV")})...)
				case 3:
					if !verify(x, nonce2) {
						t.Error("message after 212 not signed with the session nonce")
					}
					return endSession(x)
				case 4: // next session starts with the 212 Chal nonce
					if !verify(x, nonce3) {
						t.Error("next session not signed with the 212 Chal nonce")
					}
					return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
				}
				return nil
			})
			d := newTestDevice(enc, ss.URL(), func(c *dmsim.Config) {
				c.AuthType = dmauth.TypeMAC
				c.ClientNonce = nonce1
			})
			rep := mustRun(t, d, dmsim.SessionOptions{})
			if rep.AuthRetries != 1 || rep.AuthType != dmauth.TypeMAC {
				t.Errorf("report %s", rep.Summary())
			}
			mustRun(t, d, dmsim.SessionOptions{})
		})
	}
}

// Mutual authentication (PROTOCOL.md §7.3): a server message without Cred gets 407 + Chal
// and its commands are not executed; with an md5 Cred on that nonce the device answers 212 +
// Chal (the nonce for the next session) and executes.
func TestServerAuthentication(t *testing.T) {
	srvKey := dmauth.Key(serverName, serverSecret)
	var challenged []byte
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200), []syncml.Command{getCmd("./DevInfo/Man")})...)
		case 2:
			st := hdrStatusOf(t, x.msg)
			if st.Data != "407" || st.Chal == nil || st.Chal.Meta.NextNonce == "" {
				t.Fatalf("Status for a server SyncHdr without Cred: %+v", st)
			}
			if got := statusOf(x.msg, "Get", "./DevInfo/Man"); got != "407" {
				t.Errorf("Get from an unauthenticated server answered %q, want 407 (not executed)", got)
			}
			if len(cmds(x.msg, syncml.KindResults)) != 0 {
				t.Error("Results sent to an unauthenticated server")
			}
			n, err := dmauth.DecodeNonce(st.Chal.Meta.NextNonce)
			if err != nil {
				t.Fatal(err)
			}
			challenged = n
			x.ss.cred = func(*exchange) *syncml.Cred {
				return &syncml.Cred{Meta: &syncml.Meta{Type: "syncml:auth-md5", Format: "b64"}, Data: dmauth.MD5Cred(srvKey, n)}
			}
			return x.reply(true, x.hdrStatus(200, nil), getCmd("./DevInfo/Man"))
		case 3:
			st := hdrStatusOf(t, x.msg)
			if st.Data != "212" || st.Chal == nil {
				t.Fatalf("Status for a valid server Cred: %+v", st)
			}
			if got := statusOf(x.msg, "Get", "./DevInfo/Man"); got != "200" {
				t.Errorf("Get after server auth answered %q", got)
			}
			if it := resultsFor(x.msg, "./DevInfo/Man"); len(it) != 1 || it[0].Data.Value != "Example Devices Inc." {
				t.Errorf("Results %+v", it)
			}
			next, _ := dmauth.DecodeNonce(st.Chal.Meta.NextNonce)
			challenged = next
			return endSession(x)
		}
		return nil
	})
	d := newTestDevice(syncml.EncodingXML, ss.URL(), func(c *dmsim.Config) {
		c.ServerName, c.ServerSecret, c.ServerNonce = serverName, serverSecret, nonce1
	})
	rep := mustRun(t, d, dmsim.SessionOptions{})
	if !rep.ServerAuthChecked || !rep.ServerAuthenticated {
		t.Errorf("report %s", rep.Summary())
	}
	if !bytes.Equal(d.ServerNonce(), challenged) {
		t.Errorf("stored server nonce %x, want the last Chal nonce %x", d.ServerNonce(), challenged)
	}
}

// Credentials live in ./DMAcc/<x>/AppAuth (OMA-TS-DM_StdObj §7.1.3.1): a server may rotate
// them with Replace, and the next session authenticates with the new secret. The secret
// itself cannot be read (425).
func TestCredentialRotation(t *testing.T) {
	const secretURI = "./DMAcc/dmgrid/AppAuth/Client/AAuthSecret"
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			return acceptPkg1(x, true, replaceCmd(secretURI, "rotated!"), getCmd(secretURI))
		case 2:
			if statusOf(x.msg, "Replace", secretURI) != "200" || statusOf(x.msg, "Get", secretURI) != "425" {
				t.Errorf("Replace %q / Get %q of AAuthSecret, want 200 / 425", statusOf(x.msg, "Replace", secretURI), statusOf(x.msg, "Get", secretURI))
			}
			return endSession(x)
		case 3:
			if !dmauth.VerifyMD5(x.msg.Header.Cred.Data, dmauth.Key(clientName, "rotated!"), nil) {
				t.Error("next session does not use the rotated secret")
			}
			return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
		}
		return nil
	})
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	mustRun(t, d, dmsim.SessionOptions{})
	mustRun(t, d, dmsim.SessionOptions{})
}
