package dmsim

import (
	"context"
	"time"

	"github.com/dmgrid/dmgrid/pkg/dmauth"
	"github.com/dmgrid/dmgrid/pkg/syncml"
)

// Defaults for Config and SessionOptions.
const (
	DefaultMaxMsgSize          = 10000  // advertised SyncHdr Meta MaxMsgSize (PROTOCOL.md §2.1)
	DefaultMaxObjSize          = 524288 // advertised SyncHdr Meta MaxObjSize (§3.2)
	DefaultMaxAuthRetries      = 3
	DefaultMaxTransportRetries = 2
	DefaultMaxMessages         = 500
	DefaultRetryBackoff        = 200 * time.Millisecond
	DefaultServerID            = "dmgrid"
	DefaultAccount             = "dmgrid"
	DefaultFUMOResult          = 200
)

// Config describes one simulated device. Zero fields take the defaults named on each field.
type Config struct {
	// DevInfo (OMA-TS-DM_StdObj §7.1.3.2). DevID is also the SyncHdr Source LocURI.
	DevID string // e.g. "IMEI:490154203237518"
	Man   string // default "dmgrid"
	Mod   string // default "dmsim"
	DmV   string // default "1.2"
	Lang  string // default "en-US"

	// DevDetail (OMA-TS-DM_StdObj §7.1.3.3).
	DevTyp string // default "phone"
	OEM    string
	FwV    string // default "1.0.0"
	SwV    string // default "1.0.0"
	HwV    string // default "1.0"
	LrgObj bool   // ./DevDetail/LrgObj; the device handles large objects either way (§3.2)

	// Encoding of every message the device sends (default XML).
	Encoding syncml.Encoding
	// MaxMsgSize and MaxObjSize are advertised in every SyncHdr Meta (defaults 10000 and
	// 524288). The device never sends more than the server's own values.
	MaxMsgSize int
	MaxObjSize int

	// Client authentication (OMA-TS-DM_Security §5.1, PROTOCOL.md §7): TypeBasic, TypeMD5,
	// TypeMAC or "" for none. They seed ./DMAcc/<Account>/AppAuth/Client, which the device
	// reads at the start of each session, so a server may rotate them with Replace.
	AuthType     dmauth.Type
	ClientName   string
	ClientSecret string
	// ClientNonce is the nonce the server last gave this client (raw bytes, the
	// base64-decoded NextNonce), used to build md5 and MAC credentials.
	ClientNonce []byte

	// Server authentication: when ServerName and ServerSecret are set the device verifies
	// the Cred in the server's SyncHdr against ServerNonce and answers 212/401/407 with
	// its own Chal (§7.3). ServerNonce is the nonce this device last gave the server.
	ServerName   string
	ServerSecret string
	ServerNonce  []byte

	// ServerID is the DMAcc ServerID and the identity ACLs are checked against
	// (default ServerName, else "dmgrid"; PROTOCOL.md §12.17).
	ServerID string
	// Account names the DMAcc instance ./DMAcc/<Account> (default "dmgrid").
	Account string
	// ServerURL is where sessions start (the DMAcc AppAddr).
	ServerURL string

	// FUMOResult is the result code reported in the 1226 Generic Alert after a FUMO Exec
	// (default 200, OMA-TS-DM-FUMO §10.2.2 result codes).
	FUMOResult int
}

func (c Config) withDefaults() Config {
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&c.DevID, "IMEI:490154203237518")
	def(&c.Man, "dmgrid")
	def(&c.Mod, "dmsim")
	def(&c.DmV, "1.2")
	def(&c.Lang, "en-US")
	def(&c.DevTyp, "phone")
	def(&c.FwV, "1.0.0")
	def(&c.SwV, "1.0.0")
	def(&c.HwV, "1.0")
	def(&c.ServerID, c.ServerName)
	def(&c.ServerID, DefaultServerID)
	def(&c.Account, DefaultAccount)
	if c.Encoding == syncml.EncodingUnknown {
		c.Encoding = syncml.EncodingXML
	}
	if c.MaxMsgSize <= 0 {
		c.MaxMsgSize = DefaultMaxMsgSize
	}
	if c.MaxObjSize <= 0 {
		c.MaxObjSize = DefaultMaxObjSize
	}
	if c.FUMOResult == 0 {
		c.FUMOResult = DefaultFUMOResult
	}
	return c
}

// Initiator says who started a session.
type Initiator uint8

// Session initiators (OMA-TS-DM_Protocol §2.3.3: Alert 1201 vs 1200).
const (
	InitiatorClient Initiator = iota // Alert 1201
	InitiatorServer                  // Alert 1200, answering a Package 0
)

func (i Initiator) String() string {
	if i == InitiatorServer {
		return "server"
	}
	return "client"
}

// UIAlert is a user-interaction Alert received from the server (OMA-TS-DM_Protocol §2.5).
type UIAlert struct {
	Code    int      // 1100–1104
	Options string   // Data of the first Item (MINDT=, MAXDT=, DR=, ...)
	Items   []string // Data of the following Items (text, choices)
}

// UIResponse is the simulated user's answer.
type UIResponse struct {
	Status  int      // 200, 304 (Confirm "no"), 214 (cancelled), 406 (unsupported) ...
	Answers []string // Status Items: entered text or chosen item numbers
}

// Faults injects client-side failures (PROTOCOL.md §12.11, §3).
type Faults struct {
	// DropReplyAfterMsg N: the reply to our message N is discarded unread and the same
	// bytes are POSTed again, as a client does after losing a response.
	DropReplyAfterMsg int
	// RetransmitMsg N: message N is sent twice; both replies must be byte-identical.
	RetransmitMsg int
	// AbortAfterMsg N: after the reply to message N the device sends Alert 1223 + Final.
	AbortAfterMsg int
	// WrongPassword builds client credentials from a wrong secret.
	WrongPassword bool
}

// SessionOptions control one RunSession.
type SessionOptions struct {
	// Initiator selects Alert 1201 (client) or 1200 (server, answering a Package 0). A
	// non-empty SessionID with the zero Initiator also means a server-initiated session.
	Initiator Initiator
	// SessionID is the session id: for 1200 the Package 0 session id in upper-case hex
	// without leading zeros (PROTOCOL.md §2.1). Empty: the device picks one.
	SessionID string
	// ForceClientInitiated keeps Alert 1201 even though SessionID is set.
	ForceClientInitiated bool
	// MaxAuthRetries bounds Pkg1 re-sends after 401/407 (default 3).
	MaxAuthRetries int
	// MaxTransportRetries bounds re-POSTs after a transport error or HTTP 408/5xx
	// (default 2); RetryBackoff is the pause before each (default 200ms).
	MaxTransportRetries int
	RetryBackoff        time.Duration
	// MaxMessages stops a runaway session (default 500).
	MaxMessages int
	// UI answers user-interaction alerts; nil accepts everything with defaults.
	UI func(UIAlert) UIResponse
	// Observe, when set, sees every message body sent and received.
	Observe func(sent bool, msgID int, body []byte, enc syncml.Encoding)
	Faults  Faults
}

func (o SessionOptions) withDefaults() SessionOptions {
	if o.MaxAuthRetries <= 0 {
		o.MaxAuthRetries = DefaultMaxAuthRetries
	}
	if o.MaxTransportRetries < 0 {
		o.MaxTransportRetries = 0
	} else if o.MaxTransportRetries == 0 {
		o.MaxTransportRetries = DefaultMaxTransportRetries
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = DefaultRetryBackoff
	}
	if o.MaxMessages <= 0 {
		o.MaxMessages = DefaultMaxMessages
	}
	if o.SessionID != "" && !o.ForceClientInitiated {
		o.Initiator = InitiatorServer
	}
	return o
}

// Transport carries one DM message and returns the reply (PROTOCOL.md §1). hmacHeader is
// the x-syncml-hmac value to send, or "".
type Transport interface {
	Post(ctx context.Context, url string, body []byte, contentType string, hmacHeader string) (respBody []byte, respContentType string, err error)
}
