// Package events names and frames dmgrid's events (dmgrid.events.v1.Event): the JetStream
// stream, the subject of each event, and event ids. Publishers (the session service's outbox
// relay) and consumers (inventory, notifier, command watchers) share it.
//
// Subjects are "dmgrid.events.<kind>.<device token>", where kind is the name of the payload
// field that is set (session_started, command_state_changed, ...) and the device token is
// base64url(device id), so a consumer can subscribe to one kind, one device, or everything
// ("dmgrid.events.>"). event_id is sent as Nats-Msg-Id, so JetStream drops duplicates.
//
// Events a consumer gives up on go to a dead-letter subject under "dmgrid.deadletter" with
// the same headers from every service (DeadLetters).
package events

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	eventsv1 "github.com/dmgrid/dmgrid/proto/dmgrid/events/v1"
)

// SubjectRoot is the prefix of every event subject; StreamSubjects is what the stream holds.
const (
	SubjectRoot    = "dmgrid.events"
	StreamSubjects = SubjectRoot + ".>"
	DefaultStream  = "DMGRID_EVENTS"
)

// StreamConfig is the events stream's configuration: every subject under SubjectRoot, on
// disk, a two-minute window in which a repeated event_id (Nats-Msg-Id) is dropped, events
// kept for seven days. The session service creates or updates the stream with it; other
// services create it with it when they start first.
func StreamConfig(name string) jetstream.StreamConfig {
	if name == "" {
		name = DefaultStream
	}
	return jetstream.StreamConfig{Name: name, Subjects: []string{StreamSubjects}, Storage: jetstream.FileStorage,
		Duplicates: 2 * time.Minute, MaxAge: 7 * 24 * time.Hour}
}

// Kind returns the payload field name of an event ("unknown" when none is set): the name
// of the set field of the payload oneof, so a new payload needs no change here.
func Kind(ev *eventsv1.Event) string {
	m := ev.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("payload")); fd != nil {
		return string(fd.Name())
	}
	return "unknown"
}

// DeviceToken encodes a device id as one subject token (base64url has no '.', '*', '>').
func DeviceToken(deviceID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(deviceID))
}

// Subject returns the subject an event is published on.
func Subject(ev *eventsv1.Event) string {
	return KindSubject(Kind(ev), ev.GetDeviceId())
}

// KindSubject returns the subject of one kind for one device (for subscriptions).
func KindSubject(kind, deviceID string) string {
	return SubjectRoot + "." + kind + "." + DeviceToken(deviceID)
}

// NewID returns a random 128-bit event id in hex.
func NewID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return hex.EncodeToString(b)
}
