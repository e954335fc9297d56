package dmtree_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/dmgrid/dmgrid/pkg/dmtree"
)

// wantErr describes an expected *dmtree.Error; pos -2 means "don't care".
type wantErr struct {
	status int
	pos    int
}

func checkErr(t *testing.T, err error, w wantErr) {
	t.Helper()
	var e *dmtree.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *dmtree.Error", err, err)
	}
	if e.Status() != w.status {
		t.Fatalf("Status() = %d, want %d (%v)", e.Status(), w.status, err)
	}
	if w.pos != -2 && e.Pos != w.pos {
		t.Fatalf("Pos = %d, want %d (%v)", e.Pos, w.pos, err)
	}
	if dmtree.StatusOf(err) != w.status {
		t.Fatalf("StatusOf = %d, want %d", dmtree.StatusOf(err), w.status)
	}
}

func TestParseURI(t *testing.T) {
	tests := []struct {
		in   string
		want string   // canonical String()
		segs []string // decoded segments
	}{
		{".", ".", nil},
		{"./", ".", nil},
		{"./DevInfo/Man", "./DevInfo/Man", []string{"DevInfo", "Man"}},
		{"DevInfo/Man", "./DevInfo/Man", []string{"DevInfo", "Man"}},
		{"Vendor", "./Vendor", []string{"Vendor"}},
		{"./DevInfo/", "./DevInfo", []string{"DevInfo"}},
		{"./Vendor/MSFT/Policy/Config", "./Vendor/MSFT/Policy/Config", []string{"Vendor", "MSFT", "Policy", "Config"}},
		{"./.hidden/a.b", "./.hidden/a.b", []string{".hidden", "a.b"}},
		{"./...", "./...", []string{"..."}},
		{"./A%20B", "./A%20B", []string{"A B"}},
		{"./A B", "./A%20B", []string{"A B"}},
		{"./a%2Fb/c", "./a%2Fb/c", []string{"a/b", "c"}},
		{"./a%2fb", "./a%2Fb", []string{"a/b"}},
		{"./a%3fb", "./a%3Fb", []string{"a?b"}},
		{"./a%25b", "./a%25b", []string{"a%b"}},
		{"./x%41", "./xA", []string{"xA"}},
		{"./%C3%A9t%C3%A9", "./été", []string{"été"}},
		{"./été", "./été", []string{"été"}},
		{"./a+b&c=d#e", "./a+b&c=d#e", []string{"a+b&c=d#e"}},
		{"./A?prop=ACL", "./A?prop=ACL", []string{"A"}},
		{"./A/?prop=Format", "./A?prop=Format", []string{"A"}},
		{"./A?prop=TStamp", "./A?prop=TStamp", []string{"A"}},
		{"./A?prop=VerNo", "./A?prop=VerNo", []string{"A"}},
		{"./DevDetail?list=Struct", "./DevDetail?list=Struct", []string{"DevDetail"}},
		{"./A?list=StructData", "./A?list=StructData", []string{"A"}},
		{".?list=Struct", ".?list=Struct", nil},
		{"./?list=Struct", ".?list=Struct", nil},
		{"./A?list=TNDS", "./A?list=TNDS", []string{"A"}},
		{"./A?list=TNDS+Value+ACL", "./A?list=TNDS+ACL+Value", []string{"A"}},
		{"./A?list=TNDS-Format", "./A?list=TNDS-Format", []string{"A"}},
		{"./A?list=TNDS-Value-Format-Format", "./A?list=TNDS-Format-Value", []string{"A"}},
		{"./A?list=TNDS+ACL+ACL", "./A?list=TNDS+ACL", []string{"A"}},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			u, err := dmtree.ParseURI(tc.in, dmtree.DefaultLimits)
			if err != nil {
				t.Fatalf("ParseURI(%q): %v", tc.in, err)
			}
			if got := u.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			if got := u.Segments(); !slices.Equal(got, tc.segs) {
				t.Fatalf("Segments() = %q, want %q", got, tc.segs)
			}
			if u.Depth() != len(tc.segs) || u.IsRoot() != (len(tc.segs) == 0) {
				t.Fatalf("Depth/IsRoot = %d/%v for %q", u.Depth(), u.IsRoot(), tc.segs)
			}
			// Round trip: the canonical form parses to the same URI and is a
			// fixed point of String.
			v, err := dmtree.ParseURI(u.String(), dmtree.DefaultLimits)
			if err != nil {
				t.Fatalf("re-parse %q: %v", u.String(), err)
			}
			if !v.Equal(u) || v.String() != u.String() {
				t.Fatalf("round trip %q -> %q", u.String(), v.String())
			}
		})
	}
}

func TestParseURIErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  dmtree.Limits
		want wantErr
	}{
		{"empty", "", dmtree.DefaultLimits, wantErr{400, 0}},
		{"leading slash", "/A", dmtree.DefaultLimits, wantErr{400, 0}},
		{"only slash", "/", dmtree.DefaultLimits, wantErr{400, 0}},
		{"empty segment", "./A//B", dmtree.DefaultLimits, wantErr{400, 4}},
		{"double trailing slash", "A//", dmtree.DefaultLimits, wantErr{400, 2}},
		{"dot double slash", ".//", dmtree.DefaultLimits, wantErr{400, 2}},
		{"dot segment", "./A/./B", dmtree.DefaultLimits, wantErr{400, 4}},
		{"dotdot segment", "./A/../B", dmtree.DefaultLimits, wantErr{400, 4}},
		{"dotdot alone", "..", dmtree.DefaultLimits, wantErr{400, 0}},
		{"dot after root", "./.", dmtree.DefaultLimits, wantErr{400, 2}},
		{"escaped dot", "./%2E", dmtree.DefaultLimits, wantErr{400, 2}},
		{"NUL", "./A\x00", dmtree.DefaultLimits, wantErr{400, 3}},
		{"newline", "./A\nB", dmtree.DefaultLimits, wantErr{400, 3}},
		{"DEL", "./A\x7f", dmtree.DefaultLimits, wantErr{400, 3}},
		{"escaped control", "./AB%0A", dmtree.DefaultLimits, wantErr{400, 4}},
		{"escaped NUL", "./%00", dmtree.DefaultLimits, wantErr{400, 2}},
		{"short escape", "./A%2", dmtree.DefaultLimits, wantErr{400, 3}},
		{"bare percent", "./A%", dmtree.DefaultLimits, wantErr{400, 3}},
		{"bad hex", "./A%GG", dmtree.DefaultLimits, wantErr{400, 3}},
		{"escaped invalid UTF-8", "./x/%C3", dmtree.DefaultLimits, wantErr{400, 4}},
		{"raw invalid UTF-8", "./\xff", dmtree.DefaultLimits, wantErr{400, 2}},
		{"query without path", "?prop=ACL", dmtree.DefaultLimits, wantErr{400, 0}},
		{"prop wrong case", "./A?prop=acl", dmtree.DefaultLimits, wantErr{406, 9}},
		{"prop Value", "./A?prop=Value", dmtree.DefaultLimits, wantErr{406, 9}},
		{"prop unknown", "./A?prop=Foo", dmtree.DefaultLimits, wantErr{406, 9}},
		{"prop empty", "./A?prop=", dmtree.DefaultLimits, wantErr{406, 9}},
		{"list unknown", "./A?list=Tree", dmtree.DefaultLimits, wantErr{406, 9}},
		{"list wrong case", "./A?list=struct", dmtree.DefaultLimits, wantErr{406, 9}},
		{"tnds unknown prop", "./A?list=TNDS+Foo", dmtree.DefaultLimits, wantErr{406, 14}},
		{"filter on Struct", "./A?list=Struct+ACL", dmtree.DefaultLimits, wantErr{406, 15}},
		{"tnds empty prop", "./A?list=TNDS+", dmtree.DefaultLimits, wantErr{400, 14}},
		{"tnds mixed signs", "./A?list=TNDS+ACL-Value", dmtree.DefaultLimits, wantErr{400, 17}},
		{"unknown query", "./A?foo=bar", dmtree.DefaultLimits, wantErr{400, 4}},
		{"empty query", "./A?", dmtree.DefaultLimits, wantErr{400, 4}},
		{"query without value", "./A?prop", dmtree.DefaultLimits, wantErr{400, 4}},
		{"two params", "./A?prop=ACL&list=Struct", dmtree.DefaultLimits, wantErr{400, 12}},
		{"second question mark", "./A?prop=ACL?x", dmtree.DefaultLimits, wantErr{400, 12}},
		{"equals in value", "./A?prop=A=B", dmtree.DefaultLimits, wantErr{400, 10}},
		{"space in query", "./A?prop=ACL ", dmtree.DefaultLimits, wantErr{400, 12}},
		{"depth", "./A/B/C", dmtree.Limits{MaxDepth: 2}, wantErr{414, -1}},
		{"default depth", "./" + strings.Repeat("a/", 32) + "a", dmtree.DefaultLimits, wantErr{414, -1}},
		{"segment length", "./ABCD", dmtree.Limits{MaxSegLen: 3}, wantErr{414, -1}},
		{"encoded segment length", "./A%20B", dmtree.Limits{MaxSegLen: 3}, wantErr{414, -1}},
		{"total length", "./A/BC", dmtree.Limits{MaxTotLen: 5}, wantErr{414, -1}},
		{"relative form counts canonically", "A/BC", dmtree.Limits{MaxTotLen: 5}, wantErr{414, -1}},
		{"default segment length", "./" + strings.Repeat("x", 256), dmtree.DefaultLimits, wantErr{414, -1}},
		{"raw cap even when unlimited", "./" + strings.Repeat("x", dmtree.MaxRawURILen), dmtree.Limits{}, wantErr{414, dmtree.MaxRawURILen}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			u, err := dmtree.ParseURI(tc.in, tc.lim)
			if err == nil {
				t.Fatalf("ParseURI(%q) = %q, want error", tc.in, u)
			}
			checkErr(t, err, tc.want)
		})
	}
}

func TestParseURIWithinLimits(t *testing.T) {
	tests := []struct {
		in  string
		lim dmtree.Limits
	}{
		{"./A/B", dmtree.Limits{MaxDepth: 2}},
		{"./ABC", dmtree.Limits{MaxSegLen: 3}},
		{"./A/B", dmtree.Limits{MaxTotLen: 5}},
		{"./A/B?list=TNDS+ACL+Value", dmtree.Limits{MaxTotLen: 5}}, // query not counted
		{"./" + strings.Repeat("a/", 31) + "a", dmtree.DefaultLimits},
		{"./" + strings.Repeat("x", 255), dmtree.DefaultLimits},
		{"./" + strings.Repeat("a/", 1000) + "a", dmtree.Limits{}},
		{"./" + strings.Repeat("x", 5000), dmtree.Limits{MaxDepth: -1}},
	}
	for _, tc := range tests {
		if _, err := dmtree.ParseURI(tc.in, tc.lim); err != nil {
			t.Errorf("ParseURI(%.40q, %+v): %v", tc.in, tc.lim, err)
		}
	}
}

func TestURIQuery(t *testing.T) {
	u := dmtree.MustParseURI("./A?list=TNDS-Value-ACL")
	q := u.Query()
	if q.Kind != dmtree.QueryList || q.List != dmtree.ListTNDS || !q.Filter.Exclude ||
		!slices.Equal(q.Filter.Props, []dmtree.Property{dmtree.PropACL, dmtree.PropValue}) {
		t.Fatalf("Query() = %+v", q)
	}
	q.Filter.Props[0] = dmtree.PropName // must not leak into u
	if u.String() != "./A?list=TNDS-ACL-Value" {
		t.Fatalf("Query() result aliases the URI: %q", u)
	}
	p := dmtree.MustParseURI("./A?prop=Title").Query()
	if p.Kind != dmtree.QueryProp || p.Prop != dmtree.PropTitle {
		t.Fatalf("prop query = %+v", p)
	}
	if k := dmtree.MustParseURI("./A").Query().Kind; k != dmtree.QueryNone {
		t.Fatalf("no query, Kind = %v", k)
	}
	if got := u.Path().String(); got != "./A" {
		t.Fatalf("Path() = %q", got)
	}

	withTests := []struct {
		name string
		q    dmtree.Query
		want string
		err  int
	}{
		{"none", dmtree.Query{}, "./A/B", 0},
		{"prop", dmtree.Query{Kind: dmtree.QueryProp, Prop: dmtree.PropACL}, "./A/B?prop=ACL", 0},
		{"list", dmtree.Query{Kind: dmtree.QueryList, List: dmtree.ListStruct}, "./A/B?list=Struct", 0},
		{"tnds unsorted", dmtree.Query{Kind: dmtree.QueryList, List: dmtree.ListTNDS,
			Filter: dmtree.TNDSFilter{Props: []dmtree.Property{dmtree.PropValue, dmtree.PropACL, dmtree.PropValue}}}, "./A/B?list=TNDS+ACL+Value", 0},
		{"prop Value", dmtree.Query{Kind: dmtree.QueryProp, Prop: dmtree.PropValue}, "", 406},
		{"prop unknown", dmtree.Query{Kind: dmtree.QueryProp, Prop: "acl"}, "", 406},
		{"list unknown", dmtree.Query{Kind: dmtree.QueryList, List: "Tree"}, "", 406},
		{"filter on Struct", dmtree.Query{Kind: dmtree.QueryList, List: dmtree.ListStruct,
			Filter: dmtree.TNDSFilter{Props: []dmtree.Property{dmtree.PropACL}}}, "", 406},
		{"filter unknown", dmtree.Query{Kind: dmtree.QueryList, List: dmtree.ListTNDS,
			Filter: dmtree.TNDSFilter{Props: []dmtree.Property{"Foo"}}}, "", 406},
		{"bad kind", dmtree.Query{Kind: 9}, "", 400},
	}
	base := dmtree.MustParseURI("./A/B?prop=Name")
	for _, tc := range withTests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := base.WithQuery(tc.q)
			if tc.err != 0 {
				checkErr(t, err, wantErr{tc.err, -2})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != tc.want {
				t.Fatalf("WithQuery = %q, want %q", v, tc.want)
			}
			if w, err := dmtree.ParseURI(v.String(), dmtree.DefaultLimits); err != nil || !w.Equal(v) {
				t.Fatalf("WithQuery result %q does not round trip: %v", v, err)
			}
		})
	}
}

func TestURINavigation(t *testing.T) {
	u := dmtree.MustParseURI("./FUMO/Fw%20Pkg/Update?prop=ACL")
	if got := u.Name(); got != "Update" {
		t.Fatalf("Name() = %q", got)
	}
	if dmtree.Root().Name() != "" || !dmtree.Root().IsRoot() || dmtree.Root().String() != "." {
		t.Fatal("Root() is not the root")
	}
	parents := []string{"./FUMO/Fw%20Pkg", "./FUMO", ".", "."}
	p := u
	for _, want := range parents {
		p = p.Parent()
		if p.String() != want {
			t.Fatalf("Parent chain: got %q, want %q", p, want)
		}
	}

	segs := u.Segments()
	segs[0] = "X"
	if u.Segments()[0] != "FUMO" {
		t.Fatal("Segments() result aliases the URI")
	}

	// Join must not alias: two children of the same parent stay distinct
	// even when the parent's slice has spare capacity.
	parent := u.Parent()
	a, err := parent.Join("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := parent.Join("b")
	if err != nil {
		t.Fatal(err)
	}
	if a.String() != "./FUMO/Fw%20Pkg/a" || b.String() != "./FUMO/Fw%20Pkg/b" || u.String() != "./FUMO/Fw%20Pkg/Update?prop=ACL" {
		t.Fatalf("Join aliasing: a=%q b=%q u=%q", a, b, u)
	}

	joinTests := []struct {
		name string
		want string
		err  bool
	}{
		{"Man", "./DevInfo/Man", false},
		{"a/b", "./DevInfo/a%2Fb", false},
		{"50%", "./DevInfo/50%25", false},
		{"what?", "./DevInfo/what%3F", false},
		{"été", "./DevInfo/été", false},
		{"", "", true},
		{".", "", true},
		{"..", "", true},
		{"a\x00b", "", true},
		{"a\tb", "", true},
		{"\xff", "", true},
	}
	base := dmtree.MustParseURI("./DevInfo")
	for _, tc := range joinTests {
		t.Run("join "+tc.name, func(t *testing.T) {
			j, err := base.Join(tc.name)
			if tc.err {
				checkErr(t, err, wantErr{400, -2})
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if j.String() != tc.want || j.Name() != tc.name {
				t.Fatalf("Join(%q) = %q (name %q), want %q", tc.name, j, j.Name(), tc.want)
			}
			back, err := dmtree.ParseURI(j.String(), dmtree.DefaultLimits)
			if err != nil || !back.Equal(j) {
				t.Fatalf("Join result %q does not round trip: %v", j, err)
			}
		})
	}
}

func TestHasPrefixAndEqual(t *testing.T) {
	tests := []struct {
		u, prefix string
		want      bool
	}{
		{"./A/B/C", "./A/B", true},
		{"./A/B", "./A/B", true},
		{"./A/B", ".", true},
		{".", ".", true},
		{"./A/BC", "./A/B", false},
		{"./A", "./A/B", false},
		{"./B/A", "./A", false},
		{"./A/B?prop=ACL", "./A?list=Struct", true},
		{"./a%2Fb/c", "./a", false},
	}
	for _, tc := range tests {
		u, p := dmtree.MustParseURI(tc.u), dmtree.MustParseURI(tc.prefix)
		if got := u.HasPrefix(p); got != tc.want {
			t.Errorf("%q.HasPrefix(%q) = %v, want %v", tc.u, tc.prefix, got, tc.want)
		}
	}
	eq := []struct {
		a, b string
		want bool
	}{
		{"./A/B", "A/B/", true},
		{"./A%20B", "./A B", true},
		{"./A", "./A?prop=ACL", false},
		{"./A?list=TNDS+Value+ACL", "./A?list=TNDS+ACL+Value", true},
		{"./A?list=TNDS+ACL", "./A?list=TNDS-ACL", false},
		{"./A/B", "./A", false},
	}
	for _, tc := range eq {
		if got := dmtree.MustParseURI(tc.a).Equal(dmtree.MustParseURI(tc.b)); got != tc.want {
			t.Errorf("Equal(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestLimitsCheck(t *testing.T) {
	u, err := dmtree.Root().Join(strings.Repeat("y", 300))
	if err != nil {
		t.Fatal(err)
	}
	checkErr(t, dmtree.DefaultLimits.Check(u), wantErr{414, -1})
	if err := (dmtree.Limits{}).Check(u); err != nil {
		t.Fatalf("unlimited Check: %v", err)
	}
	if err := dmtree.DefaultLimits.Check(dmtree.MustParseURI("./DevInfo/Man")); err != nil {
		t.Fatalf("Check: %v", err)
	}
}

func TestMustParseURIPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("MustParseURI did not panic on invalid input")
		}
	}()
	dmtree.MustParseURI("/bad")
}

func TestErrorText(t *testing.T) {
	_, err := dmtree.ParseURI("./A//B", dmtree.DefaultLimits)
	msg := err.Error()
	for _, want := range []string{"parse URI", `"./A//B"`, "index 4", "400"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q lacks %q", msg, want)
		}
	}
	if !errors.Is(err, dmtree.ErrSyntax) {
		t.Errorf("errors.Is(%v, ErrSyntax) = false", err)
	}
	_, err = dmtree.ParseURI("./A?prop=X", dmtree.DefaultLimits)
	if !errors.Is(err, dmtree.ErrNotSupported) {
		t.Errorf("errors.Is(%v, ErrNotSupported) = false", err)
	}
	_, err = dmtree.ParseURI("./A/B", dmtree.Limits{MaxDepth: 1})
	if !errors.Is(err, dmtree.ErrURITooLong) || strings.Contains(err.Error(), "index") {
		t.Errorf("limit error %v: want ErrURITooLong without position", err)
	}
	if dmtree.StatusOf(nil) != 200 || dmtree.StatusOf(errors.New("x")) != 500 {
		t.Error("StatusOf for nil / foreign errors")
	}
	long := strings.Repeat("x", 200) + "//"
	_, err = dmtree.ParseURI(long, dmtree.Limits{})
	if len(err.Error()) > 200 {
		t.Errorf("error message not truncated: %d bytes", len(err.Error()))
	}
}

func FuzzParseURI(f *testing.F) {
	for _, s := range []string{
		".", "./", "./DevInfo/Man", "A/B/", "./A%20B", "./a%2Fb", "./%C3%A9", "./A?prop=ACL",
		"./A?list=TNDS+Value+ACL", "./A?list=TNDS-Format", ".?list=Struct", "./A//B", "/x",
		"./%", "./..", "./A?prop=A=B", "./A\x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := dmtree.ParseURI(s, dmtree.DefaultLimits)
		if err != nil {
			var e *dmtree.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v is not a *dmtree.Error", err)
			}
			switch e.Status() {
			case 400, 406, 414:
			default:
				t.Fatalf("unexpected status %d for %q", e.Status(), s)
			}
			if e.Pos < -1 || e.Pos > len(s) {
				t.Fatalf("Pos %d outside input of %d bytes", e.Pos, len(s))
			}
			return
		}
		c := u.String()
		v, err := dmtree.ParseURI(c, dmtree.DefaultLimits)
		if err != nil {
			t.Fatalf("canonical %q of %q does not parse: %v", c, s, err)
		}
		if !v.Equal(u) || v.String() != c {
			t.Fatalf("unstable: %q -> %q -> %q", s, c, v.String())
		}
		if u.Depth() > 0 {
			if !u.HasPrefix(u.Parent()) || u.Parent().Depth() != u.Depth()-1 {
				t.Fatalf("Parent inconsistent for %q", c)
			}
		}
	})
}
