package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// createScript creates an account only if it does not exist, with a new generation (gen:
// engine.Account.Gen, so sessions of a deleted account with the same device id are not
// continued), and appends its device_changed event (ARGV[4], "" = none) to the outbox.
//
//	KEYS: 1 acct, 2 outbox; ARGV: 1 data json, 2 client nonce b64, 3 generation, 4 event
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'cn', ARGV[2], 'etag', 1, 'gen', ARGV[3])
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[4]) end
return 1
`)

// updateScript replaces the account data if its etag matches (0 = any) and it is the same
// account (generation) and returns what the account holds then besides the data: {1, client
// nonce, server nonce, new etag}; {-1} when there is no account, {0} when the etag or the
// generation differs (the device was deleted and created again: its etag starts over).
//
// It appends the device_changed event (ARGV[4], "" = none) to the outbox with the change.
//
//	KEYS: 1 acct, 2 outbox; ARGV: 1 data json, 2 expected etag, 3 expected generation, 4 event
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local cur = tonumber(redis.call('HGET', KEYS[1], 'etag') or '0')
if tonumber(ARGV[2]) ~= 0 and cur ~= tonumber(ARGV[2]) then return {0} end
if (redis.call('HGET', KEYS[1], 'gen') or '') ~= ARGV[3] then return {0} end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'etag', cur + 1)
if ARGV[4] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[4]) end
local nonces = redis.call('HMGET', KEYS[1], 'cn', 'sn')
return {1, nonces[1], nonces[2], cur + 1}
`)

// deleteReadScript reads what a delete changes besides the account: the records of the
// commands in the device's queue (queued and in flight), in queue order. It returns
// {etag, id, record, id, record, ...} (record "" when it is gone), or nothing when there
// is no account.
//
//	KEYS: 1 acct, 2 queue; ARGV: 1 command prefix
var deleteReadScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {} end
local out = {redis.call('HGET', KEYS[1], 'etag') or '0'}
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  out[#out + 1] = id
  out[#out + 1] = redis.call('GET', ARGV[1] .. id) or ''
end
return out
`)

// deleteScript removes a device's account, queue, listing index, sequence and open-session
// index if the
// account's etag matches (0 = any) and the queue is still exactly what the caller read:
// the same members, each record byte for byte as read (compare-and-set; a session that
// sent or answered one, a cancel or an enqueue in between makes it change nothing). It
// then rewrites each queued command's record with its final state (expiring like every
// finished record) and appends the events, the outbox being kept for the relay. Records of
// commands that had already finished are not touched. It returns {1, account data} (the
// caller unindexes the labels in it), {0} when there is no account, {-1} when the etag
// differs, {-2} when the queue changed.
//
//	KEYS: 1 acct, 2 queue, 3 all-commands index, 4 seq, 5 outbox, 6 open-session index
//	ARGV: 1 command prefix, 2 expected etag, 3 command ttl ms, 4 n, then per queued
//	command: id, record as read, new record ("" = leave), event ("" = none); then the
//	last event ("" = none)
var deleteScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local acct = redis.call('HMGET', KEYS[1], 'data', 'etag')
if tonumber(ARGV[2]) ~= 0 and tonumber(acct[2] or '0') ~= tonumber(ARGV[2]) then return {-1} end
local n = tonumber(ARGV[4])
if redis.call('ZCARD', KEYS[2]) ~= n then return {-2} end
for k = 0, n - 1 do
  local i = 5 + 4 * k
  if not redis.call('ZSCORE', KEYS[2], ARGV[i]) then return {-2} end
  if (redis.call('GET', ARGV[1] .. ARGV[i]) or '') ~= ARGV[i + 1] then return {-2} end
end
for k = 0, n - 1 do
  local i = 5 + 4 * k
  if ARGV[i + 2] ~= '' then redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 2], 'PX', ARGV[3]) end
  if ARGV[i + 3] ~= '' then redis.call('RPUSH', KEYS[5], ARGV[i + 3]) end
end
local last = ARGV[5 + 4 * n]
if last ~= '' then redis.call('RPUSH', KEYS[5], last) end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[6])
return {1, acct[1] or ''}
`)

func (s *Store) allKey(d string) string { return s.deviceTag(d) + ":all" }

// NewDevice is what CreateDevice stores: the account with secrets already hashed, and the
// plain server basic credential (sealed here, never stored in the clear).
type NewDevice struct {
	Account         engine.Account
	ServerBasicCred string
	// ServerBasicSealed, when ServerBasicCred is empty, is a sealed credential to keep as
	// it is (Device.ServerBasicSealed of the device being updated).
	ServerBasicSealed string
	Labels            map[string]string
	RequestID         string // the create request's id, for idempotent retries
	// Event (nil = none) is appended to the device's outbox in the same atomic step as the
	// create or update (its device_changed event), so a stored change is never left
	// without its event.
	Event []byte
}

func (s *Store) encodeAccount(d NewDevice, created, now time.Time) (string, error) {
	st := storedAccount{Account: d.Account, Labels: d.Labels, RequestID: d.RequestID, Created: created, Updated: now}
	st.ClientNonce, st.ServerNonce = nil, nil // kept in their own hash fields
	switch {
	case d.ServerBasicCred != "":
		if s.opt.Sealer == nil {
			return "", ErrNoSealingKey
		}
		sealed, err := s.opt.Sealer.Seal(d.ServerBasicCred, d.Account.DeviceID)
		if err != nil {
			return "", err
		}
		st.ServerBasicSealed = sealed
	case d.ServerBasicSealed != "":
		st.ServerBasicSealed = d.ServerBasicSealed
	}
	b, err := json.Marshal(st)
	return string(b), err
}

// CreateDevice stores a new account; ErrExists if the device id is taken.
func (s *Store) CreateDevice(ctx context.Context, d NewDevice, now time.Time) error {
	id := d.Account.DeviceID
	data, err := s.encodeAccount(d, now, now)
	if err != nil {
		return fmt.Errorf("create device %s: %w", id, err)
	}
	gen := make([]byte, 12)
	if _, err := rand.Read(gen); err != nil {
		return fmt.Errorf("create device %s: generation: %w", id, err)
	}
	ok, err := createScript.Run(ctx, s.rdb, []string{s.acctKey(id), s.outboxKey(id)}, data, nonceArg(d.Account.ClientNonce),
		base64.RawURLEncoding.EncodeToString(gen), d.Event).Int()
	if err != nil {
		return fmt.Errorf("create device %s: %w", id, err)
	}
	if ok == 0 {
		return ErrExists
	}
	return s.index(ctx, id, nil, d.Labels)
}

// index maintains the listing indexes: one sorted set of all device ids and one per label
// (member order is lexicographic, score 0, so pages are stable). These keys are global, not
// per device, so they are written after the account in their own commands; a crash in
// between leaves an account missing from a listing, never a listing without an account
// (List skips ids whose account is gone).
func (s *Store) index(ctx context.Context, id string, oldLabels, newLabels map[string]string) error {
	pipe := s.rdb.Pipeline()
	pipe.ZAdd(ctx, s.devicesKey(), redis.Z{Member: id})
	for k, v := range oldLabels {
		if newLabels[k] != v {
			pipe.ZRem(ctx, s.labelKey(k, v), id)
		}
	}
	for k, v := range newLabels {
		pipe.ZAdd(ctx, s.labelKey(k, v), redis.Z{Member: id})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("index device %s: %w", id, err)
	}
	return nil
}

// GetDevice returns a device; ErrNotFound if there is none.
func (s *Store) GetDevice(ctx context.Context, id string) (*Device, error) {
	vals, err := s.rdb.HMGet(ctx, s.acctKey(id), "data", "cn", "sn", "etag", "gen").Result()
	if err != nil {
		return nil, fmt.Errorf("get device %s: %w", id, err)
	}
	return s.deviceFrom(vals)
}

// deviceFrom decodes HMGET data, cn, sn, etag[, gen].
func (s *Store) deviceFrom(vals []any) (*Device, error) {
	data, ok := vals[0].(string)
	if !ok {
		return nil, ErrNotFound
	}
	cn, _ := vals[1].(string)
	sn, _ := vals[2].(string)
	d, err := s.decodeAccount(data, cn, sn)
	if err != nil {
		return nil, err
	}
	if e, ok := vals[3].(string); ok {
		fmt.Sscan(e, &d.Etag)
	}
	if len(vals) > 4 {
		d.Account.Gen, _ = vals[4].(string)
	}
	return d, nil
}

// UpdateDevice replaces the account old (as GetDevice returned it) with d and returns the
// device as stored, with its new etag, so the caller needs no second read. It is a
// compare-and-set on old.Etag: a caller that built d from old (merging the fields it
// changes) never writes back a stale copy of the others. ErrConflict when the account
// changed after old was read (or was deleted and created again), ErrNotFound when it is
// gone. Nonces are kept; the creation time is old's. A basic server credential is sealed
// again (ErrNoSealingKey without a key), or kept as stored when d carries it in
// ServerBasicSealed.
func (s *Store) UpdateDevice(ctx context.Context, old *Device, d NewDevice, now time.Time) (*Device, error) {
	id := d.Account.DeviceID
	data, err := s.encodeAccount(d, old.Created, now)
	if err != nil {
		return nil, fmt.Errorf("update device %s: %w", id, err)
	}
	res, err := updateScript.Run(ctx, s.rdb, []string{s.acctKey(id), s.outboxKey(id)}, data, old.Etag, old.Account.Gen, d.Event).Slice()
	if err != nil {
		return nil, fmt.Errorf("update device %s: %w", id, err)
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("update device %s: script returned nothing", id)
	}
	switch code, _ := res[0].(int64); {
	case code == -1:
		return nil, ErrNotFound
	case code == 0:
		return nil, ErrConflict
	case len(res) != 4:
		return nil, fmt.Errorf("update device %s: script returned %d values", id, len(res))
	}
	cn, _ := res[1].(string)
	sn, _ := res[2].(string)
	got, err := s.decodeAccount(data, cn, sn)
	if err != nil {
		return nil, err
	}
	got.Etag, _ = res[3].(int64)
	got.Account.Gen = old.Account.Gen
	// The etag matched, so the labels replaced are old's.
	return got, s.index(ctx, id, old.Labels, d.Labels)
}

// deletedInFlight is the error of a command that was in flight when its device was
// deleted: the session that could have carried its answer is gone.
const deletedInFlight = "no answer before the device was deleted"

// DeleteDevice removes a device if its etag is etag (0 = whatever it is): ErrConflict when
// it differs, ErrNotFound when there is no such device. In the same atomic step its queued
// commands become CANCELLED and its in-flight (sent, unanswered) ones FAILED with the error
// deletedInFlight, as the engine fails an unanswered command it will not send again. event
// (may be nil) builds the event appended to the outbox for each of them, in queue order,
// and last (nil = none) is appended after them. Every command record is kept, those changed
// here expiring CommandTTL later like every finished record (finished ones keep their
// expiry), so GetCommand still answers for them; the device's queue, listing index and
// sequence are removed, its outbox is not (the relay still publishes what it holds).
//
// It costs three round trips (read the queue, the compare-and-set delete, the listing
// indexes) whatever the device's history. When the queue changed between the read and the
// delete (a session sent or answered a command, a command was enqueued or cancelled), it
// reads again, at most three times in all (seven round trips), then gives up with
// ErrConflict.
func (s *Store) DeleteDevice(ctx context.Context, id string, etag int64, now time.Time, event func(*engine.Command) []byte, last []byte) error {
	keys := []string{s.acctKey(id), s.queueKey(id), s.allKey(id), s.seqKey(id), s.outboxKey(id), s.openKey(id)}
	var res []any
	for attempt := 0; ; attempt++ {
		if attempt == 3 {
			return fmt.Errorf("delete device %s: queue kept changing: %w", id, ErrConflict)
		}
		recs, err := deleteReadScript.Run(ctx, s.rdb, keys[:2], s.cmdPrefix(id)).StringSlice()
		if err != nil {
			return fmt.Errorf("delete device %s: %w", id, err)
		}
		if len(recs) == 0 {
			return ErrNotFound
		}
		if cur, _ := strconv.ParseInt(recs[0], 10, 64); etag != 0 && cur != etag {
			return ErrConflict // checked again by the delete itself
		}
		args := make([]any, 0, 5+2*len(recs))
		args = append(args, s.cmdPrefix(id), etag, s.opt.CommandTTL.Milliseconds(), (len(recs)-1)/2)
		for i := 1; i+1 < len(recs); i += 2 {
			rec, ev, err := deletedCommand(recs[i], recs[i+1], now, event)
			if err != nil {
				return fmt.Errorf("delete device %s: %w", id, err)
			}
			args = append(args, recs[i], recs[i+1], rec, ev)
		}
		args = append(args, last)
		res, err = deleteScript.Run(ctx, s.rdb, keys, args...).Slice()
		if err != nil {
			return fmt.Errorf("delete device %s: %w", id, err)
		}
		if len(res) == 0 {
			return fmt.Errorf("delete device %s: script returned nothing", id)
		}
		if code, _ := res[0].(int64); code != -2 {
			break
		}
	}
	switch code, _ := res[0].(int64); {
	case code == 0:
		return ErrNotFound
	case code == -1:
		return ErrConflict
	case len(res) != 2:
		return fmt.Errorf("delete device %s: script returned %d values", id, len(res))
	}
	// Only the labels are needed, so the sealed credential is not opened.
	var old storedAccount
	data, _ := res[1].(string)
	decodeErr := json.Unmarshal([]byte(data), &old)
	pipe := s.rdb.Pipeline()
	pipe.ZRem(ctx, s.devicesKey(), id)
	for k, v := range old.Labels {
		pipe.ZRem(ctx, s.labelKey(k, v), id)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("unindex device %s: %w", id, err)
	}
	if decodeErr != nil {
		return fmt.Errorf("unindex device %s: labels of the deleted account: %w", id, decodeErr)
	}
	return nil
}

// deletedCommand is the final record of a command that is in its device's queue when the
// device is deleted, and its event: a queued command is cancelled, one in flight fails. A
// record that is gone, or (not expected in the queue) already final, is left as it is.
func deletedCommand(id, raw string, now time.Time, event func(*engine.Command) []byte) (rec string, ev []byte, err error) {
	if raw == "" {
		return "", nil, nil
	}
	var c engine.Command
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return "", nil, fmt.Errorf("decode command %s: %w", id, err)
	}
	switch c.State {
	case engine.StateQueued:
		c.State = engine.StateCancelled
	case engine.StateSent:
		c.State, c.Error = engine.StateFailed, deletedInFlight
	default:
		return "", nil, nil
	}
	c.Updated = now
	b, err := json.Marshal(&c)
	if err != nil {
		return "", nil, fmt.Errorf("encode command %s: %w", id, err)
	}
	if event != nil {
		ev = event(&c)
	}
	return string(b), ev, nil
}

// ListDevices pages through devices in id order, optionally those with label k=v. The page
// token is the last id of the previous page.
func (s *Store) ListDevices(ctx context.Context, labelKey, labelValue, after string, n int) ([]*Device, string, error) {
	key := s.devicesKey()
	if labelKey != "" {
		key = s.labelKey(labelKey, labelValue)
	}
	min := "-"
	if after != "" {
		min = "(" + after
	}
	ids, err := s.rdb.ZRangeByLex(ctx, key, &redis.ZRangeBy{Min: min, Max: "+", Count: int64(n) + 1}).Result()
	if err != nil {
		return nil, "", fmt.Errorf("list devices: %w", err)
	}
	next := ""
	if len(ids) > n {
		ids = ids[:n]
		next = ids[n-1]
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HMGet(ctx, s.acctKey(id), "data", "cn", "sn", "etag")
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, "", fmt.Errorf("list devices: %w", err)
		}
	}
	out := make([]*Device, 0, len(ids))
	for _, c := range cmds {
		d, err := s.deviceFrom(c.Val())
		if errors.Is(err, ErrNotFound) {
			continue // indexed but deleted meanwhile
		}
		if err != nil {
			return nil, "", err
		}
		out = append(out, d)
	}
	return out, next, nil
}

// EncodePageToken / DecodePageToken make the opaque page tokens the APIs hand out.
func EncodePageToken(last string) string {
	if last == "" {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(last))
}

// DecodePageToken reverses EncodePageToken.
func DecodePageToken(tok string) (string, error) {
	if tok == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) == 0 {
		return "", fmt.Errorf("bad page token")
	}
	return string(b), nil
}
