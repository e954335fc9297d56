package store

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
)

// The outbox: events committed with the state change that produced them, in a per-device
// list, relayed to NATS in order by the outbox relay. A device's events are published in the
// order they were committed; an entry leaves the outbox only after JetStream acknowledged it.

// AppendOutbox adds events to a device's outbox (for changes made outside a session, such
// as DeviceService updates).
func (s *Store) AppendOutbox(ctx context.Context, deviceID string, events [][]byte) error {
	if len(events) == 0 {
		return nil
	}
	args := make([]any, len(events))
	for i, e := range events {
		args[i] = e
	}
	if err := s.rdb.RPush(ctx, s.outboxKey(deviceID), args...).Err(); err != nil {
		return fmt.Errorf("append outbox of %s: %w", deviceID, err)
	}
	return nil
}

// ReadOutbox returns up to n of the device's oldest pending events.
func (s *Store) ReadOutbox(ctx context.Context, deviceID string, n int) ([][]byte, error) {
	vals, err := s.rdb.LRange(ctx, s.outboxKey(deviceID), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("read outbox of %s: %w", deviceID, err)
	}
	out := make([][]byte, len(vals))
	for i, v := range vals {
		out[i] = []byte(v)
	}
	return out, nil
}

// ReadOutboxes returns up to n of the oldest pending events of each device, in one
// pipeline (one round trip on a single Redis; one per master on a Cluster). out[i] is
// nil for a device whose read failed; err reports the first failure.
func (s *Store) ReadOutboxes(ctx context.Context, deviceIDs []string, n int) (out [][][]byte, err error) {
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.StringSliceCmd, len(deviceIDs))
	for i, d := range deviceIDs {
		cmds[i] = pipe.LRange(ctx, s.outboxKey(d), 0, int64(n)-1)
	}
	if _, perr := pipe.Exec(ctx); perr != nil {
		err = fmt.Errorf("read outboxes: %w", perr)
	}
	out = make([][][]byte, len(deviceIDs))
	for i, c := range cmds {
		vals, cerr := c.Result()
		if cerr != nil {
			continue
		}
		out[i] = make([][]byte, len(vals))
		for j, v := range vals {
			out[i][j] = []byte(v)
		}
	}
	return out, err
}

// PopOutboxes removes published entries from the heads of several devices' outboxes in one
// pipeline (popScript each): published[i] are the entries of deviceIDs[i] to remove. It
// returns how many were removed per device.
func (s *Store) PopOutboxes(ctx context.Context, deviceIDs []string, published [][][]byte) ([]int, error) {
	run := func() ([]*redis.Cmd, error) {
		pipe := s.rdb.Pipeline()
		cmds := make([]*redis.Cmd, len(deviceIDs))
		for i, d := range deviceIDs {
			args := make([]any, len(published[i]))
			for j, p := range published[i] {
				args[j] = p
			}
			cmds[i] = popScript.EvalSha(ctx, pipe, []string{s.outboxKey(d)}, args...)
		}
		_, err := pipe.Exec(ctx)
		return cmds, err
	}
	cmds, err := run()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// The script cache was flushed or this is a new master: load it and go again
		// (entries already popped are not popped twice: the script checks the head).
		if lerr := s.loadScript(ctx, popScript); lerr != nil {
			return nil, fmt.Errorf("pop outboxes: %w", lerr)
		}
		cmds, err = run()
	}
	n := make([]int, len(deviceIDs))
	for i, c := range cmds {
		n[i], _ = c.Int()
	}
	if err != nil {
		return n, fmt.Errorf("pop outboxes: %w", err)
	}
	return n, nil
}

// loadScript loads sc on every master (a pipelined EVALSHA cannot fall back to EVAL).
func (s *Store) loadScript(ctx context.Context, sc *redis.Script) error {
	if c, ok := s.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error { return sc.Load(ctx, m).Err() })
	}
	return sc.Load(ctx, s.rdb).Err()
}

// popScript removes published entries from the head of the outbox, but only while the head
// is exactly the entry that was published: two relays working on one device (after a
// restart, or on two workers) can never drop an entry the other has not published.
var popScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV do
  if redis.call('LINDEX', KEYS[1], 0) ~= ARGV[i] then break end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
return n
`)

// ScanOutboxes calls fn with the device id of every non-empty outbox (on every master of a
// cluster). The relay runs it at start and periodically, to pick up events a worker left
// behind when it stopped or when NATS was unreachable.
func (s *Store) ScanOutboxes(ctx context.Context, fn func(deviceID string)) error {
	match := s.prefix + ":{d:*}:outbox"
	scan := func(ctx context.Context, c *redis.Client) error {
		it := c.Scan(ctx, 0, match, 500).Iterator()
		for it.Next(ctx) {
			k := it.Val()
			rest := strings.TrimPrefix(k, s.prefix+":{d:")
			if id, ok := strings.CutSuffix(rest, "}:outbox"); ok {
				fn(id)
			}
		}
		return it.Err()
	}
	switch c := s.rdb.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, scan)
	case *redis.Client:
		return scan(ctx, c)
	}
	return fmt.Errorf("scan outboxes: unsupported client %T", s.rdb)
}
