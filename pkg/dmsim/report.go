package dmsim

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// CommandRecord is one server command (one Item of it, for multi-Item commands) the device
// answered, with the status it sent.
type CommandRecord struct {
	MsgID  int    // server MsgID the command came in
	CmdID  string // server CmdID
	Kind   string // "Get", "Replace", "Atomic", "Alert", ...
	Target string // node URI; for Alerts the alert code
	Status int    // status code the device sent
}

// ReceivedStatus is one Status the server sent for a device command.
type ReceivedStatus struct {
	MsgRef int
	CmdRef string
	Cmd    string
	Code   int
}

// SessionReport describes one session as the device saw it.
type SessionReport struct {
	DevID     string
	SessionID string
	Initiator Initiator
	Encoding  syncml.Encoding

	MessagesSent     int   // distinct device messages (MsgIDs)
	MessagesReceived int   // server replies processed or discarded
	Posts            int   // HTTP POSTs, retransmissions included
	Retransmissions  int   // re-POSTs of an already sent message
	BytesSent        int64 // every POST body
	BytesReceived    int64
	LargestSent      int // largest message body the device sent

	Commands         []CommandRecord  // server commands and the statuses sent for them
	StatusesReceived []ReceivedStatus // server statuses for device commands (SyncHdr excluded)

	AuthType            dmauth.Type // credential type used last
	AuthStatus          int         // last status the server gave the device's SyncHdr
	Authenticated       bool        // the server accepted the device's credentials
	AuthRetries         int         // Pkg1 re-sends after 401/407
	ServerAuthChecked   bool        // the device verified the server's credentials
	ServerAuthenticated bool        // ... and they were valid
	NextNonce           []byte      // the nonce the server last gave the device

	GenericAlertsSent  int // 1226 Items sent (retries included)
	GenericAlertsAcked int // 1226 Items the server acknowledged

	Ended     bool   // the server closed the session normally (final package without commands)
	Aborted   bool   // Alert 1223 ended the session
	AbortedBy string // "client" or "server"

	Warnings []string // server behaviour that breaks a rule but did not stop the session
	Err      error    // why the session failed, nil on success
	Duration time.Duration
}

// StatusCounts counts the statuses the device sent, by code.
func (r *SessionReport) StatusCounts() map[int]int {
	m := make(map[int]int)
	for _, c := range r.Commands {
		m[c.Status]++
	}
	return m
}

// Find returns the records for commands of the given kind and target.
func (r *SessionReport) Find(kind, target string) []CommandRecord {
	var out []CommandRecord
	for _, c := range r.Commands {
		if c.Kind == kind && c.Target == target {
			out = append(out, c)
		}
	}
	return out
}

// Summary is a one-line description for logs and the CLI.
func (r *SessionReport) Summary() string {
	var b strings.Builder
	state := "ok"
	switch {
	case r.Err != nil:
		state = "FAILED"
	case r.Aborted:
		state = "aborted by " + r.AbortedBy
	case !r.Ended:
		state = "incomplete"
	}
	fmt.Fprintf(&b, "%s session %s (%s, %s): %s; %d msgs sent / %d received, %d B / %d B",
		r.DevID, r.SessionID, r.Initiator, r.Encoding, state, r.MessagesSent, r.MessagesReceived, r.BytesSent, r.BytesReceived)
	if r.Retransmissions > 0 {
		fmt.Fprintf(&b, ", %d retransmissions", r.Retransmissions)
	}
	if r.AuthType != "" {
		fmt.Fprintf(&b, "; auth %s status %d", r.AuthType, r.AuthStatus)
		if r.AuthRetries > 0 {
			fmt.Fprintf(&b, " after %d retries", r.AuthRetries)
		}
	}
	if r.ServerAuthChecked {
		fmt.Fprintf(&b, "; server auth %v", r.ServerAuthenticated)
	}
	counts := r.StatusCounts()
	codes := make([]int, 0, len(counts))
	for c := range counts {
		codes = append(codes, c)
	}
	slices.Sort(codes)
	fmt.Fprintf(&b, "; %d commands", len(r.Commands))
	for i, c := range codes {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%d×%d", sep, counts[c], c)
	}
	if r.GenericAlertsSent > 0 {
		fmt.Fprintf(&b, "; generic alerts %d sent / %d acked", r.GenericAlertsSent, r.GenericAlertsAcked)
	}
	if len(r.Warnings) > 0 {
		fmt.Fprintf(&b, "; %d warnings", len(r.Warnings))
	}
	if r.Err != nil {
		fmt.Fprintf(&b, "; error: %v", r.Err)
	}
	return b.String()
}
