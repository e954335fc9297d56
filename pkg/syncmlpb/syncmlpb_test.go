package syncmlpb

import (
	"os"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

func TestKindNumbers(t *testing.T) {
	for k := syncml.KindAdd; k <= syncml.KindStatus; k++ {
		name := syncmlv1.CommandKind(k).String()
		want := "COMMAND_KIND_" + map[syncml.Kind]string{
			syncml.KindAdd: "ADD", syncml.KindAlert: "ALERT", syncml.KindAtomic: "ATOMIC", syncml.KindCopy: "COPY",
			syncml.KindDelete: "DELETE", syncml.KindExec: "EXEC", syncml.KindGet: "GET", syncml.KindReplace: "REPLACE",
			syncml.KindResults: "RESULTS", syncml.KindSequence: "SEQUENCE", syncml.KindStatus: "STATUS"}[k]
		if name != want {
			t.Errorf("kind %v maps to %s, want %s", k, name, want)
		}
	}
	for k, want := range map[syncml.DataKind]syncmlv1.DataKind{syncml.DataText: syncmlv1.DataKind_DATA_KIND_TEXT,
		syncml.DataOpaque: syncmlv1.DataKind_DATA_KIND_OPAQUE, syncml.DataXML: syncmlv1.DataKind_DATA_KIND_XML} {
		if syncmlv1.DataKind(k+1) != want {
			t.Errorf("data kind %d maps to %v, want %v", k, syncmlv1.DataKind(k+1), want)
		}
	}
}

// Every vector survives model → protobuf → wire → protobuf → model unchanged.
func TestVectorsRoundTrip(t *testing.T) {
	for _, f := range vectors.Glob(t, "messages/*wbxml") {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := syncml.Decode(b, syncml.EncodingUnknown, syncml.Limits{})
		if err != nil {
			t.Fatal(err)
		}
		wire, err := proto.Marshal(ToProto(m))
		if err != nil {
			t.Fatal(err)
		}
		var pm syncmlv1.Message
		if err := proto.Unmarshal(wire, &pm); err != nil {
			t.Fatal(err)
		}
		back, err := FromProto(&pm)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back, m) {
			t.Fatalf("%s: round trip changed the message\n got %+v\nwant %+v", f, back, m)
		}
	}
}

func TestUnknownKindRefused(t *testing.T) {
	pm := &syncmlv1.Message{Body: &syncmlv1.Body{Commands: []*syncmlv1.Command{{Kind: 99}}}}
	if _, err := FromProto(pm); err == nil {
		t.Fatal("unknown command kind accepted")
	}
}

func TestCheckUTF8(t *testing.T) {
	m := &syncml.Message{Header: syncml.Header{VerDTD: "1.2", SessionID: "1"}}
	m.Body.Commands = []syncml.Command{{Kind: syncml.KindAtomic, CmdID: "1", Commands: []syncml.Command{
		{Kind: syncml.KindReplace, CmdID: "2", Items: []syncml.Item{{Target: &syncml.Locator{LocURI: "./A"}, Data: &syncml.Data{Value: "\xff binary is fine in Data"}}}}}}}
	if where, ok := CheckUTF8(m); !ok {
		t.Fatalf("valid message refused at %s", where)
	}
	m.Body.Commands[0].Commands[0].Items[0].Target.LocURI = "./\xff"
	if where, ok := CheckUTF8(m); ok || where != "SyncBody/Atomic/Replace" {
		t.Fatalf("invalid LocURI: ok=%v where=%q", ok, where)
	}
	m.Body.Commands[0].Commands[0].Items[0].Target.LocURI = "./A"
	m.Header.Source.LocName = "\xc3"
	if where, ok := CheckUTF8(m); ok || where != "SyncHdr" {
		t.Fatalf("invalid LocName: ok=%v where=%q", ok, where)
	}
}
