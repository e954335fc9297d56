package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/wappush"
)

const (
	p0ServerID = "com.example.dms"
	p0Secret   = "serverSecret!"
	p0Nonce    = "11223344556677889900aabbccddeeff"
)

// p0Vectors are the build parameters of vectors/pkg0 (README table).
var p0Vectors = []struct {
	name    string
	nonce   string
	version string
	ui      string
	session string
	vendor  string
	// expected decode fields
	sid    uint16
	sidHex string
}{
	{"p1", p0Nonce, "11", "0", "0x1A2B", "", 0x1A2B, "1A2B"},
	{"p2", p0Nonce, "11", "3", "1", "cafe01", 1, "1"},
	{"p3", "00000000", "11", "1", "65535", "", 0xFFFF, "FFFF"},
	{"p4", p0Nonce, "12", "0", "6699", "", 0x1A2B, "1A2B"},
	{"p5", p0Nonce, "11", "2", "0x0100", strings.Repeat("aa", 150), 0x100, "100"},
}

// runPkg0 runs dmctl with the given stdin.
func runPkg0(t *testing.T, stdin []byte, args ...string) (int, []byte, string) {
	t.Helper()
	var o, e bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &o, &e)
	return code, o.Bytes(), e.String()
}

func buildArgs(name, nonce, version, ui, session, vendor string) []string {
	args := []string{"pkg0", "build", "--server-id", p0ServerID, "--nonce", nonce,
		"--version", version, "--ui-mode", ui, "--session-id", session}
	if vendor != "" {
		args = append(args, "--vendor", vendor)
	}
	return args
}

func TestPkg0BuildVectors(t *testing.T) {
	t.Setenv(pkg0SecretEnv, "")
	for _, v := range p0Vectors {
		args := append(buildArgs(v.name, v.nonce, v.version, v.ui, v.session, v.vendor), "--secret", p0Secret)
		code, out, errOut := runPkg0(t, nil, args...)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", v.name, code, errOut)
		}
		if want := vectors.Read(t, "pkg0/"+v.name+".pkg0.bin"); !bytes.Equal(out, want) {
			t.Fatalf("%s: built %x\nwant %x", v.name, out, want)
		}
		code, out, errOut = runPkg0(t, nil, append(args, "--wsp")...)
		if want := vectors.Read(t, "pkg0/"+v.name+".wsp.bin"); code != 0 || !bytes.Equal(out, want) {
			t.Fatalf("%s --wsp: exit %d %s: %x", v.name, code, errOut, out)
		}
		code, out, _ = runPkg0(t, nil, append(args, "--hex")...)
		if want := hex.EncodeToString(vectors.Read(t, "pkg0/"+v.name+".pkg0.bin")) + "\n"; code != 0 || string(out) != want {
			t.Fatalf("%s --hex: %q", v.name, out)
		}
	}
}

func TestPkg0BuildSecretFromEnv(t *testing.T) {
	t.Setenv(pkg0SecretEnv, p0Secret)
	v := p0Vectors[0]
	code, out, errOut := runPkg0(t, nil, append(buildArgs(v.name, v.nonce, v.version, v.ui, v.session, v.vendor), "--initiator", "server")...)
	if code != 0 || !bytes.Equal(out, vectors.Read(t, "pkg0/p1.pkg0.bin")) {
		t.Fatalf("exit %d %s: %x", code, errOut, out)
	}
}

type decoded struct {
	Input        string `json:"input"`
	Version      uint16 `json:"version"`
	UIMode       uint8  `json:"ui_mode"`
	Initiator    string `json:"initiator"`
	SessionID    uint16 `json:"session_id"`
	SessionIDHex string `json:"session_id_hex"`
	ServerID     string `json:"server_id"`
	VendorHex    string `json:"vendor_hex"`
	DigestHex    string `json:"digest_hex"`
	DigestOK     *bool  `json:"digest_ok"`
	ResyncNonce  bool   `json:"resync_nonce"`
}

func decode(t *testing.T, in []byte, args ...string) decoded {
	t.Helper()
	code, out, errOut := runPkg0(t, in, append([]string{"pkg0", "decode"}, args...)...)
	if code != 0 {
		t.Fatalf("decode %v: exit %d: %s", args, code, errOut)
	}
	var d decoded
	dec := json.NewDecoder(bytes.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("decode output %s: %v", out, err)
	}
	return d
}

func TestPkg0DecodeVectors(t *testing.T) {
	t.Setenv(pkg0SecretEnv, "")
	for _, v := range p0Vectors {
		pkg := vectors.Read(t, "pkg0/"+v.name+".pkg0.bin")
		wsp := vectors.Read(t, "pkg0/"+v.name+".wsp.bin")
		forms := map[string][]byte{"pkg0": pkg, "wsp": wsp}
		if segs, err := wappush.Segments(wsp, 1, wappush.DefaultDstPort, wappush.DefaultSrcPort); err == nil && len(segs) == 1 {
			forms["sms"] = segs[0].UD
		}
		if v.name != "p5" && forms["sms"] == nil {
			t.Fatalf("%s: no single SMS", v.name)
		}
		for kind, in := range forms {
			secretArgs := []string{"--secret", p0Secret, "--nonce", v.nonce}
			d := decode(t, in, secretArgs...)
			if d.Input != kind || d.Version != mustU16(t, v.version) || d.UIMode != uint8(mustU16(t, v.ui)) ||
				d.Initiator != "server" || d.SessionID != v.sid || d.SessionIDHex != v.sidHex ||
				d.ServerID != p0ServerID || d.VendorHex != v.vendor || d.DigestHex != hex.EncodeToString(pkg[:16]) {
				t.Fatalf("%s/%s: %+v", v.name, kind, d)
			}
			if d.DigestOK == nil || !*d.DigestOK || d.ResyncNonce {
				t.Fatalf("%s/%s: digest_ok %v resync %v", v.name, kind, d.DigestOK, d.ResyncNonce)
			}
			// With an explicit --server-id and forced --input.
			d = decode(t, in, append(secretArgs, "--server-id", p0ServerID, "--input", kind)...)
			if d.DigestOK == nil || !*d.DigestOK {
				t.Fatalf("%s/%s: forced input: %+v", v.name, kind, d)
			}
			// Wrong secret.
			d = decode(t, in, "--secret", "nope", "--nonce", v.nonce)
			if d.DigestOK == nil || *d.DigestOK {
				t.Fatalf("%s/%s: wrong secret verified", v.name, kind)
			}
			// No secret: no digest_ok at all.
			if d = decode(t, in); d.DigestOK != nil {
				t.Fatalf("%s/%s: digest_ok without a secret", v.name, kind)
			}
			// Hex text input.
			if d = decode(t, []byte(hex.EncodeToString(in)+"\n"), "--hex"); d.Input != kind || d.SessionID != v.sid {
				t.Fatalf("%s/%s --hex: %+v", v.name, kind, d)
			}
		}
	}
}

func mustU16(t *testing.T, s string) uint16 {
	t.Helper()
	var n uint16
	for _, c := range s {
		n = n*10 + uint16(c-'0')
	}
	return n
}

func TestPkg0DecodeResync(t *testing.T) {
	// p3 was built with the zero nonce; checking it against the stored nonce
	// succeeds only through the resync nonce (PROTOCOL.md §7.4).
	t.Setenv(pkg0SecretEnv, p0Secret)
	d := decode(t, vectors.Read(t, "pkg0/p3.pkg0.bin"), "--nonce", p0Nonce)
	if d.DigestOK == nil || !*d.DigestOK || !d.ResyncNonce {
		t.Fatalf("p3 with the stored nonce: %+v", d)
	}
	code, out, _ := runPkg0(t, vectors.Read(t, "pkg0/p3.pkg0.bin"), "pkg0", "decode", "--nonce", "00000000")
	if code != 0 || bytes.Contains(out, []byte("resync_nonce")) || !bytes.Contains(out, []byte(`"digest_ok": true`)) {
		t.Fatalf("p3 with the zero nonce: %s", out)
	}
	// The env secret without --nonce only decodes.
	if d = decode(t, vectors.Read(t, "pkg0/p3.pkg0.bin")); d.DigestOK != nil {
		t.Fatalf("env secret without --nonce checked the digest: %+v", d)
	}
}

func TestPkg0DecodeBadInput(t *testing.T) {
	t.Setenv(pkg0SecretEnv, "")
	p1 := vectors.Read(t, "pkg0/p1.pkg0.bin")
	wsp := vectors.Read(t, "pkg0/p1.wsp.bin")
	segs, err := wappush.Segments(vectors.Read(t, "pkg0/p5.wsp.bin"), 9, wappush.DefaultDstPort, wappush.DefaultSrcPort)
	if err != nil {
		t.Fatal(err)
	}
	check := func(name string, in []byte, want string, args ...string) {
		t.Helper()
		code, out, errOut := runPkg0(t, in, append([]string{"pkg0", "decode"}, args...)...)
		if code != 1 || len(out) != 0 {
			t.Fatalf("%s: exit %d, stdout %q", name, code, out)
		}
		if !strings.HasPrefix(errOut, "dmctl: ") || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("%s: stderr %q does not name %q on one line", name, errOut, want)
		}
	}
	for n := 0; n < 24+15; n++ {
		if n == 0 {
			check("empty", p1[:n], "empty input")
			continue
		}
		check("truncated pkg0", p1[:n], "truncated")
		check("truncated pkg0 forced", p1[:n], "truncated", "--input", "pkg0")
	}
	for n := 2; n < len(wsp)-1; n++ {
		check("truncated wsp", wsp[:n], "truncated", "--input", "wsp")
	}
	check("truncated wsp auto", wsp[:20], "wsp input")
	check("concatenated segment", segs[0].UD, "segment 1 of 2")
	check("not a DM push", wappush.PushPDU(1, 0x2E, 0x07, p1), "not a DM notification", "--input", "wsp")
	check("bad hex", []byte("zz"), "decode hex input", "--hex")
	check("sms not sms", []byte{0x00}, "sms input", "--input", "sms")
}

func TestPkg0UsageErrors(t *testing.T) {
	t.Setenv(pkg0SecretEnv, "")
	full := buildArgs("p1", p0Nonce, "11", "0", "0x1A2B", "")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"no subcommand", []string{"pkg0"}, "build or decode"},
		{"unknown subcommand", []string{"pkg0", "frob"}, "unknown pkg0 subcommand"},
		{"no secret", full, "--secret"},
		{"bad nonce", append(buildArgs("p1", "xyz", "11", "0", "1", ""), "--secret", "s"), "--nonce must be hex"},
		{"bad session", append(buildArgs("p1", p0Nonce, "11", "0", "65536", ""), "--secret", "s"), "--session-id"},
		{"bad ui", append(buildArgs("p1", p0Nonce, "11", "4", "1", ""), "--secret", "s"), "--ui-mode"},
		{"bad version", append(buildArgs("p1", p0Nonce, "1024", "0", "1", ""), "--secret", "s"), "--version"},
		{"bad initiator", append(full, "--secret", "s", "--initiator", "x"), "--initiator"},
		{"no server id", []string{"pkg0", "build", "--secret", "s"}, "--server-id"},
		{"no session", []string{"pkg0", "build", "--server-id", "a", "--secret", "s", "--nonce", ""}, "--session-id"},
		{"stray arg", append(full, "extra"), "unexpected argument"},
		{"decode needs nonce", []string{"pkg0", "decode", "--secret", "s"}, "--nonce"},
		{"decode bad input kind", []string{"pkg0", "decode", "--input", "x"}, "--input"},
		{"unknown flag", []string{"pkg0", "decode", "--frob"}, "frob"},
	}
	for _, c := range cases {
		code, _, errOut := runPkg0(t, nil, c.args...)
		first := strings.SplitN(errOut, "\n", 2)[0]
		if code != 2 || !strings.HasPrefix(first, "dmctl: ") || !strings.Contains(first, c.want) {
			t.Errorf("%s: exit %d, first line %q, want %q", c.name, code, first, c.want)
		}
	}
	// Server id longer than 255 bytes is bad input (exit 1), found by the encoder.
	code, _, errOut := runPkg0(t, nil, "pkg0", "build", "--server-id", strings.Repeat("x", 256), "--secret", "s",
		"--nonce", "", "--session-id", "1", "--ui-mode", "0")
	if code != 1 || !strings.Contains(errOut, "server identifier") {
		t.Fatalf("long server id: exit %d %q", code, errOut)
	}
}

func TestPkg0BuildDecodeRoundTrip(t *testing.T) {
	t.Setenv(pkg0SecretEnv, "pw")
	code, out, errOut := runPkg0(t, nil, "pkg0", "build", "--server-id", "srv<&>", "--nonce", "0x0102",
		"--session-id", "0XBEEF", "--ui-mode", "user-interaction", "--initiator", "client", "--version", "1023",
		"--vendor", "00ff", "--wsp")
	if code != 0 {
		t.Fatalf("build: %d %s", code, errOut)
	}
	d := decode(t, out, "--nonce", "0102")
	if d.Input != "wsp" || d.ServerID != "srv<&>" || d.SessionID != 0xBEEF || d.SessionIDHex != "BEEF" ||
		d.UIMode != 3 || d.Initiator != "client" || d.Version != 1023 || d.VendorHex != "00ff" ||
		d.DigestOK == nil || !*d.DigestOK {
		t.Fatalf("round trip: %+v", d)
	}
	if d = decode(t, out, "--nonce", "0102", "--server-id", "other"); *d.DigestOK {
		t.Fatal("verified with another server id")
	}
}
