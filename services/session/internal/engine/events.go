package engine

import "time"

// EventKind names what happened; the session service maps events to the protobuf payloads
// of dmgrid.events.v1 and publishes them through the outbox.
type EventKind string

// Event kinds (DESIGN.md "Events").
const (
	EventSessionStarted      EventKind = "session_started"
	EventSessionEnded        EventKind = "session_ended"
	EventDeviceInfo          EventKind = "device_info"
	EventCommandStateChanged EventKind = "command_state_changed"
	EventGenericAlert        EventKind = "generic_alert"
)

// Session outcomes (Session.Outcome, the session_ended event's Outcome).
const (
	// OutcomeCompleted: the server's package had no commands left.
	OutcomeCompleted = "completed"
	// OutcomeAborted: the device sent Alert 1223.
	OutcomeAborted = "aborted"
	// OutcomeTimedOut: no message for the idle timeout.
	OutcomeTimedOut = "timed out"
)

// Event is one fact produced while processing a message.
type Event struct {
	Kind    EventKind `json:"kind"`
	Session string    `json:"session,omitempty"`
	// At is when it happened, when that is not the message's time: a session that timed
	// out ended when its idle timeout passed, found out only at a later message.
	At time.Time `json:"at,omitzero"`

	// session started
	Initiator int    `json:"initiator,omitempty"`
	Encoding  string `json:"encoding,omitempty"`
	AuthType  string `json:"auth_type,omitempty"`
	// session ended
	Outcome   string `json:"outcome,omitempty"`
	Messages  int    `json:"messages,omitempty"`
	Completed int    `json:"completed,omitempty"`
	// device info
	Values map[string]string `json:"values,omitempty"`
	// command state changed
	Command *Command `json:"command,omitempty"`
	// generic alert
	Correlator string `json:"correlator,omitempty"`
	SourceURI  string `json:"source_uri,omitempty"`
	AlertType  string `json:"alert_type,omitempty"`
	Format     string `json:"format,omitempty"`
	Mark       string `json:"mark,omitempty"`
	Data       []byte `json:"data,omitempty"`
}
