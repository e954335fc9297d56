// Package store keeps the inventory in Redis: one record per device (attributes, session
// summary, labels, last-known tree values, recently applied event ids) and global secondary
// indexes that answer equality and last-seen filters without scanning every device.
//
// Keys (prefix P, default "dmgrid"):
//
//	P:{inv:<device>}:a    hash  attributes, their times ("<field>@"), counters, first/seen/upd
//	P:{inv:<device>}:t    hash  tree node URI → encoded TreeNode (without uri and time)
//	P:{inv:<device>}:tt   hash  tree node URI → time (ms) of the value
//	P:{inv:<device>}:e    zset  applied event ids, score = event time (ms): the dedupe window
//	P:{inv:<device>}:l    hash  labels
//	P:{inv-ix}:all        zset  every device, score 0 (lexicographic: stable paging by id)
//	P:{inv-ix}:seen       zset  device → last-seen time (ms)
//	P:{inv-ix}:eq:<f>:<v> zset  devices whose field f equals v, score 0
//	P:{inv-ix}:vals:<f>   set   the values of field f that some device has (for aggregates)
//	P:{inv-ix}:lb:<n>:<k>=<v> zset devices with label k=v (n = len(k), so '=' in k is safe)
//
// Events are applied by a Lua script (applyScript, one call per device and batch) that
// checks each event id against the device's recent ids and updates the record and the
// indexes in the same atomic step, so a
// redelivered or duplicated event changes nothing, and a value older than the stored one's
// time never overwrites it (per field and per node: events may arrive out of order after a
// redelivery).
//
// Redis Cluster: a device's keys share the hash tag {inv:<device>} and all index keys share
// {inv-ix}, so reads work on a cluster (queries touch only index keys, or only one device's).
// The apply script, however, writes a device's keys and index keys together, which a
// cluster refuses (CROSSSLOT). The inventory therefore needs a single Redis (with replicas)
// for now; splitting the script into a device step and an idempotent index step is the way
// to a cluster, at the cost of atomicity between record and indexes.
package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"google.golang.org/protobuf/proto"

	inventoryv1 "github.com/dmgrid/dmgrid/proto/dmgrid/inventory/v1"
)

// ErrNotFound is returned for a device the inventory has not seen.
var ErrNotFound = errors.New("device not found")

// Field is an indexed device attribute: equality filters and aggregates use it.
type Field string

// Indexed fields. The names are the hash fields of the device record and part of the index
// key names, so they are short and must never change without a migration.
const (
	FieldMan     Field = "man"     // ./DevInfo/Man
	FieldMod     Field = "mod"     // ./DevInfo/Mod
	FieldDmV     Field = "dmv"     // ./DevInfo/DmV
	FieldLang    Field = "lang"    // ./DevInfo/Lang
	FieldDevTyp  Field = "devtyp"  // ./DevDetail/DevTyp
	FieldOEM     Field = "oem"     // ./DevDetail/OEM
	FieldFwV     Field = "fwv"     // ./DevDetail/FwV
	FieldSwV     Field = "swv"     // ./DevDetail/SwV
	FieldHwV     Field = "hwv"     // ./DevDetail/HwV
	FieldOutcome Field = "outcome" // the last session's outcome (enum value name)
)

// IndexedFields lists every Field.
var IndexedFields = []Field{FieldMan, FieldMod, FieldDmV, FieldLang, FieldDevTyp, FieldOEM, FieldFwV, FieldSwV, FieldHwV, FieldOutcome}

// Attributes kept without an index.
const (
	AttrDevID        = "devid"  // ./DevInfo/DevId
	AttrLrgObj       = "lrgobj" // ./DevDetail/LrgObj
	AttrSessionID    = "sid"    // last started session's id
	AttrSessionStart = "sstart" // last session start, unix ms
	AttrSessionEnd   = "send"   // last session end, unix ms
)

// Counter names (hash fields of the device record, incremented once per event id).
const (
	CounterStarted    = "n:started"
	CounterCompleted  = "n:completed"
	CounterAborted    = "n:aborted"
	CounterAuthFailed = "n:auth_failed"
	CounterTimedOut   = "n:timed_out"
	CounterError      = "n:error"
)

// Attr is one attribute value carried by an event.
type Attr struct {
	Name  string // a Field or an Attr* name
	Value string
}

// Node is one tree node value carried by an event. Node.Value's uri and update_time are
// not stored in the blob: the uri is the hash field, the time comes from the event.
type Node struct {
	URI   string
	Value *inventoryv1.TreeNode
}

// Update is what one event changes. It is applied at most once per EventID.
type Update struct {
	EventID  string
	DeviceID string
	Time     time.Time
	Seen     bool // the device talked to the server at Time (moves last_seen forward)
	Attrs    []Attr
	Counters []string
	Nodes    []Node
	Labels   map[string]string // nil: unchanged; non-nil (even empty): the new label set
}

// Options tune the store.
type Options struct {
	// DedupeWindow is how long an applied event id is remembered per device (default 24h):
	// a redelivery or duplicate arriving later than this after the device's newest event
	// would be applied again (only counters would change: values keep their times).
	DedupeWindow time.Duration
	// MaxEventIDs bounds the ids remembered per device whatever their age (default 1024).
	MaxEventIDs int
	// MaxScan bounds how many index entries one ListDevices call examines (default 20000),
	// so that a very selective filter cannot make one call slow: it returns a short page
	// with a token instead.
	MaxScan int
}

// Store is the inventory in Redis.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	ix     string // index key prefix, "P:{inv-ix}:"
	opt    Options
	sha    string
}

// New returns a store; call Load before applying updates.
func New(rdb redis.UniversalClient, prefix string, opt Options) *Store {
	if opt.DedupeWindow <= 0 {
		opt.DedupeWindow = 24 * time.Hour
	}
	if opt.MaxEventIDs <= 0 {
		opt.MaxEventIDs = 1024
	}
	if opt.MaxScan <= 0 {
		opt.MaxScan = 20000
	}
	return &Store{rdb: rdb, prefix: prefix, ix: prefix + ":{inv-ix}:", opt: opt, sha: applySHA}
}

// Load loads the apply script into Redis (it is reloaded by ApplyBatch when Redis lost it).
func (s *Store) Load(ctx context.Context) error {
	sha, err := s.rdb.ScriptLoad(ctx, applyScript).Result()
	if err != nil {
		return fmt.Errorf("load apply script: %w", err)
	}
	if sha != applySHA {
		return fmt.Errorf("load apply script: redis returned sha %s, want %s", sha, applySHA)
	}
	return nil
}

func (s *Store) deviceKey(id, suffix string) string {
	return s.prefix + ":{inv:" + id + "}:" + suffix
}

func (s *Store) allKey() string  { return s.ix + "all" }
func (s *Store) seenKey() string { return s.ix + "seen" }

func (s *Store) eqKey(f Field, v string) string { return s.ix + "eq:" + string(f) + ":" + v }

func (s *Store) valsKey(f Field) string { return s.ix + "vals:" + string(f) }

func (s *Store) labelKey(k, v string) string {
	return s.ix + "lb:" + strconv.Itoa(len(k)) + ":" + k + "=" + v
}

// Result is the outcome of one update of a batch.
type Result struct {
	Applied bool  // false with a nil Err: a duplicate, nothing changed
	Err     error // the update was not applied; retry it
}

// ApplyBatch applies updates in one pipeline (one round trip), in order per device: the
// updates of one device go to Redis together, in one script call. Each update is atomic on
// its own and applied at most once.
func (s *Store) ApplyBatch(ctx context.Context, ups []Update) ([]Result, error) {
	res := make([]Result, len(ups))
	if len(ups) == 0 {
		return res, nil
	}
	// Group by device, keeping each device's updates in their order.
	type group struct {
		dev  string
		idx  []int
		args []any
	}
	var groups []*group
	byDev := map[string]*group{}
	for i := range ups {
		u := &ups[i]
		if u.EventID == "" || u.DeviceID == "" {
			res[i].Err = errors.New("update without event or device id")
			continue
		}
		g := byDev[u.DeviceID]
		if g == nil {
			g = &group{dev: u.DeviceID, args: []any{u.DeviceID, s.ix, s.opt.DedupeWindow.Milliseconds(), s.opt.MaxEventIDs, 0}}
			byDev[u.DeviceID] = g
			groups = append(groups, g)
		}
		a, err := appendArgs(nil, u)
		if err != nil {
			res[i].Err = err
			continue
		}
		g.args = append(g.args, a...)
		g.idx = append(g.idx, i)
	}
	for _, g := range groups {
		g.args[4] = len(g.idx)
	}
	for attempt := 0; ; attempt++ {
		noScript := false
		cmds, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, g := range groups {
				if len(g.idx) == 0 {
					continue
				}
				keys := []string{s.deviceKey(g.dev, "a"), s.deviceKey(g.dev, "t"), s.deviceKey(g.dev, "tt"),
					s.deviceKey(g.dev, "e"), s.deviceKey(g.dev, "l")}
				p.EvalSha(ctx, s.sha, keys, g.args...)
			}
			return nil
		})
		if err != nil && len(cmds) == 0 {
			return nil, fmt.Errorf("apply %d events: %w", len(ups), err)
		}
		k := 0
		for _, g := range groups {
			if len(g.idx) == 0 {
				continue
			}
			c := cmds[k].(*redis.Cmd)
			k++
			out, err := c.Int64Slice()
			if err == nil && len(out) != len(g.idx) {
				err = fmt.Errorf("script returned %d results for %d events", len(out), len(g.idx))
			}
			if err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
				noScript = true
			}
			for j, i := range g.idx {
				if err != nil {
					res[i] = Result{Err: fmt.Errorf("apply event %s: %w", ups[i].EventID, err)}
				} else {
					res[i] = Result{Applied: out[j] == 1}
				}
			}
		}
		if !noScript || attempt > 0 {
			return res, nil
		}
		// Redis restarted or was flushed: load the script and run the whole batch again,
		// which is safe because the updates that did run are recognised as duplicates.
		if err := s.Load(ctx); err != nil {
			return nil, err
		}
	}
}

// appendArgs appends an update's part of the apply script's ARGV (see applyScript).
func appendArgs(a []any, u *Update) ([]any, error) {
	seen := "0"
	if u.Seen {
		seen = "1"
	}
	a = append(a, u.EventID, u.Time.UnixMilli(), seen, len(u.Attrs))
	for _, at := range u.Attrs {
		a = append(a, at.Name, at.Value)
	}
	a = append(a, len(u.Counters))
	for _, c := range u.Counters {
		a = append(a, c)
	}
	a = append(a, len(u.Nodes))
	for _, n := range u.Nodes {
		blob, err := proto.Marshal(n.Value)
		if err != nil {
			return a, fmt.Errorf("encode node %s: %w", n.URI, err)
		}
		a = append(a, n.URI, blob)
	}
	if u.Labels == nil {
		return append(a, -1), nil
	}
	a = append(a, len(u.Labels))
	for k, v := range u.Labels {
		a = append(a, k, v)
	}
	return a, nil
}
