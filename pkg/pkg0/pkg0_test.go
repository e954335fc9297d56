package pkg0

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/dmauth"
)

// vector is one [pN] block of vectors/pkg0/vectors.txt.
type vector struct {
	name, serverID, password string
	nonce                    []byte
	version                  uint16
	ui                       UIMode
	init                     Initiator
	session                  uint16
	vendor                   []byte
	key                      string
	trigger, pkg0            []byte
	digest                   []byte
	sessionHex               string
}

// loadVectors parses vectors.txt: a "[pN] k=v ..." line, then "  label = value" lines.
func loadVectors(t *testing.T) []vector {
	t.Helper()
	var out []vector
	sc := bufio.NewScanner(bytes.NewReader(vectors.Read(t, "pkg0/vectors.txt")))
	sc.Buffer(nil, 1<<20)
	mustHex := func(s string) []byte {
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("vectors.txt: bad hex %q: %v", s, err)
		}
		return b
	}
	mustUint := func(s string, bits int) uint64 {
		n, err := strconv.ParseUint(s, 0, bits)
		if err != nil {
			t.Fatalf("vectors.txt: bad number %q: %v", s, err)
		}
		return n
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "[") {
			name, rest, _ := strings.Cut(line[1:], "] ")
			v := vector{name: name}
			for _, kv := range strings.Fields(rest) {
				k, val, _ := strings.Cut(kv, "=")
				switch k {
				case "serverid":
					v.serverID = val
				case "password":
					v.password = val
				case "nonce":
					v.nonce = mustHex(val)
				case "version":
					v.version = uint16(mustUint(val, 10))
				case "ui-mode":
					v.ui = UIMode(mustUint(val, 2))
				case "initiator":
					v.init = Initiator(mustUint(val, 1))
				case "session":
					v.session = uint16(mustUint(val, 16))
				case "vendor":
					if val != "<none>" {
						v.vendor = mustHex(val)
					}
				}
			}
			out = append(out, v)
			continue
		}
		if len(out) == 0 {
			continue
		}
		v := &out[len(out)-1]
		label, val, ok := strings.Cut(line, " = ")
		if !ok {
			continue
		}
		label, val = strings.TrimSpace(label), strings.Fields(val)[0]
		switch {
		case strings.HasPrefix(label, "B64(MD5(serverid"):
			v.key = val
		case strings.HasPrefix(label, "trigger"):
			v.trigger = mustHex(val)
		case label == "digest":
			v.digest = mustHex(val)
		case label == "pkg0":
			v.pkg0 = mustHex(val)
		case strings.HasPrefix(label, "SessionID"):
			v.sessionHex = val
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 5 {
		t.Fatalf("vectors.txt: %d vectors, want p1..p5", len(out))
	}
	for _, v := range out {
		if v.key == "" || v.trigger == nil || v.digest == nil || v.pkg0 == nil || v.sessionHex == "" {
			t.Fatalf("vectors.txt: %s incomplete: %+v", v.name, v)
		}
	}
	return out
}

func (v vector) want() Trigger {
	return Trigger{Version: v.version, UIMode: v.ui, Initiator: v.init, SessionID: v.session,
		ServerID: v.serverID, Vendor: v.vendor}
}

func TestVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.name, func(t *testing.T) {
			trig := vectors.Read(t, "pkg0/"+v.name+".trigger.bin")
			pkg := vectors.Read(t, "pkg0/"+v.name+".pkg0.bin")
			if !bytes.Equal(trig, v.trigger) || !bytes.Equal(pkg, v.pkg0) {
				t.Fatal(".bin files disagree with vectors.txt")
			}
			key := dmauth.Key(v.serverID, v.password)
			if key != v.key {
				t.Fatalf("key %s, want %s", key, v.key)
			}

			got, err := v.want().Marshal()
			if err != nil || !bytes.Equal(got, trig) {
				t.Fatalf("Marshal = %x, %v; want %x", got, err, trig)
			}
			d := Digest(v.serverID, v.password, v.nonce, trig)
			if !bytes.Equal(d[:], v.digest) {
				t.Fatalf("Digest = %x, want %x", d, v.digest)
			}
			if dk := DigestFromKey(key, v.nonce, trig); dk != d {
				t.Fatalf("DigestFromKey = %x, want %x", dk, d)
			}
			built, err := Build(v.want(), key, v.nonce)
			if err != nil || !bytes.Equal(built, pkg) {
				t.Fatalf("Build = %x, %v; want %x", built, err, pkg)
			}

			p, err := Parse(pkg)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !equalTrigger(p.Trigger, v.want()) {
				t.Fatalf("Parse trigger = %+v, want %+v", p.Trigger, v.want())
			}
			if !bytes.Equal(p.Digest[:], v.digest) || !bytes.Equal(p.TriggerBytes, trig) {
				t.Fatalf("Parse digest %x trigger %x", p.Digest, p.TriggerBytes)
			}
			if b, err := p.Bytes(); err != nil || !bytes.Equal(b, pkg) {
				t.Fatalf("Bytes = %x, %v", b, err)
			}
			if pt, err := ParseTrigger(trig); err != nil || !equalTrigger(pt, v.want()) {
				t.Fatalf("ParseTrigger = %+v, %v", pt, err)
			}
			if !p.Verify(key, v.nonce) {
				t.Fatal("Verify with the right key and nonce = false")
			}
			if p.Verify(dmauth.Key(v.serverID, "wrong"), v.nonce) || p.Verify("", v.nonce) {
				t.Fatal("Verify with a wrong key = true")
			}
			if ok, resync := p.VerifyWithResync(key, v.nonce); !ok || resync {
				t.Fatalf("VerifyWithResync(right nonce) = %v, %v", ok, resync)
			}
			if got := SessionIDHex(p.Trigger.SessionID); got != v.sessionHex {
				t.Fatalf("SessionIDHex = %s, want %s", got, v.sessionHex)
			}
		})
	}
}

func TestResyncVector(t *testing.T) {
	// p3 was built with the resync nonce (four zero bytes, PROTOCOL.md §7.4).
	key := dmauth.Key("com.example.dms", "serverSecret!")
	p, err := Parse(vectors.Read(t, "pkg0/p3.pkg0.bin"))
	if err != nil {
		t.Fatal(err)
	}
	stored := []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}
	if p.Verify(key, stored) {
		t.Fatal("p3 verified with the stored nonce")
	}
	if ok, resync := p.VerifyWithResync(key, stored); !ok || !resync {
		t.Fatalf("VerifyWithResync(stored) = %v, %v; want true, true", ok, resync)
	}
	if ok, resync := p.VerifyWithResync(key, dmauth.ResyncNonce()); !ok || resync {
		t.Fatalf("VerifyWithResync(zero) = %v, %v; want true, false", ok, resync)
	}
	if ok, resync := p.VerifyWithResync(dmauth.Key("com.example.dms", "x"), stored); ok || resync {
		t.Fatalf("VerifyWithResync(wrong key) = %v, %v", ok, resync)
	}
	// p1 was not built with the zero nonce.
	p1, _ := Parse(vectors.Read(t, "pkg0/p1.pkg0.bin"))
	if ok, _ := p1.VerifyWithResync(key, []byte("other")); ok {
		t.Fatal("p1 verified with a wrong nonce")
	}
}

func equalTrigger(a, b Trigger) bool {
	return a.Version == b.Version && a.UIMode == b.UIMode && a.Initiator == b.Initiator &&
		a.SessionID == b.SessionID && a.ServerID == b.ServerID && bytes.Equal(a.Vendor, b.Vendor)
}

func TestHeaderExample(t *testing.T) {
	// PROTOCOL.md §9.1: version 11, ui 0, initiator 1 → 02 C8 00 00 00.
	b, err := Trigger{Version: DefaultVersion, Initiator: InitiatorServer, SessionID: 0x1A2B, ServerID: "x"}.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if want := []byte{0x02, 0xC8, 0, 0, 0, 0x1A, 0x2B, 1, 'x'}; !bytes.Equal(b, want) {
		t.Fatalf("got % x, want % x", b, want)
	}
}

func TestMarshalErrors(t *testing.T) {
	ok := Trigger{Version: 11, ServerID: "s"}
	cases := []struct {
		name string
		mod  func(*Trigger)
		err  error
	}{
		{"version", func(t *Trigger) { t.Version = 1024 }, ErrInvalidTrigger},
		{"ui", func(t *Trigger) { t.UIMode = 4 }, ErrInvalidTrigger},
		{"initiator", func(t *Trigger) { t.Initiator = 2 }, ErrInvalidTrigger},
		{"empty id", func(t *Trigger) { t.ServerID = "" }, ErrInvalidTrigger},
		{"long id", func(t *Trigger) { t.ServerID = strings.Repeat("a", 256) }, ErrInvalidTrigger},
		{"huge vendor", func(t *Trigger) { t.Vendor = make([]byte, MaxSize) }, ErrTooLarge},
	}
	for _, c := range cases {
		tr := ok
		c.mod(&tr)
		_, err := tr.Marshal()
		var e *Error
		if !errors.Is(err, c.err) || !errors.As(err, &e) || e.Offset != -1 {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
		if _, err := Build(tr, "k", nil); !errors.Is(err, c.err) {
			t.Errorf("%s: Build err %v", c.name, err)
		}
	}
	// Boundaries that must work.
	edge := Trigger{Version: MaxVersion, UIMode: 3, Initiator: 1, SessionID: 0xFFFF, ServerID: strings.Repeat("z", 255)}
	b, err := Build(edge, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	p, err := Parse(b)
	if err != nil || !equalTrigger(p.Trigger, edge) {
		t.Fatalf("edge round trip: %+v, %v", p.Trigger, err)
	}
	if _, err := Build(ok, "", nil); !errors.Is(err, ErrInvalidTrigger) {
		t.Fatalf("Build with empty key: %v", err)
	}
}

func TestRoundTrip(t *testing.T) {
	key := dmauth.Key("srv", "pw")
	nonce := []byte{1, 2, 3}
	for v := uint16(0); v <= MaxVersion; v += 93 {
		for ui := UIMode(0); ui <= 3; ui++ {
			for in := Initiator(0); in <= 1; in++ {
				tr := Trigger{Version: v, UIMode: ui, Initiator: in, SessionID: v * 61, ServerID: "srv", Vendor: []byte{byte(v)}}
				b, err := Build(tr, key, nonce)
				if err != nil {
					t.Fatal(err)
				}
				p, err := Parse(b)
				if err != nil || !equalTrigger(p.Trigger, tr) || !p.Verify(key, nonce) {
					t.Fatalf("%+v: got %+v, %v", tr, p.Trigger, err)
				}
			}
		}
	}
}

func TestFutureBitsTolerated(t *testing.T) {
	b := vectors.Read(t, "pkg0/p1.pkg0.bin")
	b[DigestSize+4] |= 0x01 // lowest future-use bit
	b[DigestSize+2] |= 0x40
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if p.Trigger.Version != 11 || p.Trigger.Initiator != 1 || p.Trigger.SessionID != 0x1A2B {
		t.Fatalf("fields changed: %+v", p.Trigger)
	}
	// The digest covers the received bytes, so it no longer matches.
	if p.Verify(dmauth.Key("com.example.dms", "serverSecret!"), []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff}) {
		t.Fatal("verified after tampering")
	}
}

func TestTruncatedEveryOffset(t *testing.T) {
	for _, f := range vectors.Glob(t, "pkg0/p*.pkg0.bin") {
		b := vectors.Read(t, "pkg0/"+filepath.Base(f))
		idEnd := MinSize + int(b[MinSize-1])
		for n := 0; n < len(b); n++ {
			_, err := Parse(b[:n])
			if n < idEnd {
				var e *Error
				if !errors.Is(err, ErrTruncated) || !errors.As(err, &e) || e.Offset != n {
					t.Fatalf("%s[:%d]: err %v, want ErrTruncated at offset %d", f, n, err, n)
				}
			} else if err != nil {
				// Vendor bytes are optional: any cut after the id still parses.
				t.Fatalf("%s[:%d]: %v", f, n, err)
			}
		}
		tb := b[DigestSize:]
		for n := 0; n < idEnd-DigestSize; n++ {
			if _, err := ParseTrigger(tb[:n]); !errors.Is(err, ErrTruncated) {
				t.Fatalf("ParseTrigger %s[:%d]: %v", f, n, err)
			}
		}
	}
}

func TestParseErrors(t *testing.T) {
	p1 := vectors.Read(t, "pkg0/p1.pkg0.bin")
	zeroLen := append([]byte(nil), p1...)
	zeroLen[MinSize-1] = 0
	_, err := Parse(zeroLen)
	var e *Error
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &e) || e.Offset != MinSize-1 {
		t.Fatalf("zero id length: %v", err)
	}
	if !strings.Contains(err.Error(), "offset 23") {
		t.Fatalf("message lacks the offset: %v", err)
	}
	if _, err := Parse(make([]byte, MaxSize+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
	if _, err := ParseTrigger(make([]byte, MaxSize)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize trigger: %v", err)
	}
}

func TestParseDoesNotAlias(t *testing.T) {
	b := vectors.Read(t, "pkg0/p2.pkg0.bin")
	p, err := Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i := range b {
		b[i] = 0
	}
	if p.Trigger.Vendor[0] != 0xca || p.TriggerBytes[0] != 0x02 {
		t.Fatal("Parse result aliases its input")
	}
}

func TestSessionIDHex(t *testing.T) {
	for id, want := range map[uint16]string{0: "0", 1: "1", 0xF: "F", 0x10: "10", 0x0100: "100", 0x1A2B: "1A2B", 0xFFFF: "FFFF"} {
		if got := SessionIDHex(id); got != want {
			t.Errorf("SessionIDHex(%#x) = %s, want %s", id, got, want)
		}
	}
}

func TestStrings(t *testing.T) {
	if UIModeBackground.String() != "background" || UIMode(7).String() != "UIMode(7)" ||
		InitiatorServer.String() != "server" || Initiator(5).String() != "Initiator(5)" {
		t.Fatal("String methods")
	}
}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"p1", "p2", "p3", "p4", "p5"} {
		f.Add(vectors.Read(f, "pkg0/"+name+".pkg0.bin"))
	}
	f.Add([]byte{})
	f.Add(make([]byte, MinSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := Parse(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 {
				t.Fatalf("error without offset: %v", err)
			}
			return
		}
		tb, err := p.Trigger.Marshal()
		if err != nil {
			t.Fatalf("parsed trigger does not marshal: %+v: %v", p.Trigger, err)
		}
		again, err := ParseTrigger(tb)
		if err != nil || !equalTrigger(again, p.Trigger) {
			t.Fatalf("parse→Marshal→parse changed %+v into %+v (%v)", p.Trigger, again, err)
		}
		// Marshal only differs from the input in the future-use bits.
		if len(tb) != len(p.TriggerBytes) || !bytes.Equal(tb[5:], p.TriggerBytes[5:]) {
			t.Fatalf("Marshal %x vs input %x", tb, p.TriggerBytes)
		}
	})
}
