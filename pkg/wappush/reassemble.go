package wappush

import (
	"fmt"
	"sync"
	"time"
)

// Limits bounds a Reassembler. Zero fields take the defaults.
type Limits struct {
	// MaxPending is the most partial messages kept at once (default 64).
	// When a new message would exceed it, the oldest partial is dropped.
	MaxPending int
	// MaxBytes bounds the bytes held by partial messages: payload parts plus
	// originator keys (default 1 MiB). The oldest partials are dropped to
	// make room; a message that cannot fit alone is refused.
	MaxBytes int
	// MaxAge drops a partial message this long after its first segment
	// arrived (default 5 minutes).
	MaxAge time.Duration
}

// Default limits.
const (
	DefaultMaxPending = 64
	DefaultMaxBytes   = 1 << 20
	DefaultMaxAge     = 5 * time.Minute
)

type partKey struct {
	originator string
	ref        uint16
}

type partial struct {
	total, have int
	parts       [][]byte // index seq-1; nil = missing
	size        int      // bytes counted against MaxBytes
	first       time.Time
	dst, src    uint16
	hasPorts    bool
}

// Reassembler joins concatenated SMS (3GPP TS 23.040 §9.2.3.24.1) back into
// the WDP payload. Segments may arrive in any order; duplicates are ignored.
// Partial messages are keyed by (originator, reference) and bounded by
// Limits; age is measured with the caller's clock. It is safe for
// concurrent use.
type Reassembler struct {
	mu      sync.Mutex
	lim     Limits
	now     func() time.Time
	pending map[partKey]*partial
	bytes   int
}

// NewReassembler returns a Reassembler with the given limits. now is the
// clock used for MaxAge; nil means time.Now.
func NewReassembler(lim Limits, now func() time.Time) *Reassembler {
	if lim.MaxPending <= 0 {
		lim.MaxPending = DefaultMaxPending
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultMaxBytes
	}
	if lim.MaxAge <= 0 {
		lim.MaxAge = DefaultMaxAge
	}
	if now == nil {
		now = time.Now
	}
	return &Reassembler{lim: lim, now: now, pending: make(map[partKey]*partial)}
}

// Add takes the TP-User-Data (starting with the UDH) of one SMS from
// originator. It returns the whole payload and complete=true when ud is an
// unsegmented message or the last missing segment; (nil, false, nil) while
// parts are missing or when ud duplicates a part already held. User data
// over 140 bytes or with a malformed UDH is an *Error. A segment whose
// total or ports differ from the partial message with the same reference
// starts that message afresh (the reference was reused). The returned
// payload never aliases ud.
func (r *Reassembler) Add(originator string, ud []byte) (payload []byte, complete bool, err error) {
	if len(ud) > MaxUserData {
		return nil, false, &Error{Op: "reassemble", Offset: MaxUserData, Err: ErrTooLarge,
			Reason: fmt.Sprintf("user data of %d bytes (SMS max %d)", len(ud), MaxUserData)}
	}
	h, data, err := ParseUDH(ud)
	if err != nil {
		return nil, false, fmt.Errorf("reassemble from %q: %w", truncate(originator, 32), err)
	}
	if !h.Concatenated || h.Total == 1 {
		return append([]byte(nil), data...), true, nil
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	r.expireLocked(now)

	k := partKey{originator, h.Ref}
	p := r.pending[k]
	if p != nil && (p.total != int(h.Total) || p.hasPorts != h.HasPorts || p.dst != h.DstPort || p.src != h.SrcPort) {
		r.dropLocked(k, p)
		p = nil
	}
	if p == nil {
		for len(r.pending) >= r.lim.MaxPending {
			r.dropOldestLocked(partKey{}, false)
		}
		p = &partial{total: int(h.Total), parts: make([][]byte, h.Total), first: now,
			dst: h.DstPort, src: h.SrcPort, hasPorts: h.HasPorts, size: len(originator)}
		r.pending[k] = p
		r.bytes += p.size
	}
	i := int(h.Seq) - 1
	if p.parts[i] != nil {
		return nil, false, nil // duplicate
	}
	need := len(data) + 1 // +1 so that empty parts still count
	for r.bytes+need > r.lim.MaxBytes && len(r.pending) > 1 {
		r.dropOldestLocked(k, true)
	}
	if r.bytes+need > r.lim.MaxBytes {
		r.dropLocked(k, p)
		return nil, false, &Error{Op: "reassemble", Offset: -1, Err: ErrTooLarge,
			Reason: fmt.Sprintf("message %d from %q exceeds the %d-byte buffer", h.Ref, truncate(originator, 32), r.lim.MaxBytes)}
	}
	p.parts[i] = append(make([]byte, 0, need), data...)
	p.have++
	p.size += need
	r.bytes += need
	if p.have < p.total {
		return nil, false, nil
	}
	n := 0
	for _, part := range p.parts {
		n += len(part)
	}
	out := make([]byte, 0, n)
	for _, part := range p.parts {
		out = append(out, part...)
	}
	r.dropLocked(k, p)
	return out, true, nil
}

// Expire drops partial messages older than MaxAge by the clock and returns
// how many it dropped. Add does this too; call Expire to free memory when no
// segments arrive.
func (r *Reassembler) Expire() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.expireLocked(r.now())
}

// Pending returns the number of partial messages held.
func (r *Reassembler) Pending() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.pending)
}

func (r *Reassembler) expireLocked(now time.Time) int {
	n := 0
	for k, p := range r.pending {
		if now.Sub(p.first) > r.lim.MaxAge {
			r.dropLocked(k, p)
			n++
		}
	}
	return n
}

// dropOldestLocked drops the partial with the earliest first segment,
// except keep when skip is set.
func (r *Reassembler) dropOldestLocked(keep partKey, skip bool) {
	var (
		oldK  partKey
		oldP  *partial
		found bool
	)
	for k, p := range r.pending {
		if skip && k == keep {
			continue
		}
		if !found || p.first.Before(oldP.first) {
			oldK, oldP, found = k, p, true
		}
	}
	if found {
		r.dropLocked(oldK, oldP)
	}
}

func (r *Reassembler) dropLocked(k partKey, p *partial) {
	delete(r.pending, k)
	r.bytes -= p.size
}
