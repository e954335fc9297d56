// Package store keeps the notifier's state in Redis: one record per notification, the
// device's outstanding notification (coalescing), idempotency keys, the due-time work queue
// shared by every notifier replica, provider message id lookups for delivery receipts, and
// the per-provider token buckets.
//
// Keys (<p> is the prefix; per-device keys carry the session tier's hash tag {d:<device>}
// so that a Redis Cluster keeps one device's keys in one slot and a script can update them
// together):
//
//	<p>:{d:ID}:nt:r:<nid>    hash   v (version), data (record JSON); final ones expire after Retention
//	<p>:{d:ID}:nt:out        string the outstanding notification id
//	<p>:{d:ID}:nt:all        zset   notification ids by creation time (listing)
//	<p>:{d:ID}:nt:rid:<rid>  string NotifyDevice request_id → notification id (24h)
//	<p>:nt:due               zset   non-final notification ids by the time a worker must look at them
//	<p>:nt:pm:<prov>:<id>    string provider message id → notification id (Retention)
//	<p>:nt:tb:<prov>         hash   token bucket (tokens, ts)
//
// The record is the truth; the due set only says when to look. A worker claims due ids by
// pushing their score a lease into the future (one script on one key), so a crashed worker's
// claims come back when the lease ends, and every record change is a compare-and-set on the
// record's version.
package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"
)

// Sentinel errors.
var (
	// ErrNotFound: no such notification.
	ErrNotFound = errors.New("notification not found")
	// ErrConflict: the record changed since it was read (compare-and-set lost).
	ErrConflict = errors.New("notification changed concurrently")
	// ErrBadID: a notification id that does not embed a device id.
	ErrBadID = errors.New("malformed notification id")
)

// Record is one notification as stored.
type Record struct {
	ID          string                        `json:"id"`
	DeviceID    string                        `json:"device_id"`
	State       notifierv1.Notification_State `json:"state"`
	SessionID   uint16                        `json:"session_id"`
	Attempts    int                           `json:"attempts"`
	Provider    string                        `json:"provider,omitempty"`
	ProviderIDs []string                      `json:"provider_ids,omitempty"`
	Delivered   []string                      `json:"delivered,omitempty"` // provider ids with a delivery receipt
	LastError   string                        `json:"last_error,omitempty"`
	Reason      string                        `json:"reason,omitempty"`
	UIMode      notifierv1.UIMode             `json:"ui_mode,omitempty"`
	Initiator   notifierv1.Initiator          `json:"initiator,omitempty"`
	Created     time.Time                     `json:"created"`
	Updated     time.Time                     `json:"updated"`
	// NextAt is when the next attempt may run (QUEUED), ExpireAt when an unanswered SENT or
	// DELIVERED notification expires.
	NextAt   time.Time `json:"next_at"`
	ExpireAt time.Time `json:"expire_at,omitzero"`

	// Version is the record's compare-and-set version (not part of the JSON).
	Version int64 `json:"-"`
}

// Final reports whether the state is final.
func Final(s notifierv1.Notification_State) bool {
	switch s {
	case notifierv1.Notification_STATE_ANSWERED, notifierv1.Notification_STATE_FAILED, notifierv1.Notification_STATE_EXPIRED:
		return true
	}
	return false
}

// NewID makes a notification id for a device: base64url(device) "." random.
func NewID(deviceID, random string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(deviceID)) + ".n" + random
}

// DeviceOf returns the device id embedded in a notification id.
func DeviceOf(id string) (string, error) {
	tok, _, ok := strings.Cut(id, ".")
	if !ok {
		return "", fmt.Errorf("%q: %w", id, ErrBadID)
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("%q: %w", id, ErrBadID)
	}
	return string(b), nil
}

// Options tune the store.
type Options struct {
	// Retention is how long final records and provider id lookups are kept (default 7 days).
	Retention time.Duration
	// RequestIDTTL is how long a request_id stays bound to its notification (default 24h).
	RequestIDTTL time.Duration
}

// Store is the Redis state. Safe for concurrent use.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	opt    Options
}

// New returns a Store over rdb with key prefix p.
func New(rdb redis.UniversalClient, p string, opt Options) *Store {
	if opt.Retention <= 0 {
		opt.Retention = 7 * 24 * time.Hour
	}
	if opt.RequestIDTTL <= 0 {
		opt.RequestIDTTL = 24 * time.Hour
	}
	return &Store{rdb: rdb, prefix: p, opt: opt}
}

// Client returns the Redis client.
func (s *Store) Client() redis.UniversalClient { return s.rdb }

func (s *Store) dev(deviceID string) string { return s.prefix + ":{d:" + deviceID + "}:nt:" }
func (s *Store) recKey(deviceID, id string) string {
	return s.dev(deviceID) + "r:" + id
}
func (s *Store) dueKey() string { return s.prefix + ":nt:due" }
func (s *Store) pmKey(provider, msgID string) string {
	return s.prefix + ":nt:pm:" + provider + ":" + msgID
}
func (s *Store) bucketKey(provider string) string { return s.prefix + ":nt:tb:" + provider }

// createScript stores a new record unless the request_id is known or the device has an
// outstanding notification; then it returns that one instead.
//
// KEYS: out, rid (or "" placeholder in the same slot), all, new record.
// ARGV: id, data, created ms, rid ttl ms, record key prefix.
// Returns {"new"} or {"rid"|"out", id, version, data}.
var createScript = redis.NewScript(`
local function existing(kind, id)
  local rec = redis.call('HMGET', ARGV[5] .. id, 'v', 'data')
  if rec[2] then return {kind, id, rec[1], rec[2]} end
  return false
end
if ARGV[4] ~= '0' then
  local id = redis.call('GET', KEYS[2])
  if id then
    local r = existing('rid', id)
    if r then return r end
  end
end
local out = redis.call('GET', KEYS[1])
if out then
  local r = existing('out', out)
  if r then return r end
end
redis.call('HSET', KEYS[4], 'v', 1, 'data', ARGV[2])
redis.call('SET', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[1])
if ARGV[4] ~= '0' then redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[4]) end
return {'new'}
`)

// Outcome of Create.
type Outcome int

// Create outcomes.
const (
	Created    Outcome = iota // a new record was stored
	Coalesced                 // the device's outstanding notification was returned
	Idempotent                // the request_id was seen before; its notification was returned
)

// Create stores r (version 1) as the device's outstanding notification and queues it at
// r.NextAt, unless requestID names an earlier notification or the device already has an
// outstanding one: then that record is returned with Idempotent or Coalesced.
func (s *Store) Create(ctx context.Context, r *Record, requestID string) (*Record, Outcome, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, 0, fmt.Errorf("encode notification %s: %w", r.ID, err)
	}
	rid, ttl := s.dev(r.DeviceID)+"rid:", "0"
	if requestID != "" {
		rid += requestID
		ttl = strconv.FormatInt(s.opt.RequestIDTTL.Milliseconds(), 10)
	}
	res, err := createScript.Run(ctx, s.rdb,
		[]string{s.dev(r.DeviceID) + "out", rid, s.dev(r.DeviceID) + "all", s.recKey(r.DeviceID, r.ID)},
		r.ID, data, r.Created.UnixMilli(), ttl, s.dev(r.DeviceID)+"r:").StringSlice()
	if err != nil {
		return nil, 0, fmt.Errorf("create notification for %s: %w", r.DeviceID, err)
	}
	if res[0] == "new" {
		r.Version = 1
		if err := s.Schedule(ctx, r.ID, r.NextAt); err != nil {
			return nil, 0, err
		}
		return r, Created, nil
	}
	if len(res) != 4 {
		return nil, 0, fmt.Errorf("create notification for %s: unexpected script reply %q", r.DeviceID, res)
	}
	old, err := decode(res[2], res[3])
	if err != nil {
		return nil, 0, err
	}
	if res[0] == "rid" {
		return old, Idempotent, nil
	}
	return old, Coalesced, nil
}

func decode(version, data string) (*Record, error) {
	var r Record
	if err := json.Unmarshal([]byte(data), &r); err != nil {
		return nil, fmt.Errorf("decode notification: %w", err)
	}
	v, err := strconv.ParseInt(version, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("decode notification %s version: %w", r.ID, err)
	}
	r.Version = v
	return &r, nil
}

// Get loads a notification by id.
func (s *Store) Get(ctx context.Context, id string) (*Record, error) {
	dev, err := DeviceOf(id)
	if err != nil {
		return nil, err
	}
	vals, err := s.rdb.HMGet(ctx, s.recKey(dev, id), "v", "data").Result()
	if err != nil {
		return nil, fmt.Errorf("load notification %s: %w", id, err)
	}
	r, err := recordFrom(vals)
	if err != nil {
		return nil, fmt.Errorf("notification %s: %w", id, err)
	}
	return r, nil
}

// recordFrom decodes a record's hash fields v and data (HMGET order); ErrNotFound when it
// has none (never written, or expired after its retention).
func recordFrom(vals []any) (*Record, error) {
	v, _ := vals[0].(string)
	data, _ := vals[1].(string)
	if data == "" {
		return nil, ErrNotFound
	}
	return decode(v, data)
}

// Outstanding returns the device's outstanding notification, or nil.
func (s *Store) Outstanding(ctx context.Context, deviceID string) (*Record, error) {
	id, err := s.rdb.Get(ctx, s.dev(deviceID)+"out").Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load outstanding notification of %s: %w", deviceID, err)
	}
	r, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	return r, err
}

// updateScript is the compare-and-set of one record.
// KEYS: record, out. ARGV: expected version, data, final ("1"/"0"), id, retention ms.
var updateScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[1], 'v')
if v ~= ARGV[1] then return 0 end
local nv = redis.call('HINCRBY', KEYS[1], 'v', 1)
redis.call('HSET', KEYS[1], 'data', ARGV[2])
if ARGV[3] == '1' then
  if redis.call('GET', KEYS[2]) == ARGV[4] then redis.call('DEL', KEYS[2]) end
  redis.call('PEXPIRE', KEYS[1], ARGV[5])
end
return nv
`)

// Update writes r if its stored version is still r.Version (ErrConflict otherwise) and bumps
// r.Version. A final state releases the device's outstanding slot and starts the record's
// retention. It does not touch the due set: callers Schedule or Unschedule after.
func (s *Store) Update(ctx context.Context, r *Record) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode notification %s: %w", r.ID, err)
	}
	final := "0"
	if Final(r.State) {
		final = "1"
	}
	nv, err := updateScript.Run(ctx, s.rdb, []string{s.recKey(r.DeviceID, r.ID), s.dev(r.DeviceID) + "out"},
		r.Version, data, final, r.ID, s.opt.Retention.Milliseconds()).Int64()
	if err != nil {
		return fmt.Errorf("update notification %s: %w", r.ID, err)
	}
	if nv == 0 {
		return fmt.Errorf("update notification %s: %w", r.ID, ErrConflict)
	}
	r.Version = nv
	return nil
}

// Schedule puts id in the due set at t (replacing any earlier time).
func (s *Store) Schedule(ctx context.Context, id string, t time.Time) error {
	if err := s.rdb.ZAdd(ctx, s.dueKey(), redis.Z{Score: float64(t.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("schedule notification %s: %w", id, err)
	}
	return nil
}

// Unschedule removes id from the due set.
func (s *Store) Unschedule(ctx context.Context, id string) error {
	if err := s.rdb.ZRem(ctx, s.dueKey(), id).Err(); err != nil {
		return fmt.Errorf("unschedule notification %s: %w", id, err)
	}
	return nil
}

// claimScript: KEYS due; ARGV now ms, lease ms, limit.
var claimScript = redis.NewScript(`
local ids = redis.call('ZRANGE', KEYS[1], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
local deadline = tonumber(ARGV[1]) + tonumber(ARGV[2])
for _, id in ipairs(ids) do redis.call('ZADD', KEYS[1], deadline, id) end
return ids
`)

// Claim returns up to limit ids due at now and hides them from other workers for lease:
// unless the claimer reschedules or removes them, they come back when the lease ends.
func (s *Store) Claim(ctx context.Context, now time.Time, lease time.Duration, limit int) ([]string, error) {
	ids, err := claimScript.Run(ctx, s.rdb, []string{s.dueKey()}, now.UnixMilli(), lease.Milliseconds(), limit).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim due notifications: %w", err)
	}
	return ids, nil
}

// NextDue returns the earliest due time, or zero when nothing is queued.
func (s *Store) NextDue(ctx context.Context) (time.Time, error) {
	z, err := s.rdb.ZRangeWithScores(ctx, s.dueKey(), 0, 0).Result()
	if err != nil {
		return time.Time{}, fmt.Errorf("peek due notifications: %w", err)
	}
	if len(z) == 0 {
		return time.Time{}, nil
	}
	return time.UnixMilli(int64(z[0].Score)), nil
}

// List returns a device's notifications newest first, from offset, at most n, and the
// offset of the next page (0 when none).
func (s *Store) List(ctx context.Context, deviceID string, offset, n int) ([]*Record, int, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.dev(deviceID)+"all", int64(offset), int64(offset+n)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("list notifications of %s: %w", deviceID, err)
	}
	next := 0
	if len(ids) > n {
		ids, next = ids[:n], offset+n
	}
	// One pipeline for the page (the records are in the device's slot).
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.recKey(deviceID, id), "v", "data")
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, 0, fmt.Errorf("load notifications of %s: %w", deviceID, err)
	}
	out := make([]*Record, 0, len(ids))
	for i, c := range cmds {
		r, err := recordFrom(c.Val())
		if errors.Is(err, ErrNotFound) {
			continue // expired after its retention
		}
		if err != nil {
			return nil, 0, fmt.Errorf("notification %s: %w", ids[i], err)
		}
		out = append(out, r)
	}
	return out, next, nil
}

// MapProviderIDs records which notification each provider message id belongs to, for
// delivery receipts.
func (s *Store) MapProviderIDs(ctx context.Context, provider, id string, msgIDs []string) error {
	p := s.rdb.Pipeline()
	for _, m := range msgIDs {
		if m != "" {
			p.Set(ctx, s.pmKey(provider, m), id, s.opt.Retention)
		}
	}
	if _, err := p.Exec(ctx); err != nil {
		return fmt.Errorf("map provider ids of %s: %w", id, err)
	}
	return nil
}

// ByProviderID returns the notification id a provider message id belongs to ("" if unknown).
func (s *Store) ByProviderID(ctx context.Context, provider, msgID string) (string, error) {
	id, err := s.rdb.Get(ctx, s.pmKey(provider, msgID)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up provider id %s: %w", msgID, err)
	}
	return id, nil
}

// bucketScript is a token bucket shared by every replica, timed by the Redis server's clock
// so that replicas' clocks do not matter.
// KEYS: bucket. ARGV: rate per second, burst, cost.
// Returns 0 when the tokens were taken, else the milliseconds until they will be there.
var bucketScript = redis.NewScript(`
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local b = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(b[1])
local ts = tonumber(b[2])
if tokens == nil or ts == nil then tokens = burst; ts = now end
if now > ts then tokens = math.min(burst, tokens + (now - ts) * rate / 1000) end
local ttl = math.ceil(burst / rate * 1000) + 1000
if tokens >= cost then
  redis.call('HSET', KEYS[1], 'tokens', tostring(tokens - cost), 'ts', now)
  redis.call('PEXPIRE', KEYS[1], ttl)
  return 0
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'ts', now)
redis.call('PEXPIRE', KEYS[1], ttl)
return math.ceil((cost - tokens) * 1000 / rate)
`)

// Take takes cost tokens from provider's bucket (rate per second, burst size). It returns 0
// when they were taken, otherwise how long to wait before trying again. cost is capped at
// burst so that a message can always be sent eventually.
func (s *Store) Take(ctx context.Context, provider string, rate float64, burst, cost int) (time.Duration, error) {
	cost = min(max(cost, 1), burst)
	ms, err := bucketScript.Run(ctx, s.rdb, []string{s.bucketKey(provider)}, rate, burst, cost).Int64()
	if err != nil {
		return 0, fmt.Errorf("rate limit %s: %w", provider, err)
	}
	return time.Duration(ms) * time.Millisecond, nil
}

// ScheduleNX puts id in the due set at t unless it is there already.
func (s *Store) ScheduleNX(ctx context.Context, id string, t time.Time) error {
	if err := s.rdb.ZAddNX(ctx, s.dueKey(), redis.Z{Score: float64(t.UnixMilli()), Member: id}).Err(); err != nil {
		return fmt.Errorf("schedule notification %s: %w", id, err)
	}
	return nil
}
