package engine

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

// Event is one fact produced while processing a message.
type Event struct {
	Kind    EventKind `json:"kind"`
	Session string    `json:"session,omitempty"`

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
