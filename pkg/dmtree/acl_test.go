package dmtree_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
)

func TestParseFormat(t *testing.T) {
	tests := []struct {
		in   string
		want dmtree.Format
		str  string
	}{
		{"b64", dmtree.FormatB64, "b64"},
		{"bin", dmtree.FormatBin, "bin"},
		{"bool", dmtree.FormatBool, "bool"},
		{"chr", dmtree.FormatChr, "chr"},
		{"int", dmtree.FormatInt, "int"},
		{"node", dmtree.FormatNode, "node"},
		{"null", dmtree.FormatNull, "null"},
		{"xml", dmtree.FormatXML, "xml"},
		{"date", dmtree.FormatDate, "date"},
		{"time", dmtree.FormatTime, "time"},
		{"float", dmtree.FormatFloat, "float"},
		{"Chr", dmtree.FormatChr, "chr"}, // hostapd spelling
		{"B64", dmtree.FormatB64, "b64"},
		{" NODE\n", dmtree.FormatNode, "node"},
		{"", dmtree.FormatChr, "chr"}, // absent Format means chr
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			f, err := dmtree.ParseFormat(tc.in)
			if err != nil {
				t.Fatalf("ParseFormat(%q): %v", tc.in, err)
			}
			if f != tc.want || f.String() != tc.str || !f.Valid() {
				t.Fatalf("ParseFormat(%q) = %v (%q), want %v", tc.in, f, f.String(), tc.str)
			}
			if f.IsInterior() != (f == dmtree.FormatNode) {
				t.Fatalf("IsInterior(%v) wrong", f)
			}
		})
	}
	for _, bad := range []string{"string", "text/plain", "b 64", "nodes", "c\x00hr"} {
		_, err := dmtree.ParseFormat(bad)
		checkErr(t, err, wantErr{415, -1})
	}
	var zero dmtree.Format
	if zero != dmtree.DefaultFormat || zero.String() != "chr" || dmtree.DefaultType != "text/plain" {
		t.Fatal("zero Format must be the default chr, default Type text/plain")
	}
	if dmtree.Format(200).Valid() || dmtree.Format(200).String() != "format(200)" {
		t.Fatalf("invalid Format: Valid=%v String=%q", dmtree.Format(200).Valid(), dmtree.Format(200).String())
	}
}

func TestParseACL(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"", ""},
		{"  \n", ""},
		{"Add=*&Get=*", "Add=*&Get=*"},
		{"Get=*&Add=*", "Add=*&Get=*"},
		{"Get=srv2+srv1", "Get=srv1+srv2"},
		{"Get=a&Get=b", "Get=a+b"},
		{"Get=a+a", "Get=a"},
		{"Get=a+*", "Get=*"},
		{"Get=*+*", "Get=*"},
		{"get=*&REPLACE=x", "Get=*&Replace=x"},
		{"  Get=*\n", "Get=*"},
		{"Replace=com.example.dms&Delete=com.example.dms&Exec=x&Add=*&Get=*",
			"Add=*&Delete=com.example.dms&Exec=x&Get=*&Replace=com.example.dms"},
		{"Get=ünïcode.srv", "Get=ünïcode.srv"},
		{"Get=a.b-c_d:e/f", "Get=a.b-c_d:e/f"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			a, err := dmtree.ParseACL(tc.in)
			if err != nil {
				t.Fatalf("ParseACL(%q): %v", tc.in, err)
			}
			if got := a.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			if a.IsEmpty() != (tc.want == "") {
				t.Fatalf("IsEmpty() = %v", a.IsEmpty())
			}
			b, err := dmtree.ParseACL(a.String())
			if err != nil || !b.Equal(a) || b.String() != a.String() {
				t.Fatalf("round trip of %q: %q, %v", a, b, err)
			}
		})
	}
}

func TestParseACLErrors(t *testing.T) {
	manyIDs := "Get=" + strings.Repeat("s+", dmtree.MaxACLIDs) + "s"
	tests := []struct {
		name string
		in   string
		want wantErr
	}{
		{"no equals", "Get", wantErr{400, 0}},
		{"Copy", "Copy=*", wantErr{400, 0}},
		{"unknown after valid", "Get=*&Foo=a", wantErr{400, 6}},
		{"empty id", "Get=", wantErr{400, 4}},
		{"trailing plus", "Get=a+", wantErr{400, 6}},
		{"leading plus", "Get=+a", wantErr{400, 4}},
		{"space in id", "Get=a b", wantErr{400, 5}},
		{"star in id", "Get=a*", wantErr{400, 5}},
		{"equals in id", "Get==a", wantErr{400, 4}},
		{"trailing ampersand", "Get=*&", wantErr{400, 6}},
		{"leading ampersand", "&Get=*", wantErr{400, 0}},
		{"empty entry", "Get=a&&Add=b", wantErr{400, 6}},
		{"control char", "Get=a\x01", wantErr{400, 5}},
		{"tab", "Get=a\tb", wantErr{400, 5}},
		{"invalid UTF-8", "Get=\xff", wantErr{400, 4}},
		{"position counts leading space", "  Get=a b", wantErr{400, 7}},
		{"space around &", "Get=* & Add=*", wantErr{400, 4}},
		{"too long", "Get=" + strings.Repeat("x", dmtree.MaxACLLen), wantErr{413, dmtree.MaxACLLen}},
		{"too many ids", manyIDs, wantErr{413, -2}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := dmtree.ParseACL(tc.in)
			if err == nil {
				t.Fatalf("ParseACL(%q) = %q, want error", tc.in, a)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestACLAllows(t *testing.T) {
	tests := []struct {
		acl    string
		cmd    dmtree.Cmd
		server string
		want   bool
	}{
		{"Add=*&Get=*", dmtree.CmdGet, "any", true},
		{"Add=*&Get=*", dmtree.CmdAdd, "any", true},
		{"Add=*&Get=*", dmtree.CmdReplace, "any", false},
		{"Add=*&Get=*", dmtree.CmdGet, "", true},
		{"Get=srv1+srv2", dmtree.CmdGet, "srv2", true},
		{"Get=srv1+srv2", dmtree.CmdGet, "srv3", false},
		{"Get=srv1+srv2", dmtree.CmdGet, "SRV1", false}, // ids are case-sensitive
		{"Get=srv1+srv2", dmtree.CmdGet, "", false},
		{"Get=srv1", dmtree.CmdExec, "srv1", false},
		{"Exec=srv1&Delete=srv1", dmtree.CmdExec, "srv1", true},
		{"Exec=srv1&Delete=srv1", dmtree.CmdDelete, "srv1", true},
		{"", dmtree.CmdGet, "srv1", false},
		{"Get=*", dmtree.Cmd(99), "srv1", false},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%v/%s", tc.acl, tc.cmd, tc.server), func(t *testing.T) {
			a, err := dmtree.ParseACL(tc.acl)
			if err != nil {
				t.Fatal(err)
			}
			if got := a.Allows(tc.cmd, tc.server); got != tc.want {
				t.Fatalf("Allows = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestParseCmd(t *testing.T) {
	for i, name := range []string{"Add", "Delete", "Exec", "Get", "Replace"} {
		c, err := dmtree.ParseCmd(name)
		if err != nil || c != dmtree.Cmd(i) || c.String() != name {
			t.Errorf("ParseCmd(%q) = %v, %v", name, c, err)
		}
	}
	for _, bad := range []string{"Copy", "", "Gets", "Atomic"} {
		_, err := dmtree.ParseCmd(bad)
		checkErr(t, err, wantErr{400, -2})
	}
	if dmtree.Cmd(42).String() != "Cmd(invalid)" {
		t.Error("invalid Cmd String")
	}
}

func TestEffective(t *testing.T) {
	values := map[string]string{
		"./A":       "Get=srvA&Replace=srvA",
		"./A/B":     "", // present but empty: inherit
		"./A/B/C/D": "Get=srvD",
	}
	lookup := func(u dmtree.URI) (dmtree.ACL, bool) {
		s, ok := values[u.String()]
		if !ok {
			return dmtree.ACL{}, false
		}
		a, err := dmtree.ParseACL(s)
		if err != nil {
			t.Fatalf("bad fixture %q: %v", s, err)
		}
		return a, true
	}
	tests := []struct {
		uri  string
		want string
	}{
		{"./A", "Get=srvA&Replace=srvA"},
		{"./A/B", "Get=srvA&Replace=srvA"},
		{"./A/B/C", "Get=srvA&Replace=srvA"},
		{"./A/B/C/D", "Get=srvD"},
		{"./A/B/C/D/E?prop=ACL", "Get=srvD"},
		{"./X/Y", "Add=*&Get=*"},
		{".", "Add=*&Get=*"},
	}
	for _, tc := range tests {
		t.Run(tc.uri, func(t *testing.T) {
			got := dmtree.Effective(dmtree.MustParseURI(tc.uri), lookup)
			if got.String() != tc.want {
				t.Fatalf("Effective = %q, want %q", got, tc.want)
			}
		})
	}

	values["."] = "Add=*&Get=*&Replace=admin"
	if got := dmtree.Effective(dmtree.MustParseURI("./X/Y"), lookup).String(); got != "Add=*&Get=*&Replace=admin" {
		t.Fatalf("root value not used: %q", got)
	}
	calls := 0
	dmtree.Effective(dmtree.MustParseURI("./P/Q/R"), func(dmtree.URI) (dmtree.ACL, bool) { calls++; return dmtree.ACL{}, false })
	if calls != 4 {
		t.Fatalf("lookup called %d times for depth 3, want 4 (node, 2 ancestors, root)", calls)
	}
}

func TestACLWithAndIDs(t *testing.T) {
	a, err := dmtree.ParseACL("Get=srv1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := a.With(dmtree.CmdGet, "srv0", "srv1")
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "Get=srv1" || b.String() != "Get=srv0+srv1" {
		t.Fatalf("With modified receiver or wrong result: a=%q b=%q", a, b)
	}
	c, err := b.With(dmtree.CmdReplace, "*")
	if err != nil || c.String() != "Get=srv0+srv1&Replace=*" {
		t.Fatalf("With(Replace, *) = %q, %v", c, err)
	}
	ids := c.IDs(dmtree.CmdGet)
	ids[0] = "zzz"
	if c.String() != "Get=srv0+srv1&Replace=*" || c.IDs(dmtree.CmdExec) != nil || c.IDs(dmtree.Cmd(9)) != nil {
		t.Fatal("IDs must return a copy / nil")
	}
	for _, bad := range []string{"", "a b", "a+b", "a&b", "x*"} {
		_, err := a.With(dmtree.CmdGet, bad)
		checkErr(t, err, wantErr{400, -2})
	}
	_, err = a.With(dmtree.Cmd(9), "x")
	checkErr(t, err, wantErr{400, -2})
	many := make([]string, dmtree.MaxACLIDs)
	for i := range many {
		many[i] = fmt.Sprint("s", i)
	}
	_, err = a.With(dmtree.CmdGet, many...)
	checkErr(t, err, wantErr{413, -2})
	long := []string{strings.Repeat("x", dmtree.MaxACLLen)}
	_, err = a.With(dmtree.CmdGet, long...)
	checkErr(t, err, wantErr{413, -2})

	root := dmtree.DefaultRootACL()
	if root.String() != "Add=*&Get=*" {
		t.Fatalf("DefaultRootACL = %q", root)
	}
	if !slices.Equal(root.IDs(dmtree.CmdAdd), []string{"*"}) {
		t.Fatal("root Add must be *")
	}
	if (dmtree.ACL{}).Equal(root) || !root.Equal(dmtree.DefaultRootACL()) {
		t.Fatal("Equal")
	}
}

func TestAllowsCopy(t *testing.T) {
	mk := func(s string) dmtree.ACL {
		a, err := dmtree.ParseACL(s)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	tests := []struct {
		name   string
		src    string
		dst    string
		exists bool
		want   bool
	}{
		{"new target needs Add", "Get=s", "Add=s", false, true},
		{"new target without Add", "Get=s", "Replace=s", false, false},
		{"existing target needs Replace", "Get=s", "Replace=s", true, true},
		{"existing target with only Add", "Get=s", "Add=s", true, false},
		{"source not readable", "Replace=s", "Add=*&Replace=*", false, false},
		{"wildcards", "Get=*", "Add=*", false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := dmtree.AllowsCopy(mk(tc.src), mk(tc.dst), tc.exists, "s"); got != tc.want {
				t.Fatalf("AllowsCopy = %v, want %v", got, tc.want)
			}
		})
	}
}

func FuzzParseACL(f *testing.F) {
	for _, s := range []string{
		"", "Add=*&Get=*", "Get=a+b&Replace=c", "get=*+x", "Get=", "Get=a&&", "Copy=*",
		"Get=ünï", "Get=\xff", " Exec=srv ", "Get=a=b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := dmtree.ParseACL(s)
		if err != nil {
			if st := dmtree.StatusOf(err); st != 400 && st != 413 {
				t.Fatalf("status %d for %q", st, s)
			}
			return
		}
		c := a.String()
		b, err := dmtree.ParseACL(c)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", c, s, err)
		}
		if !b.Equal(a) || b.String() != c {
			t.Fatalf("unstable: %q -> %q -> %q", s, c, b.String())
		}
		for cmd := dmtree.CmdAdd; cmd <= dmtree.CmdReplace; cmd++ {
			for _, id := range a.IDs(cmd) {
				if !a.Allows(cmd, id) {
					t.Fatalf("%q: listed id %q not allowed %v", c, id, cmd)
				}
			}
		}
	})
}
