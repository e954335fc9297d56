package smpp

import (
	"fmt"
	"strings"
)

// Receipt is a parsed SMSC delivery receipt: a deliver_sm with esm_class
// message type 0x04 (or 0x20, intermediate notification) (§5.2.12). The id
// and state come from the receipted_message_id and message_state TLVs
// (§5.3.2.12, §5.3.2.35) when present, otherwise from the text form of
// Appendix B:
//
//	id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...
type Receipt struct {
	MessageID    string       // the id returned in submit_sm_resp
	State        MessageState // StateUnset if neither TLV nor stat: gave one
	Stat         string       // "stat:" value, e.g. "DELIVRD"; empty if absent
	Err          string       // "err:" value, e.g. "000"
	Submitted    string       // "sub:" value
	Delivered    string       // "dlvrd:" value
	SubmitDate   string       // "submit date:" value, YYMMDDhhmm[ss], SMSC local time
	DoneDate     string       // "done date:" value
	Text         string       // "text:" value
	Source       Address      // deliver_sm source: the handset the message went to
	Dest         Address      // deliver_sm destination: the original sender
	Intermediate bool         // esm_class message type 0x20
	NetworkError []byte       // network_error_code TLV (§5.3.2.31), if any
}

// statStates maps the Appendix B "stat:" words to message states (§5.2.28).
var statStates = map[string]MessageState{
	"ENROUTE": StateEnroute,
	"DELIVRD": StateDelivered,
	"EXPIRED": StateExpired,
	"DELETED": StateDeleted,
	"UNDELIV": StateUndeliverable,
	"ACCEPTD": StateAccepted,
	"UNKNOWN": StateUnknown,
	"REJECTD": StateRejected,
}

// IsReceipt reports whether d's esm_class marks it as a delivery receipt or
// intermediate notification (§5.2.12).
func IsReceipt(d *DeliverSM) bool {
	t := d.ESMClass & ESMTypeMask
	return t == ESMTypeDeliveryRcpt || t == ESMTypeIntermediate
}

// ParseReceipt extracts a Receipt from a deliver_sm. It fails with
// ErrNotReceipt for other deliver_sm and with ErrMalformedReceipt when no
// message id can be found.
func ParseReceipt(d *DeliverSM) (Receipt, error) {
	if !IsReceipt(d) {
		return Receipt{}, fmt.Errorf("smpp: parse receipt: esm_class 0x%02X: %w", d.ESMClass, ErrNotReceipt)
	}
	r := Receipt{
		Source:       d.Source,
		Dest:         d.Dest,
		Intermediate: d.ESMClass&ESMTypeMask == ESMTypeIntermediate,
	}
	text := d.ShortMessage
	if len(text) == 0 {
		text, _ = d.TLVs.Get(TagMessagePayload)
	}
	parseReceiptText(string(text), &r)
	if id, ok := d.TLVs.String(TagReceiptedMessageID); ok && id != "" {
		r.MessageID = id
	}
	if st, ok := d.TLVs.Uint(TagMessageState); ok {
		r.State = MessageState(st)
	} else if s, ok := statStates[strings.ToUpper(r.Stat)]; ok {
		r.State = s
	}
	if v, ok := d.TLVs.Get(TagNetworkErrorCode); ok {
		r.NetworkError = v
	}
	if r.MessageID == "" {
		return Receipt{}, fmt.Errorf("smpp: parse receipt: no receipted_message_id and no id: field: %w", ErrMalformedReceipt)
	}
	return r, nil
}

// receiptKeys are the Appendix B field names, lower case.
var receiptKeys = []string{"id:", "sub:", "dlvrd:", "submit date:", "done date:", "stat:", "err:"}

// parseReceiptText fills r from the Appendix B text form. Keys are matched
// case-insensitively at word starts; a value runs to the next key; "text:"
// takes the rest. Unknown words are ignored, missing fields stay empty.
func parseReceiptText(s string, r *Receipt) {
	lower := strings.ToLower(s)
	end := len(s)
	if i := findKey(lower, "text:", len(s)); i >= 0 {
		r.Text = s[i+len("text:"):]
		end = i
	}
	type hit struct{ pos, key int }
	var hits []hit
	for k, key := range receiptKeys {
		if i := findKey(lower, key, end); i >= 0 {
			hits = append(hits, hit{i, k})
		}
	}
	// Insertion sort by position (at most 7 hits).
	for i := 1; i < len(hits); i++ {
		for j := i; j > 0 && hits[j].pos < hits[j-1].pos; j-- {
			hits[j], hits[j-1] = hits[j-1], hits[j]
		}
	}
	for i, h := range hits {
		stop := end
		if i+1 < len(hits) {
			stop = hits[i+1].pos
		}
		start := h.pos + len(receiptKeys[h.key])
		if start > stop {
			continue // overlapping keys, cannot happen with this key set
		}
		v := strings.TrimSpace(s[start:stop])
		switch h.key {
		case 0:
			r.MessageID = v
		case 1:
			r.Submitted = v
		case 2:
			r.Delivered = v
		case 3:
			r.SubmitDate = v
		case 4:
			r.DoneDate = v
		case 5:
			r.Stat = v
		case 6:
			r.Err = v
		}
	}
}

// findKey returns the first index < end of key in s at the start of s or
// after a space, or -1.
func findKey(s, key string, end int) int {
	from := 0
	for from < end {
		i := strings.Index(s[from:end], key)
		if i < 0 {
			return -1
		}
		i += from
		if i == 0 || s[i-1] == ' ' {
			return i
		}
		from = i + 1
	}
	return -1
}
