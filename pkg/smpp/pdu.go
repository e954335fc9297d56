package smpp

// Header holds the command_status and sequence_number of a PDU (§3.2,
// §5.1.3, §5.1.4). command_length and command_id are derived from the PDU
// type and body when encoding.
type Header struct {
	Status   Status
	Sequence uint32
}

// Hdr returns h; it is promoted to every PDU type.
func (h *Header) Hdr() *Header { return h }

// PDU is one of the PDU types of this package (a pointer to it). The set is
// closed: *Bind, *BindResp, *Unbind, *UnbindResp, *EnquireLink,
// *EnquireLinkResp, *SubmitSM, *SubmitSMResp, *DeliverSM, *DeliverSMResp,
// *GenericNack.
type PDU interface {
	// CommandID is the command_id this PDU is encoded with (§5.1.2.1).
	CommandID() CommandID
	// Hdr returns the PDU's header for reading or setting status/sequence.
	Hdr() *Header

	appendBody(e *encoder)
	decodeBody(d *decoder)
}

// BindMode selects the bind operation (§4.1).
type BindMode uint8

// Bind modes. The zero value is BindTransmitter.
const (
	BindTransmitter BindMode = iota // bind_transmitter (§4.1.1)
	BindTransceiver                 // bind_transceiver (§4.1.5)
	BindReceiver                    // bind_receiver (§4.1.3)
)

func (m BindMode) String() string {
	switch m {
	case BindTransmitter:
		return "transmitter"
	case BindTransceiver:
		return "transceiver"
	case BindReceiver:
		return "receiver"
	}
	return "bindmode(?)"
}

func (m BindMode) commandID() CommandID {
	switch m {
	case BindTransceiver:
		return CmdBindTransceiver
	case BindReceiver:
		return CmdBindReceiver
	}
	return CmdBindTransmitter
}

// Bind is bind_transmitter, bind_transceiver or bind_receiver, selected by
// Mode (§4.1.1, §4.1.3, §4.1.5; identical bodies).
type Bind struct {
	Header
	Mode             BindMode
	SystemID         string // §5.2.1, max 15 characters
	Password         string // §5.2.2, max 8
	SystemType       string // §5.2.3, max 12
	InterfaceVersion uint8  // §5.2.4, 0x34
	AddrTON          TON    // §5.2.5
	AddrNPI          NPI    // §5.2.6
	AddressRange     string // §5.2.7, max 40
}

// CommandID implements PDU.
func (p *Bind) CommandID() CommandID { return p.Mode.commandID() }

func (p *Bind) appendBody(e *encoder) {
	e.cstr("system_id", p.SystemID, maxSystemID)
	e.cstr("password", p.Password, maxPassword)
	e.cstr("system_type", p.SystemType, maxSystemType)
	e.u8(p.InterfaceVersion)
	e.u8(uint8(p.AddrTON))
	e.u8(uint8(p.AddrNPI))
	e.cstr("address_range", p.AddressRange, maxAddressRange)
}

func (p *Bind) decodeBody(d *decoder) {
	p.SystemID = d.cstr("system_id", maxSystemID, StatusInvSysID)
	p.Password = d.cstr("password", maxPassword, StatusInvPaswd)
	p.SystemType = d.cstr("system_type", maxSystemType, StatusInvSysTyp)
	p.InterfaceVersion = d.u8("interface_version")
	p.AddrTON = TON(d.u8("addr_ton"))
	p.AddrNPI = NPI(d.u8("addr_npi"))
	p.AddressRange = d.cstr("address_range", maxAddressRange, StatusInvCmdLen)
	d.end()
}

// BindResp is the response to a Bind (§4.1.2, §4.1.4, §4.1.6). The body may
// be absent when Status is not ESME_ROK; SCInterfaceVersion is carried as
// the sc_interface_version TLV in TLVs.
type BindResp struct {
	Header
	Mode     BindMode
	SystemID string // §5.2.1
	TLVs     TLVs
}

// CommandID implements PDU.
func (p *BindResp) CommandID() CommandID { return p.Mode.commandID() | 0x80000000 }

func (p *BindResp) appendBody(e *encoder) {
	e.cstr("system_id", p.SystemID, maxSystemID)
	e.tlvs(p.TLVs)
}

func (p *BindResp) decodeBody(d *decoder) {
	if d.empty() {
		return
	}
	p.SystemID = d.cstr("system_id", maxSystemID, StatusInvSysID)
	p.TLVs = d.tlvs()
}

// Unbind is unbind (§4.2.1); no body.
type Unbind struct{ Header }

// CommandID implements PDU.
func (p *Unbind) CommandID() CommandID  { return CmdUnbind }
func (p *Unbind) appendBody(*encoder)   {}
func (p *Unbind) decodeBody(d *decoder) { d.end() }

// UnbindResp is unbind_resp (§4.2.2); no body.
type UnbindResp struct{ Header }

// CommandID implements PDU.
func (p *UnbindResp) CommandID() CommandID  { return CmdUnbindResp }
func (p *UnbindResp) appendBody(*encoder)   {}
func (p *UnbindResp) decodeBody(d *decoder) { d.end() }

// EnquireLink is enquire_link (§4.11.1); no body.
type EnquireLink struct{ Header }

// CommandID implements PDU.
func (p *EnquireLink) CommandID() CommandID  { return CmdEnquireLink }
func (p *EnquireLink) appendBody(*encoder)   {}
func (p *EnquireLink) decodeBody(d *decoder) { d.end() }

// EnquireLinkResp is enquire_link_resp (§4.11.2); no body.
type EnquireLinkResp struct{ Header }

// CommandID implements PDU.
func (p *EnquireLinkResp) CommandID() CommandID  { return CmdEnquireLinkResp }
func (p *EnquireLinkResp) appendBody(*encoder)   {}
func (p *EnquireLinkResp) decodeBody(d *decoder) { d.end() }

// GenericNack is generic_nack (§4.3.1); no body. Status says why.
type GenericNack struct{ Header }

// CommandID implements PDU.
func (p *GenericNack) CommandID() CommandID  { return CmdGenericNack }
func (p *GenericNack) appendBody(*encoder)   {}
func (p *GenericNack) decodeBody(d *decoder) { d.end() }

// Address is an SME address with its type of number and numbering plan
// (§5.2.5, §5.2.6, §5.2.8). Addr is at most 20 characters.
type Address struct {
	TON  TON
	NPI  NPI
	Addr string
}

// SubmitSM is submit_sm (§4.4.1). DeliverSM has the same body (§4.6.1).
type SubmitSM struct {
	Header
	ServiceType          string  // §5.2.11, max 5 characters
	Source               Address // source_addr_ton/npi, source_addr
	Dest                 Address // dest_addr_ton/npi, destination_addr
	ESMClass             uint8   // §5.2.12
	ProtocolID           uint8   // §5.2.13
	PriorityFlag         uint8   // §5.2.14
	ScheduleDeliveryTime string  // §5.2.15, empty or 16 characters
	ValidityPeriod       string  // §5.2.16, empty or 16 characters
	RegisteredDelivery   uint8   // §5.2.17
	ReplaceIfPresent     uint8   // §5.2.18
	DataCoding           uint8   // §5.2.19
	SMDefaultMsgID       uint8   // §5.2.20
	ShortMessage         []byte  // §5.2.22, up to 254 octets incl. any UDH
	TLVs                 TLVs    // §4.4.1 optional parameters
}

// CommandID implements PDU.
func (p *SubmitSM) CommandID() CommandID  { return CmdSubmitSM }
func (p *SubmitSM) appendBody(e *encoder) { appendSM(e, p) }
func (p *SubmitSM) decodeBody(d *decoder) { decodeSM(d, p) }

// DeliverSM is deliver_sm (§4.6.1); the body is that of submit_sm.
type DeliverSM SubmitSM

// CommandID implements PDU.
func (p *DeliverSM) CommandID() CommandID  { return CmdDeliverSM }
func (p *DeliverSM) appendBody(e *encoder) { appendSM(e, (*SubmitSM)(p)) }
func (p *DeliverSM) decodeBody(d *decoder) { decodeSM(d, (*SubmitSM)(p)) }

func appendSM(e *encoder, p *SubmitSM) {
	e.cstr("service_type", p.ServiceType, maxServiceType)
	e.u8(uint8(p.Source.TON))
	e.u8(uint8(p.Source.NPI))
	e.cstr("source_addr", p.Source.Addr, maxAddr)
	e.u8(uint8(p.Dest.TON))
	e.u8(uint8(p.Dest.NPI))
	e.cstr("destination_addr", p.Dest.Addr, maxAddr)
	e.u8(p.ESMClass)
	e.u8(p.ProtocolID)
	e.u8(p.PriorityFlag)
	e.cstr("schedule_delivery_time", p.ScheduleDeliveryTime, maxTime)
	e.cstr("validity_period", p.ValidityPeriod, maxTime)
	e.u8(p.RegisteredDelivery)
	e.u8(p.ReplaceIfPresent)
	e.u8(p.DataCoding)
	e.u8(p.SMDefaultMsgID)
	if len(p.ShortMessage) > MaxShortMessage {
		e.fail("short_message", ErrFieldTooLong, "%d octets, max %d", len(p.ShortMessage), MaxShortMessage)
		return
	}
	if _, ok := p.TLVs.Get(TagMessagePayload); ok && len(p.ShortMessage) > 0 {
		// §5.3.2.32: message_payload and short_message must not both be used.
		e.fail("message_payload", ErrInvalidField, "short_message must be empty when message_payload is set")
		return
	}
	e.u8(uint8(len(p.ShortMessage)))
	e.octets(p.ShortMessage)
	e.tlvs(p.TLVs)
}

func decodeSM(d *decoder, p *SubmitSM) {
	p.ServiceType = d.cstr("service_type", maxServiceType, StatusInvSerTyp)
	p.Source.TON = TON(d.u8("source_addr_ton"))
	p.Source.NPI = NPI(d.u8("source_addr_npi"))
	p.Source.Addr = d.cstr("source_addr", maxAddr, StatusInvSrcAdr)
	p.Dest.TON = TON(d.u8("dest_addr_ton"))
	p.Dest.NPI = NPI(d.u8("dest_addr_npi"))
	p.Dest.Addr = d.cstr("destination_addr", maxAddr, StatusInvDstAdr)
	p.ESMClass = d.u8("esm_class")
	p.ProtocolID = d.u8("protocol_id")
	p.PriorityFlag = d.u8("priority_flag")
	p.ScheduleDeliveryTime = d.cstr("schedule_delivery_time", maxTime, StatusInvSched)
	p.ValidityPeriod = d.cstr("validity_period", maxTime, StatusInvExpiry)
	p.RegisteredDelivery = d.u8("registered_delivery")
	p.ReplaceIfPresent = d.u8("replace_if_present_flag")
	p.DataCoding = d.u8("data_coding")
	p.SMDefaultMsgID = d.u8("sm_default_msg_id")
	n := int(d.u8("sm_length"))
	if d.err == nil && n > MaxShortMessage {
		d.fail(d.off-1, "sm_length", StatusInvMsgLen, ErrFieldTooLong)
	}
	p.ShortMessage = d.octets("short_message", n)
	p.TLVs = d.tlvs()
}

// SubmitSMResp is submit_sm_resp (§4.4.2). The body is absent when Status
// is not ESME_ROK. TLVs are not defined by v3.4 for this response but are
// kept if an SMSC sends them.
type SubmitSMResp struct {
	Header
	MessageID string // §5.2.23, max 64 characters
	TLVs      TLVs
}

// CommandID implements PDU.
func (p *SubmitSMResp) CommandID() CommandID { return CmdSubmitSMResp }

func (p *SubmitSMResp) appendBody(e *encoder) {
	e.cstr("message_id", p.MessageID, maxMessageID)
	e.tlvs(p.TLVs)
}

func (p *SubmitSMResp) decodeBody(d *decoder) {
	if d.empty() {
		return
	}
	p.MessageID = d.cstr("message_id", maxMessageID, StatusInvMsgID)
	p.TLVs = d.tlvs()
}

// DeliverSMResp is deliver_sm_resp (§4.6.2); message_id is unused and set to
// NULL (§4.6.2) but decoded if present.
type DeliverSMResp SubmitSMResp

// CommandID implements PDU.
func (p *DeliverSMResp) CommandID() CommandID  { return CmdDeliverSMResp }
func (p *DeliverSMResp) appendBody(e *encoder) { (*SubmitSMResp)(p).appendBody(e) }
func (p *DeliverSMResp) decodeBody(d *decoder) { (*SubmitSMResp)(p).decodeBody(d) }

// newPDU returns an empty PDU for a command_id, or nil.
func newPDU(id CommandID) PDU {
	switch id {
	case CmdBindTransmitter:
		return &Bind{Mode: BindTransmitter}
	case CmdBindTransceiver:
		return &Bind{Mode: BindTransceiver}
	case CmdBindReceiver:
		return &Bind{Mode: BindReceiver}
	case CmdBindTransmitterResp:
		return &BindResp{Mode: BindTransmitter}
	case CmdBindTransceiverResp:
		return &BindResp{Mode: BindTransceiver}
	case CmdBindReceiverResp:
		return &BindResp{Mode: BindReceiver}
	case CmdUnbind:
		return &Unbind{}
	case CmdUnbindResp:
		return &UnbindResp{}
	case CmdEnquireLink:
		return &EnquireLink{}
	case CmdEnquireLinkResp:
		return &EnquireLinkResp{}
	case CmdGenericNack:
		return &GenericNack{}
	case CmdSubmitSM:
		return &SubmitSM{}
	case CmdSubmitSMResp:
		return &SubmitSMResp{}
	case CmdDeliverSM:
		return &DeliverSM{}
	case CmdDeliverSMResp:
		return &DeliverSMResp{}
	}
	return nil
}
