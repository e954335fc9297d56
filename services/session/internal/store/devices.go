package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// createScript creates an account only if it does not exist.
//
//	KEYS: 1 acct; ARGV: 1 data json, 2 client nonce b64
var createScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'cn', ARGV[2], 'etag', 1)
return 1
`)

// updateScript replaces the account data if its etag matches (0 = any) and returns what
// the account holds then besides the data: {1, client nonce, server nonce, new etag}; {-1}
// when there is no account, {0} when the etag differs.
//
//	KEYS: 1 acct; ARGV: 1 data json, 2 expected etag
var updateScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1} end
local cur = tonumber(redis.call('HGET', KEYS[1], 'etag') or '0')
if tonumber(ARGV[2]) ~= 0 and cur ~= tonumber(ARGV[2]) then return {0} end
redis.call('HSET', KEYS[1], 'data', ARGV[1], 'etag', cur + 1)
local nonces = redis.call('HMGET', KEYS[1], 'cn', 'sn')
return {1, nonces[1], nonces[2], cur + 1}
`)

// deleteScript removes a device's account, queue, sequence and command records if the
// account's etag matches (0 = any): the comparison and the delete are one step, so an
// update in between cannot be lost. It returns {1, account data} (the caller unindexes the
// labels in it), {0} when there is no account, {-1} when the etag differs.
//
//	KEYS: 1 acct, 2 queue, 3 all-commands index, 4 seq, 5 outbox; ARGV: 1 command prefix,
//	2 expected etag
var deleteScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local acct = redis.call('HMGET', KEYS[1], 'data', 'etag')
if tonumber(ARGV[2]) ~= 0 and tonumber(acct[2] or '0') ~= tonumber(ARGV[2]) then return {-1} end
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  redis.call('DEL', ARGV[1] .. id)
end
redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
return {1, acct[1] or ''}
`)

func (s *Store) allKey(d string) string { return s.deviceTag(d) + ":all" }

// NewDevice is what CreateDevice stores: the account with secrets already hashed, and the
// plain server basic credential (sealed here, never stored in the clear).
type NewDevice struct {
	Account         engine.Account
	ServerBasicCred string
	Labels          map[string]string
	RequestID       string // the create request's id, for idempotent retries
}

func (s *Store) encodeAccount(d NewDevice, created, now time.Time) (string, error) {
	st := storedAccount{Account: d.Account, Labels: d.Labels, RequestID: d.RequestID, Created: created, Updated: now}
	st.ClientNonce, st.ServerNonce = nil, nil // kept in their own hash fields
	if d.ServerBasicCred != "" {
		if s.opt.Sealer == nil {
			return "", errors.New("basic server credentials need a sealing key (DMGRID_SECRET_KEY)")
		}
		sealed, err := s.opt.Sealer.Seal(d.ServerBasicCred, d.Account.DeviceID)
		if err != nil {
			return "", err
		}
		st.ServerBasicSealed = sealed
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
	ok, err := createScript.Run(ctx, s.rdb, []string{s.acctKey(id)}, data, nonceArg(d.Account.ClientNonce)).Int()
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
	vals, err := s.rdb.HMGet(ctx, s.acctKey(id), "data", "cn", "sn", "etag").Result()
	if err != nil {
		return nil, fmt.Errorf("get device %s: %w", id, err)
	}
	return s.deviceFrom(vals)
}

// deviceFrom decodes HMGET data, cn, sn, etag.
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
	return d, nil
}

// UpdateDevice replaces the account old (as GetDevice returned it) with d and returns the
// device as stored, with its new etag, so the caller needs no second read. It is a
// compare-and-set on old.Etag: a caller that built d from old (merging the fields it
// changes) never writes back a stale copy of the others. ErrConflict when the account
// changed after old was read, ErrNotFound when it is gone. Nonces are kept; the creation
// time is old's.
func (s *Store) UpdateDevice(ctx context.Context, old *Device, d NewDevice, now time.Time) (*Device, error) {
	id := d.Account.DeviceID
	data, err := s.encodeAccount(d, old.Created, now)
	if err != nil {
		return nil, fmt.Errorf("update device %s: %w", id, err)
	}
	res, err := updateScript.Run(ctx, s.rdb, []string{s.acctKey(id)}, data, old.Etag).Slice()
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
	// The etag matched, so the labels replaced are old's.
	return got, s.index(ctx, id, old.Labels, d.Labels)
}

// DeleteDevice removes a device and its commands if its etag is etag (0 = whatever it is):
// ErrConflict when it differs, ErrNotFound when there is no such device.
func (s *Store) DeleteDevice(ctx context.Context, id string, etag int64) error {
	keys := []string{s.acctKey(id), s.queueKey(id), s.allKey(id), s.seqKey(id), s.outboxKey(id)}
	res, err := deleteScript.Run(ctx, s.rdb, keys, s.cmdPrefix(id), etag).Slice()
	if err != nil {
		return fmt.Errorf("delete device %s: %w", id, err)
	}
	if len(res) == 0 {
		return fmt.Errorf("delete device %s: script returned nothing", id)
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
