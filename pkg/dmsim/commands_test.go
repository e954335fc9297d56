package dmsim_test

import (
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// oneRound runs a session in which the server sends cmds after Pkg1 and hands the device's
// answer to check.
func oneRound(t *testing.T, enc syncml.Encoding, d *dmsim.Device, ss *scriptServer, check func(m *syncml.Message), cmds ...syncml.Command) *dmsim.SessionReport {
	t.Helper()
	ss.step = func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			return acceptPkg1(x, true, cmds...)
		case 2:
			check(x.msg)
			return endSession(x)
		}
		return nil
	}
	return mustRun(t, d, dmsim.SessionOptions{})
}

// Scenario 7 (RepPro §4.1.6.3, §4.1.6.14): Atomic is all-or-nothing — a failing child rolls
// the tree back, the Atomic answers 507 and the children that had succeeded 216; a Sequence
// runs in order and answers 215 for what follows a failure.
func TestAtomicAndSequence(t *testing.T) {
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			ss := newScriptServer(t, nil)
			d := newTestDevice(enc, ss.URL(), nil)
			rep := oneRound(t, enc, d, ss, func(m *syncml.Message) {
				var st []string
				for _, c := range cmds(m, syncml.KindStatus) {
					if c.Cmd != "SyncHdr" {
						st = append(st, c.Cmd+":"+c.Data)
					}
				}
				want := []string{
					"Atomic:507", "Add:216", "Replace:425", "Add:215", // rolled back
					"Atomic:200", "Add:200", "Add:200", // committed
					"Sequence:200", "Replace:200", "Get:404", "Replace:215", // stopped after the 404
					"Atomic:507", "Add:216", "Get:500", // Get is not allowed in Atomic
				}
				if len(st) != len(want) {
					t.Fatalf("statuses %v\nwant      %v", st, want)
				}
				for i := range want {
					if st[i] != want[i] {
						t.Errorf("status %d = %s, want %s (all: %v)", i, st[i], want[i], st)
					}
				}
			},
				container(syncml.KindAtomic,
					addCmd("./Vendor/A", "a"),
					replaceCmd("./DevInfo/Man", "evil"), // DevInfo is Get-only: 425
					addCmd("./Vendor/A2", "a2")),
				container(syncml.KindAtomic, addCmd("./Vendor/B", "b"), addCmd("./Vendor/C", "c")),
				container(syncml.KindSequence,
					replaceCmd("./FUMO/FwPkg1/PkgName", "pkg"),
					getCmd("./Nope"),
					replaceCmd("./FUMO/FwPkg1/PkgVersion", "2.0")),
				container(syncml.KindAtomic, addCmd("./Vendor/D", "d"), getCmd("./DevInfo/Man")),
			)
			tr := d.Tree()
			for uri, want := range map[string]string{"./Vendor/B": "b", "./Vendor/C": "c", "./FUMO/FwPkg1/PkgName": "pkg", "./DevInfo/Man": "Example Devices Inc.", "./FUMO/FwPkg1/PkgVersion": ""} {
				if v, ok := tr.Get(uri); !ok || string(v) != want {
					t.Errorf("%s = %q (exists %v), want %q", uri, v, ok, want)
				}
			}
			for _, uri := range []string{"./Vendor/A", "./Vendor/A2", "./Vendor/D"} {
				if _, ok := tr.Get(uri); ok {
					t.Errorf("%s survived a rolled-back Atomic", uri)
				}
			}
			if recs := rep.Find("Add", "./Vendor/A"); len(recs) != 1 || recs[0].Status != 216 {
				t.Errorf("report for rolled-back Add: %+v", recs)
			}
		})
	}
}

// Scenario 8: error statuses — unknown node 404, ACL 425, permanent node 405, existing 418 —
// and the successful forms of Get, Add, Copy, Delete and properties.
func TestCommandStatuses(t *testing.T) {
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			ss := newScriptServer(t, nil)
			d := newTestDevice(enc, ss.URL(), nil)
			secret := "./DMAcc/dmgrid/AppAuth/Client/AAuthSecret"
			nodeMeta := &syncml.Meta{Format: "node"}
			oneRound(t, enc, d, ss, func(m *syncml.Message) {
				for _, c := range []struct{ cmd, target, want string }{
					{"Get", "./Nope/Node", "404"},
					{"Get", secret, "425"},
					{"Get", "./DevInfo", "200"},
					{"Get", "./DevInfo?prop=ACL", "200"},
					{"Get", "./DevInfo/Man?prop=Format", "200"},
					{"Get", "./DevInfo/Man?prop=Bogus", "406"},
					{"Get", "./DevDetail?list=TNDS", "406"},
					{"Delete", "./DevInfo/Man", "405"},
					{"Delete", "./Nope", "404"},
					{"Replace", "./DevInfo", "405"},
					{"Replace", "./Nope", "404"},
					{"Replace", "./DevInfo/Mod", "425"},
					{"Add", "./FUMO/FwPkg1/PkgName", "418"},
					{"Add", "./Vendor/X/Y/Z", "200"},
					{"Add", "./Vendor/Dir", "200"},
					{"Replace", "./Vendor/Dir?prop=ACL", "200"},
					{"Copy", "./FUMO/FwPkg1/PkgVersion", "200"},
					{"Copy", "./Vendor/Copied", "404"},
					{"Delete", "./Vendor/X", "200"},
					{"Exec", "./FUMO/FwPkg1/PkgName", "405"},
					{"Exec", "./Nope", "404"},
				} {
					if got := statusOf(m, c.cmd, c.target); got != c.want {
						t.Errorf("%s %s → %q, want %s", c.cmd, c.target, got, c.want)
					}
				}
				if it := resultsFor(m, "./DevInfo"); len(it) != 1 || it[0].Data.Value != "DevId/Man/Mod/DmV/Lang" || it[0].Meta == nil || it[0].Meta.Format != "node" {
					t.Errorf("interior Get Results %+v", it)
				}
				if it := resultsFor(m, "./DevInfo?prop=ACL"); len(it) != 1 || it[0].Data.Value != "Get=*" {
					t.Errorf("?prop=ACL Results %+v", it)
				}
				if it := resultsFor(m, "./DevInfo/Man?prop=Format"); len(it) != 1 || it[0].Data.Value != "chr" {
					t.Errorf("?prop=Format Results %+v", it)
				}
				if it := resultsFor(m, "./DevDetail/URI/MaxDepth"); len(it) != 1 || it[0].Meta == nil || it[0].Meta.Format != "int" {
					t.Errorf("?list=Struct item for an int leaf %+v", it)
				} else if it[0].Data != nil {
					t.Error("?list=Struct returned data")
				}
				if len(resultsFor(m, secret)) != 0 {
					t.Error("Results for a node the server may not read")
				}
			},
				getCmd("./Nope/Node", secret, "./DevInfo", "./DevInfo?prop=ACL", "./DevInfo/Man?prop=Format", "./DevInfo/Man?prop=Bogus", "./DevDetail?list=TNDS", "./DevDetail?list=Struct"),
				deleteCmd("./DevInfo/Man"),
				deleteCmd("./Nope"),
				replaceCmd("./DevInfo", "x"),
				replaceCmd("./Nope", "x"),
				replaceCmd("./DevInfo/Mod", "x"),
				addCmd("./FUMO/FwPkg1/PkgName", "x"),
				addCmd("./Vendor/X/Y/Z", "deep"),
				itemCmd(syncml.KindAdd, "./Vendor/Dir", "", nodeMeta),
				replaceCmd("./Vendor/Dir?prop=ACL", "Get=*&Replace=dmgrid"),
				replaceCmd("./FUMO/FwPkg1/PkgName", "copied-name"),
				copyCmd("./FUMO/FwPkg1/PkgVersion", "./FUMO/FwPkg1/PkgName"),
				copyCmd("./Vendor/Copied", "./Nope"),
				deleteCmd("./Vendor/X"),
				execCmd("./FUMO/FwPkg1/PkgName", ""),
				execCmd("./Nope", ""),
			)
			tr := d.Tree()
			if v, _ := tr.Get("./FUMO/FwPkg1/PkgVersion"); string(v) != "copied-name" {
				t.Errorf("Copy target = %q", v)
			}
			if _, ok := tr.Get("./Vendor/X/Y/Z"); ok {
				t.Error("deleted subtree still present")
			}
			n, ok := tr.Node("./Vendor/Dir")
			if !ok || !n.Interior || n.ACL.String() != "Get=*&Replace=dmgrid" {
				t.Errorf("./Vendor/Dir = %+v", n)
			}
			if v, _ := tr.Get("./DevInfo/Man"); string(v) != "Example Devices Inc." {
				t.Errorf("permanent node changed: %q", v)
			}
		})
	}
}

// User-interaction alerts (OMA-TS-DM_Protocol §2.5): answers from SessionOptions.UI; a
// Confirm answered "no" (304) inside a Sequence skips the rest (215).
func TestUIAlerts(t *testing.T) {
	ss := newScriptServer(t, nil)
	ss.step = func(x *exchange) *syncml.Message {
		switch x.step {
		case 1:
			return acceptPkg1(x, true,
				alertCmd(1100, "MINDT=1", "Hello"),
				alertCmd(1102, "DR=abc&MAXLEN=5", "Your name?"),
				alertCmd(1103, "", "Pick", "one", "two"),
				container(syncml.KindSequence, alertCmd(1101, "", "Update now?"), replaceCmd("./FUMO/FwPkg1/PkgName", "x")))
		case 2:
			want := map[string]string{}
			for _, c := range cmds(x.msg, syncml.KindStatus) {
				if c.Cmd == "Alert" {
					want[c.CmdRef] = c.Data
					if c.CmdRef == "5" && (len(c.Items) != 1 || c.Items[0].Data.Value != "abc") {
						t.Errorf("text input answer %+v, want DR default", c.Items)
					}
					if c.CmdRef == "6" && (len(c.Items) != 1 || c.Items[0].Data.Value != "2") {
						t.Errorf("single choice answer %+v", c.Items)
					}
				}
			}
			// Server CmdIDs: 1–3 statuses, 4 display, 5 text input, 6 choice, 7 Sequence,
			// 8 confirm, 9 Replace.
			for ref, code := range map[string]string{"4": "200", "5": "200", "6": "200", "8": "304"} {
				if want[ref] != code {
					t.Errorf("Alert CmdRef %s answered %q, want %s", ref, want[ref], code)
				}
			}
			if got := statusOf(x.msg, "Replace", "./FUMO/FwPkg1/PkgName"); got != "215" {
				t.Errorf("Replace after a refused Confirm answered %q, want 215", got)
			}
			return endSession(x)
		}
		return nil
	}
	var seen []dmsim.UIAlert
	d := newTestDevice(syncml.EncodingXML, ss.URL(), nil)
	mustRun(t, d, dmsim.SessionOptions{UI: func(a dmsim.UIAlert) dmsim.UIResponse {
		seen = append(seen, a)
		switch a.Code {
		case 1101:
			return dmsim.UIResponse{Status: 304}
		case 1103:
			return dmsim.UIResponse{Status: 200, Answers: []string{"2"}}
		}
		return dmsim.DefaultUI(a)
	}})
	if len(seen) != 4 || seen[0].Items[0] != "Hello" || seen[2].Items[2] != "two" {
		t.Errorf("UI saw %+v", seen)
	}
}
