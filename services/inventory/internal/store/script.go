package store

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// applyScript applies one event to one device, atomically and at most once.
//
// KEYS: 1 attributes, 2 tree blobs, 3 tree times, 4 applied event ids, 5 labels.
// ARGV: event_id, time_ms, device_id, index_prefix, dedupe_window_ms, max_ids, seen (0|1),
// then na and na (name, value) pairs, nc and nc counter names, nn and nn (uri, blob) pairs,
// nl (-1: labels untouched) and nl (key, value) pairs.
// Returns 1 when applied, 0 for an event id already applied.
//
// Index keys are built here from index_prefix rather than passed in KEYS because the old
// values, whose index entries must go, are only known inside the script (hence single-Redis
// only; see the package comment).
//
// Ordering: a value is written when the event's time is >= the stored value's time, so a
// late (redelivered) older event cannot overwrite a newer value, while events of one
// session that share a timestamp apply in stream order.
var applyScript = `
local A, T, TT, E, L = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local ev, t, id, ix = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4]
if redis.call('ZSCORE', E, ev) then return 0 end
redis.call('ZADD', E, t, ev)
redis.call('ZREMRANGEBYSCORE', E, '-inf', '(' .. (t - tonumber(ARGV[5])))
local maxids = tonumber(ARGV[6])
if redis.call('ZCARD', E) > maxids then redis.call('ZREMRANGEBYRANK', E, 0, -maxids - 1) end

local INDEXED = {` + luaSet() + `}
local function unindex(f, v)
  local k = ix .. 'eq:' .. f .. ':' .. v
  redis.call('ZREM', k, id)
  if redis.call('EXISTS', k) == 0 then redis.call('SREM', ix .. 'vals:' .. f, v) end
end
local function lbkey(k, v) return ix .. 'lb:' .. #k .. ':' .. k .. '=' .. v end

local i = 8
local na = tonumber(ARGV[i]); i = i + 1
local q = {'first', 'seen', 'upd', 'labels@'}
for k = 0, na - 1 do
  local f = ARGV[i + 2 * k]
  q[#q + 1] = f
  q[#q + 1] = f .. '@'
end
local cur = redis.call('HMGET', A, unpack(q))
local set = {}
local changed = false
if not cur[1] then
  set[#set + 1] = 'first'; set[#set + 1] = t
  redis.call('ZADD', ix .. 'all', 0, id)
  changed = true
end
if ARGV[7] == '1' and (not cur[2] or t > tonumber(cur[2])) then
  set[#set + 1] = 'seen'; set[#set + 1] = t
  redis.call('ZADD', ix .. 'seen', t, id)
  changed = true
end
for k = 0, na - 1 do
  local f, v = ARGV[i + 2 * k], ARGV[i + 2 * k + 1]
  local old, ot = cur[5 + 2 * k], cur[6 + 2 * k]
  if not ot or t >= tonumber(ot) then
    if old ~= v then
      if INDEXED[f] then
        if old and old ~= '' then unindex(f, old) end
        if v ~= '' then
          redis.call('ZADD', ix .. 'eq:' .. f .. ':' .. v, 0, id)
          redis.call('SADD', ix .. 'vals:' .. f, v)
        end
      end
      set[#set + 1] = f; set[#set + 1] = v
      changed = true
    end
    set[#set + 1] = f .. '@'; set[#set + 1] = t
  end
end
i = i + 2 * na

local nc = tonumber(ARGV[i]); i = i + 1
for k = 0, nc - 1 do redis.call('HINCRBY', A, ARGV[i + k], 1); changed = true end
i = i + nc

local nn = tonumber(ARGV[i]); i = i + 1
if nn > 0 then
  local uris = {}
  for k = 0, nn - 1 do uris[k + 1] = ARGV[i + 2 * k] end
  local times = redis.call('HMGET', TT, unpack(uris))
  local tset, bset = {}, {}
  for k = 0, nn - 1 do
    if not times[k + 1] or t >= tonumber(times[k + 1]) then
      tset[#tset + 1] = uris[k + 1]; tset[#tset + 1] = t
      bset[#bset + 1] = uris[k + 1]; bset[#bset + 1] = ARGV[i + 2 * k + 1]
    end
  end
  if #tset > 0 then
    redis.call('HSET', TT, unpack(tset))
    redis.call('HSET', T, unpack(bset))
    changed = true
  end
end
i = i + 2 * nn

local nl = tonumber(ARGV[i]); i = i + 1
if nl >= 0 and (not cur[4] or t >= tonumber(cur[4])) then
  local old = redis.call('HGETALL', L)
  for k = 1, #old, 2 do redis.call('ZREM', lbkey(old[k], old[k + 1]), id) end
  redis.call('DEL', L)
  if nl > 0 then
    local lset = {}
    for k = 0, nl - 1 do
      local lk, lv = ARGV[i + 2 * k], ARGV[i + 2 * k + 1]
      lset[#lset + 1] = lk; lset[#lset + 1] = lv
      redis.call('ZADD', lbkey(lk, lv), 0, id)
    end
    redis.call('HSET', L, unpack(lset))
  end
  set[#set + 1] = 'labels@'; set[#set + 1] = t
  changed = true
end

if changed and (not cur[3] or t > tonumber(cur[3])) then
  set[#set + 1] = 'upd'; set[#set + 1] = t
end
if #set > 0 then redis.call('HSET', A, unpack(set)) end
return 1
`

// applySHA is the script's SHA1, as EVALSHA wants it.
var applySHA = func() string {
	h := sha1.Sum([]byte(applyScript))
	return hex.EncodeToString(h[:])
}()

// luaSet renders IndexedFields as a Lua set literal, so the script and Go cannot disagree
// on which fields are indexed.
func luaSet() string {
	parts := make([]string, len(IndexedFields))
	for i, f := range IndexedFields {
		parts[i] = "['" + string(f) + "']=true"
	}
	return strings.Join(parts, ", ")
}
