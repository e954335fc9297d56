package dmsim

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// A message whose commands all fit is encoded once: the measurement is what is sent. A
// non-final message is measured with Final and encoded again without it; a chunked one
// needs more measurements, and a server MaxMsgSize below the bare message is refused.
func TestComposeEncodings(t *testing.T) {
	for _, enc := range []syncml.Encoding{syncml.EncodingXML, syncml.EncodingWBXML} {
		t.Run(enc.String(), func(t *testing.T) {
			newS := func(srvMax int) *session {
				d := NewDevice(Config{DevID: "IMEI:1", Encoding: enc, ServerURL: "http://127.0.0.1:1/dm"})
				s := d.newSession(nil, SessionOptions{}.withDefaults())
				s.srvMaxMsg = srvMax
				s.pkg1 = s.buildPkg1()
				s.queue = append([]outCmd(nil), s.pkg1...)
				return s
			}
			decode := func(t *testing.T, body []byte) *syncml.Message {
				t.Helper()
				m, _, err := syncml.Decode(body, enc, syncml.DefaultLimits)
				if err != nil {
					t.Fatalf("decode the composed message: %v", err)
				}
				return m
			}

			s := newS(10000)
			body, err := s.compose()
			if err != nil {
				t.Fatal(err)
			}
			if s.encodings != 1 {
				t.Errorf("final message fitting at once: %d encodings, want 1", s.encodings)
			}
			m := decode(t, body)
			if !m.Body.Final || len(m.Body.Commands) != 2 || len(s.queue) != 0 {
				t.Errorf("Pkg1: Final %v, %d commands, %d left queued", m.Body.Final, len(m.Body.Commands), len(s.queue))
			}
			again, err := syncml.Encode(m, enc)
			if err != nil || !bytes.Equal(again, body) {
				t.Errorf("the sent body is not the message's encoding (err %v)", err)
			}

			s = newS(10000)
			s.serverOpen = true // the server's package is open: no Final
			body, err = s.compose()
			if err != nil {
				t.Fatal(err)
			}
			if s.encodings != 2 {
				t.Errorf("non-final message: %d encodings, want 2 (measured with Final, sent without)", s.encodings)
			}
			if m := decode(t, body); m.Body.Final {
				t.Error("Final in a message answering an open server package")
			}

			s = newS(10000)
			s.queue = s.queue[:1] // Alert 1201 alone
			if _, err := s.compose(); err != nil {
				t.Fatal(err)
			}
			if s.encodings != 1 {
				t.Errorf("one command: %d encodings, want 1", s.encodings)
			}

			s = newS(40)
			s.queue = nil
			if _, err := s.compose(); err == nil || !strings.Contains(err.Error(), "smaller than a message without commands") {
				t.Errorf("MaxMsgSize 40 for an empty message: err %v", err)
			}
		})
	}
}
