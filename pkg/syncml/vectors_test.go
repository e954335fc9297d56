package syncml

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/internal/vectors"
)

// vectorShape is what each shared message vector must decode to (see
// ../shared/omadm/vectors/README.md for what each file is).
type vectorShape struct {
	session, msgID string
	kinds          string // command kinds in document order, space separated
	final          bool
	check          func(t *testing.T, m *Message)
}

var vectorShapes = map[string]vectorShape{
	"01_pkg1_client_init": {"1A2B", "1", "Alert Replace", true, func(t *testing.T, m *Message) {
		h := m.Header
		eq(t, "LocName", h.Source.LocName, "dmclient01")
		eq(t, "Cred type", h.Cred.Meta.Type, "syncml:auth-md5")
		eq(t, "Cred format", h.Cred.Meta.Format, "b64")
		eq(t, "Cred data", h.Cred.Data, "jESN5A3qhJMI77+LawAskQ==")
		eq(t, "MaxMsgSize", h.Meta.MaxMsgSize, "10000")
		eq(t, "MaxObjSize", h.Meta.MaxObjSize, "524288")
		eq(t, "alert", m.Body.Commands[0].Data, "1200")
		r := m.Body.Commands[1]
		if len(r.Items) != 5 {
			t.Fatalf("Replace has %d items, want 5", len(r.Items))
		}
		eq(t, "item0 source", r.Items[0].Source.LocURI, "./DevInfo/DevId")
		eq(t, "item1 data", r.Items[1].Data.Value, "Example Devices Inc.")
		eq(t, "item4 type", r.Items[4].Meta.Type, "text/plain")
	}},
	"02_pkg2_server_init": {"1A2B", "1", "Status Status Status Get Replace Exec", true, func(t *testing.T, m *Message) {
		eq(t, "RespURI", m.Header.RespURI, "https://dm.example.com/omadm?s=1A2B-7f3c")
		s := m.Body.Commands[0]
		eq(t, "status cmd", s.Cmd, "SyncHdr")
		eq(t, "status code", s.Data, "212")
		eq(t, "nextnonce", s.Chal.Meta.NextNonce, "obLD1OX2BxgpOktcbX6PkA==")
		eq(t, "targetref", strings.Join(s.TargetRefs, ","), "https://dm.example.com/omadm")
		eq(t, "get item 2", m.Body.Commands[3].Items[1].Target.LocURI, "./DevDetail/FwV")
		eq(t, "correlator", m.Body.Commands[5].Correlator, "corr-42")
	}},
	"03_pkg3_client_results":       {"1A2B", "2", "Status Status Results Status Status", true, nil},
	"03b_pkg4_server_end":          {"1A2B", "2", "Status", true, nil},
	"04a_pkg3_msg_no_final":        {"", "", "", false, nil},
	"04b_server_next_message_1222": {"", "", "", false, nil},
	"05a_lo_server_chunk1":         {"3E4F", "2", "Status Replace", false, func(t *testing.T, m *Message) { loChunk(t, m) }},
	"05b_lo_client_213":            {"", "", "", false, nil},
	"05c_lo_server_last_chunk":     {"", "", "", true, nil},
	"06_pkg1_generic_alert_fumo":   {"1A2C", "1", "Alert Alert Replace", true, genericAlert},
}

func loChunk(t *testing.T, m *Message) {
	r := m.Body.Commands[1]
	eq(t, "cmd meta format", r.Meta.Format, "b64")
	it := r.Items[0]
	eq(t, "size", it.Meta.Size, "64")
	if !it.MoreData {
		t.Error("MoreData not set")
	}
	eq(t, "chunk", it.Data.Value, "AAECAwQFBgcICQoLDA0ODxAREhMUFRYX")
}

func genericAlert(t *testing.T, m *Message) {
	a := m.Body.Commands[1]
	eq(t, "alert code", a.Data, "1226")
	eq(t, "correlator", a.Correlator, "corr-42")
	it := a.Items[0]
	eq(t, "source", it.Source.LocURI, "./FUMO/FwPkg1")
	eq(t, "type", it.Meta.Type, "org.openmobilealliance.dm.firmwareupdate.downloadandupdate")
	eq(t, "mark", it.Meta.Mark, "informational")
	eq(t, "data", it.Data.Value, "200")
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func kinds(cmds []Command) string {
	var s []string
	for _, c := range cmds {
		s = append(s, c.Kind.String())
	}
	return strings.Join(s, " ")
}

// messageVectors returns base names (without extension) of the XML message vectors.
func messageVectors(t testing.TB) (dir string, names []string) {
	dir = vectors.Messages(t)
	for _, f := range vectors.Glob(t, "messages/*.xml") {
		names = append(names, strings.TrimSuffix(filepath.Base(f), ".xml"))
	}
	return dir, names
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestDecodeXMLVectors(t *testing.T) {
	dir, names := messageVectors(t)
	if len(names) < 10 {
		t.Fatalf("only %d XML vectors found", len(names))
	}
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m, err := DecodeXML(readFile(t, filepath.Join(dir, name+".xml")), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if err := Validate(m); err != nil {
				t.Fatalf("validate: %v", err)
			}
			shape, ok := vectorShapes[name]
			if !ok {
				t.Fatalf("no expected shape for vector %s: add one", name)
			}
			if shape.session != "" {
				eq(t, "SessionID", m.Header.SessionID, shape.session)
				eq(t, "MsgID", m.Header.MsgID, shape.msgID)
				eq(t, "commands", kinds(m.Body.Commands), shape.kinds)
			}
			if m.Body.Final != shape.final {
				t.Errorf("Final = %v, want %v", m.Body.Final, shape.final)
			}
			if shape.check != nil {
				shape.check(t, m)
			}
		})
	}
}

// normalised returns a copy of m in which the encoding-specific Data kinds are folded
// (WBXML Item/Data arrives as OPAQUE, XML as text; markup outside the WBXML vocabularies
// travels as OPAQUE text), so models decoded from the two encodings compare equal. Values
// must still match exactly; TestEmbeddedXMLData checks the kind of known markup strictly.
func normalised(m *Message) *Message {
	c := *m
	c.Body.Commands = normCmds(m.Body.Commands)
	return &c
}

func normCmds(cmds []Command) []Command {
	if cmds == nil {
		return nil
	}
	out := make([]Command, len(cmds))
	for i, c := range cmds {
		c.Commands = normCmds(c.Commands)
		if c.Items != nil {
			items := make([]Item, len(c.Items))
			for j, it := range c.Items {
				if it.Data != nil && it.Data.Kind != DataText {
					d := *it.Data
					d.Kind = DataText
					it.Data = &d
				}
				items[j] = it
			}
			c.Items = items
		}
		out[i] = c
	}
	return out
}

func TestWBXMLVectorsMatchXML(t *testing.T) {
	dir, names := messageVectors(t)
	for _, name := range names {
		want, err := DecodeXML(readFile(t, filepath.Join(dir, name+".xml")), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		flavours := []string{name + ".wbxml", name + ".st.wbxml"}
		if name == "01_pkg1_client_init" {
			flavours = append(flavours, name+".fpi-strtbl.wbxml")
		}
		for _, f := range flavours {
			t.Run(f, func(t *testing.T) {
				got, err := DecodeWBXML(readFile(t, filepath.Join(dir, f)), Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(normalised(got), normalised(want)) {
					t.Errorf("WBXML model differs from XML model\n got %+v\nwant %+v", got, want)
				}
			})
		}
	}
}

// TestRoundTrip: decode → encode → decode gives the same model, in both encodings.
func TestRoundTrip(t *testing.T) {
	dir, names := messageVectors(t)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			m, err := DecodeXML(readFile(t, filepath.Join(dir, name+".xml")), Limits{})
			if err != nil {
				t.Fatal(err)
			}
			for _, enc := range []Encoding{EncodingXML, EncodingWBXML} {
				b, err := Encode(m, enc)
				if err != nil {
					t.Fatalf("encode %s: %v", enc, err)
				}
				m2, _, err := Decode(b, EncodingUnknown, Limits{})
				if err != nil {
					t.Fatalf("decode %s: %v", enc, err)
				}
				if !reflect.DeepEqual(normalised(m2), normalised(m)) {
					t.Errorf("%s round trip changed the model\n got %+v\nwant %+v", enc, m2, m)
				}
			}
		})
	}
}

func TestErrorTable(t *testing.T) {
	seen := map[Code]bool{}
	for _, s := range ErrorTable() {
		if seen[s.Code] {
			t.Errorf("code %d twice in the table", s.Code)
		}
		seen[s.Code] = true
		if s.Status < 100 || s.Status > 599 || s.HTTP < 200 || s.HTTP > 599 || s.Name == "" || s.Doc == "" {
			t.Errorf("bad row %+v", s)
		}
		// SyncML-level outcomes are HTTP 200; only unreadable bodies are HTTP errors.
		if s.HTTP != 200 && s.HTTP != s.Status && s.HTTP != 400 {
			t.Errorf("row %s: HTTP %d inconsistent with SyncML %d", s.Name, s.HTTP, s.Status)
		}
	}
	for c := ErrMalformed; c <= ErrUnrepresentable; c++ {
		if !seen[c] {
			t.Errorf("code %d (%v) missing from the error table", c, c)
		}
	}
	e := &Error{Code: ErrTooLarge, Offset: 7, Msg: "x"}
	if e.Status() != 413 || e.HTTPStatus() != 413 {
		t.Errorf("ErrTooLarge maps to %d/%d", e.Status(), e.HTTPStatus())
	}
	if e := (&Error{Code: ErrDuplicateCmdID}); e.Status() != 400 || e.HTTPStatus() != 200 {
		t.Errorf("ErrDuplicateCmdID maps to %d/%d", e.Status(), e.HTTPStatus())
	}
	var target *Error
	if !errors.As(error(e), &target) {
		t.Error("errors.As failed")
	}
}
