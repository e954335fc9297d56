package engine

import (
	"strconv"
	"time"

	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Session is the state of one DM session, stored between messages. Any worker can serve
// any message: everything needed to continue is here.
type Session struct {
	DeviceID  string `json:"device_id"`
	SessionID string `json:"session_id"`
	// AccountGen is the Gen of the account the session authenticated under.
	AccountGen string `json:"account_gen,omitempty"`
	// Version is the optimistic-concurrency counter; the store compares and bumps it.
	Version int64 `json:"-"`

	Initiator     int      `json:"initiator"` // 1200 (server-initiated) or 1201
	Encoding      string   `json:"encoding"`
	AuthType      AuthType `json:"auth_type"`
	Authenticated bool     `json:"authenticated"` // the client has its 212
	ServerAuthed  bool     `json:"server_authed"` // the client accepted our credentials
	ServerTries   int      `json:"server_tries,omitempty"`

	ClientMsgID      int   `json:"client_msg_id"` // last client message processed
	ServerMsgID      int   `json:"server_msg_id"` // last server message sent
	ClientMaxMsgSize int64 `json:"client_max_msg_size,omitempty"`
	ClientMaxObjSize int64 `json:"client_max_obj_size,omitempty"`

	// Sent maps "msgID/cmdID" of commands we sent to the queued command they carry, until
	// the client's Status arrives.
	Sent map[string]SentRef `json:"sent,omitempty"`

	InLO  *InLO  `json:"in_lo,omitempty"`
	OutLO *OutLO `json:"out_lo,omitempty"`

	// Retransmission cache: the body hash of the last client message and our reply to it
	// (PROTOCOL.md §12.11). The store keeps them beside the record, not in it, and hands
	// LastReply back only when the message being handled has that body hash.
	LastReqHash string          `json:"-"`
	LastReply   *syncml.Message `json:"-"`

	Started    time.Time `json:"started"`
	LastActive time.Time `json:"last_active"`
	Ended      bool      `json:"ended,omitempty"`
	Outcome    string    `json:"outcome,omitempty"`
	Messages   int       `json:"messages"`
	Completed  int       `json:"completed"` // commands completed in this session
}

// OpenSession is an entry of a device's open-session index, which the store keeps beside
// the session records: a session that has not ended, with what its session_ended event
// needs if it times out. Its record may be gone (it expires), the entry is not.
type OpenSession struct {
	ID         string
	LastActive time.Time
	Messages   int
	Completed  int
	// Stored is opaque to the engine: the store's entry as read, which its commit compares
	// before it removes the entry (so one timed-out session ends once).
	Stored string
}

// SentRef links a command we sent to its queue entry.
type SentRef struct {
	CommandID string `json:"command_id,omitempty"` // empty for an Atomic/Sequence wrapper
	GroupID   string `json:"group_id,omitempty"`
	Kind      string `json:"kind"`
}

// InLO is a large object the client is sending in chunks (Results with MoreData).
type InLO struct {
	MsgRef    string `json:"msg_ref"`
	CmdRef    string `json:"cmd_ref"`
	CommandID string `json:"command_id"`
	URI       string `json:"uri"`
	Format    string `json:"format,omitempty"`
	MIME      string `json:"mime,omitempty"`
	Declared  int64  `json:"declared"`
	// Received counts the bytes of the chunks received so far.
	Received int64 `json:"received,omitempty"`
	// Buf holds the chunks received so far. It is not part of the session record: the store
	// keeps it in its own key, appends each message's chunk (Output.LOAppend) and hands it
	// back on Load only for a message that may complete the object (NeedsLOBuffer), so a
	// large object is neither rewritten with the session nor read back on every chunk.
	Buf []byte `json:"-"`
}

// OutLO is a large object we are sending in chunks (Replace/Add data larger than fits).
type OutLO struct {
	CommandID string `json:"command_id"`
	Offset    int    `json:"offset"` // bytes of the wire form already sent
	Total     int    `json:"total"`  // length of the wire form (base64 text in XML)
	Format    string `json:"format"` // the wire form is re-derived from the command's data`
	Acked     bool   `json:"acked"`  // the client answered the last chunk with 213
	LastCmdID string `json:"last_cmd_id"`
	LastMsgID int    `json:"last_msg_id"`
}

func sentKey(msgID int, cmdID string) string { return strconv.Itoa(msgID) + "/" + cmdID }

// pendingStatus reports whether commands we sent still wait for their Status.
func (s *Session) pendingStatus() bool { return len(s.Sent) > 0 }
