package dmsim_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// transportFunc adapts a function to dmsim.Transport (no network: the shared vectors name
// https://dm.example.com, which the device must POST to as the RespURI says).
type transportFunc func(url string, body []byte, ct, hmac string) ([]byte, string, error)

func (f transportFunc) Post(_ context.Context, url string, body []byte, ct, hmac string) ([]byte, string, error) {
	return f(url, body, ct, hmac)
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// normalize removes what legitimately differs between the device and the hand-written
// vectors: SyncHdr Meta, random NextNonces, Item Meta equal to the defaults chr/text/plain
// (PROTOCOL.md §2.2), Mark informational (the default) and how Data was encoded.
func normalize(m *syncml.Message) {
	m.Header.Meta = nil
	var norm func(cs []syncml.Command)
	norm = func(cs []syncml.Command) {
		for i := range cs {
			c := &cs[i]
			if c.Chal != nil && c.Chal.Meta != nil && c.Chal.Meta.NextNonce != "" {
				c.Chal.Meta.NextNonce = "<nonce>"
			}
			for j := range c.Items {
				it := &c.Items[j]
				if it.Data != nil {
					it.Data.Kind = syncml.DataText
				}
				if it.Meta == nil {
					continue
				}
				if it.Meta.Format == "chr" {
					it.Meta.Format = ""
				}
				if it.Meta.Type == "text/plain" {
					it.Meta.Type = ""
				}
				if it.Meta.Mark == "informational" {
					it.Meta.Mark = ""
				}
				if it.Meta.IsZero() {
					it.Meta = nil
				}
			}
			norm(c.Commands)
		}
	}
	norm(m.Body.Commands)
}

func decodeAny(t *testing.T, b []byte) *syncml.Message {
	t.Helper()
	m, _, err := syncml.Decode(b, syncml.EncodingUnknown, syncml.Limits{})
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return m
}

// TestVectorSession replays the shared vectors (vectors/README.md) against the device: it
// must produce Pkg1 = 01 (Cred M2), answer 02 (verifying the server's Cred M3) with exactly
// 03, stop at 03b, and open the next session with the Generic Alert and Cred M4 of 06.
func TestVectorSession(t *testing.T) {
	dir := vectors.Messages(t)
	for _, tc := range []struct {
		enc syncml.Encoding
		ext string
	}{{syncml.EncodingXML, ".xml"}, {syncml.EncodingWBXML, ".wbxml"}} {
		t.Run(tc.enc.String(), func(t *testing.T) {
			read := func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(dir, name+tc.ext))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			want := func(name string) *syncml.Message {
				m := decodeAny(t, read(name))
				normalize(m)
				return m
			}
			const base = "https://dm.example.com/omadm"
			var srvNonce []byte // the nonce the device gave the server in Pkg3
			n := 0
			tr := transportFunc(func(url string, body []byte, ct, hmac string) ([]byte, string, error) {
				n++
				if syncml.ParseContentType(ct) != tc.enc || hmac != "" {
					t.Errorf("message %d: Content-Type %q, hmac %q", n, ct, hmac)
				}
				got := decodeAny(t, body)
				switch n {
				case 1:
					if url != base {
						t.Errorf("Pkg1 posted to %q", url)
					}
					normalize(got)
					if w := want("01_pkg1_client_init"); !reflect.DeepEqual(got, w) {
						t.Errorf("Pkg1 differs from vector 01\n got %+v\nwant %+v", got, w)
					}
					return read("02_pkg2_server_init"), tc.enc.ContentType(), nil
				case 2:
					if url != base+"?s=1A2B-7f3c" {
						t.Errorf("Pkg3 posted to %q, want the RespURI", url)
					}
					st := hdrStatusOf(t, got)
					if st.Chal == nil || st.Chal.Meta.Type != "syncml:auth-md5" {
						t.Fatalf("Status for the server SyncHdr %+v lacks the md5 Chal", st)
					}
					srvNonce, _ = dmauth.DecodeNonce(st.Chal.Meta.NextNonce)
					normalize(got)
					if w := want("03_pkg3_client_results"); !reflect.DeepEqual(got, w) {
						t.Errorf("Pkg3 differs from vector 03\n got %+v\nwant %+v", got, w)
					}
					return read("03b_pkg4_server_end"), tc.enc.ContentType(), nil
				case 3:
					normalize(got)
					w := want("06_pkg1_generic_alert_fumo")
					if !reflect.DeepEqual(got.Header, w.Header) {
						t.Errorf("next session SyncHdr %+v, want vector 06 %+v (Cred M4)", got.Header, w.Header)
					}
					// Same commands as vector 06; the device puts DevInfo before the alert.
					byData := func(m *syncml.Message) map[string]syncml.Command {
						out := map[string]syncml.Command{}
						for _, c := range m.Body.Commands {
							c.CmdID = ""
							out[c.Kind.String()+c.Data] = c
						}
						return out
					}
					if g, w := byData(got), byData(w); !reflect.DeepEqual(g, w) {
						t.Errorf("next session commands\n got %+v\nwant %+v", g, w)
					}
					reply := &syncml.Message{
						Header: syncml.Header{
							VerDTD: "1.2", VerProto: "DM/1.2", SessionID: "1A2C", MsgID: "1",
							Target: syncml.Locator{LocURI: "IMEI:493005100592800"},
							Source: syncml.Locator{LocURI: base, LocName: serverName},
							Cred:   &syncml.Cred{Meta: &syncml.Meta{Type: "syncml:auth-md5", Format: "b64"}, Data: dmauth.MD5Cred(dmauth.Key(serverName, serverSecret), srvNonce)},
						},
						Body: syncml.Body{Final: true, Commands: []syncml.Command{
							{Kind: syncml.KindStatus, CmdID: "1", MsgRef: "1", CmdRef: "0", Cmd: "SyncHdr", Data: "212"},
							{Kind: syncml.KindStatus, CmdID: "2", MsgRef: "1", CmdRef: cmdIDOf(got, "Alert", "1226"), Cmd: "Alert", Data: "200"},
						}},
					}
					b, err := syncml.Encode(reply, tc.enc)
					return b, tc.enc.ContentType(), err
				}
				t.Errorf("unexpected message %d", n)
				return nil, "", context.Canceled
			})
			d := dmsim.NewDevice(dmsim.Config{
				DevID: "IMEI:493005100592800", Man: "Example Devices Inc.", Mod: "EX-100",
				SwV: "EX-OS 1.4.2", FwV: "1.0.7", Encoding: tc.enc,
				AuthType: dmauth.TypeMD5, ClientName: clientName, ClientSecret: clientSecret,
				ClientNonce: unhex(t, "8f1d2a03c4b5e6f70718293a4b5c6d7e"),
				ServerName:  serverName, ServerSecret: serverSecret,
				ServerNonce: unhex(t, "11223344556677889900aabbccddeeff"),
				ServerURL:   base,
			})
			ctx := context.Background()
			rep, err := d.RunSession(ctx, tr, dmsim.SessionOptions{SessionID: "1A2B"})
			if err != nil || !rep.Ended || !rep.ServerAuthenticated || !rep.Authenticated {
				t.Fatalf("session 1A2B: %v; %s; warnings %q", err, rep.Summary(), rep.Warnings)
			}
			if !bytes.Equal(d.ClientNonce(), unhex(t, "a1b2c3d4e5f60718293a4b5c6d7e8f90")) {
				t.Errorf("client nonce after 02 = %x, want its NextNonce", d.ClientNonce())
			}
			if !bytes.Equal(d.ServerNonce(), srvNonce) {
				t.Errorf("server nonce %x, want the one sent in Pkg3 %x", d.ServerNonce(), srvNonce)
			}
			rep, err = d.RunSession(ctx, tr, dmsim.SessionOptions{SessionID: "1A2C", ForceClientInitiated: true})
			if err != nil || !rep.Ended || rep.GenericAlertsAcked != 1 || !rep.ServerAuthenticated {
				t.Fatalf("session 1A2C: %v; %s; warnings %q", err, rep.Summary(), rep.Warnings)
			}
			if n != 3 {
				t.Errorf("%d messages, want 3", n)
			}
		})
	}
}

func cmdIDOf(m *syncml.Message, kind, data string) string {
	for _, c := range m.Body.Commands {
		if c.Kind.String() == kind && c.Data == data {
			return c.CmdID
		}
	}
	return ""
}
