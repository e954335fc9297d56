package dmsim

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/pkg0"
	"github.com/dmgrid/dmgrid/pkg/wappush"
)

// pkg0Vector is one [pN] block of vectors/pkg0/vectors.txt.
type pkg0Vector struct {
	name, serverID, password, sessionHex string
	nonce                                []byte
	sms                                  [][]byte
}

func loadPkg0Vectors(t *testing.T) []pkg0Vector {
	t.Helper()
	var out []pkg0Vector
	sc := bufio.NewScanner(bytes.NewReader(vectors.Read(t, "pkg0/vectors.txt")))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "[") {
			name, rest, _ := strings.Cut(line[1:], "] ")
			v := pkg0Vector{name: name}
			for _, kv := range strings.Fields(rest) {
				k, val, _ := strings.Cut(kv, "=")
				switch k {
				case "serverid":
					v.serverID = val
				case "password":
					v.password = val
				case "nonce":
					n, err := hex.DecodeString(val)
					if err != nil {
						t.Fatal(err)
					}
					v.nonce = n
				}
			}
			out = append(out, v)
			continue
		}
		label, val, ok := strings.Cut(line, " = ")
		if !ok || len(out) == 0 {
			continue
		}
		v := &out[len(out)-1]
		label = strings.TrimSpace(label)
		switch {
		case strings.HasPrefix(label, "SessionID"):
			v.sessionHex = strings.Fields(val)[0]
		case strings.HasPrefix(label, "SMS") && strings.Contains(label, "TP-UD"):
			b, err := hex.DecodeString(strings.ReplaceAll(strings.TrimSpace(val), " ", ""))
			if err != nil {
				t.Fatalf("%s: %s: %v", v.name, label, err)
			}
			v.sms = append(v.sms, b)
		}
	}
	if len(out) != 5 {
		t.Fatalf("%d vectors, want p1..p5", len(out))
	}
	return out
}

func vectorDevice(v pkg0Vector, secret string, nonce []byte) *Device {
	return NewDevice(Config{DevID: "IMEI:pkg0-" + v.name, ServerName: v.serverID, ServerSecret: secret, ServerNonce: nonce})
}

// Every vector's SMS and Package 0 are accepted by a device holding the vector's server
// credentials and nonce, and give the vector's SessionID.
func TestReceivePackage0Vectors(t *testing.T) {
	for _, v := range loadPkg0Vectors(t) {
		t.Run(v.name, func(t *testing.T) {
			d := vectorDevice(v, v.password, v.nonce)
			sid, err := d.ReceivePackage0(v.sms)
			if err != nil || sid != v.sessionHex {
				t.Fatalf("ReceivePackage0 = %q, %v; want %q", sid, err, v.sessionHex)
			}
			// Segments in reverse order reassemble the same (concatenated SMS, p5).
			rev := make([][]byte, len(v.sms))
			for i := range v.sms {
				rev[len(v.sms)-1-i] = v.sms[i]
			}
			if sid, err := d.ReceivePackage0(rev); err != nil || sid != v.sessionHex {
				t.Fatalf("reversed segments = %q, %v", sid, err)
			}
			if sid, err := d.ReceiveWAPPush(vectors.Read(t, "pkg0/"+v.name+".wsp.bin")); err != nil || sid != v.sessionHex {
				t.Fatalf("ReceiveWAPPush = %q, %v", sid, err)
			}
			p, err := d.VerifyPackage0(vectors.Read(t, "pkg0/"+v.name+".pkg0.bin"))
			if err != nil || p.SessionID != v.sessionHex || p.Resync {
				t.Fatalf("VerifyPackage0 = %+v, %v", p, err)
			}
		})
	}
}

func TestReceivePackage0Rejects(t *testing.T) {
	vs := loadPkg0Vectors(t)
	p1 := vs[0]
	pkg := vectors.Read(t, "pkg0/p1.pkg0.bin")
	flip := func(b []byte, i int) []byte {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		return c
	}
	cases := []struct {
		name string
		d    *Device
		b    []byte
		want error
	}{
		{"forged digest", vectorDevice(p1, p1.password, p1.nonce), flip(pkg, 3), ErrDigest},
		{"altered trigger", vectorDevice(p1, p1.password, p1.nonce), flip(pkg, 21), ErrDigest},
		{"wrong secret", vectorDevice(p1, "other", p1.nonce), pkg, ErrDigest},
		{"stale nonce", vectorDevice(p1, p1.password, []byte("a newer nonce")), pkg, ErrDigest},
		{"no server credentials", vectorDevice(p1, "", p1.nonce), pkg, ErrDigest},
		{"other server", NewDevice(Config{ServerName: "other.example", ServerSecret: p1.password, ServerNonce: p1.nonce}), pkg, ErrUnknownServer},
		{"truncated", vectorDevice(p1, p1.password, p1.nonce), pkg[:20], ErrMalformedPackage0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := c.d.ServerNonce()
			_, err := c.d.VerifyPackage0(c.b)
			var pe *Package0Error
			if !errors.Is(err, c.want) || !errors.As(err, &pe) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
			if !bytes.Equal(c.d.ServerNonce(), before) {
				t.Fatal("a rejected package changed the nonce")
			}
		})
	}
	// Version 13 is not a notification version a 1.2 client implements.
	b, err := pkg0.Build(pkg0.Trigger{Version: 13, Initiator: pkg0.InitiatorServer, SessionID: 7, ServerID: p1.serverID},
		dmauth.Key(p1.serverID, p1.password), p1.nonce)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := vectorDevice(p1, p1.password, p1.nonce).VerifyPackage0(b); !errors.Is(err, ErrUnsupportedVersion) {
		t.Fatalf("version 13: %v", err)
	}
	// Wrong port, wrong push content.
	segs, _ := wappush.Segments(wappush.DMNotificationPDU(1, pkg), 1, 9999, wappush.PortWSPConnectionless)
	if _, err := vectorDevice(p1, p1.password, p1.nonce).ReceivePackage0([][]byte{segs[0].UD}); !errors.Is(err, ErrNotNotification) {
		t.Fatalf("port 9999: %v", err)
	}
	segs, _ = wappush.Segments(wappush.PushPDU(1, 0x03, 0x07, pkg), 1, wappush.PortWAPPush, wappush.PortWSPConnectionless)
	if _, err := vectorDevice(p1, p1.password, p1.nonce).ReceivePackage0([][]byte{segs[0].UD}); !errors.Is(err, ErrNotNotification) {
		t.Fatalf("text/plain push: %v", err)
	}
	// One segment of two is not a message.
	if _, err := vectorDevice(vs[4], vs[4].password, vs[4].nonce).ReceivePackage0(vs[4].sms[:1]); !errors.Is(err, ErrMalformedPackage0) {
		t.Fatalf("half of p5: %v", err)
	}
}

// A server that lost the device's nonce signs with the resync nonce (four zero bytes,
// PROTOCOL.md §7.4): the device accepts it and resets both nonces to it.
func TestReceivePackage0ResyncNonce(t *testing.T) {
	vs := loadPkg0Vectors(t)
	p3 := vs[2] // signed with nonce 00000000
	if !dmauth.IsResyncNonce(p3.nonce) {
		t.Fatalf("p3 nonce %x is not the resync nonce", p3.nonce)
	}
	d := NewDevice(Config{DevID: "IMEI:resync", ServerName: p3.serverID, ServerSecret: p3.password,
		ServerNonce: []byte("nonce-the-server-forgot"), AuthType: dmauth.TypeMD5, ClientName: "c", ClientSecret: "s",
		ClientNonce: []byte("client-nonce")})
	p, err := d.ReceivePackage0Info(p3.sms)
	if err != nil || !p.Resync || p.SessionID != p3.sessionHex {
		t.Fatalf("resync package = %+v, %v", p, err)
	}
	if !dmauth.IsResyncNonce(d.ServerNonce()) || !dmauth.IsResyncNonce(d.ClientNonce()) {
		t.Fatalf("nonces after resync: server %x client %x", d.ServerNonce(), d.ClientNonce())
	}
	// With the nonce in step the same package is a plain accept.
	if p, err := d.ReceivePackage0Info(p3.sms); err != nil || p.Resync {
		t.Fatalf("second time = %+v, %v", p, err)
	}
}
