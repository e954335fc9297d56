package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

func dmctl(t *testing.T, stdin []byte, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, bytes.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestDecodeEncodeValidateVectors(t *testing.T) {
	for _, f := range vectors.Glob(t, "messages/*.wbxml") {
		in := vectors.Read(t, filepath.Join("messages", filepath.Base(f)))
		code, out, errOut := dmctl(t, in, "syncml", "decode")
		if code != 0 {
			t.Fatalf("%s: decode exit %d: %s", f, code, errOut)
		}
		if !strings.Contains(out, "<SyncML xmlns=\"SYNCML:SYNCML1.2\">") || !strings.Contains(out, "\n  <SyncHdr>") {
			t.Fatalf("%s: decode output not pretty SyncML XML:\n%s", f, out)
		}
		// The pretty XML encodes back to WBXML that decodes to the same model.
		code, wb, errOut := dmctl(t, []byte(out), "syncml", "encode", "--to", "wbxml")
		if code != 0 {
			t.Fatalf("%s: encode exit %d: %s", f, code, errOut)
		}
		// Compare as pretty XML: WBXML may carry the same text inline or as OPAQUE.
		code, again, errOut := dmctl(t, []byte(wb), "syncml", "decode")
		if code != 0 {
			t.Fatalf("%s: decoding our WBXML: exit %d: %s", f, code, errOut)
		}
		if again != out {
			t.Fatalf("%s: decode→encode→decode changed the message:\n%s\nvs\n%s", f, out, again)
		}
		code, out, errOut = dmctl(t, in, "syncml", "validate")
		if code != 0 || !strings.HasPrefix(out, "ok: wbxml message") {
			t.Fatalf("%s: validate exit %d: %q %q", f, code, out, errOut)
		}
	}
}

func TestBadInputOneLine(t *testing.T) {
	cases := []struct {
		name  string
		in    string
		args  []string
		code  int
		error string
	}{
		{"garbage", "hello", []string{"syncml", "decode"}, 1, "neither XML nor WBXML"},
		{"truncated xml", "<SyncML><SyncHdr>", []string{"syncml", "decode"}, 1, "truncated at offset"},
		{"truncated wbxml", "\x02\xa4\x01\x6a\x00\x6d\x6c", []string{"syncml", "decode"}, 1, "truncated"},
		{"invalid message", `<SyncML><SyncHdr/><SyncBody/></SyncML>`, []string{"syncml", "validate"}, 1, "SyncHdr/VerDTD"},
		{"encode without --to", `<SyncML/>`, []string{"syncml", "encode"}, 2, "--to"},
		{"unknown command", "", []string{"frobnicate"}, 2, "unknown command"},
		{"encode wbxml input", "\x02\xa4\x01\x6a\x00\x6d\x01", []string{"syncml", "encode", "--to", "xml"}, 1, "malformed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := dmctl(t, []byte(c.in), c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d (%s)", code, c.code, errOut)
			}
			first := strings.SplitN(errOut, "\n", 2)[0]
			if !strings.HasPrefix(first, "dmctl: ") || !strings.Contains(first, c.error) {
				t.Fatalf("first stderr line %q does not name %q", first, c.error)
			}
			if c.code == 1 && strings.Count(errOut, "\n") != 1 {
				t.Fatalf("error is not one line: %q", errOut)
			}
		})
	}
}
