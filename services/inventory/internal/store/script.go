package store

import (
	"crypto/sha1"
	"encoding/hex"
	"strings"
)

// applyScript applies a run of events of one device, atomically and each at most once.
//
// KEYS: 1 attributes, 2 tree blobs, 3 tree times, 4 applied event ids, 5 labels.
// ARGV: device_id, index_prefix, dedupe_window_ms, max_ids, n_events, then per event:
// event_id, time_ms, seen (0|1), na and na (name, value) pairs, nc and nc counter names,
// nn and nn (uri, blob) pairs, nl (-1: labels untouched) and nl (key, value) pairs.
// Returns one integer per event: 1 applied, 0 already applied (a duplicate).
//
// The events are applied in the given order to an in-script copy of the record, which is
// read once and written once: a session's events usually arrive together when the consumer
// catches up, and BenchmarkIngest/sessions (grouped) ingests about 1.4 times as many
// events per second as BenchmarkIngest/interleaved (one event per device and call). Index
// entries change only where the run changed a value in the end.
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
local id, ix = ARGV[1], ARGV[2]
local nev = tonumber(ARGV[5])
local INDEXED = {` + luaSet() + `}

-- Pass 1: find the events not applied before and the fields and nodes they touch.
local res, evs = {}, {}
local names, named = {'first', 'seen', 'upd', 'labels@'}, {}
local uris, urid = {}, {}
local i = 6
for e = 1, nev do
  local ev = {id = ARGV[i], t = tonumber(ARGV[i + 1]), seen = ARGV[i + 2] == '1'}
  i = i + 3
  ev.na = tonumber(ARGV[i]); ev.ai = i + 1; i = i + 1 + 2 * ev.na
  ev.nc = tonumber(ARGV[i]); ev.ci = i + 1; i = i + 1 + ev.nc
  ev.nn = tonumber(ARGV[i]); ev.ni = i + 1; i = i + 1 + 2 * ev.nn
  ev.nl = tonumber(ARGV[i]); ev.li = i + 1; i = i + 1 + 2 * math.max(ev.nl, 0)
  if redis.call('ZADD', E, 'NX', ev.t, ev.id) == 1 then
    res[e] = 1
    evs[#evs + 1] = ev
    for k = 0, ev.na - 1 do
      local f = ARGV[ev.ai + 2 * k]
      if not named[f] then named[f] = true; names[#names + 1] = f; names[#names + 1] = f .. '@' end
    end
    for k = 0, ev.nn - 1 do
      local u = ARGV[ev.ni + 2 * k]
      if not urid[u] then urid[u] = true; uris[#uris + 1] = u end
    end
  else
    res[e] = 0
  end
end
if #evs == 0 then return res end

-- Trimming costs two more calls, so it waits until the set holds more than a few sessions'
-- events: an idle device keeps at most that many ids.
if redis.call('ZCARD', E) > 32 then
  redis.call('ZREMRANGEBYSCORE', E, '-inf', '(' .. (evs[#evs].t - tonumber(ARGV[3])))
  local maxids = tonumber(ARGV[4])
  if redis.call('ZCARD', E) > maxids then redis.call('ZREMRANGEBYRANK', E, 0, -maxids - 1) end
end

-- Pass 2: apply the events in order to a copy of the record.
local cur, dirty = {}, {}
local vals = redis.call('HMGET', A, unpack(names))
for k = 1, #names do cur[names[k]] = vals[k] end
local ntime, nblob = {}, {}
if #uris > 0 then
  local tv = redis.call('HMGET', TT, unpack(uris))
  for k = 1, #uris do ntime[uris[k]] = tv[k] end
end
local orig, incr, labels = {}, {}, nil
local isnew = not cur['first']
local function set(f, v) cur[f] = v; dirty[f] = true end
for _, ev in ipairs(evs) do
  local t, changed = ev.t, false
  if not cur['first'] then set('first', t); changed = true end
  if ev.seen and (not cur['seen'] or t > tonumber(cur['seen'])) then set('seen', t); changed = true end
  for k = 0, ev.na - 1 do
    local f, v = ARGV[ev.ai + 2 * k], ARGV[ev.ai + 2 * k + 1]
    local ft = cur[f .. '@']
    if not ft or t >= tonumber(ft) then
      if INDEXED[f] and orig[f] == nil then orig[f] = cur[f] or '' end
      if cur[f] ~= v then set(f, v); changed = true end
      set(f .. '@', t)
    end
  end
  for k = 0, ev.nc - 1 do
    local c = ARGV[ev.ci + k]
    incr[c] = (incr[c] or 0) + 1
    changed = true
  end
  for k = 0, ev.nn - 1 do
    local u = ARGV[ev.ni + 2 * k]
    if not ntime[u] or t >= tonumber(ntime[u]) then
      ntime[u] = t; nblob[u] = ARGV[ev.ni + 2 * k + 1]
      changed = true
    end
  end
  if ev.nl >= 0 and (not cur['labels@'] or t >= tonumber(cur['labels@'])) then
    labels = ev
    set('labels@', t)
    changed = true
  end
  if changed and (not cur['upd'] or t > tonumber(cur['upd'])) then set('upd', t) end
end

-- Write back.
local hs = {}
for f in pairs(dirty) do hs[#hs + 1] = f; hs[#hs + 1] = cur[f] end
if #hs > 0 then redis.call('HSET', A, unpack(hs)) end
for c, n in pairs(incr) do redis.call('HINCRBY', A, c, n) end
if isnew then redis.call('ZADD', ix .. 'all', 0, id) end
if dirty['seen'] then redis.call('ZADD', ix .. 'seen', cur['seen'], id) end
for f, old in pairs(orig) do
  local new = cur[f] or ''
  if old ~= new then
    if old ~= '' then
      local k = ix .. 'eq:' .. f .. ':' .. old
      redis.call('ZREM', k, id)
      if redis.call('EXISTS', k) == 0 then redis.call('SREM', ix .. 'vals:' .. f, old) end
    end
    if new ~= '' then
      redis.call('ZADD', ix .. 'eq:' .. f .. ':' .. new, 0, id)
      redis.call('SADD', ix .. 'vals:' .. f, new)
    end
  end
end
local nt, nb = {}, {}
for u, b in pairs(nblob) do
  nt[#nt + 1] = u; nt[#nt + 1] = ntime[u]
  nb[#nb + 1] = u; nb[#nb + 1] = b
end
if #nt > 0 then
  redis.call('HSET', TT, unpack(nt))
  redis.call('HSET', T, unpack(nb))
end
if labels then
  local function lbkey(k, v) return ix .. 'lb:' .. #k .. ':' .. k .. '=' .. v end
  local old = redis.call('HGETALL', L)
  for k = 1, #old, 2 do redis.call('ZREM', lbkey(old[k], old[k + 1]), id) end
  redis.call('DEL', L)
  if labels.nl > 0 then
    local ls = {}
    for k = 0, labels.nl - 1 do
      local lk, lv = ARGV[labels.li + 2 * k], ARGV[labels.li + 2 * k + 1]
      ls[#ls + 1] = lk; ls[#ls + 1] = lv
      redis.call('ZADD', lbkey(lk, lv), 0, id)
    end
    redis.call('HSET', L, unpack(ls))
  end
end
return res
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
