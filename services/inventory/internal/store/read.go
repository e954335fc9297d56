package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"
)

// GetDevice returns one device's record, or ErrNotFound.
func (s *Store) GetDevice(ctx context.Context, id string) (*inventoryv1.Device, error) {
	devs, err := s.Devices(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if devs[0] == nil {
		return nil, ErrNotFound
	}
	return devs[0], nil
}

// Devices reads the records of ids in one round trip; a missing device is nil.
func (s *Store) Devices(ctx context.Context, ids []string) ([]*inventoryv1.Device, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, id := range ids {
			p.HGetAll(ctx, s.deviceKey(id, "a"))
			p.HGetAll(ctx, s.deviceKey(id, "l"))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read %d devices: %w", len(ids), err)
	}
	out := make([]*inventoryv1.Device, len(ids))
	for i, id := range ids {
		a := cmds[2*i].(*redis.MapStringStringCmd).Val()
		if len(a) == 0 {
			continue
		}
		out[i] = decodeDevice(id, a, cmds[2*i+1].(*redis.MapStringStringCmd).Val())
	}
	return out, nil
}

func msTime(s string) *timestamppb.Timestamp {
	if s == "" {
		return nil
	}
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return nil
	}
	return timestamppb.New(time.UnixMilli(ms))
}

func count(s string) int64 {
	n, _ := strconv.ParseInt(s, 10, 64)
	return n
}

func decodeDevice(id string, a, labels map[string]string) *inventoryv1.Device {
	d := &inventoryv1.Device{
		DeviceId: id,
		DevInfo: &inventoryv1.DevInfo{DevId: a[AttrDevID], Man: a[string(FieldMan)], Mod: a[string(FieldMod)],
			DmV: a[string(FieldDmV)], Lang: a[string(FieldLang)]},
		DevDetail: &inventoryv1.DevDetail{DevTyp: a[string(FieldDevTyp)], Oem: a[string(FieldOEM)], FwV: a[string(FieldFwV)],
			SwV: a[string(FieldSwV)], HwV: a[string(FieldHwV)], LrgObj: a[AttrLrgObj]},
		FirstSeenTime: msTime(a["first"]),
		LastSeenTime:  msTime(a["seen"]),
		UpdateTime:    msTime(a["upd"]),
		Sessions: &inventoryv1.SessionSummary{
			LastSessionId:   a[AttrSessionID],
			LastStartTime:   msTime(a[AttrSessionStart]),
			LastEndTime:     msTime(a[AttrSessionEnd]),
			LastOutcome:     eventsv1.SessionEnded_Outcome(eventsv1.SessionEnded_Outcome_value[a[string(FieldOutcome)]]),
			StartedCount:    count(a[CounterStarted]),
			CompletedCount:  count(a[CounterCompleted]),
			AbortedCount:    count(a[CounterAborted]),
			AuthFailedCount: count(a[CounterAuthFailed]),
			TimedOutCount:   count(a[CounterTimedOut]),
			ErrorCount:      count(a[CounterError]),
		},
	}
	if len(labels) > 0 {
		d.Labels = labels
	}
	return d
}

// Tree returns the device's known nodes at or below root ("." for all) in URI order, or
// ErrNotFound for an unknown device.
func (s *Store) Tree(ctx context.Context, id, root string) ([]*inventoryv1.TreeNode, error) {
	var blobs, times *redis.MapStringStringCmd
	var exists *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		exists = p.Exists(ctx, s.deviceKey(id, "a"))
		blobs = p.HGetAll(ctx, s.deviceKey(id, "t"))
		times = p.HGetAll(ctx, s.deviceKey(id, "tt"))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read tree of %s: %w", id, err)
	}
	if exists.Val() == 0 {
		return nil, ErrNotFound
	}
	tm := times.Val()
	var out []*inventoryv1.TreeNode
	for uri, blob := range blobs.Val() {
		if root != "." && uri != root && !strings.HasPrefix(uri, root+"/") {
			continue
		}
		n := &inventoryv1.TreeNode{}
		if err := proto.Unmarshal([]byte(blob), n); err != nil {
			return nil, fmt.Errorf("decode node %s of %s: %w", uri, id, err)
		}
		n.Uri = uri
		n.UpdateTime = msTime(tm[uri])
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Uri < out[j].Uri })
	return out, nil
}

// Filter selects devices (see dmgrid.inventory.v1.DeviceFilter): the AND of field
// equalities, label equalities and a last-seen range.
type Filter struct {
	Eq     map[Field]string
	Labels map[string]string
	// Last-seen bounds in unix ms, both exclusive; nil means unbounded.
	SeenAfter, SeenBefore *int64
}

func (f *Filter) hasRange() bool { return f.SeenAfter != nil || f.SeenBefore != nil }

// scoreRange is the ZRANGEBYSCORE form of the last-seen bounds.
func (f *Filter) scoreRange() (lo, hi string) {
	lo, hi = "-inf", "+inf"
	if f.SeenAfter != nil {
		lo = "(" + strconv.FormatInt(*f.SeenAfter, 10)
	}
	if f.SeenBefore != nil {
		hi = "(" + strconv.FormatInt(*f.SeenBefore, 10)
	}
	return lo, hi
}

func (f *Filter) inRange(score float64) bool {
	ms := int64(score)
	return (f.SeenAfter == nil || ms > *f.SeenAfter) && (f.SeenBefore == nil || ms < *f.SeenBefore)
}

// eqKeys returns the index keys of the filter's equalities, sorted (so that plans are
// deterministic).
func (s *Store) eqKeys(f *Filter) []string {
	var keys []string
	for fl, v := range f.Eq {
		keys = append(keys, s.eqKey(fl, v))
	}
	for k, v := range f.Labels {
		keys = append(keys, s.labelKey(k, v))
	}
	sort.Strings(keys)
	return keys
}

// rangeSortMax is the largest last-seen range that List reads whole and sorts, when it is
// more selective than every equality index (cheaper than scanning a large index for it).
const rangeSortMax = 10000

// List returns up to limit ids of matching devices after the id `after` (exclusive; "" for
// the start) in id order, and the id to continue after ("" when there are no more). The
// page may be short, even empty, with a continuation when the scan budget ran out.
func (s *Store) List(ctx context.Context, f *Filter, after string, limit int) ([]string, string, error) {
	keys := s.eqKeys(f)
	base := s.allKey()
	var others []string
	var baseCard int64
	if len(keys) > 0 {
		cards, err := s.cards(ctx, keys)
		if err != nil {
			return nil, "", err
		}
		bi := 0
		for i, c := range cards {
			if c == 0 {
				return nil, "", nil // one condition matches nobody
			}
			if c < cards[bi] {
				bi = i
			}
		}
		base, baseCard = keys[bi], cards[bi]
		others = append(append(others, keys[:bi]...), keys[bi+1:]...)
	} else {
		n, err := s.rdb.ZCard(ctx, base).Result()
		if err != nil {
			return nil, "", fmt.Errorf("count devices: %w", err)
		}
		baseCard = n
	}
	if f.hasRange() {
		lo, hi := f.scoreRange()
		n, err := s.rdb.ZCount(ctx, s.seenKey(), lo, hi).Result()
		if err != nil {
			return nil, "", fmt.Errorf("count last-seen range: %w", err)
		}
		if n == 0 {
			return nil, "", nil
		}
		if n < baseCard && n <= rangeSortMax {
			return s.listRange(ctx, f, keys, after, limit)
		}
	}
	return s.listScan(ctx, f, base, others, after, limit)
}

func (s *Store) cards(ctx context.Context, keys []string) ([]int64, error) {
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range keys {
			p.ZCard(ctx, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("size indexes: %w", err)
	}
	out := make([]int64, len(keys))
	for i, c := range cmds {
		out[i] = c.(*redis.IntCmd).Val()
	}
	return out, nil
}

// listScan walks base in id order from after, keeping the ids that are in every other
// index and in the last-seen range, until limit+1 match (to know whether more exist) or
// the scan budget runs out.
func (s *Store) listScan(ctx context.Context, f *Filter, base string, others []string, after string, limit int) ([]string, string, error) {
	chunk := limit + 1
	if len(others) > 0 || f.hasRange() {
		chunk = min(max(4*(limit+1), 256), 2048)
	}
	var out []string
	scanned := 0
	for {
		start := "-"
		if after != "" {
			start = "(" + after
		}
		ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: base, Start: start, Stop: "+", ByLex: true, Count: int64(chunk)}).Result()
		if err != nil {
			return nil, "", fmt.Errorf("scan index: %w", err)
		}
		ok, err := s.match(ctx, f, others, ids)
		if err != nil {
			return nil, "", err
		}
		for i, id := range ids {
			if !ok[i] {
				continue
			}
			if len(out) == limit {
				return out, out[limit-1], nil // id is the limit+1st match: more exist
			}
			out = append(out, id)
		}
		scanned += len(ids)
		if len(ids) < chunk {
			return out, "", nil
		}
		after = ids[len(ids)-1]
		if scanned >= s.opt.MaxScan {
			return out, after, nil
		}
	}
}

// match reports for each id whether it is in every key of others and in the filter's
// last-seen range (one round trip with ZMSCORE per key).
func (s *Store) match(ctx context.Context, f *Filter, others []string, ids []string) ([]bool, error) {
	ok := make([]bool, len(ids))
	for i := range ok {
		ok[i] = true
	}
	if len(ids) == 0 || (len(others) == 0 && !f.hasRange()) {
		return ok, nil
	}
	cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range others {
			p.Do(ctx, zmscoreArgs(k, ids)...)
		}
		if f.hasRange() {
			p.Do(ctx, zmscoreArgs(s.seenKey(), ids)...)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("check %d devices against the filter: %w", len(ids), err)
	}
	// ZMSCORE gives nil for a missing member; go-redis turns it into 0, so membership in the
	// equality indexes (score 0) is read from the raw reply instead.
	for ki, c := range cmds {
		rangeCmd := f.hasRange() && ki == len(cmds)-1
		scores, present := zmscore(c)
		for i := range ids {
			if !present[i] || (rangeCmd && !f.inRange(scores[i])) {
				ok[i] = false
			}
		}
	}
	return ok, nil
}

// listRange lists from the (small) last-seen range: read it whole, sort by id, keep what
// is after `after` and in every equality index.
func (s *Store) listRange(ctx context.Context, f *Filter, keys []string, after string, limit int) ([]string, string, error) {
	lo, hi := f.scoreRange()
	ids, err := s.rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: s.seenKey(), Start: lo, Stop: hi, ByScore: true}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("read last-seen range: %w", err)
	}
	sort.Strings(ids)
	i := sort.SearchStrings(ids, after)
	if i < len(ids) && ids[i] == after {
		i++
	}
	ids = ids[i:]
	var out []string
	noRange := &Filter{}
	for len(ids) > 0 {
		n := min(len(ids), 1024)
		ok, err := s.match(ctx, noRange, keys, ids[:n])
		if err != nil {
			return nil, "", err
		}
		for j, id := range ids[:n] {
			if !ok[j] {
				continue
			}
			if len(out) == limit {
				return out, out[limit-1], nil
			}
			out = append(out, id)
		}
		ids = ids[n:]
	}
	return out, "", nil
}

// zmscore decodes a raw ZMSCORE reply (sent with Do: go-redis's ZMScore turns "not a
// member" into 0, the score every equality index uses), keeping nil apart from a score.
func zmscore(c redis.Cmder) ([]float64, []bool) {
	raw, _ := c.(*redis.Cmd).Slice()
	scores := make([]float64, len(raw))
	present := make([]bool, len(raw))
	for i, v := range raw {
		switch x := v.(type) {
		case float64:
			scores[i], present[i] = x, true
		case string:
			f, err := strconv.ParseFloat(x, 64)
			scores[i], present[i] = f, err == nil
		case int64:
			scores[i], present[i] = float64(x), true
		}
	}
	return scores, present
}

func zmscoreArgs(key string, ids []string) []any {
	a := make([]any, 0, 2+len(ids))
	a = append(a, "zmscore", key)
	for _, id := range ids {
		a = append(a, id)
	}
	return a
}

// Count returns the number of matching devices.
func (s *Store) Count(ctx context.Context, f *Filter) (int64, error) {
	keys := s.eqKeys(f)
	var n int64
	var err error
	switch {
	case len(keys) == 0 && !f.hasRange():
		n, err = s.rdb.ZCard(ctx, s.allKey()).Result()
	case len(keys) == 0:
		lo, hi := f.scoreRange()
		n, err = s.rdb.ZCount(ctx, s.seenKey(), lo, hi).Result()
	case len(keys) == 1 && !f.hasRange():
		n, err = s.rdb.ZCard(ctx, keys[0]).Result()
	case !f.hasRange():
		n, err = s.rdb.ZInterCard(ctx, 0, keys...).Result()
	default:
		return s.countWithRange(ctx, f, keys)
	}
	if err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return n, nil
}

// countWithRange intersects the equality indexes with the last-seen index (keeping the
// last-seen score) in a scratch key and counts the range there, all inside Redis.
func (s *Store) countWithRange(ctx context.Context, f *Filter, keys []string) (int64, error) {
	tmp := s.tmpKey()
	lo, hi := f.scoreRange()
	var cnt *redis.IntCmd
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		s.intersectRange(ctx, p, tmp, keys, f)
		cnt = p.ZCount(ctx, tmp, lo, hi)
		p.Del(ctx, tmp)
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("count devices: %w", err)
	}
	return cnt.Val(), nil
}

// intersectRange queues ZINTERSTORE tmp = keys ∩ seen with the last-seen scores (equality
// indexes weigh 0), and an expiry so that a crash cannot leave it behind.
func (s *Store) intersectRange(ctx context.Context, p redis.Pipeliner, tmp string, keys []string, f *Filter) {
	all := append(append([]string{}, keys...), s.seenKey())
	w := make([]float64, len(all))
	w[len(w)-1] = 1
	p.ZInterStore(ctx, tmp, &redis.ZStore{Keys: all, Weights: w, Aggregate: "SUM"})
	p.Expire(ctx, tmp, time.Minute)
}

func (s *Store) tmpKey() string {
	return s.ix + "tmp:" + rand.Text() // unique across replicas: scratch keys must never be shared
}

// Bucket is one value of a field and its count.
type Bucket struct {
	Value string
	Count int64
}

// Aggregate counts the devices matching f, in total and by each value of each field
// (largest first). With a last-seen range the matching set is built once in a scratch key
// and everything is counted against it in one transaction, so the numbers agree.
func (s *Store) Aggregate(ctx context.Context, f *Filter, fields []Field) (int64, [][]Bucket, error) {
	valCmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, fl := range fields {
			p.SMembers(ctx, s.valsKey(fl))
		}
		return nil
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read values of %v: %w", fields, err)
	}
	vals := make([][]string, len(fields))
	for i, c := range valCmds {
		vals[i] = c.(*redis.StringSliceCmd).Val()
	}
	keys := s.eqKeys(f)
	counts := make([][]*redis.IntCmd, len(fields))
	for i := range fields {
		counts[i] = make([]*redis.IntCmd, len(vals[i]))
	}
	var total *redis.IntCmd
	if f.hasRange() {
		tmp := s.tmpKey()
		_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			s.matchingSet(ctx, p, tmp, keys, f)
			total = p.ZCard(ctx, tmp)
			for i, fl := range fields {
				for j, v := range vals[i] {
					counts[i][j] = p.ZInterCard(ctx, 0, tmp, s.eqKey(fl, v))
				}
			}
			p.Del(ctx, tmp)
			return nil
		})
	} else {
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			switch len(keys) {
			case 0:
				total = p.ZCard(ctx, s.allKey())
			case 1:
				total = p.ZCard(ctx, keys[0])
			default:
				total = p.ZInterCard(ctx, 0, keys...)
			}
			for i, fl := range fields {
				for j, v := range vals[i] {
					if len(keys) == 0 {
						counts[i][j] = p.ZCard(ctx, s.eqKey(fl, v))
					} else {
						counts[i][j] = p.ZInterCard(ctx, 0, append([]string{s.eqKey(fl, v)}, keys...)...)
					}
				}
			}
			return nil
		})
	}
	if err != nil {
		return 0, nil, fmt.Errorf("aggregate by %v: %w", fields, err)
	}
	out := make([][]Bucket, len(fields))
	for i := range fields {
		for j, v := range vals[i] {
			if n := counts[i][j].Val(); n > 0 {
				out[i] = append(out[i], Bucket{Value: v, Count: n})
			}
		}
		sort.Slice(out[i], func(a, b int) bool {
			x, y := out[i][a], out[i][b]
			if x.Count != y.Count {
				return x.Count > y.Count
			}
			return x.Value < y.Value
		})
	}
	return total.Val(), out, nil
}

// matchingSet queues the commands that leave in tmp exactly the devices matching f (which
// has a last-seen range), scored by last seen, with an expiry so a crash cannot leave it.
func (s *Store) matchingSet(ctx context.Context, p redis.Pipeliner, tmp string, keys []string, f *Filter) {
	lo, hi := f.scoreRange()
	if len(keys) == 0 {
		// Copy the range only: O(log N + M) instead of intersecting every device.
		p.ZRangeStore(ctx, tmp, redis.ZRangeArgs{Key: s.seenKey(), Start: lo, Stop: hi, ByScore: true})
	} else {
		s.intersectRange(ctx, p, tmp, keys, f)
		// Keep only the range: drop what is at or below lo and at or above hi.
		if lo != "-inf" {
			p.ZRemRangeByScore(ctx, tmp, "-inf", strings.TrimPrefix(lo, "("))
		}
		if hi != "+inf" {
			p.ZRemRangeByScore(ctx, tmp, strings.TrimPrefix(hi, "("), "+inf")
		}
	}
	p.Expire(ctx, tmp, time.Minute)
}
