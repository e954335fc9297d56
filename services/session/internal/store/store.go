// Package store keeps the session service's state in Redis: device accounts, sessions,
// command queues and records, and the event outbox. It works on a single Redis and on a
// Redis Cluster (redis.UniversalClient): every key of one device carries the hash tag
// {d:<device-id>}, so all of a device's keys live in one slot and one Lua script can read or
// change them atomically (DESIGN.md "State in Redis").
//
// The hot path is two round trips per device message: Load (one read-only script) and
// Commit (one script that compares the session version and applies the engine's Output).
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
	"google.golang.org/protobuf/proto"

	syncmlv1 "github.com/dmgrid/dmgrid/proto/dmgrid/syncml/v1"

	"github.com/dmgrid/dmgrid/pkg/syncmlpb"
	"github.com/dmgrid/dmgrid/services/session/internal/engine"
)

// ErrConflict means another worker committed the same session first; reload and retry.
var ErrConflict = errors.New("store: session changed concurrently")

// ErrNotFound is returned for a missing device or command.
var ErrNotFound = errors.New("store: not found")

// ErrExists is returned when creating a device that exists.
var ErrExists = errors.New("store: already exists")

// ErrNotQueued is returned when cancelling a command that already left the queue.
var ErrNotQueued = errors.New("store: command is not queued")

// Options tune TTLs and limits.
type Options struct {
	// SessionTTL keeps a session record (and its cached last reply) this long after its
	// last message; it must exceed the engine's idle timeout.
	SessionTTL time.Duration
	// CommandTTL keeps finished command records for queries.
	CommandTTL time.Duration
	// MaxQueueLoad is how many queue entries Load reads per message.
	MaxQueueLoad int
	// Sealer encrypts secrets that cannot be stored hashed (basic server credentials).
	Sealer *Sealer
}

// Store is the Redis state of the session service.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	opt    Options
}

// New returns a store whose keys start with prefix (tests use their own prefix so packages
// can share one Redis).
func New(rdb redis.UniversalClient, prefix string, opt Options) *Store {
	if opt.SessionTTL <= 0 {
		opt.SessionTTL = 30 * time.Minute
	}
	if opt.CommandTTL <= 0 {
		opt.CommandTTL = 7 * 24 * time.Hour
	}
	if opt.MaxQueueLoad <= 0 {
		opt.MaxQueueLoad = 256
	}
	return &Store{rdb: rdb, prefix: prefix, opt: opt}
}

// Client returns the Redis client (for health checks).
func (s *Store) Client() redis.UniversalClient { return s.rdb }

// deviceTag is the key part shared by all of a device's keys: prefix + hash tag.
func (s *Store) deviceTag(deviceID string) string { return s.prefix + ":{d:" + deviceID + "}" }

func (s *Store) acctKey(d string) string      { return s.deviceTag(d) + ":acct" }
func (s *Store) sessKey(d, sid string) string { return s.deviceTag(d) + ":s:" + sid }
func (s *Store) queueKey(d string) string     { return s.deviceTag(d) + ":q" }
func (s *Store) cmdPrefix(d string) string    { return s.deviceTag(d) + ":c:" }
func (s *Store) seqKey(d string) string       { return s.deviceTag(d) + ":seq" }
func (s *Store) outboxKey(d string) string    { return s.deviceTag(d) + ":outbox" }
func (s *Store) loKey(d, sid string) string   { return s.deviceTag(d) + ":lo:" + sid }
func (s *Store) ridKey(d, rid string) string  { return s.deviceTag(d) + ":rid:" + rid }
func (s *Store) devicesKey() string           { return s.prefix + ":devices" }
func (s *Store) labelKey(k, v string) string  { return s.prefix + ":label:" + k + "=" + v }
func (s *Store) rateKey(who string) string    { return s.prefix + ":rl:" + who }
func (s *Store) openKey(d string) string      { return s.deviceTag(d) + ":open" }

// CommandDevice recovers the device id from a command id (commands ids embed it, so a
// command can be found without a global index).
func CommandDevice(id string) (string, bool) {
	for i := len(id) - 1; i >= 0; i-- {
		if id[i] == '.' {
			b, err := base64.RawURLEncoding.DecodeString(id[:i])
			if err != nil || len(b) == 0 {
				return "", false
			}
			return string(b), true
		}
	}
	return "", false
}

// NewCommandID makes a command id for a device: base64url(device) "." random hex.
func NewCommandID(deviceID string, random string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(deviceID)) + "." + random
}

// ErrNoSealingKey is returned when a basic server credential must be sealed and the store
// has no key (DMGRID_SECRET_KEY).
var ErrNoSealingKey = errors.New("basic server credentials need a sealing key (DMGRID_SECRET_KEY)")

// storedAccount is the account as kept in Redis: secrets only hashed or sealed.
type storedAccount struct {
	engine.Account
	ServerBasicSealed string            `json:"server_basic_sealed,omitempty"`
	Labels            map[string]string `json:"labels,omitempty"`
	RequestID         string            `json:"request_id,omitempty"`
	Created           time.Time         `json:"created"`
	Updated           time.Time         `json:"updated"`
	Etag              int64             `json:"etag"`
}

// Device is an account with its metadata, as the API sees it.
type Device struct {
	Account   engine.Account
	Labels    map[string]string
	RequestID string
	Created   time.Time
	Updated   time.Time
	Etag      int64
	// ServerBasicSealed is the sealed basic server credential as stored, set only when this
	// store has no key to open it (Account.ServerBasicCred is then empty). An update keeps
	// it unchanged (NewDevice.ServerBasicSealed), so a worker without the key never drops
	// a credential it cannot read.
	ServerBasicSealed string
}

func (s *Store) decodeAccount(data, cn, sn string) (*Device, error) {
	var st storedAccount
	if err := json.Unmarshal([]byte(data), &st); err != nil {
		return nil, fmt.Errorf("decode account: %w", err)
	}
	a := st.Account
	if cn != "" {
		a.ClientNonce, _ = base64.StdEncoding.DecodeString(cn)
	}
	if sn != "" {
		a.ServerNonce, _ = base64.StdEncoding.DecodeString(sn)
	}
	d := &Device{Account: a, Labels: st.Labels, RequestID: st.RequestID, Created: st.Created, Updated: st.Updated, Etag: st.Etag}
	if st.ServerBasicSealed != "" {
		if s.opt.Sealer == nil {
			d.ServerBasicSealed = st.ServerBasicSealed
		} else {
			plain, err := s.opt.Sealer.Open(st.ServerBasicSealed, a.DeviceID)
			if err != nil {
				return nil, fmt.Errorf("open server credential: %w", err)
			}
			d.Account.ServerBasicCred = plain
		}
	}
	return d, nil
}

// The session record is a hash: v (version, compared and bumped by Commit), s (the engine's
// Session as JSON), h (body hash of the last client message), r (our reply to it as a
// dmgrid.syncml.v1.Message) and l (1 while a large object is arriving: only then does Load
// read the buffer). Load returns r only for a message with that body hash (a
// retransmission), so the common message does not carry the previous reply back.

// loadScript returns, for one device: account fields (data, client nonce, server nonce,
// DevDetail time), the session's version, record and last body hash, the last reply when
// ARGV[3] equals that hash, the first ARGV[2] commands of the queue, the incoming
// large-object buffer when one is arriving and ARGV[4] is 1, the account's generation and
// the open-session index (sid, entry, ...). Command keys are built from the device's own
// hash tag, so they are in the script's slot.
var loadScript = redis.NewScript(`
local acct = redis.call('HMGET', KEYS[1], 'data', 'cn', 'sn', 'dd', 'gen')
local sess = redis.call('HMGET', KEYS[2], 'v', 's', 'h', 'l')
local reply = false
if sess[3] and ARGV[3] ~= '' and sess[3] == ARGV[3] then reply = redis.call('HGET', KEYS[2], 'r') end
local ids = redis.call('ZRANGE', KEYS[3], 0, tonumber(ARGV[2]) - 1)
local cmds = {}
for i, id in ipairs(ids) do
  local c = redis.call('GET', ARGV[1] .. id)
  if c then cmds[#cmds + 1] = c end
end
local lo = false
if sess[4] == '1' and ARGV[4] == '1' then lo = redis.call('GET', KEYS[4]) end
return {acct[1] or false, acct[2] or false, acct[3] or false, acct[4] or false,
  sess[1] or false, sess[2] or false, sess[3] or false, reply or false, cmds, lo,
  acct[5] or false, redis.call('HGETALL', KEYS[5])}
`)

// Load reads everything the engine needs for one message in one round trip. bodyHash is
// the message's body hash (engine.Input.BodyHash): the cached reply comes back only when
// it matches the last message's. needLO (engine.NeedsLOBuffer of the message) asks for the
// chunks of an incoming large object received so far; without it they stay in Redis.
func (s *Store) Load(ctx context.Context, deviceID, sessionID, bodyHash string, needLO bool) (engine.State, error) {
	keys := []string{s.acctKey(deviceID), s.sessKey(deviceID, sessionID), s.queueKey(deviceID), s.loKey(deviceID, sessionID), s.openKey(deviceID)}
	lo := "0"
	if needLO {
		lo = "1"
	}
	res, err := loadScript.Run(ctx, s.rdb, keys, s.cmdPrefix(deviceID), s.opt.MaxQueueLoad, bodyHash, lo).Slice()
	if err != nil {
		return engine.State{}, fmt.Errorf("load device %s: %w", deviceID, err)
	}
	if len(res) != 12 {
		return engine.State{}, fmt.Errorf("load device %s: script returned %d values", deviceID, len(res))
	}
	var st engine.State
	if data, ok := res[0].(string); ok {
		cn, _ := res[1].(string)
		sn, _ := res[2].(string)
		d, err := s.decodeAccount(data, cn, sn)
		if err != nil {
			return st, err
		}
		st.Account = &d.Account
		if dd, ok := res[3].(string); ok {
			if ms, err := strconv.ParseInt(dd, 10, 64); err == nil {
				st.Account.DevDetailAt = time.UnixMilli(ms)
			}
		}
		st.Account.Gen, _ = res[10].(string)
	}
	if list, ok := res[11].([]any); ok {
		for i := 0; i+1 < len(list); i += 2 {
			sid, _ := list[i].(string)
			raw, _ := list[i+1].(string)
			o, err := decodeOpen(sid, raw)
			if err != nil {
				return st, fmt.Errorf("decode open session %s/%s: %w", deviceID, sid, err)
			}
			st.Open = append(st.Open, o)
		}
	}
	if raw, ok := res[5].(string); ok {
		sess, err := decodeSession(res[4], raw, res[6], res[7])
		if err != nil {
			return st, fmt.Errorf("decode session %s/%s: %w", deviceID, sessionID, err)
		}
		if sess.InLO != nil {
			if buf, ok := res[9].(string); ok {
				sess.InLO.Buf = []byte(buf)
			}
		}
		st.Session = sess
	}
	if list, ok := res[8].([]any); ok {
		st.Queue = make([]*engine.Command, 0, len(list))
		st.Stored = make([]string, 0, len(list))
		for _, v := range list {
			raw, _ := v.(string)
			var c engine.Command
			if err := json.Unmarshal([]byte(raw), &c); err != nil {
				return st, fmt.Errorf("decode command of %s: %w", deviceID, err)
			}
			st.Queue = append(st.Queue, &c)
			st.Stored = append(st.Stored, raw)
		}
	}
	return st, nil
}

// The open-session index (<p>:{d:ID}:open) is a hash: session id → "<last active, unix
// ms> <messages> <completed commands>" of each session of the device that has not ended.
// Commit keeps the entry of the session it writes (removed when the session ends) and
// removes the entries of sessions the engine found timed out, comparing each with the
// entry loaded, so a timed-out session's session_ended is committed once. The index
// expires with finished commands (CommandTTL) after its last write: a device silent for
// longer gets no TIMED_OUT for a session it abandoned (there is no sweeper).

func encodeOpen(s *engine.Session) string {
	return strconv.FormatInt(s.LastActive.UnixMilli(), 10) + " " + strconv.Itoa(s.Messages) + " " + strconv.Itoa(s.Completed)
}

func decodeOpen(sid, raw string) (engine.OpenSession, error) {
	o := engine.OpenSession{ID: sid, Stored: raw}
	f := strings.Fields(raw) // read on every Load with an open session: no fmt scanning
	if len(f) != 3 {
		return o, fmt.Errorf("entry %q: want 3 fields", raw)
	}
	ms, err1 := strconv.ParseInt(f[0], 10, 64)
	msgs, err2 := strconv.Atoi(f[1])
	done, err3 := strconv.Atoi(f[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return o, fmt.Errorf("entry %q: %w", raw, err)
	}
	o.LastActive, o.Messages, o.Completed = time.UnixMilli(ms), msgs, done
	return o, nil
}

// decodeSession rebuilds a session from its hash fields v, s, h and (when returned) r.
func decodeSession(v any, raw string, h, r any) (*engine.Session, error) {
	var sess engine.Session
	if err := json.Unmarshal([]byte(raw), &sess); err != nil {
		return nil, err
	}
	vs, _ := v.(string)
	ver, err := strconv.ParseInt(vs, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("version %q: %w", vs, err)
	}
	sess.Version = ver
	sess.LastReqHash, _ = h.(string)
	if rb, ok := r.(string); ok && rb != "" {
		var pm syncmlv1.Message
		if err := proto.Unmarshal([]byte(rb), &pm); err != nil {
			return nil, fmt.Errorf("cached reply: %w", err)
		}
		m, err := syncmlpb.FromProto(&pm)
		if err != nil {
			return nil, fmt.Errorf("cached reply: %w", err)
		}
		sess.LastReply = m
	}
	return &sess, nil
}

// commitScript applies an engine Output atomically.
//
//	KEYS: 1 acct, 2 session, 3 queue, 4 outbox, 5 seq, 6 all-commands index, 7 large-object buffer,
//	      8 open-session index
//	ARGV: 1 expected session version (0 = must not exist), 2 session json ("" = leave;
//	      otherwise 9.. carry its last body hash and reply), 3 session ttl ms, 4 client nonce b64 ("" = keep), 5 server nonce b64,
//	      6 command key prefix, 7 command ttl ms (terminal), 8 n commands, then per command:
//	      id, expected record as loaded ("" = none expected), json, terminal (1/0); then n dequeue ids; then
//	      n events; then n new command ids (queued by the engine itself); then the
//	      DevDetail policy time in unix ms ("" = keep); then large-object reset (1/0) and
//	      the bytes to append to the incoming large-object buffer (KEYS 7); then the
//	      session's last body hash and last reply (hash fields h and r) and whether it is
//	      receiving a large object (l: 1/0); then (the tail, t below) whether an account
//	      was loaded (1/0) and its generation; the session's own index entry: op ("set",
//	      "del" or "" to leave), session id, entry; then n timed-out sessions, each: id,
//	      entry as loaded.
//
// A session version mismatch, an account that is gone or another one (deleted, created
// again), a command whose record is not the one the engine saw (cancelled or sent by
// another session meanwhile) or a timed-out session whose index entry changed (ended by
// another worker, or continued) aborts with 0 and changes nothing.
var commitScript = redis.NewScript(`
local have = tonumber(redis.call('HGET', KEYS[2], 'v') or '0')
if have ~= tonumber(ARGV[1]) then return 0 end
local n = tonumber(ARGV[8])
local t = 9 + 4 * n
t = t + 1 + tonumber(ARGV[t])
t = t + 1 + tonumber(ARGV[t])
t = t + 1 + tonumber(ARGV[t])
t = t + 6
if ARGV[t] == '1' then
  if redis.call('HEXISTS', KEYS[1], 'data') == 0 then return 0 end
  if (redis.call('HGET', KEYS[1], 'gen') or '') ~= ARGV[t + 1] then return 0 end
end
local nt = tonumber(ARGV[t + 5])
for k = 1, nt do
  if redis.call('HGET', KEYS[8], ARGV[t + 4 + 2 * k]) ~= ARGV[t + 5 + 2 * k] then return 0 end
end
local i = 9
for k = 1, n do
  local id, want = ARGV[i], ARGV[i + 1]
  if want ~= '' then
    if redis.call('GET', ARGV[6] .. id) ~= want then return 0 end
  end
  i = i + 4
end
if ARGV[4] ~= '' then redis.call('HSET', KEYS[1], 'cn', ARGV[4]) end
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'sn', ARGV[5]) end
i = 9
for k = 1, n do
  local id, js, terminal = ARGV[i], ARGV[i + 2], ARGV[i + 3]
  if terminal == '1' then
    redis.call('SET', ARGV[6] .. id, js, 'PX', ARGV[7])
  else
    redis.call('SET', ARGV[6] .. id, js, 'KEEPTTL')
  end
  i = i + 4
end
local nd = tonumber(ARGV[i]); i = i + 1
for j = i, i + nd - 1, 256 do redis.call('ZREM', KEYS[3], unpack(ARGV, j, math.min(j + 255, i + nd - 1))) end
i = i + nd
local ne = tonumber(ARGV[i]); i = i + 1
for j = i, i + ne - 1, 256 do redis.call('RPUSH', KEYS[4], unpack(ARGV, j, math.min(j + 255, i + ne - 1))) end
i = i + ne
local nn = tonumber(ARGV[i]); i = i + 1
for k = 1, nn do
  local seq = redis.call('INCR', KEYS[5])
  redis.call('ZADD', KEYS[3], seq, ARGV[i])
  redis.call('ZADD', KEYS[6], seq, ARGV[i])
  i = i + 1
end
if ARGV[i] ~= '' then redis.call('HSET', KEYS[1], 'dd', ARGV[i]) end
i = i + 1
if ARGV[i] == '1' then
  redis.call('DEL', KEYS[7])
elseif ARGV[i + 1] ~= '' then
  redis.call('APPEND', KEYS[7], ARGV[i + 1])
  redis.call('PEXPIRE', KEYS[7], ARGV[3])
end
i = i + 2
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[2], 'v', have + 1, 's', ARGV[2], 'h', ARGV[i], 'r', ARGV[i + 1], 'l', ARGV[i + 2])
  redis.call('PEXPIRE', KEYS[2], ARGV[3])
end
for k = 1, nt do redis.call('HDEL', KEYS[8], ARGV[t + 4 + 2 * k]) end
if ARGV[t + 2] == 'set' then
  redis.call('HSET', KEYS[8], ARGV[t + 3], ARGV[t + 4])
  redis.call('PEXPIRE', KEYS[8], ARGV[7])
elseif ARGV[t + 2] == 'del' then
  redis.call('HDEL', KEYS[8], ARGV[t + 3])
end
return 1
`)

// Commit applies out for the device. loaded is the session as Load returned it (nil when
// there was none); st.Queue gives the command states the engine saw.
//
// reply is out.Reply as the caller already converted it for its response (nil: converted
// here); it is what the session keeps for a retransmission.
func (s *Store) Commit(ctx context.Context, deviceID, sessionID string, loaded engine.State, out engine.Output, events [][]byte, reply *syncmlv1.Message) error {
	if !out.Commit {
		return nil
	}
	var expect int64
	if loaded.Session != nil {
		expect = loaded.Session.Version
	}
	sessJSON, lastHash, lastReply := "", "", []byte(nil)
	if out.Session != nil {
		out.Session.Version = expect + 1
		b, err := json.Marshal(out.Session)
		if err != nil {
			return fmt.Errorf("encode session: %w", err)
		}
		sessJSON, lastHash = string(b), out.Session.LastReqHash
		if last := out.Session.LastReply; last != nil {
			if reply == nil || last != out.Reply {
				reply = syncmlpb.ToProto(last)
			}
			if lastReply, err = proto.Marshal(reply); err != nil {
				return fmt.Errorf("encode cached reply: %w", err)
			}
		}
	}
	prior := make(map[string]string, len(loaded.Queue))
	for i, c := range loaded.Queue {
		if i < len(loaded.Stored) {
			prior[c.ID] = loaded.Stored[i]
		}
	}
	args := make([]any, 0, 12+4*len(out.Commands)+len(out.Dequeue)+len(events))
	args = append(args, expect, sessJSON, s.opt.SessionTTL.Milliseconds(),
		nonceArg(out.NewClientNonce), nonceArg(out.NewServerNonce),
		s.cmdPrefix(deviceID), s.opt.CommandTTL.Milliseconds(), len(out.Commands))
	for _, c := range out.Commands {
		b, err := json.Marshal(c)
		if err != nil {
			return fmt.Errorf("encode command %s: %w", c.ID, err)
		}
		term := "0"
		if c.State.Terminal() {
			term = "1"
		}
		args = append(args, c.ID, prior[c.ID], string(b), term)
	}
	args = append(args, len(out.Dequeue))
	for _, id := range out.Dequeue {
		args = append(args, id)
	}
	args = append(args, len(events))
	for _, e := range events {
		args = append(args, e)
	}
	args = append(args, len(out.Enqueue))
	for _, id := range out.Enqueue {
		args = append(args, id)
	}
	dd := ""
	if !out.DevDetailAt.IsZero() {
		dd = strconv.FormatInt(out.DevDetailAt.UnixMilli(), 10)
	}
	args = append(args, dd)
	reset := "0"
	if out.LOReset {
		reset = "1"
	}
	inLO := "0" // the session expects more chunks: Load reads the buffer only then
	if out.Session != nil && out.Session.InLO != nil {
		inLO = "1"
	}
	args = append(args, reset, out.LOAppend, lastHash, lastReply, inLO)
	// The account the engine saw must still be there (not deleted, not created again).
	if a := loaded.Account; a != nil {
		args = append(args, "1", a.Gen)
	} else {
		args = append(args, "0", "")
	}
	// The session's entry in the open-session index, and the timed-out ones to remove.
	switch {
	case out.Session == nil:
		args = append(args, "", "", "")
	case out.Session.Ended:
		args = append(args, "del", sessionID, "")
	default:
		args = append(args, "set", sessionID, encodeOpen(out.Session))
	}
	args = append(args, len(out.TimedOut))
	for _, o := range out.TimedOut {
		args = append(args, o.ID, o.Stored)
	}
	keys := []string{s.acctKey(deviceID), s.sessKey(deviceID, sessionID), s.queueKey(deviceID), s.outboxKey(deviceID), s.seqKey(deviceID), s.allKey(deviceID), s.loKey(deviceID, sessionID), s.openKey(deviceID)}
	n, err := commitScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("commit device %s session %s: %w", deviceID, sessionID, err)
	}
	if n != 1 {
		return ErrConflict
	}
	return nil
}

func nonceArg(n []byte) string {
	if n == nil {
		return ""
	}
	return base64.StdEncoding.EncodeToString(n)
}

// rateScript counts an attempt in a fixed window: the expiry is set only when the counter
// is created (or, should a counter have none, at its next attempt), so attempts inside the
// window do not push its end out.
//
//	KEYS: 1 counter; ARGV: 1 window ms
var rateScript = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
if n == 1 or redis.call('PTTL', KEYS[1]) < 0 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n
`)

// AllowChallenge rate-limits challenges to devices that fail authentication or are unknown:
// at most limit per window per key (device id), the window starting at the first attempt
// after the previous one ended, so a device that keeps failing is answered again once per
// window (a fixed window: at most 2 × limit in any span of one window). It is the only state
// such a device creates. One round trip.
func (s *Store) AllowChallenge(ctx context.Context, who string, limit int64, window time.Duration) (bool, error) {
	n, err := rateScript.Run(ctx, s.rdb, []string{s.rateKey(who)}, window.Milliseconds()).Int64()
	if err != nil {
		return false, fmt.Errorf("rate limit %s: %w", who, err)
	}
	return n <= limit, nil
}
