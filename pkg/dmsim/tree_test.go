package dmsim_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/dmtree"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

func TestTreeBasics(t *testing.T) {
	tr := dmsim.NewTree(dmtree.DefaultLimits)
	if err := tr.Set("./A/B/leaf", []byte("v")); err != nil {
		t.Fatal(err)
	}
	for _, uri := range []string{"./A/B/leaf", "A/B/leaf", "./A/B/leaf/"} {
		if v, ok := tr.Get(uri); !ok || string(v) != "v" {
			t.Errorf("Get(%q) = %q, %v", uri, v, ok)
		}
	}
	n, ok := tr.Node("./A/B")
	if !ok || !n.Interior || n.Permanent || n.URI != "./A/B" || len(n.Children) != 1 || n.Children[0] != "leaf" {
		t.Errorf("implicit parent %+v", n)
	}
	if err := tr.AddNode("./A/B/leaf2", dmsim.NodeSpec{Format: dmtree.FormatInt, Value: []byte("7"), Permanent: true}); err != nil {
		t.Fatal(err)
	}
	if v, _ := tr.Get("./A/B"); string(v) != "leaf/leaf2" {
		t.Errorf("interior Get = %q, want the child list", v)
	}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"add existing", tr.AddNode("./A/B/leaf", dmsim.NodeSpec{}), 418},
		{"child of a leaf", tr.AddNode("./A/B/leaf/x", dmsim.NodeSpec{}), 405},
		{"set interior", tr.Set("./A/B", []byte("x")), 405},
		{"delete permanent", tr.Delete("./A/B/leaf2"), 405},
		{"delete parent of permanent", tr.Delete("./A"), 405},
		{"delete root", tr.Delete("."), 405},
		{"delete unknown", tr.Delete("./Nope"), 404},
		{"bad URI", tr.Set("/abs", nil), 400},
		{"bad ACL", tr.SetACL("./A", "Get=a b"), 400},
		{"too deep", tr.Set("./"+strings.Repeat("x/", 40)+"y", nil), 414},
	} {
		if got := dmsim.StatusOf(tc.err); got != tc.want {
			t.Errorf("%s: status %d (%v), want %d", tc.name, got, tc.err, tc.want)
		}
	}
	if err := tr.Delete("./A/B/leaf"); err != nil {
		t.Fatal(err)
	}
	if _, ok := tr.Get("./A/B/leaf"); ok {
		t.Error("deleted leaf still there")
	}
	if err := tr.SetACL("./A", "Get=*&Replace=srv"); err != nil {
		t.Fatal(err)
	}
	if n, _ := tr.Node("./A"); n.ACL.String() != "Get=*&Replace=srv" {
		t.Errorf("ACL %q", n.ACL.String())
	}
	var visited []string
	tr.Walk(".", func(n dmsim.NodeInfo) bool { visited = append(visited, n.URI); return true })
	if strings.Join(visited, " ") != ". ./A ./A/B ./A/B/leaf2" {
		t.Errorf("Walk order %v", visited)
	}
	// Set bumps VerNo and keeps the value a copy.
	buf := []byte("abc")
	if err := tr.Set("./A/B/leaf2", buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	if v, _ := tr.Get("./A/B/leaf2"); string(v) != "abc" {
		t.Errorf("tree aliases the caller's slice: %q", v)
	}
	if n, _ := tr.Node("./A/B/leaf2"); n.VerNo != 1 || n.TStamp.IsZero() {
		t.Errorf("VerNo %d TStamp %v after one Set", n.VerNo, n.TStamp)
	}
}

func TestStandardTree(t *testing.T) {
	d := dmsim.NewDevice(dmsim.Config{DevID: "IMEI:490154203237518", FwV: "9.9", LrgObj: true, ServerURL: "http://x/dm"})
	tr := d.Tree()
	for uri, want := range map[string]string{
		"./DevInfo/DevId":                          "IMEI:490154203237518",
		"./DevInfo/DmV":                            "1.2",
		"./DevDetail/FwV":                          "9.9",
		"./DevDetail/LrgObj":                       "true",
		"./DevDetail/URI/MaxDepth":                 "32",
		"./DMAcc/dmgrid/ServerID":                  "dmgrid",
		"./DMAcc/dmgrid/AppAddr/1/Addr":            "http://x/dm",
		"./FUMO/FwPkg1/State":                      "10",
		"./FUMO/FwPkg1/Update/PkgData":             "",
		"./FUMO/FwPkg1/Download/PkgURL":            "",
		"./DMAcc/dmgrid/AppAuth/Client/AAuthLevel": "CLCRED",
	} {
		if v, ok := tr.Get(uri); !ok || string(v) != want {
			t.Errorf("%s = %q (exists %v), want %q", uri, v, ok, want)
		}
	}
	for uri, exec := range map[string]bool{"./FUMO/FwPkg1/Download": true, "./FUMO/FwPkg1/Update": true, "./FUMO/FwPkg1/DownloadAndUpdate": true, "./FUMO/FwPkg1/State": false} {
		if n, _ := tr.Node(uri); n.Executable != exec {
			t.Errorf("%s executable = %v", uri, n.Executable)
		}
	}
	if n, _ := tr.Node("./FUMO/FwPkg1"); n.Type != "urn:oma:mo:oma-fumo:1.0" || !n.Permanent {
		t.Errorf("FUMO root %+v", n)
	}
	if n, _ := tr.Node("./DevInfo"); n.Type != "urn:oma:mo:oma-dm-devinfo:1.0" || n.ACL.String() != "Get=*" {
		t.Errorf("DevInfo %+v", n)
	}
}

func TestFleet(t *testing.T) {
	a := dmsim.NewFleet(50, 7, dmsim.Config{ServerURL: "http://x"}, func(i int, c *dmsim.Config) { c.ClientName = c.DevID })
	b := dmsim.NewFleet(50, 7, dmsim.Config{ServerURL: "http://x"}, nil)
	c := dmsim.NewFleet(50, 8, dmsim.Config{ServerURL: "http://x"}, nil)
	seen := map[string]bool{}
	same, models := 0, map[string]bool{}
	for i, d := range a.Devices {
		id := d.DevID()
		if !dmsim.ValidIMEI(id) {
			t.Errorf("device %d DevID %q has no valid Luhn check digit", i, id)
		}
		if seen[id] {
			t.Errorf("duplicate DevID %s", id)
		}
		seen[id] = true
		cfg, cfgB := d.Config(), b.Devices[i].Config()
		if id != b.Devices[i].DevID() || cfg.Mod != cfgB.Mod || cfg.FwV != cfgB.FwV {
			t.Errorf("device %d differs between runs with the same seed", i)
		}
		if cfg.ClientName != id {
			t.Errorf("customize not applied: %q", cfg.ClientName)
		}
		if id == c.Devices[i].DevID() {
			same++
		}
		models[cfg.Mod] = true
	}
	if same > 2 {
		t.Errorf("%d of 50 DevIDs equal across different seeds", same)
	}
	if len(models) < 3 {
		t.Errorf("only %d models drawn", len(models))
	}
	for _, tc := range []struct {
		s  string
		ok bool
	}{{"IMEI:490154203237518", true}, {"490154203237518", true}, {"490154203237517", false}, {"4901542032375", false}, {"IMEI:49015420323751x", false}} {
		if dmsim.ValidIMEI(tc.s) != tc.ok {
			t.Errorf("ValidIMEI(%q) = %v", tc.s, !tc.ok)
		}
	}
}

// Fleet.Run drives every device through a session, concurrently.
func TestFleetRun(t *testing.T) {
	var mu sync.Mutex
	sessions := map[string]int{}
	ss := newScriptServer(t, nil)
	ss.noCache = true
	ss.step = func(x *exchange) *syncml.Message {
		mu.Lock()
		sessions[x.msg.Header.Source.LocURI]++
		mu.Unlock()
		return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
	}
	f := dmsim.NewFleet(20, 1, dmsim.Config{ServerURL: ss.URL(), Encoding: syncml.EncodingWBXML}, nil)
	res := f.Run(context.Background(), &dmsim.HTTPTransport{}, 5, dmsim.SessionOptions{})
	for _, r := range res {
		if r.Err != nil || !r.Report.Ended {
			t.Errorf("%s: %v", r.Device.DevID(), r.Err)
		}
	}
	if len(sessions) != 20 {
		t.Errorf("%d devices reached the server, want 20", len(sessions))
	}
}
