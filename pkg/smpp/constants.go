package smpp

import "fmt"

// Sizes from SMPP v3.4 §3.2 (PDU format) and §5.2.21 (short_message).
const (
	// HeaderLen is the size of the PDU header: command_length, command_id,
	// command_status and sequence_number, four octets each (§3.2).
	HeaderLen = 16
	// MaxPDULength bounds command_length. The specification sets no upper
	// limit; 64 KiB covers a 64 KiB-less-header message_payload (§5.3.2.32)
	// and is what this package accepts and produces.
	MaxPDULength = 64 * 1024
	// MaxShortMessage is the largest sm_length (§5.2.21: 0-254).
	MaxShortMessage = 254
	// MaxSequence is the largest sequence_number an ESME allocates (§5.1.4:
	// 0x00000001-0x7FFFFFFF).
	MaxSequence = 0x7FFFFFFF
	// InterfaceVersion34 is the interface_version sent in a bind (§5.2.4).
	InterfaceVersion34 = 0x34
)

// Maximum C-octet string sizes, including the terminating NUL (§4 field
// tables; §5.2 for each field).
const (
	maxSystemID     = 16 // §5.2.1
	maxPassword     = 9  // §5.2.2
	maxSystemType   = 13 // §5.2.3
	maxAddressRange = 41 // §5.2.7
	maxServiceType  = 6  // §5.2.11
	maxAddr         = 21 // §5.2.8 source_addr / destination_addr
	maxTime         = 17 // §5.2.15 / §5.2.16 (NULL or 16 characters)
	maxMessageID    = 65 // §5.2.23
)

// CommandID is the command_id header field (§5.1.2.1). Response IDs have
// bit 31 set.
type CommandID uint32

// Command IDs implemented by this package (§5.1.2.1, table 5-1).
const (
	CmdGenericNack         CommandID = 0x80000000
	CmdBindReceiver        CommandID = 0x00000001
	CmdBindReceiverResp    CommandID = 0x80000001
	CmdBindTransmitter     CommandID = 0x00000002
	CmdBindTransmitterResp CommandID = 0x80000002
	CmdSubmitSM            CommandID = 0x00000004
	CmdSubmitSMResp        CommandID = 0x80000004
	CmdDeliverSM           CommandID = 0x00000005
	CmdDeliverSMResp       CommandID = 0x80000005
	CmdUnbind              CommandID = 0x00000006
	CmdUnbindResp          CommandID = 0x80000006
	CmdBindTransceiver     CommandID = 0x00000009
	CmdBindTransceiverResp CommandID = 0x80000009
	CmdEnquireLink         CommandID = 0x00000015
	CmdEnquireLinkResp     CommandID = 0x80000015
)

var commandNames = map[CommandID]string{
	CmdGenericNack:         "generic_nack",
	CmdBindReceiver:        "bind_receiver",
	CmdBindReceiverResp:    "bind_receiver_resp",
	CmdBindTransmitter:     "bind_transmitter",
	CmdBindTransmitterResp: "bind_transmitter_resp",
	CmdSubmitSM:            "submit_sm",
	CmdSubmitSMResp:        "submit_sm_resp",
	CmdDeliverSM:           "deliver_sm",
	CmdDeliverSMResp:       "deliver_sm_resp",
	CmdUnbind:              "unbind",
	CmdUnbindResp:          "unbind_resp",
	CmdBindTransceiver:     "bind_transceiver",
	CmdBindTransceiverResp: "bind_transceiver_resp",
	CmdEnquireLink:         "enquire_link",
	CmdEnquireLinkResp:     "enquire_link_resp",
}

// String returns the specification name, e.g. "submit_sm", or the hex value
// for IDs this package does not implement.
func (c CommandID) String() string {
	if n, ok := commandNames[c]; ok {
		return n
	}
	return fmt.Sprintf("command_id(0x%08X)", uint32(c))
}

// IsResponse reports whether c is a response ID (bit 31 set, §5.1.2.1).
func (c CommandID) IsResponse() bool { return c&0x80000000 != 0 }

// Status is the command_status header field (§5.1.3). A Status is an error,
// so errors.Is(err, StatusInvPaswd) works on errors returned by the client.
type Status uint32

// Command status values (§5.1.3, table 5-2). Only the ones this package
// produces or interprets are named; others print as hex.
const (
	StatusOK              Status = 0x00000000 // ESME_ROK
	StatusInvMsgLen       Status = 0x00000001 // ESME_RINVMSGLEN
	StatusInvCmdLen       Status = 0x00000002 // ESME_RINVCMDLEN
	StatusInvCmdID        Status = 0x00000003 // ESME_RINVCMDID
	StatusInvBndSts       Status = 0x00000004 // ESME_RINVBNDSTS
	StatusAlyBnd          Status = 0x00000005 // ESME_RALYBND
	StatusSysErr          Status = 0x00000008 // ESME_RSYSERR
	StatusInvSrcAdr       Status = 0x0000000A // ESME_RINVSRCADR
	StatusInvDstAdr       Status = 0x0000000B // ESME_RINVDSTADR
	StatusInvMsgID        Status = 0x0000000C // ESME_RINVMSGID
	StatusBindFail        Status = 0x0000000D // ESME_RBINDFAIL
	StatusInvPaswd        Status = 0x0000000E // ESME_RINVPASWD
	StatusInvSysID        Status = 0x0000000F // ESME_RINVSYSID
	StatusMsgQFul         Status = 0x00000014 // ESME_RMSGQFUL
	StatusInvSerTyp       Status = 0x00000015 // ESME_RINVSERTYP
	StatusInvESMClass     Status = 0x00000043 // ESME_RINVESMCLASS
	StatusSubmitFail      Status = 0x00000045 // ESME_RSUBMITFAIL
	StatusInvSysTyp       Status = 0x00000053 // ESME_RINVSYSTYP
	StatusThrottled       Status = 0x00000058 // ESME_RTHROTTLED
	StatusInvSched        Status = 0x00000061 // ESME_RINVSCHED
	StatusInvExpiry       Status = 0x00000062 // ESME_RINVEXPIRY
	StatusXTAppn          Status = 0x00000064 // ESME_RX_T_APPN
	StatusXPAppn          Status = 0x00000065 // ESME_RX_P_APPN
	StatusInvOptParStream Status = 0x000000C0 // ESME_RINVOPTPARSTREAM
	StatusOptParNotAllwd  Status = 0x000000C1 // ESME_ROPTPARNOTALLWD
	StatusInvParLen       Status = 0x000000C2 // ESME_RINVPARLEN
	StatusUnknownErr      Status = 0x000000FF // ESME_RUNKNOWNERR
)

var statusNames = map[Status]string{
	StatusOK:              "ESME_ROK",
	StatusInvMsgLen:       "ESME_RINVMSGLEN",
	StatusInvCmdLen:       "ESME_RINVCMDLEN",
	StatusInvCmdID:        "ESME_RINVCMDID",
	StatusInvBndSts:       "ESME_RINVBNDSTS",
	StatusAlyBnd:          "ESME_RALYBND",
	StatusSysErr:          "ESME_RSYSERR",
	StatusInvSrcAdr:       "ESME_RINVSRCADR",
	StatusInvDstAdr:       "ESME_RINVDSTADR",
	StatusInvMsgID:        "ESME_RINVMSGID",
	StatusBindFail:        "ESME_RBINDFAIL",
	StatusInvPaswd:        "ESME_RINVPASWD",
	StatusInvSysID:        "ESME_RINVSYSID",
	StatusMsgQFul:         "ESME_RMSGQFUL",
	StatusInvSerTyp:       "ESME_RINVSERTYP",
	StatusInvESMClass:     "ESME_RINVESMCLASS",
	StatusSubmitFail:      "ESME_RSUBMITFAIL",
	StatusInvSysTyp:       "ESME_RINVSYSTYP",
	StatusThrottled:       "ESME_RTHROTTLED",
	StatusInvSched:        "ESME_RINVSCHED",
	StatusInvExpiry:       "ESME_RINVEXPIRY",
	StatusXTAppn:          "ESME_RX_T_APPN",
	StatusXPAppn:          "ESME_RX_P_APPN",
	StatusInvOptParStream: "ESME_RINVOPTPARSTREAM",
	StatusOptParNotAllwd:  "ESME_ROPTPARNOTALLWD",
	StatusInvParLen:       "ESME_RINVPARLEN",
	StatusUnknownErr:      "ESME_RUNKNOWNERR",
}

// String returns the specification name, e.g. "ESME_RTHROTTLED".
func (s Status) String() string {
	if n, ok := statusNames[s]; ok {
		return n
	}
	return fmt.Sprintf("command_status(0x%08X)", uint32(s))
}

// Error makes a Status usable as an error value (see StatusError).
func (s Status) Error() string {
	return fmt.Sprintf("smpp: %s (0x%08X)", s.String(), uint32(s))
}

// Throttling reports whether s asks the ESME to slow down and retry later:
// ESME_RTHROTTLED or ESME_RMSGQFUL (§5.1.3).
func (s Status) Throttling() bool { return s == StatusThrottled || s == StatusMsgQFul }

// TON is the type of number of an address (§5.2.5).
type TON uint8

// Type of number values (§5.2.5).
const (
	TONUnknown         TON = 0
	TONInternational   TON = 1
	TONNational        TON = 2
	TONNetworkSpecific TON = 3
	TONSubscriber      TON = 4
	TONAlphanumeric    TON = 5
	TONAbbreviated     TON = 6
)

// NPI is the numbering plan indicator of an address (§5.2.6).
type NPI uint8

// Numbering plan values (§5.2.6).
const (
	NPIUnknown  NPI = 0
	NPIISDN     NPI = 1 // E.163/E.164
	NPIData     NPI = 3 // X.121
	NPITelex    NPI = 4
	NPILand     NPI = 6 // E.212
	NPINational NPI = 8
	NPIPrivate  NPI = 9
	NPIERMES    NPI = 10
	NPIInternet NPI = 14
	NPIWAP      NPI = 18
)

// esm_class bits (§5.2.12).
const (
	ESMModeDefault        = 0x00 // messaging mode: SMSC default
	ESMModeDatagram       = 0x01
	ESMModeForward        = 0x02
	ESMModeStoreForward   = 0x03
	ESMTypeMask           = 0x3C // message type bits 5-2
	ESMTypeDeliveryRcpt   = 0x04 // SMSC delivery receipt (deliver_sm only)
	ESMTypeDeliveryAck    = 0x08
	ESMTypeUserAck        = 0x10
	ESMTypeIntermediate   = 0x20 // intermediate delivery notification
	ESMFeatureUDHI        = 0x40 // UDH indicator: short_message starts with a UDH
	ESMFeatureReplyPath   = 0x80
	ESMFeatureUDHIAndPath = 0xC0
)

// data_coding values used here (§5.2.19).
const (
	DataCodingDefault = 0x00 // SMSC default alphabet
	DataCodingIA5     = 0x01 // IA5 (CCITT T.50)/ASCII
	DataCodingBinary  = 0x04 // 8-bit binary
	DataCodingLatin1  = 0x03
	DataCodingUCS2    = 0x08
)

// registered_delivery bits (§5.2.17).
const (
	RegDeliveryNone        = 0x00
	RegDeliveryReceipt     = 0x01 // SMSC receipt on final success or failure
	RegDeliveryFailureOnly = 0x02 // SMSC receipt on failure only
	RegDeliveryIntermed    = 0x10 // intermediate notification requested
)

// MessageState is the message_state TLV value (§5.3.2.35; the same values as
// query_sm_resp, §5.2.28).
type MessageState uint8

// Message states (§5.2.28, table 5-6).
const (
	StateUnset         MessageState = 0 // not present
	StateEnroute       MessageState = 1
	StateDelivered     MessageState = 2
	StateExpired       MessageState = 3
	StateDeleted       MessageState = 4
	StateUndeliverable MessageState = 5
	StateAccepted      MessageState = 6
	StateUnknown       MessageState = 7
	StateRejected      MessageState = 8
)

var stateNames = [...]string{"", "ENROUTE", "DELIVERED", "EXPIRED", "DELETED", "UNDELIVERABLE", "ACCEPTED", "UNKNOWN", "REJECTED"}

// String returns the specification name, e.g. "DELIVERED".
func (m MessageState) String() string {
	if int(m) < len(stateNames) && m != 0 {
		return stateNames[m]
	}
	return fmt.Sprintf("message_state(%d)", uint8(m))
}

// Final reports whether m is a final state (anything but ENROUTE, ACCEPTED
// and unset).
func (m MessageState) Final() bool {
	switch m {
	case StateDelivered, StateExpired, StateDeleted, StateUndeliverable, StateRejected, StateUnknown:
		return true
	}
	return false
}
