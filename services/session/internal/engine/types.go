// Package engine is the OMA DM session engine: given the stored state of one device (its
// account, its open session and the head of its command queue) and one decoded client
// message, it computes the reply and the state changes to commit. It does no I/O: the store
// loads the state in one Redis round trip and commits the result in another, and the engine
// is tested without Redis.
//
// It implements OMA-TS-DM_Protocol §2–§3 as summarised in PROTOCOL.md §3–§7: packages 1–4,
// authentication with challenges and nonce rotation, multi-message packages (Alert 1222),
// large objects (MoreData, Size, 213, 424), Atomic and Sequence, generic alerts (1226),
// session abort (1223) and retransmission.
package engine

import (
	"time"
)

// AuthType is an account's authentication scheme (PROTOCOL.md §7.1).
type AuthType string

// Authentication schemes.
const (
	AuthNone  AuthType = "none"
	AuthBasic AuthType = "basic"
	AuthMD5   AuthType = "md5"
	AuthHMAC  AuthType = "hmac"
)

// Account is a device's management account. Secrets are held only pre-hashed:
// Key = B64(MD5(name:secret)) (OMA-TS-DM_Security §5.1.3.2). A server that must present
// basic credentials to the client keeps them encrypted (ServerBasicSealed) — the engine
// receives them already opened by the store's key ring.
type Account struct {
	DeviceID   string   `json:"device_id"`
	ClientAuth AuthType `json:"client_auth"`
	ClientName string   `json:"client_name"`
	ClientKey  string   `json:"client_key"`
	ServerAuth AuthType `json:"server_auth"`
	ServerName string   `json:"server_name"`
	ServerKey  string   `json:"server_key"`
	// ServerBasicCred is B64(name:secret) for basic server auth, opened from its sealed
	// form by the store; it is never persisted in the clear.
	ServerBasicCred string `json:"-"`
	ServerID        string `json:"server_id"`
	MSISDN          string `json:"msisdn,omitempty"`
	// ClientNonce is the nonce this server issued to the client: the client builds its
	// MD5/HMAC credential with it. ServerNonce was issued by the client to the server.
	ClientNonce []byte `json:"client_nonce,omitempty"`
	ServerNonce []byte `json:"server_nonce,omitempty"`
	// DevDetailAt is when the DevDetail collection policy last queued its Gets.
	DevDetailAt time.Time `json:"-"`
	// Gen identifies this account among the accounts that ever had its device id: a device
	// deleted and created again gets a new one. A session records the Gen it authenticated
	// under, and a session of an earlier account is never continued. Kept by the store
	// beside the account data, not in it ("" for accounts created before it existed).
	Gen string `json:"-"`
}

// OpType is a management operation.
type OpType string

// Operations a product team can queue (PROTOCOL.md §4).
const (
	OpGet     OpType = "Get"
	OpReplace OpType = "Replace"
	OpAdd     OpType = "Add"
	OpDelete  OpType = "Delete"
	OpExec    OpType = "Exec"
	OpCopy    OpType = "Copy"
)

// Group says how commands enqueued together are sent.
type Group string

// Groupings (RepPro §4.1.6.3, §4.1.6.14).
const (
	GroupNone     Group = ""
	GroupAtomic   Group = "atomic"
	GroupSequence Group = "sequence"
)

// CmdState is a queued command's life cycle: queued → sent → completed | failed |
// cancelled | expired.
type CmdState string

// Command states.
const (
	StateQueued    CmdState = "queued"
	StateSent      CmdState = "sent"
	StateCompleted CmdState = "completed"
	StateFailed    CmdState = "failed"
	StateCancelled CmdState = "cancelled"
	StateExpired   CmdState = "expired"
)

// Terminal reports whether no further change can happen.
func (s CmdState) Terminal() bool {
	return s == StateCompleted || s == StateFailed || s == StateCancelled || s == StateExpired
}

// Operation is what a command does to the device tree.
type Operation struct {
	Type       OpType `json:"type"`
	TargetURI  string `json:"target_uri"`
	SourceURI  string `json:"source_uri,omitempty"`
	Data       []byte `json:"data,omitempty"`
	HasData    bool   `json:"has_data,omitempty"`
	Format     string `json:"format,omitempty"`
	MIME       string `json:"mime,omitempty"`
	Correlator string `json:"correlator,omitempty"`
}

// ResultItem is one value a device returned in Results.
type ResultItem struct {
	URI    string `json:"uri"`
	Format string `json:"format,omitempty"`
	MIME   string `json:"mime,omitempty"`
	Data   []byte `json:"data"`
}

// Command is one queued management operation and its outcome.
type Command struct {
	ID        string       `json:"id"`
	DeviceID  string       `json:"device_id"`
	Seq       int64        `json:"seq"` // position in the device's queue (per-device counter)
	GroupID   string       `json:"group_id,omitempty"`
	Group     Group        `json:"group,omitempty"`
	Op        Operation    `json:"op"`
	State     CmdState     `json:"state"`
	Status    int          `json:"status,omitempty"`
	Results   []ResultItem `json:"results,omitempty"`
	Attempts  int          `json:"attempts,omitempty"`
	Error     string       `json:"error,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
	Created   time.Time    `json:"created"`
	Updated   time.Time    `json:"updated"`
	Expire    time.Time    `json:"expire,omitempty"`
	// Where it was sent: the session and message, and when the lease on it runs out.
	SentSession string    `json:"sent_session,omitempty"`
	SentMsgID   int       `json:"sent_msg_id,omitempty"`
	SentCmdID   string    `json:"sent_cmd_id,omitempty"`
	LeaseUntil  time.Time `json:"lease_until,omitempty"`
}
