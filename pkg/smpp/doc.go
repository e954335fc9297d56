// Package smpp is a bounded SMPP v3.4 codec and ESME (client) used by the
// dmgrid notifier to send WAP Push notifications as binary SMS.
//
// References are to "Short Message Peer to Peer Protocol Specification
// v3.4", Issue 1.2 (12-Oct-1999): §3.2 PDU format, §4 PDU definitions,
// §5.1 header fields, §5.2 mandatory parameters, §5.3 optional parameters
// (TLVs), Appendix B delivery receipt format.
//
// # Codec
//
// Encode and Decode convert between the PDU types of this package and
// wire bytes. Decode never reads outside its input and never allocates in
// proportion to a length read from the wire beyond the PDU itself: the
// command_length must lie in [HeaderLen, MaxPDULength], every C-octet
// string has the maximum length of its field (§4 tables), short_message is
// at most 254 octets (§5.2.21) and every TLV must fit the PDU (§3.2.4.1).
// A failure is a *DecodeError carrying the byte offset, the header (when it
// could be read) and the command_status a peer should be answered with
// (ESME_RINVCMDLEN, ESME_RINVCMDID, ...). Unknown TLVs are kept in order
// so that a PDU can be re-encoded unchanged.
//
// # Client
//
// Dial binds as transmitter or transceiver (§4.1) and keeps the bind alive
// with enquire_link (§4.11), answers the SMSC's enquire_link, unbind and
// deliver_sm, and re-binds with exponential back-off after the connection
// drops. Submit sends one submit_sm (§4.4) and waits for the submit_sm_resp
// with the same sequence_number; at most Config.Window requests are
// outstanding. ESME_RTHROTTLED and ESME_RMSGQFUL surface as errors matching
// ErrThrottled; a Submit while the client is re-binding waits for the bind
// or its context and then fails with ErrNotBound. Delivery receipts
// (esm_class 0x04, §5.2.12; Appendix B) are parsed and delivered on
// Receipts. Close unbinds (§4.2) and stops every goroutine the client
// started.
//
// Binary WAP Push: wappush.Segments splits a WSP push PDU into SMS user data
// with the WDP port and concatenation headers, and NewBinarySubmit builds
// the matching submit_sm (esm_class UDHI 0x40, data_coding 0x04).
package smpp
