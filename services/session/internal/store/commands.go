package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// enqueueScript appends commands to a device's queue in one atomic step. Queue order is a
// per-device counter (never a timestamp), so commands enqueued by different API replicas
// are still drained in the order they were accepted.
//
// It also trims the listing index (KEYS 5), whose entries outlive the records of finished
// commands (they expire): it checks the next 2n + sweepBase entries after a cursor kept in
// the account hash (field ixc, a sequence number) and removes those whose record is gone,
// going round from the start once it reaches the end. Each call checks at least twice as
// many entries as it adds, so the index stays within a small multiple of the device's live
// commands, at a bounded cost per call.
//
//	KEYS: 1 acct, 2 queue, 3 seq, 4 request-id key, 5 all-commands index, 6 outbox
//	ARGV: 1 command prefix, 2 request-id and correlator ttl ms, 3 has request id (1/0), 4 n,
//	      then n ids, n jsons, then ne, ne events, then nc, nc pairs (correlator key, id)
var enqueueScript = redis.NewScript(`
if ARGV[3] == '1' then
  local prev = redis.call('GET', KEYS[4])
  if prev then return {0, prev} end
end
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, ''} end
local n = tonumber(ARGV[4])
local sweep = 2 * n + ` + sweepBase + `
local zs = redis.call('ZRANGEBYSCORE', KEYS[5], '(' .. (redis.call('HGET', KEYS[1], 'ixc') or '0'), '+inf', 'WITHSCORES', 'LIMIT', 0, sweep)
local cursor = '0'
if #zs == 2 * sweep then cursor = zs[#zs] end
for k = 1, #zs, 2 do
  if redis.call('EXISTS', ARGV[1] .. zs[k]) == 0 then redis.call('ZREM', KEYS[5], zs[k]) end
end
redis.call('HSET', KEYS[1], 'ixc', cursor)
local base = redis.call('INCRBY', KEYS[3], n) - n
local ids = {}
for i = 1, n do
  local id, js = ARGV[4 + i], ARGV[4 + n + i]
  redis.call('SET', ARGV[1] .. id, js)
  redis.call('ZADD', KEYS[2], base + i, id)
  redis.call('ZADD', KEYS[5], base + i, id)
  ids[#ids + 1] = id
end
local j = 5 + 2 * n
local ne = tonumber(ARGV[j])
for k = 1, ne do redis.call('RPUSH', KEYS[6], ARGV[j + k]) end
j = j + ne + 1
for k = 1, tonumber(ARGV[j]) do
  redis.call('SET', ARGV[j + 2 * k - 1], ARGV[j + 2 * k], 'PX', ARGV[2])
end
local joined = table.concat(ids, ',')
if ARGV[3] == '1' then redis.call('SET', KEYS[4], joined, 'PX', ARGV[2]) end
return {1, joined}
`)

// Enqueue stores commands for a device. With a request id, a repeated call returns the
// commands of the first call instead of enqueueing again (idempotent enqueue); dup is true
// then. ErrNotFound if the device does not exist.
func (s *Store) Enqueue(ctx context.Context, deviceID, requestID string, cmds []*engine.Command, events [][]byte) (out []*engine.Command, dup bool, err error) {
	ids := make([]any, 0, 2*len(cmds))
	for _, c := range cmds {
		ids = append(ids, c.ID)
	}
	for _, c := range cmds {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, false, fmt.Errorf("encode command: %w", err)
		}
		ids = append(ids, string(b))
	}
	hasRID := "0"
	if requestID != "" {
		hasRID = "1"
	}
	args := append([]any{s.cmdPrefix(deviceID), s.opt.CommandTTL.Milliseconds(), hasRID, len(cmds)}, ids...)
	args = append(args, len(events))
	for _, e := range events {
		args = append(args, e)
	}
	// Exec Correlators are indexed in the same script, so a Generic Alert can always find
	// its command.
	var corr []any
	for _, c := range cmds {
		if c.Op.Type == engine.OpExec && c.Op.Correlator != "" {
			corr = append(corr, s.corrKey(deviceID, c.Op.Correlator), c.ID)
		}
	}
	args = append(append(args, len(corr)/2), corr...)
	keys := []string{s.acctKey(deviceID), s.queueKey(deviceID), s.seqKey(deviceID), s.ridKey(deviceID, requestID), s.allKey(deviceID), s.outboxKey(deviceID)}
	res, err := enqueueScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("enqueue for %s: %w", deviceID, err)
	}
	code, _ := res[0].(int64)
	joined, _ := res[1].(string)
	switch code {
	case -1:
		return nil, false, ErrNotFound
	case 0:
		prev, err := s.getCommands(ctx, deviceID, strings.Split(joined, ","))
		return prev, true, err
	}
	return cmds, false, nil
}

func (s *Store) getCommands(ctx context.Context, deviceID string, ids []string) ([]*engine.Command, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	keys := make([]string, len(ids))
	for i, id := range ids {
		keys[i] = s.cmdPrefix(deviceID) + id
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result() // one slot: the device's hash tag
	if err != nil {
		return nil, fmt.Errorf("get commands of %s: %w", deviceID, err)
	}
	out := make([]*engine.Command, 0, len(vals))
	for _, v := range vals {
		raw, ok := v.(string)
		if !ok {
			continue // expired record
		}
		var c engine.Command
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, fmt.Errorf("decode command of %s: %w", deviceID, err)
		}
		out = append(out, &c)
	}
	return out, nil
}

// GetCommand returns one command by id.
func (s *Store) GetCommand(ctx context.Context, id string) (*engine.Command, string, error) {
	dev, ok := CommandDevice(id)
	if !ok {
		return nil, "", ErrNotFound
	}
	raw, err := s.rdb.Get(ctx, s.cmdPrefix(dev)+id).Result()
	if errors.Is(err, redis.Nil) {
		return nil, "", ErrNotFound
	}
	if err != nil {
		return nil, "", fmt.Errorf("get command %s: %w", id, err)
	}
	var c engine.Command
	if err := json.Unmarshal([]byte(raw), &c); err != nil {
		return nil, "", fmt.Errorf("decode command %s: %w", id, err)
	}
	return &c, raw, nil
}

// sweepBase is how many listing-index entries an enqueue checks besides twice the number
// of commands it adds (enqueueScript).
const sweepBase = "32"

// listScript reads a page of a device's commands in queue order: the records of the first
// ARGV[3] commands after position ARGV[2] whose records still exist, removing from the
// listing index the entries whose records expired on the way (so pages are full). It reads
// ahead one more live command to know whether there is a next page, and examines at most
// ARGV[4] entries: when it stops there, the page may be short and its next position is the
// last one examined. It returns {next position (0 = no more), record, record, ...}.
//
//	KEYS: 1 all-commands index; ARGV: 1 command prefix, 2 after, 3 n, 4 max entries examined
var listScript = redis.NewScript(`
local n, budget = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {0}
local after = ARGV[2]
local lastLive = nil
while budget > 0 do
  local zs = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. after, '+inf', 'WITHSCORES', 'LIMIT', 0, math.min(budget, n + 1))
  if #zs == 0 then return out end
  for k = 1, #zs, 2 do
    budget = budget - 1
    after = zs[k + 1]
    local rec = redis.call('GET', ARGV[1] .. zs[k])
    if not rec then
      redis.call('ZREM', KEYS[1], zs[k])
    elseif #out == n + 1 then
      out[1] = lastLive
      return out
    else
      out[#out + 1] = rec
      lastLive = zs[k + 1]
    end
  end
end
out[1] = after
return out
`)

// ListCommands pages through a device's commands in queue order. The page token is the
// last position returned. Entries of expired records are skipped and removed from the
// listing index; a page is short only when more than maxListScan entries had to be
// examined for it (a long run of expired ones), and then it still has a next position. One
// round trip.
func (s *Store) ListCommands(ctx context.Context, deviceID string, after int64, n int) ([]*engine.Command, int64, error) {
	res, err := listScript.Run(ctx, s.rdb, []string{s.allKey(deviceID)}, s.cmdPrefix(deviceID), after, n, n+maxListScan).Slice()
	if err != nil {
		return nil, 0, fmt.Errorf("list commands of %s: %w", deviceID, err)
	}
	if len(res) == 0 {
		return nil, 0, fmt.Errorf("list commands of %s: script returned nothing", deviceID)
	}
	var next int64
	switch v := res[0].(type) {
	case int64:
		next = v
	case string:
		if next, err = strconv.ParseInt(v, 10, 64); err != nil {
			return nil, 0, fmt.Errorf("list commands of %s: position %q", deviceID, v)
		}
	}
	out := make([]*engine.Command, 0, len(res)-1)
	for _, v := range res[1:] {
		raw, _ := v.(string)
		var c engine.Command
		if err := json.Unmarshal([]byte(raw), &c); err != nil {
			return nil, 0, fmt.Errorf("decode command of %s: %w", deviceID, err)
		}
		out = append(out, &c)
	}
	return out, next, nil
}

// maxListScan bounds the listing-index entries one ListCommands call examines besides its
// page size.
const maxListScan = 1000

// groupScript reads a command for cancelling: its record and, when it belongs to an
// Atomic/Sequence group, the records of the group's other members still in the device's
// queue (queued or in flight; finished members have left it and cannot be cancelled). A
// group is enqueued by one call with consecutive sequence numbers, and a requeued command
// keeps its number, so the group's members in the queue are adjacent: the walk goes from
// the command's position to the first command of another group on each side, and reads
// only the group, never the device's history. It returns id, record pairs: the command
// first, then the other members in queue order; nothing when the command does not exist.
//
//	KEYS: 1 queue; ARGV: 1 command prefix, 2 id
var groupScript = redis.NewScript(`
local raw = redis.call('GET', ARGV[1] .. ARGV[2])
if not raw then return {} end
local out = {ARGV[2], raw}
local ok, c = pcall(cjson.decode, raw)
local g = ok and type(c) == 'table' and c.group_id
if type(g) ~= 'string' or g == '' then return out end
local rank = redis.call('ZRANK', KEYS[1], ARGV[2])
if not rank then return out end
local function walk(step, found)
  local i = rank + step
  while i >= 0 do
    local id = redis.call('ZRANGE', KEYS[1], i, i)[1]
    if not id then return end
    local js = redis.call('GET', ARGV[1] .. id)
    if js then
      local ok2, m = pcall(cjson.decode, js)
      if not ok2 or type(m) ~= 'table' or m.group_id ~= g then return end
      found[#found + 1] = {id, js}
    end
    i = i + step
  end
end
local before, after = {}, {}
walk(-1, before)
walk(1, after)
for k = #before, 1, -1 do out[#out + 1] = before[k][1]; out[#out + 1] = before[k][2] end
for k = 1, #after do out[#out + 1] = after[k][1]; out[#out + 1] = after[k][2] end
return out
`)

// cancelScript cancels commands only if every record is exactly what the caller read
// (compare-and-set): when a worker sent one of them meanwhile, nothing changes.
//
//	KEYS: 1 queue, 2 outbox; ARGV: 1 command prefix, 2 ttl ms, 3 n, then per command:
//	id, old json, new json, event ("" = none)
var cancelScript = redis.NewScript(`
local n = tonumber(ARGV[3])
for k = 0, n - 1 do
  local i = 4 + 4 * k
  if redis.call('GET', ARGV[1] .. ARGV[i]) ~= ARGV[i + 1] then return 0 end
end
for k = 0, n - 1 do
  local i = 4 + 4 * k
  redis.call('SET', ARGV[1] .. ARGV[i], ARGV[i + 2], 'PX', ARGV[2])
  redis.call('ZREM', KEYS[1], ARGV[i])
  if ARGV[i + 3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[i + 3]) end
end
return 1
`)

// CancelCommand cancels a queued command and, when it belongs to an Atomic/Sequence group,
// the group's other queued members with it, in one atomic step: the group goes to the
// device as one command, so a session sees all of it queued or none of it. Members already
// sent or finished are left as they are. It costs two round trips (read the group, apply)
// however long the device's history. It returns the cancelled commands, the named one
// first, then the rest in queue order. ErrNotQueued (with the command) if the named one was
// already sent or finished; nothing is cancelled then. event (may be nil) builds the event
// appended to the outbox with each cancelled command.
func (s *Store) CancelCommand(ctx context.Context, id string, now time.Time, event func(*engine.Command) []byte) ([]*engine.Command, error) {
	dev, ok := CommandDevice(id)
	if !ok {
		return nil, ErrNotFound
	}
	for attempt := 0; attempt < 3; attempt++ {
		recs, err := groupScript.Run(ctx, s.rdb, []string{s.queueKey(dev)}, s.cmdPrefix(dev), id).StringSlice()
		if err != nil {
			return nil, fmt.Errorf("cancel command %s: %w", id, err)
		}
		if len(recs) == 0 {
			return nil, ErrNotFound
		}
		args := []any{s.cmdPrefix(dev), s.opt.CommandTTL.Milliseconds(), 0}
		var out []*engine.Command
		for i := 0; i+1 < len(recs); i += 2 {
			var c engine.Command
			if err := json.Unmarshal([]byte(recs[i+1]), &c); err != nil {
				return nil, fmt.Errorf("decode command %s: %w", recs[i], err)
			}
			if c.State != engine.StateQueued {
				if i == 0 {
					return []*engine.Command{&c}, ErrNotQueued
				}
				continue // sent: the device has it already, as before
			}
			c.State, c.Updated = engine.StateCancelled, now
			b, err := json.Marshal(&c)
			if err != nil {
				return nil, fmt.Errorf("encode command %s: %w", c.ID, err)
			}
			var ev []byte
			if event != nil {
				ev = event(&c)
			}
			args = append(args, recs[i], recs[i+1], string(b), ev)
			out = append(out, &c)
		}
		args[2] = len(out)
		keys := []string{s.queueKey(dev), s.outboxKey(dev)}
		ok, err := cancelScript.Run(ctx, s.rdb, keys, args...).Int()
		if err != nil {
			return nil, fmt.Errorf("cancel command %s: %w", id, err)
		}
		if ok == 1 {
			return out, nil
		}
	}
	return nil, ErrConflict
}

// corrKey maps an Exec Correlator to its command (set by Enqueue), so the Generic Alert that
// reports the Exec's asynchronous result (OMA-TS-DM_Protocol §2.3.7, FUMO §10.2.2) can be
// attached to it.
func (s *Store) corrKey(d, correlator string) string { return s.deviceTag(d) + ":corr:" + correlator }

// attachScript replaces a command record only if it is still what the caller read.
//
//	KEYS: 1 command, 2 outbox; ARGV: 1 old json, 2 new json, 3 event
var attachScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'KEEPTTL')
if ARGV[3] ~= '' then redis.call('RPUSH', KEYS[2], ARGV[3]) end
return 1
`)

// AttachAlert adds a Generic Alert's result to the Exec command with that Correlator and
// returns the updated command (nil when no command has the correlator). event builds the
// command_state_changed event appended to the outbox with the change.
func (s *Store) AttachAlert(ctx context.Context, deviceID, correlator string, item engine.ResultItem, now time.Time, event func(*engine.Command) []byte) (*engine.Command, error) {
	id, err := s.rdb.Get(ctx, s.corrKey(deviceID, correlator)).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("correlator %s: %w", correlator, err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		c, raw, err := s.GetCommand(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		c.Results = append(c.Results, item)
		c.Updated = now
		b, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encode command %s: %w", id, err)
		}
		var ev []byte
		if event != nil {
			ev = event(c)
		}
		ok, err := attachScript.Run(ctx, s.rdb, []string{s.cmdPrefix(deviceID) + id, s.outboxKey(deviceID)}, raw, string(b), ev).Int()
		if err != nil {
			return nil, fmt.Errorf("attach alert to %s: %w", id, err)
		}
		if ok == 1 {
			return c, nil
		}
	}
	return nil, ErrConflict
}
