package dmsim_test

import (
	"bytes"
	"encoding/base64"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// wireForm is how binary travels: base64 text with Format b64 over XML, raw OPAQUE with
// Format bin over WBXML (PROTOCOL.md §8.6).
func wireForm(enc syncml.Encoding, b []byte) (string, string) {
	if enc == syncml.EncodingXML {
		return base64.StdEncoding.EncodeToString(b), "b64"
	}
	return string(b), "bin"
}

func split(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

// Scenario 3 (PROTOCOL.md §3.2): a 64 KiB object sent by the server in 8 KiB chunks. The
// device answers 213 (+ Alert 1222, nothing else to send) per chunk, reassembles, checks Meta
// Size and commits only after the last chunk; a wrong Size gives 424 and nothing committed.
func TestLargeObjectFromServer(t *testing.T) {
	const target = "./FUMO/FwPkg1/Update/PkgData"
	for _, enc := range encodings() {
		for _, tc := range []struct {
			name     string
			sizeSkew int
			want     string
		}{{"ok", 0, "200"}, {"size-mismatch", 1, "424"}} {
			t.Run(enc.String()+"/"+tc.name, func(t *testing.T) {
				data := randomBytes(64<<10, 1)
				wire, format := wireForm(enc, data)
				chunks := split(wire, 8<<10)
				chunk := func(i int) syncml.Command {
					it := syncml.Item{Target: loc(target), Data: &syncml.Data{Value: chunks[i], Kind: syncml.DataOpaque}, MoreData: i < len(chunks)-1}
					if enc == syncml.EncodingXML {
						it.Data.Kind = syncml.DataText
					}
					if i == 0 {
						it.Meta = &syncml.Meta{Size: strconv.Itoa(len(wire) + tc.sizeSkew)}
					}
					return syncml.Command{Kind: syncml.KindReplace, Meta: &syncml.Meta{Format: format, Type: "application/octet-stream"}, Items: []syncml.Item{it}}
				}
				ss := newScriptServer(t, func(x *exchange) *syncml.Message {
					i := x.step - 1 // chunk index the device is answering
					switch {
					case x.step == 1:
						return acceptPkg1(x, false, chunk(0))
					case i < len(chunks):
						m := x.msg
						if got := statusOf(m, "Replace", target); got != "213" {
							t.Errorf("chunk %d answered %q, want 213", i, got)
						}
						if a := cmds(m, syncml.KindAlert); len(a) != 1 || a[0].Data != "1222" {
							t.Errorf("chunk %d reply alerts %+v, want Alert 1222", i, a)
						}
						if m.Body.Final {
							t.Errorf("reply to chunk %d has Final", i)
						}
						return x.reply(i == len(chunks)-1, x.hdrStatus(200, nil), chunk(i))
					case i == len(chunks):
						if got := statusOf(x.msg, "Replace", target); got != tc.want {
							t.Errorf("last chunk answered %q, want %s", got, tc.want)
						}
						if !x.msg.Body.Final {
							t.Error("final reply without Final")
						}
						return endSession(x)
					}
					return nil
				})
				d := newTestDevice(enc, ss.URL(), nil)
				rep := mustRun(t, d, dmsim.SessionOptions{})
				got, _ := d.Tree().Get(target)
				if tc.want == "200" {
					if !bytes.Equal(got, data) {
						t.Errorf("reassembled value: %d bytes, equal=%v", len(got), bytes.Equal(got, data))
					}
					if n, _ := d.Tree().Node(target); n.Format != dmtree.FormatBin || n.Type != "application/octet-stream" {
						t.Errorf("node Format %v Type %q, want bin application/octet-stream", n.Format, n.Type)
					}
				} else if len(got) != 0 {
					t.Errorf("size mismatch committed %d bytes", len(got))
				}
				if c := rep.StatusCounts(); c[213] != len(chunks)-1 {
					t.Errorf("213 sent %d times, want %d", c[213], len(chunks)-1)
				}
				if len(rep.Warnings) > 0 {
					t.Errorf("warnings: %q", rep.Warnings)
				}
			})
		}
	}
}

// A new command before the last chunk breaks the object: Alert 1225 naming it, nothing
// committed (PROTOCOL.md §3.2).
func TestLargeObjectInterrupted(t *testing.T) {
	const target = "./FUMO/FwPkg1/PkgName"
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			c := replaceCmd(target, "first-half")
			c.Items[0].MoreData = true
			c.Items[0].Meta = &syncml.Meta{Size: "20"}
			return acceptPkg1(x, false, c)
		case 2:
			return x.reply(true, x.hdrStatus(200, nil), getCmd("./DevInfo/Mod"))
		case 3:
			var found bool
			for _, a := range cmds(x.msg, syncml.KindAlert) {
				if a.Data == "1225" && len(a.Items) == 1 && a.Items[0].Target != nil && a.Items[0].Target.LocURI == target {
					found = true
				}
			}
			if !found {
				t.Error("no Alert 1225 naming the broken object")
			}
			if got := statusOf(x.msg, "Get", "./DevInfo/Mod"); got != "200" {
				t.Errorf("Get after the broken object answered %q", got)
			}
			return endSession(x)
		}
		return nil
	})
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	mustRun(t, d, dmsim.SessionOptions{})
	if v, _ := d.Tree().Get(target); len(v) != 0 {
		t.Errorf("broken object committed: %q", v)
	}
}

// Scenario 4 (PROTOCOL.md §3.1–3.2): a 40 KiB value fetched by a server whose MaxMsgSize is
// 4000. Every device message stays within 4000 bytes; the value travels in chunks with
// MoreData and Meta Size on the first; the server answers 213 + 1222 and reassembles it.
// An object larger than the server's MaxObjSize must not be sent at all: the Get gets 413.
func TestLargeObjectToServer(t *testing.T) {
	const target = "./Vendor/Big"
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			value := randomBytes(40<<10, 2)
			var got []byte
			var declared string
			chunks := 0
			ss := newScriptServer(t, func(x *exchange) *syncml.Message {
				if len(x.body) > 4000 {
					t.Errorf("device message %d is %d bytes, server MaxMsgSize 4000", x.step, len(x.body))
				}
				if x.step == 1 {
					return acceptPkg1(x, true, getCmd(target))
				}
				if x.step == 2 && statusOf(x.msg, "Get", target) != "200" {
					t.Errorf("Get status %q", statusOf(x.msg, "Get", target))
				}
				res := cmds(x.msg, syncml.KindResults)
				if len(res) == 0 {
					if x.msg.Body.Final {
						t.Error("device closed its package without sending the object")
						return endSession(x)
					}
					return x.reply(false, x.hdrStatus(200, nil), alertCmd(1222))
				}
				if len(res) != 1 || len(res[0].Items) != 1 {
					t.Fatalf("message %d: %d Results, want one chunk", x.step, len(res))
				}
				it := res[0].Items[0]
				if it.Source == nil || it.Source.LocURI != target {
					t.Errorf("chunk Source %+v", it.Source)
				}
				if chunks == 0 {
					if it.Meta == nil || it.Meta.Size == "" {
						t.Fatal("first chunk without Meta Size")
					}
					declared = it.Meta.Size
				} else if it.Meta != nil && it.Meta.Size != "" {
					t.Error("Meta Size repeated on a later chunk")
				}
				chunks++
				got = append(got, it.Data.Value...)
				if it.MoreData {
					if x.msg.Body.Final {
						t.Error("Final while the object is incomplete")
					}
					st := syncml.Command{Kind: syncml.KindStatus, MsgRef: x.msg.Header.MsgID, CmdRef: res[0].CmdID, Cmd: "Results", TargetRefs: []string{target}, Data: "213"}
					return x.reply(false, x.hdrStatus(200, nil), st, alertCmd(1222))
				}
				if !x.msg.Body.Final {
					t.Error("last chunk message without Final")
				}
				return endSession(x)
			})
			ss.maxMsgSize, ss.maxObjSize = 4000, 64<<10
			d := newTestDevice(enc, ss.URL(), nil)
			if err := d.Tree().AddNode(target, dmsim.NodeSpec{Format: dmtree.FormatBin, Type: "application/octet-stream", Value: value}); err != nil {
				t.Fatal(err)
			}
			rep := mustRun(t, d, dmsim.SessionOptions{})
			wire, _ := wireForm(enc, value)
			if string(got) != wire {
				t.Fatalf("reassembled %d bytes, want %d (equal=%v)", len(got), len(wire), string(got) == wire)
			}
			if declared != strconv.Itoa(len(wire)) {
				t.Errorf("Meta Size %s, want %d", declared, len(wire))
			}
			if chunks < 10 || rep.LargestSent > 4000 {
				t.Errorf("%d chunks, largest message %d", chunks, rep.LargestSent)
			}
			if len(rep.Warnings) > 0 {
				t.Errorf("warnings: %q", rep.Warnings)
			}
		})
	}

	t.Run("over-MaxObjSize", func(t *testing.T) {
		ss := newScriptServer(t, func(x *exchange) *syncml.Message {
			switch x.step {
			case 1:
				return acceptPkg1(x, true, getCmd(target))
			case 2:
				if got := statusOf(x.msg, "Get", target); got != "413" {
					t.Errorf("Get of an object over the server MaxObjSize answered %q, want 413", got)
				}
				if len(cmds(x.msg, syncml.KindResults)) != 0 {
					t.Error("object over MaxObjSize sent")
				}
				return endSession(x)
			}
			return nil
		})
		ss.maxMsgSize, ss.maxObjSize = 4000, 8<<10
		d := newTestDevice(syncml.EncodingWBXML, ss.URL(), nil)
		if err := d.Tree().AddNode(target, dmsim.NodeSpec{Format: dmtree.FormatBin, Value: randomBytes(40<<10, 3)}); err != nil {
			t.Fatal(err)
		}
		mustRun(t, d, dmsim.SessionOptions{})
	})
}

// Many small Results that do not fit one message are split over several Results commands
// and messages (PROTOCOL.md §10.2: "in one or several Results").
func TestResultsSplitAcrossMessages(t *testing.T) {
	var items []syncml.Item
	ss := newScriptServer(t, func(x *exchange) *syncml.Message {
		if len(x.body) > 1500 {
			t.Errorf("message of %d bytes over MaxMsgSize 1500", len(x.body))
		}
		if x.step == 1 {
			return acceptPkg1(x, true, getCmd("./Vendor?list=StructData"))
		}
		for _, r := range cmds(x.msg, syncml.KindResults) {
			items = append(items, r.Items...)
		}
		if !x.msg.Body.Final {
			return x.reply(false, x.hdrStatus(200, nil), alertCmd(1222))
		}
		return endSession(x)
	})
	ss.maxMsgSize = 1500
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	for i := 0; i < 40; i++ {
		if err := d.Tree().Set("./Vendor/Leaf"+strconv.Itoa(i), []byte("value number "+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	rep := mustRun(t, d, dmsim.SessionOptions{})
	if len(items) != 41 { // ./Vendor + 40 leaves
		t.Fatalf("got %d Items over %d messages, want 41", len(items), rep.MessagesSent)
	}
	if items[0].Source.LocURI != "./Vendor" || items[0].Meta == nil || items[0].Meta.Format != "node" || items[0].Data != nil {
		t.Errorf("first Item %+v", items[0])
	}
	if items[40].Source.LocURI != "./Vendor/Leaf39" || items[40].Data.Value != "value number 39" {
		t.Errorf("last Item %+v", items[40])
	}
	if rep.MessagesSent < 4 {
		t.Errorf("only %d messages", rep.MessagesSent)
	}
}
