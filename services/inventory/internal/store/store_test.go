package store

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"
	"time"

	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newStore(t *testing.T, opt Options) *Store {
	t.Helper()
	s := New(testredis.Client(t), testredis.Prefix(t), opt)
	if err := s.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	return s
}

func apply(t *testing.T, s *Store, ups ...Update) []Result {
	t.Helper()
	res, err := s.ApplyBatch(context.Background(), ups)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range res {
		if r.Err != nil {
			t.Fatalf("update %d (%s): %v", i, ups[i].EventID, r.Err)
		}
	}
	return res
}

func node(data string) *inventoryv1.TreeNode {
	return &inventoryv1.TreeNode{Data: []byte(data), Source: inventoryv1.TreeNode_SOURCE_RESULTS, CommandId: "c1"}
}

func TestApplyIdempotentAndOrdered(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	dev := "IMEI:1"
	up := Update{EventID: "e1", DeviceID: dev, Time: t0, Seen: true,
		Attrs:    []Attr{{string(FieldMan), "ACME"}, {string(FieldFwV), "2.0"}},
		Counters: []string{CounterStarted},
		Nodes:    []Node{{"./DevDetail/FwV", node("2.0")}},
	}
	if res := apply(t, s, up, up); !res[0].Applied || res[1].Applied {
		t.Fatalf("first apply %v, duplicate in the same batch %v", res[0], res[1])
	}
	if res := apply(t, s, up); res[0].Applied {
		t.Fatal("a redelivered event was applied again")
	}
	d, err := s.GetDevice(ctx, dev)
	if err != nil {
		t.Fatal(err)
	}
	if d.DevInfo.Man != "ACME" || d.DevDetail.FwV != "2.0" || d.Sessions.StartedCount != 1 || !d.LastSeenTime.AsTime().Equal(t0) {
		t.Fatalf("device = %v", d)
	}
	// An older event (a late redelivery) does not overwrite newer values; a newer one does.
	old := Update{EventID: "e0", DeviceID: dev, Time: t0.Add(-time.Hour), Seen: true,
		Attrs: []Attr{{string(FieldFwV), "1.0"}}, Nodes: []Node{{"./DevDetail/FwV", node("1.0")}}}
	apply(t, s, old)
	d, _ = s.GetDevice(ctx, dev)
	tree, _ := s.Tree(ctx, dev, ".")
	if d.DevDetail.FwV != "2.0" || string(tree[0].Data) != "2.0" || !d.LastSeenTime.AsTime().Equal(t0) {
		t.Fatalf("an older event overwrote: fw %q node %q seen %v", d.DevDetail.FwV, tree[0].Data, d.LastSeenTime.AsTime())
	}
	if n, _ := s.Count(ctx, &Filter{Eq: map[Field]string{FieldFwV: "1.0"}}); n != 0 {
		t.Fatalf("index has the old firmware: %d", n)
	}
	newer := Update{EventID: "e2", DeviceID: dev, Time: t0.Add(time.Hour), Attrs: []Attr{{string(FieldFwV), "3.0"}}}
	apply(t, s, newer)
	for fw, want := range map[string]int64{"2.0": 0, "3.0": 1} {
		if n, _ := s.Count(ctx, &Filter{Eq: map[Field]string{FieldFwV: fw}}); n != want {
			t.Fatalf("count fw %s = %d, want %d", fw, n, want)
		}
	}
	if vals, _ := s.rdb.SMembers(ctx, s.valsKey(FieldFwV)).Result(); !slices.Equal(vals, []string{"3.0"}) {
		t.Fatalf("firmware values = %v (an emptied index must leave the value list)", vals)
	}
	if _, err := s.GetDevice(ctx, "IMEI:none"); err != ErrNotFound {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestLabelsReplaceWhole(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	apply(t, s, Update{EventID: "l1", DeviceID: "d", Time: t0, Labels: map[string]string{"env": "prod", "a=b": "c"}})
	apply(t, s, Update{EventID: "l2", DeviceID: "d", Time: t0.Add(time.Second), Labels: map[string]string{"env": "test"}})
	apply(t, s, Update{EventID: "l0", DeviceID: "d", Time: t0.Add(-time.Second), Labels: map[string]string{"env": "old"}})
	d, _ := s.GetDevice(ctx, "d")
	if len(d.Labels) != 1 || d.Labels["env"] != "test" {
		t.Fatalf("labels = %v", d.Labels)
	}
	for l, want := range map[string]int64{"prod": 0, "test": 1, "old": 0} {
		if n, _ := s.Count(ctx, &Filter{Labels: map[string]string{"env": l}}); n != want {
			t.Fatalf("env=%s: %d, want %d", l, n, want)
		}
	}
}

func TestTreeSubtree(t *testing.T) {
	s := newStore(t, Options{})
	ctx := context.Background()
	var nodes []Node
	for _, u := range []string{"./DevDetail", "./DevDetail/FwV", "./DevDetail/URI/MaxDepth", "./DevDetailX/A", "./DevInfo/Man"} {
		nodes = append(nodes, Node{u, node(u)})
	}
	apply(t, s, Update{EventID: "t", DeviceID: "d", Time: t0, Nodes: nodes})
	got, err := s.Tree(ctx, "d", "./DevDetail")
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, n := range got {
		uris = append(uris, n.Uri)
		if string(n.Data) != n.Uri || !n.UpdateTime.AsTime().Equal(t0) || n.CommandId != "c1" {
			t.Fatalf("node %v", n)
		}
	}
	if !slices.Equal(uris, []string{"./DevDetail", "./DevDetail/FwV", "./DevDetail/URI/MaxDepth"}) {
		t.Fatalf("subtree = %v", uris)
	}
	if all, _ := s.Tree(ctx, "d", "."); len(all) != 5 {
		t.Fatalf("whole tree has %d nodes", len(all))
	}
	if _, err := s.Tree(ctx, "none", "."); err != ErrNotFound {
		t.Fatalf("unknown device: %v", err)
	}
}

func TestScriptReloaded(t *testing.T) {
	s := newStore(t, Options{})
	if err := s.rdb.ScriptFlush(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if res := apply(t, s, Update{EventID: "x", DeviceID: "d", Time: t0}); !res[0].Applied {
		t.Fatal("not applied after a script flush")
	}
}

func TestDedupeWindowTrims(t *testing.T) {
	s := newStore(t, Options{DedupeWindow: time.Hour, MaxEventIDs: 40})
	ctx := context.Background()
	for i := range 50 {
		apply(t, s, Update{EventID: fmt.Sprint("e", i), DeviceID: "d", Time: t0.Add(time.Duration(i) * time.Minute)})
	}
	if n, _ := s.rdb.ZCard(ctx, s.deviceKey("d", "e")).Result(); n != 40 {
		t.Fatalf("%d ids kept, want MaxEventIDs 40", n)
	}
	for i := range 33 {
		apply(t, s, Update{EventID: fmt.Sprint("late", i), DeviceID: "d", Time: t0.Add(5*time.Hour + time.Duration(i)*time.Second)})
	}
	if n, _ := s.rdb.ZCard(ctx, s.deviceKey("d", "e")).Result(); n != 33 {
		t.Fatalf("%d ids kept after the window passed, want the 33 recent ones", n)
	}
}

// truth is a device's expected indexed state for the brute-force comparison.
type truth struct {
	id     string
	eq     map[Field]string
	labels map[string]string
	seen   int64
}

func (d truth) matches(f *Filter) bool {
	for fl, v := range f.Eq {
		if d.eq[fl] != v {
			return false
		}
	}
	for k, v := range f.Labels {
		if got, ok := d.labels[k]; !ok || got != v {
			return false
		}
	}
	if f.SeenAfter != nil && !(d.seen > *f.SeenAfter) {
		return false
	}
	if f.SeenBefore != nil && !(d.seen < *f.SeenBefore) {
		return false
	}
	return true
}

// TestQueriesMatchBruteForce compares List (every page, several page sizes and a tiny scan
// budget), Count and Aggregate with a brute-force evaluation over random devices and filters.
func TestQueriesMatchBruteForce(t *testing.T) {
	s := newStore(t, Options{MaxScan: 300})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(7, 7))
	pick := func(prefix string, n int) string { return fmt.Sprintf("%s%d", prefix, rng.IntN(n)) }
	var devs []truth
	var ups []Update
	for i := range 3000 {
		d := truth{id: fmt.Sprintf("IMEI:%06d", rng.IntN(1000000)), eq: map[Field]string{
			FieldMan: pick("man", 3), FieldMod: pick("mod", 12), FieldFwV: pick("fw", 30), FieldSwV: pick("sw", 5)},
			labels: map[string]string{"ring": pick("r", 4)}, seen: t0.UnixMilli() + int64(rng.IntN(100000))}
		if i%7 == 0 {
			delete(d.eq, FieldSwV) // never reported
		}
		if slices.ContainsFunc(devs, func(x truth) bool { return x.id == d.id }) {
			continue
		}
		devs = append(devs, d)
		u := Update{EventID: "ev-" + d.id, DeviceID: d.id, Time: time.UnixMilli(d.seen), Seen: true, Labels: d.labels}
		for f, v := range d.eq {
			u.Attrs = append(u.Attrs, Attr{string(f), v})
		}
		ups = append(ups, u)
	}
	for len(ups) > 0 {
		n := min(len(ups), 500)
		apply(t, s, ups[:n]...)
		ups = ups[n:]
	}
	sort.Slice(devs, func(i, j int) bool { return devs[i].id < devs[j].id })
	ms := func(off int) *int64 { v := t0.UnixMilli() + int64(off); return &v }
	filters := []*Filter{
		{},
		{Eq: map[Field]string{FieldMod: "mod3"}},
		{Eq: map[Field]string{FieldMan: "man1", FieldFwV: "fw7"}},
		{Eq: map[Field]string{FieldMan: "man1", FieldMod: "mod2", FieldSwV: "sw1"}},
		{Labels: map[string]string{"ring": "r2"}, Eq: map[Field]string{FieldMan: "man0"}},
		{SeenAfter: ms(50000)},
		{SeenBefore: ms(1000)},
		{SeenAfter: ms(20000), SeenBefore: ms(20500)},
		{SeenAfter: ms(10000), Eq: map[Field]string{FieldFwV: "fw3"}},
		{SeenAfter: ms(10000), SeenBefore: ms(90000), Labels: map[string]string{"ring": "r1"}, Eq: map[Field]string{FieldMod: "mod5"}},
		{Eq: map[Field]string{FieldMod: "nope"}},
		{Eq: map[Field]string{FieldMod: "mod1", FieldFwV: "fw1", FieldSwV: "sw4", FieldMan: "man2"}},
	}
	for fi, f := range filters {
		var want []string
		for _, d := range devs {
			if d.matches(f) {
				want = append(want, d.id)
			}
		}
		for _, size := range []int{1, 7, 100, 1000} {
			var got []string
			after, calls := "", 0
			for {
				ids, next, err := s.List(ctx, f, after, size)
				if err != nil {
					t.Fatal(err)
				}
				if len(ids) > size {
					t.Fatalf("filter %d: page of %d > %d", fi, len(ids), size)
				}
				got = append(got, ids...)
				calls++
				if next == "" {
					break
				}
				if next <= after {
					t.Fatalf("filter %d: token did not advance", fi)
				}
				after = next
			}
			if !slices.Equal(got, want) {
				t.Fatalf("filter %d size %d: listed %d devices, want %d", fi, size, len(got), len(want))
			}
		}
		n, err := s.Count(ctx, f)
		if err != nil || n != int64(len(want)) {
			t.Fatalf("filter %d: count %d (%v), want %d", fi, n, err, len(want))
		}
		fields := []Field{FieldMod, FieldFwV, FieldSwV}
		total, aggs, err := s.Aggregate(ctx, f, fields)
		if err != nil || total != int64(len(want)) {
			t.Fatalf("filter %d: aggregate total %d (%v), want %d", fi, total, err, len(want))
		}
		for fj, field := range fields {
			exp := map[string]int64{}
			for _, d := range devs {
				if v, ok := d.eq[field]; ok && d.matches(f) {
					exp[v]++
				}
			}
			buckets := aggs[fj]
			if len(buckets) != len(exp) {
				t.Fatalf("filter %d by %s: %d buckets, want %d", fi, field, len(buckets), len(exp))
			}
			for i, b := range buckets {
				if exp[b.Value] != b.Count || (i > 0 && buckets[i-1].Count < b.Count) {
					t.Fatalf("filter %d by %s: bucket %v, want %d (or out of order)", fi, field, b, exp[b.Value])
				}
			}
		}
	}
	// No scratch keys are left behind.
	if keys, _ := s.rdb.Keys(ctx, s.ix+"tmp:*").Result(); len(keys) > 0 {
		t.Fatalf("scratch keys left: %v", keys)
	}
}
