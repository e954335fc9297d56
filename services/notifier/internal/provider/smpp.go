package provider

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/dmgrid/dmgrid/pkg/smpp"
)

// SMPP submits each segment as one binary submit_sm (SMPP 3.4 §4.4: esm_class UDHI 0x40,
// data_coding 8-bit 0x04, registered_delivery for a receipt) over a transceiver bind, so
// that the SMSC's delivery receipts (deliver_sm, §5.2.12) come back on the same session.
// The bind is made on the first Send and kept (the client re-binds by itself); a failed
// first bind is retried on the next Send.
type SMPP struct {
	cfg    smpp.Config
	source smpp.Address
	log    *slog.Logger

	mu       sync.Mutex
	client   *smpp.Client
	closed   bool
	receipts chan Receipt
	done     chan struct{}
	wg       sync.WaitGroup
}

// NewSMPP returns the adapter; source is the originator ("+49..." or up to 11 characters).
// cfg.BindMode is forced to transceiver.
func NewSMPP(cfg smpp.Config, source string, log *slog.Logger) (*SMPP, error) {
	src, err := smpp.ParseAddress(source)
	if err != nil {
		return nil, fmt.Errorf("smpp source address %q: %w", source, err)
	}
	cfg.BindMode = smpp.BindTransceiver
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &SMPP{cfg: cfg, source: src, log: log, receipts: make(chan Receipt, 256), done: make(chan struct{})}, nil
}

// Receipts returns delivery reports; closed by Close.
func (s *SMPP) Receipts() <-chan Receipt { return s.receipts }

// bound returns the client, dialling it if needed.
func (s *SMPP) bound(ctx context.Context) (*smpp.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, smpp.ErrClosed
	}
	if s.client != nil {
		return s.client, nil
	}
	c, err := smpp.Dial(ctx, s.cfg)
	if err != nil {
		return nil, err
	}
	s.client = c
	s.wg.Add(1)
	go s.forward(c)
	return c, nil
}

// forward turns the client's receipts into provider receipts until the client closes.
func (s *SMPP) forward(c *smpp.Client) {
	defer s.wg.Done()
	for r := range c.Receipts() {
		if r.Intermediate {
			continue
		}
		pr := Receipt{MessageID: r.MessageID, Status: r.Stat}
		switch r.State {
		case smpp.StateDelivered:
			pr.Delivered = true
		case smpp.StateExpired, smpp.StateDeleted, smpp.StateUndeliverable, smpp.StateRejected:
			pr.Failed = true
		default:
			continue
		}
		if pr.Status == "" {
			pr.Status = fmt.Sprint(r.State)
		}
		select {
		case s.receipts <- pr:
		case <-s.done:
			return
		}
	}
}

// Send submits every segment in order and returns the SMSC's message ids.
func (s *SMPP) Send(ctx context.Context, m Message) ([]string, error) {
	dst, err := smpp.ParseAddress(m.MSISDN)
	if err != nil {
		return nil, &Error{Provider: "smpp", Op: "destination", Err: permanent(err)}
	}
	c, err := s.bound(ctx)
	if err != nil {
		return nil, &Error{Provider: "smpp", Op: "bind", Err: err}
	}
	ids := make([]string, 0, len(m.UDHSegments))
	for i, seg := range m.UDHSegments {
		id, err := c.Submit(ctx, smpp.NewBinarySubmit(s.source, dst, seg, true))
		if err != nil {
			return ids, &Error{Provider: "smpp", Op: fmt.Sprintf("submit segment %d/%d", i+1, len(m.UDHSegments)), Err: classifySMPP(err)}
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// classifySMPP marks the statuses that say the message itself is wrong as permanent
// (§5.1.3); throttling, queue full, connection and system errors stay retryable.
func classifySMPP(err error) error {
	var se *smpp.StatusError
	if errors.As(err, &se) && !smpp.IsRetryable(err) {
		switch se.Status {
		case smpp.StatusInvDstAdr, smpp.StatusInvSrcAdr, smpp.StatusInvESMClass, smpp.StatusInvMsgLen:
			return permanent(err)
		}
	}
	return err
}

// Close unbinds and stops the receipt forwarding.
func (s *SMPP) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	c := s.client
	s.mu.Unlock()
	close(s.done)
	var err error
	if c != nil {
		err = c.Close()
	}
	// forward ends when the client's receipt channel closes or done is closed.
	s.wg.Wait()
	close(s.receipts)
	return err
}
