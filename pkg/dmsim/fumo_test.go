package dmsim_test

import (
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmsim"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Scenario 2 (PROTOCOL.md §3, §11.4): Get of DevDetail leaves, Replace of the FUMO PkgURL and
// Exec DownloadAndUpdate → 200/200/202 with the Results; the next session's Pkg1 carries the
// Generic Alert 1226 with the Exec's Correlator.
func TestFUMOSessionAndGenericAlert(t *testing.T) {
	const pkgURL = "https://dl.example.com/fw/ex100-2.0.dd"
	for _, enc := range encodings() {
		t.Run(enc.String(), func(t *testing.T) {
			ss := newScriptServer(t, func(x *exchange) *syncml.Message {
				switch x.step {
				case 1:
					return acceptPkg1(x, true,
						getCmd("./DevDetail/SwV", "./DevDetail/FwV"),
						replaceCmd("./FUMO/FwPkg1/DownloadAndUpdate/PkgURL", pkgURL),
						execCmd("./FUMO/FwPkg1/DownloadAndUpdate", "corr-42"))
				case 2:
					m := x.msg
					if st := hdrStatusOf(t, m); st.Data != "200" || st.MsgRef != "1" || st.TargetRefs[0] != "IMEI:493005100592800" || st.SourceRefs[0] != x.ss.URL() {
						t.Errorf("Status for SyncHdr %+v", st)
					}
					if got := statusOf(m, "Get", "./DevDetail/FwV"); got != "200" {
						t.Errorf("Get status %q", got)
					}
					if got := statusOf(m, "Replace", "./FUMO/FwPkg1/DownloadAndUpdate/PkgURL"); got != "200" {
						t.Errorf("Replace status %q", got)
					}
					if got := statusOf(m, "Exec", "./FUMO/FwPkg1/DownloadAndUpdate"); got != "202" {
						t.Errorf("Exec status %q", got)
					}
					for target, want := range map[string]string{"./DevDetail/FwV": "1.0.7", "./DevDetail/SwV": "EX-OS 1.4.2"} {
						it := resultsFor(m, target)
						if len(it) != 1 || it[0].Data == nil || it[0].Data.Value != want {
							t.Errorf("Results for %s: %+v, want %q", target, it, want)
						} else if it[0].Meta != nil {
							t.Errorf("Results Meta %+v for a chr/text/plain leaf, want none (defaults)", it[0].Meta)
						}
					}
					// Results follow their Status (RepPro §4.1.6.12).
					seenGet := false
					for _, c := range m.Body.Commands {
						if c.Kind == syncml.KindStatus && c.Cmd == "Get" {
							seenGet = true
						}
						if c.Kind == syncml.KindResults && !seenGet {
							t.Error("Results before the Get's Status")
						}
					}
					if !m.Body.Final {
						t.Error("Pkg3 without Final")
					}
					return endSession(x)
				case 3: // next session
					checkPkg1(t, x.msg, "1201", "IMEI:493005100592800")
					var ga []syncml.Command
					for _, a := range cmds(x.msg, syncml.KindAlert) {
						if a.Data == "1226" {
							ga = append(ga, a)
						}
					}
					if len(ga) != 1 {
						t.Fatalf("Pkg1 carries %d Generic Alerts, want 1", len(ga))
					}
					a := ga[0]
					if a.Correlator != "corr-42" || len(a.Items) != 1 {
						t.Fatalf("Generic Alert %+v", a)
					}
					it := a.Items[0]
					if it.Source == nil || it.Source.LocURI != "./FUMO/FwPkg1" || it.Meta == nil ||
						it.Meta.Type != dmsim.FUMOTypeDownloadAndUpdate || it.Meta.Format != "int" || it.Data == nil || it.Data.Value != "200" {
						t.Errorf("Generic Alert Item %+v (Meta %+v)", it, it.Meta)
					}
					return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
				case 4:
					for _, a := range cmds(x.msg, syncml.KindAlert) {
						if a.Data == "1226" {
							t.Error("acknowledged Generic Alert sent again")
						}
					}
					return x.reply(true, with(x.hdrStatus(212, nil), x.statusAll(200))...)
				}
				return nil
			})
			d := newTestDevice(enc, ss.URL(), nil)
			rep := mustRun(t, d, dmsim.SessionOptions{})
			if v, _ := d.Tree().Get("./FUMO/FwPkg1/DownloadAndUpdate/PkgURL"); string(v) != pkgURL {
				t.Errorf("PkgURL = %q", v)
			}
			if v, _ := d.Tree().Get("./FUMO/FwPkg1/State"); string(v) != "100" {
				t.Errorf("FUMO State = %q, want 100 (update successful)", v)
			}
			if recs := rep.Find("Exec", "./FUMO/FwPkg1/DownloadAndUpdate"); len(recs) != 1 || recs[0].Status != 202 {
				t.Errorf("Exec record %+v", recs)
			}
			if p := d.PendingAlerts(); len(p) != 1 || p[0].Correlator != "corr-42" {
				t.Fatalf("pending alerts %+v", p)
			}
			rep = mustRun(t, d, dmsim.SessionOptions{})
			if rep.GenericAlertsSent != 1 || rep.GenericAlertsAcked != 1 || len(d.PendingAlerts()) != 0 {
				t.Errorf("second session: %s, pending %+v", rep.Summary(), d.PendingAlerts())
			}
			mustRun(t, d, dmsim.SessionOptions{})
		})
	}
}
