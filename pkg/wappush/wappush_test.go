package wappush

import (
	"bytes"
	"encoding/hex"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

var vectorNames = []string{"p1", "p2", "p3", "p4", "p5"}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestVectorsPushPDU(t *testing.T) {
	for _, name := range vectorNames {
		pkg := vectors.Read(t, "pkg0/"+name+".pkg0.bin")
		wsp := vectors.Read(t, "pkg0/"+name+".wsp.bin")
		if got := DMNotificationPDU(0x01, pkg); !bytes.Equal(got, wsp) {
			t.Fatalf("%s: DMNotificationPDU = %x, want %x", name, got, wsp)
		}
		if got := PushPDU(0x01, 0xC4, 0x87, pkg); !bytes.Equal(got, wsp) {
			t.Fatalf("%s: PushPDU with encoded codes = %x", name, got)
		}
		p, err := ParsePushPDU(wsp)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if p.TID != 1 || p.PDUType != PDUTypePush || p.ContentType != 0x44 || p.ContentTypeText != "" ||
			!p.HasAppID || p.AppID != 7 || p.AppIDText != "" || !bytes.Equal(p.Headers, []byte{0xAF, 0x87}) ||
			!bytes.Equal(p.Body, pkg) || !p.IsDMNotification() {
			t.Fatalf("%s: parsed %+v", name, p)
		}
	}
}

func TestVectorsSMS(t *testing.T) {
	// vectors.txt / README: p1 user data = 0605040b8423f0 010603c4af87 + pkg0.
	p1 := vectors.Read(t, "pkg0/p1.pkg0.bin")
	want := append(unhex(t, "0605040b8423f0 010603c4af87"), p1...)
	segs, err := Segments(DMNotificationPDU(1, p1), 0x5a, DefaultDstPort, DefaultSrcPort)
	if err != nil || len(segs) != 1 {
		t.Fatalf("p1: %d segments, %v", len(segs), err)
	}
	if !bytes.Equal(segs[0].UD, want) || !bytes.Equal(segs[0].UDH, want[:7]) {
		t.Fatalf("p1 UD = %x\nwant %x", segs[0].UD, want)
	}
	h, payload, err := ParseUDH(segs[0].UD)
	if err != nil || !h.HasPorts || h.DstPort != 2948 || h.SrcPort != 9200 || h.Concatenated ||
		!bytes.Equal(payload, DMNotificationPDU(1, p1)) {
		t.Fatalf("p1 ParseUDH = %+v, %x, %v", h, payload, err)
	}

	// p5: 189-byte pkg0 → 195-byte push PDU → 2 segments of 128 + 67 payload bytes.
	p5 := vectors.Read(t, "pkg0/p5.pkg0.bin")
	wsp := vectors.Read(t, "pkg0/p5.wsp.bin")
	if len(p5) != 189 {
		t.Fatalf("p5 is %d bytes", len(p5))
	}
	segs, err = Segments(wsp, 0x5a, DefaultDstPort, DefaultSrcPort)
	if err != nil || len(segs) != 2 {
		t.Fatalf("p5: %d segments, %v", len(segs), err)
	}
	for i, s := range segs {
		udh := unhex(t, "0b0504 0b8423f0 0003 5a 02")
		udh = append(udh, byte(i+1))
		if !bytes.Equal(s.UDH, udh) || !bytes.Equal(s.UD[:12], udh) {
			t.Fatalf("p5 segment %d UDH %x, want %x", i+1, s.UDH, udh)
		}
		if len(s.UD) > MaxUserData {
			t.Fatalf("p5 segment %d is %d bytes", i+1, len(s.UD))
		}
		h, part, err := ParseUDH(s.UD)
		if err != nil || !h.Concatenated || h.Ref != 0x5a || h.Total != 2 || int(h.Seq) != i+1 || h.DstPort != 2948 {
			t.Fatalf("p5 segment %d ParseUDH %+v %v", i+1, h, err)
		}
		if !bytes.Equal(part, wsp[i*128:min((i+1)*128, len(wsp))]) {
			t.Fatalf("p5 segment %d payload", i+1)
		}
	}
	if len(segs[0].UD) != 140 || len(segs[1].UD) != 12+len(wsp)-128 {
		t.Fatalf("p5 segment sizes %d, %d", len(segs[0].UD), len(segs[1].UD))
	}
	// Cross-check with the hex in vectors.txt.
	txt := string(vectors.Read(t, "pkg0/vectors.txt"))
	for i, s := range segs {
		marker := []string{"SMS 1/2 TP-UD = ", "SMS 2/2 TP-UD = "}[i]
		j := strings.Index(txt, marker)
		if j < 0 {
			t.Fatalf("vectors.txt lacks %q", marker)
		}
		line := txt[j+len(marker):]
		line = line[:strings.IndexByte(line, '\n')]
		if !bytes.Equal(s.UD, unhex(t, line)) {
			t.Fatalf("segment %d differs from vectors.txt", i+1)
		}
	}
}

func TestSegmentBoundaries(t *testing.T) {
	for _, n := range []int{0, 1, SinglePayload, SinglePayload + 1, 2 * SegmentPayload, 2*SegmentPayload + 1, MaxSegments * SegmentPayload} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(i)
		}
		segs, err := Segments(payload, 7, 1, 2)
		if err != nil {
			t.Fatalf("%d: %v", n, err)
		}
		wantSegs := 1
		if n > SinglePayload {
			wantSegs = (n + SegmentPayload - 1) / SegmentPayload
		}
		if len(segs) != wantSegs {
			t.Fatalf("%d bytes: %d segments, want %d", n, len(segs), wantSegs)
		}
		var joined []byte
		for _, s := range segs {
			if len(s.UD) > MaxUserData {
				t.Fatalf("%d: segment of %d bytes", n, len(s.UD))
			}
			joined = append(joined, s.UD[len(s.UDH):]...)
		}
		if !bytes.Equal(joined, payload) {
			t.Fatalf("%d: payload not preserved", n)
		}
	}
	_, err := Segments(make([]byte, MaxSegments*SegmentPayload+1), 1, 1, 2)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize: %v", err)
	}
}

func TestReassemble(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	r := NewReassembler(Limits{}, nil)
	for _, n := range []int{0, 50, 133, 134, 195, 1000, MaxSegments * SegmentPayload} {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		segs, err := Segments(payload, byte(n), DefaultDstPort, DefaultSrcPort)
		if err != nil {
			t.Fatal(err)
		}
		// Shuffle and duplicate some segments; the last arrival completes it.
		order := rng.Perm(len(segs))
		var uds [][]byte
		for _, i := range order {
			uds = append(uds, segs[i].UD)
			if rng.IntN(3) == 0 {
				uds = append(uds, segs[i].UD)
			}
		}
		var got []byte
		completions := 0
		for _, ud := range uds {
			out, done, err := r.Add("+15550001", ud)
			if err != nil {
				t.Fatalf("%d: %v", n, err)
			}
			if done {
				completions++
				got = out
			}
		}
		// A duplicate arriving after completion starts a new partial that never
		// completes, so exactly one completion is expected for segmented
		// messages; an unsegmented one completes on every copy.
		if completions == 0 || len(segs) > 1 && completions != 1 {
			t.Fatalf("%d: %d completions", n, completions)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("%d: reassembled %d bytes, want %d", n, len(got), len(payload))
		}
		r = NewReassembler(Limits{}, nil)
	}
}

func TestReassembleVectorP5(t *testing.T) {
	wsp := vectors.Read(t, "pkg0/p5.wsp.bin")
	segs, err := Segments(wsp, 0x5a, DefaultDstPort, DefaultSrcPort)
	if err != nil {
		t.Fatal(err)
	}
	r := NewReassembler(Limits{}, nil)
	if out, done, err := r.Add("a", segs[1].UD); done || out != nil || err != nil {
		t.Fatalf("first part: %x %v %v", out, done, err)
	}
	if _, done, _ := r.Add("b", segs[0].UD); done {
		t.Fatal("parts of different originators joined")
	}
	if _, done, _ := r.Add("a", segs[1].UD); done {
		t.Fatal("duplicate completed the message")
	}
	out, done, err := r.Add("a", segs[0].UD)
	if !done || err != nil || !bytes.Equal(out, wsp) {
		t.Fatalf("p5 reassembly: %v %v", done, err)
	}
	p, err := ParsePushPDU(out)
	if err != nil || !p.IsDMNotification() || len(p.Body) != 189 {
		t.Fatalf("reassembled push: %+v %v", p, err)
	}
	if r.Pending() != 1 { // "b" still waits for its part 2
		t.Fatalf("pending %d", r.Pending())
	}
}

func TestReassemblerBounds(t *testing.T) {
	now := time.Unix(1000, 0)
	clock := func() time.Time { return now }
	seg := func(ref, total, seq byte, n int) []byte {
		ud := []byte{5, IEIConcat8, 3, ref, total, seq}
		return append(ud, make([]byte, n)...)
	}

	// Expiry by the caller's clock.
	r := NewReassembler(Limits{MaxAge: time.Minute}, clock)
	r.Add("o", seg(1, 2, 1, 10))
	now = now.Add(2 * time.Minute)
	if n := r.Expire(); n != 1 || r.Pending() != 0 {
		t.Fatalf("Expire dropped %d, pending %d", n, r.Pending())
	}
	if _, done, _ := r.Add("o", seg(1, 2, 2, 10)); done {
		t.Fatal("completed with an expired first part")
	}

	// MaxPending drops the oldest.
	r = NewReassembler(Limits{MaxPending: 2}, clock)
	for i := range byte(3) {
		now = now.Add(time.Second)
		r.Add("o", seg(i, 2, 1, 1))
	}
	if r.Pending() != 2 {
		t.Fatalf("pending %d, want 2", r.Pending())
	}
	if _, done, _ := r.Add("o", seg(0, 2, 2, 1)); done {
		t.Fatal("oldest partial was not dropped")
	}
	if _, done, _ := r.Add("o", seg(2, 2, 2, 1)); !done {
		t.Fatal("newest partial was dropped")
	}

	// MaxBytes: a message that cannot fit is refused.
	r = NewReassembler(Limits{MaxBytes: 50}, clock)
	if _, _, err := r.Add("o", seg(9, 3, 1, 30)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Add("o", seg(9, 3, 2, 30)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over MaxBytes: %v", err)
	}
	if r.Pending() != 0 || r.bytes != 0 {
		t.Fatalf("after refusal: pending %d bytes %d", r.Pending(), r.bytes)
	}

	// Reference reuse with a different total restarts the message.
	r = NewReassembler(Limits{}, clock)
	r.Add("o", seg(4, 3, 1, 1))
	r.Add("o", seg(4, 2, 1, 2))
	if out, done, _ := r.Add("o", seg(4, 2, 2, 2)); !done || len(out) != 4 {
		t.Fatalf("restart: %v %d", done, len(out))
	}
	if r.bytes != 0 {
		t.Fatalf("byte accounting leaked %d", r.bytes)
	}

	// Oversized user data and bad UDH.
	if _, _, err := r.Add("o", make([]byte, MaxUserData+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversize UD: %v", err)
	}
	if _, _, err := r.Add("o", []byte{9, 0}); !errors.Is(err, ErrTruncated) {
		t.Fatalf("bad UDH: %v", err)
	}
	// Unsegmented and total=1 messages complete at once.
	if out, done, err := r.Add("o", []byte{0, 'x'}); !done || err != nil || string(out) != "x" {
		t.Fatalf("single: %q %v %v", out, done, err)
	}
	if out, done, _ := r.Add("o", seg(1, 1, 1, 3)); !done || len(out) != 3 {
		t.Fatal("total=1")
	}
}

func TestParseUDH(t *testing.T) {
	cases := []struct {
		name    string
		ud      string
		want    UDH
		payload string
		err     error
	}{
		{"ports16", "0605040b8423f0 aa", UDH{HasPorts: true, DstPort: 2948, SrcPort: 9200}, "aa", nil},
		{"ports8", "04040250 51 bb", UDH{HasPorts: true, DstPort: 0x50, SrcPort: 0x51}, "bb", nil},
		{"concat8", "050003 7f 03 02 cc", UDH{Concatenated: true, Ref: 0x7f, Total: 3, Seq: 2}, "cc", nil},
		{"concat16", "06080412 34 0201 dd", UDH{Concatenated: true, Ref: 0x1234, Total: 2, Seq: 1}, "dd", nil},
		{"unknown skipped", "0a 2402 0101 0504 0b8423f0 ee", UDH{HasPorts: true, DstPort: 2948, SrcPort: 9200}, "ee", nil},
		{"empty udh", "00 ff", UDH{}, "ff", nil},
		{"last wins", "0a 0504 0b8423f0 0402 0102", UDH{HasPorts: true, DstPort: 1, SrcPort: 2}, "", nil},
		{"seq 0 ignored", "05 0003 01 02 00", UDH{}, "", nil},
		{"seq>total ignored", "05 0003 01 02 03", UDH{}, "", nil},
		{"total 0 ignored", "05 0003 01 00 01", UDH{}, "", nil},
		{"empty", "", UDH{}, "", ErrTruncated},
		{"udhl past end", "06 0504", UDH{}, "", ErrTruncated},
		{"ie past udhl", "03 0504 0b", UDH{}, "", ErrMalformed},
		{"ie header cut", "01 05", UDH{}, "", ErrMalformed},
		{"wrong ie len", "04 0502 0b84", UDH{}, "", ErrMalformed},
	}
	for _, c := range cases {
		h, payload, err := ParseUDH(unhex(t, c.ud))
		if c.err != nil {
			var e *Error
			if !errors.Is(err, c.err) || !errors.As(err, &e) || e.Offset < 0 {
				t.Errorf("%s: err %v, want %v", c.name, err, c.err)
			}
			continue
		}
		if err != nil || h != c.want || hex.EncodeToString(payload) != c.payload {
			t.Errorf("%s: %+v %x %v", c.name, h, payload, err)
		}
	}
}

func TestParsePushPDUForms(t *testing.T) {
	body := "deadbeef"
	cases := []struct {
		name string
		pdu  string
		ct   uint32
		ctT  string
		app  uint32
		appT string
		has  bool
		dm   bool
	}{
		{"binary", "0106 03 c4 af87", 0x44, "", 7, "", true, true},
		{"confirmed push", "0107 03 c4 af87", 0x44, "", 7, "", true, true},
		{"text content type",
			"0106 26" + hex.EncodeToString([]byte("application/vnd.syncml.notification\x00")) + "af87",
			0, ContentTypeSyncMLNotificationText, 7, "", true, true},
		{"text app id",
			"0106 1e" + "c4af" + hex.EncodeToString([]byte("x-wap-application:syncml.dm\x00")),
			0x44, "", 0, AppIDSyncMLDMText, true, true},
		{"general form with charset param, long app id",
			"0106 08 03c4 8184 af 020007 ", 0x44, "", 7, "", true, true},
		{"long integer content type", "0106 06 03 020201 af87", 0x0201, "", 7, "", true, false},
		{"unknown headers and shifts skipped",
			"0106 16 c4 " + "8e 02 0102 " + "a5 68656c6c6f00 " + "7f 02 af 81 " + "1f af 82 " + "01 af 87",
			0x44, "", 7, "", true, true},
		{"text header name",
			"0106 1c c4 " + hex.EncodeToString([]byte("X-WAP-Application-ID\x00")) + "87 " + "9f 1f 02 0000",
			0x44, "", 7, "", true, true},
		{"no app id", "0106 01 c4", 0x44, "", 0, "", false, false},
		{"other app id", "0106 03 c4 af84", 0x44, "", 4, "", true, false},
		{"uintvar headers len", "0106 8003 c4af87", 0x44, "", 7, "", true, true},
	}
	for _, c := range cases {
		pdu := unhex(t, c.pdu+body)
		p, err := ParsePushPDU(pdu)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if p.ContentType != c.ct || p.ContentTypeText != c.ctT || p.AppID != c.app || p.AppIDText != c.appT ||
			p.HasAppID != c.has || p.IsDMNotification() != c.dm || hex.EncodeToString(p.Body) != body {
			t.Errorf("%s: %+v (dm %v)", c.name, p, p.IsDMNotification())
		}
	}
}

func TestParsePushPDUErrors(t *testing.T) {
	cases := []struct {
		name string
		pdu  string
		err  error
		off  int
	}{
		{"empty", "", ErrTruncated, 0},
		{"two bytes", "0106", ErrTruncated, 2},
		{"not push", "0140 00", ErrUnsupported, 1},
		{"headers len past end", "0106 05 c4af87", ErrTruncated, 6},
		{"headers len zero", "0106 00", ErrMalformed, 3},
		{"uintvar too long", "0106 8080808080 01", ErrMalformed, 2},
		{"uintvar overflow", "0106 9080808000", ErrMalformed, 2},
		{"uintvar cut", "0106 80", ErrTruncated, 3},
		{"text unterminated", "0106 03 616263", ErrMalformed, 3},
		{"general form past headers", "0106 02 05c4", ErrMalformed, 3},
		{"general form empty", "0106 01 00", ErrMalformed, 3},
		{"long int too long", "0106 07 06 05 0102030405", ErrMalformed, 4},
		{"header value missing", "0106 02 c4 af", ErrMalformed, 5},
		{"header value past end", "0106 04 c4 8e 05 01", ErrMalformed, 5},
		{"shift without page", "0106 02 c4 7f", ErrMalformed, 4},
		{"empty header name", "0106 02 c4 00", ErrMalformed, 4},
		{"app header without value", "0106 04 c4 616200", ErrMalformed, 7},
		{"bad app id", "0106 03 c4 af 00", ErrMalformed, 5},
		{"unterminated quoted content type", "0106 01 7f", ErrMalformed, 3},
		{"empty text content type", "0106 02 7f00", ErrMalformed, 3},
	}
	for _, c := range cases {
		_, err := ParsePushPDU(unhex(t, c.pdu))
		var e *Error
		if !errors.Is(err, c.err) || !errors.As(err, &e) || e.Offset != c.off {
			t.Errorf("%s: err %v, want %v at offset %d", c.name, err, c.err, c.off)
		}
	}
}

func TestTruncatedPushPDU(t *testing.T) {
	wsp := vectors.Read(t, "pkg0/p1.wsp.bin")
	for n := 0; n < 6; n++ {
		if _, err := ParsePushPDU(wsp[:n]); err == nil {
			t.Fatalf("[:%d] parsed", n)
		}
	}
}

func FuzzParsePushPDU(f *testing.F) {
	for _, name := range vectorNames {
		f.Add(vectors.Read(f, "pkg0/"+name+".wsp.bin"))
	}
	f.Add(unhex(f, "0106 1c c4 "+hex.EncodeToString([]byte("X-WAP-Application-ID\x00"))+"87 9f 1f 02 0000"))
	f.Add(unhex(f, "0106 08 03c4 8184 af 020007 aa"))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := ParsePushPDU(b)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(b) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if len(p.Headers)+len(p.Body) > len(b) {
			t.Fatal("slices exceed input")
		}
		if p.ContentTypeText == "" && p.HasAppID && p.AppIDText == "" && p.ContentType < 0x80 && p.AppID < 0x80 {
			// Re-encoding the essentials parses back to the same values.
			q, err := ParsePushPDU(PushPDU(p.TID, byte(p.ContentType), byte(p.AppID), p.Body))
			if err != nil || q.ContentType != p.ContentType || q.AppID != p.AppID || !bytes.Equal(q.Body, p.Body) {
				t.Fatalf("re-encode: %+v %v", q, err)
			}
		}
	})
}

func FuzzParseUDH(f *testing.F) {
	f.Add(unhex(f, "0605040b8423f0010603c4af87"))
	f.Add(unhex(f, "0b05040b8423f00003 5a0201 aa"))
	f.Add(unhex(f, "06080412340201dd"))
	f.Add(unhex(f, "0a240201010504 0b8423f0ee"))
	f.Fuzz(func(t *testing.T, ud []byte) {
		h, payload, err := ParseUDH(ud)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(ud) {
				t.Fatalf("bad error %v", err)
			}
			return
		}
		if len(payload) >= len(ud) || !bytes.Equal(payload, ud[len(ud)-len(payload):]) {
			t.Fatal("payload is not the tail of ud")
		}
		if h.Concatenated && (h.Total == 0 || h.Seq == 0 || h.Seq > h.Total) {
			t.Fatalf("invalid concatenation accepted: %+v", h)
		}
		// The reassembler accepts whatever ParseUDH accepts (within 140 bytes) without panicking.
		r := NewReassembler(Limits{MaxPending: 2, MaxBytes: 300}, nil)
		if len(ud) <= MaxUserData {
			if _, _, err := r.Add("x", ud); err != nil && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("Add after ParseUDH ok: %v", err)
			}
		}
	})
}

func FuzzReassembler(f *testing.F) {
	f.Add([]byte{0x05, 0x00, 0x03, 0x01, 0x02, 0x01, 0xaa, 0xff, 0x05, 0x00, 0x03, 0x01, 0x02, 0x02, 0xbb})
	f.Fuzz(func(t *testing.T, stream []byte) {
		// The stream is a sequence of <len><ud> records from two originators.
		now := time.Unix(0, 0)
		r := NewReassembler(Limits{MaxPending: 3, MaxBytes: 400, MaxAge: 3 * time.Second}, func() time.Time { return now })
		for i := 0; i < len(stream); {
			n := int(stream[i] & 0x7F)
			orig := "a"
			if stream[i]&0x80 != 0 {
				orig = "b"
			}
			i++
			ud := stream[i:min(i+n, len(stream))]
			i += len(ud)
			now = now.Add(time.Second)
			out, done, err := r.Add(orig, ud)
			if done && err != nil || !done && out != nil {
				t.Fatalf("inconsistent result %x %v %v", out, done, err)
			}
			if r.bytes < 0 || r.bytes > 400 || r.Pending() > 3 {
				t.Fatalf("bounds broken: bytes %d pending %d", r.bytes, r.Pending())
			}
		}
	})
}
