package store

import (
	"context"
	"errors"
	"testing"
	"time"

	notifierv1 "github.com/dmgrid/dmgrid/proto/dmgrid/notifier/v1"

	"github.com/dmgrid/dmgrid/internal/testredis"
)

func newStore(t *testing.T) *Store {
	return New(testredis.Client(t), testredis.Prefix(t), Options{})
}

func rec(dev, rnd string, now time.Time) *Record {
	return &Record{ID: NewID(dev, rnd), DeviceID: dev, State: notifierv1.Notification_STATE_QUEUED, SessionID: 7,
		Created: now, Updated: now, NextAt: now}
}

func TestCreateCoalesceUpdate(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	a, out, err := s.Create(ctx, rec("IMEI:1", "a", now), "rid-1")
	if err != nil || out != Created || a.Version != 1 {
		t.Fatalf("create: %v %v %v", a, out, err)
	}
	if dev, err := DeviceOf(a.ID); err != nil || dev != "IMEI:1" {
		t.Fatalf("DeviceOf = %q %v", dev, err)
	}
	if b, out, _ := s.Create(ctx, rec("IMEI:1", "b", now), ""); out != Coalesced || b.ID != a.ID {
		t.Fatalf("second create: %v %v", b, out)
	}
	if b, out, _ := s.Create(ctx, rec("IMEI:1", "c", now), "rid-1"); out != Idempotent || b.ID != a.ID {
		t.Fatalf("same request id: %v %v", b, out)
	}
	stale := *a
	a.State = notifierv1.Notification_STATE_SENT
	if err := s.Update(ctx, a); err != nil || a.Version != 2 {
		t.Fatalf("update: %v %d", err, a.Version)
	}
	if err := s.Update(ctx, &stale); !errors.Is(err, ErrConflict) {
		t.Fatalf("stale update: %v", err)
	}
	a.State = notifierv1.Notification_STATE_ANSWERED
	if err := s.Update(ctx, a); err != nil {
		t.Fatal(err)
	}
	if o, err := s.Outstanding(ctx, "IMEI:1"); err != nil || o != nil {
		t.Fatalf("outstanding after final: %v %v", o, err)
	}
	c, out, err := s.Create(ctx, rec("IMEI:1", "d", now.Add(time.Millisecond)), "")
	if err != nil || out != Created {
		t.Fatalf("create after final: %v %v", out, err)
	}
	list, next, err := s.List(ctx, "IMEI:1", 0, 1)
	if err != nil || len(list) != 1 || list[0].ID != c.ID || next != 1 {
		t.Fatalf("list page 1: %v %d %v", list, next, err)
	}
	if _, err := s.Get(ctx, "garbage"); !errors.Is(err, ErrBadID) {
		t.Fatalf("get garbage: %v", err)
	}
}

func TestClaimLease(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()
	for _, id := range []string{"x.1", "x.2", "x.3"} {
		if err := s.Schedule(ctx, id, now.Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Schedule(ctx, "x.later", now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	first, err := s.Claim(ctx, now, time.Minute, 2)
	if err != nil || len(first) != 2 {
		t.Fatalf("claim 1: %v %v", first, err)
	}
	second, _ := s.Claim(ctx, now, time.Minute, 10)
	if len(second) != 1 || second[0] == first[0] || second[0] == first[1] {
		t.Fatalf("claim 2: %v (first %v)", second, first)
	}
	if again, _ := s.Claim(ctx, now.Add(30*time.Second), time.Minute, 10); len(again) != 0 {
		t.Fatalf("claimed within the lease: %v", again)
	}
	if back, _ := s.Claim(ctx, now.Add(2*time.Minute), time.Minute, 10); len(back) != 3 {
		t.Fatalf("after the lease: %v", back)
	}
}

func TestTokenBucket(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	for i := 0; i < 3; i++ {
		if w, err := s.Take(ctx, "p", 1, 3, 1); err != nil || w != 0 {
			t.Fatalf("take %d: %v %v", i, w, err)
		}
	}
	w, err := s.Take(ctx, "p", 1, 3, 1)
	if err != nil || w <= 0 || w > time.Second {
		t.Fatalf("empty bucket: wait %v %v", w, err)
	}
	// Cost above the burst is capped, so a long message can still go eventually.
	if w, _ := s.Take(ctx, "q", 10, 2, 5); w != 0 {
		t.Fatalf("capped cost: %v", w)
	}
}
