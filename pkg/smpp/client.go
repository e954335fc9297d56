package smpp

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Config configures a Client. Zero durations and sizes take the defaults
// noted on each field.
type Config struct {
	Addr       string   // host:port of the SMSC
	SystemID   string   // §5.2.1, max 15 characters
	Password   string   // §5.2.2, max 8 characters
	SystemType string   // §5.2.3, max 12 characters, often empty
	BindMode   BindMode // BindTransmitter (default) or BindTransceiver (§4.1)
	// AddrTON, AddrNPI and AddressRange go into the bind (§5.2.5-§5.2.7);
	// usually left zero.
	AddrTON      TON
	AddrNPI      NPI
	AddressRange string

	// Window is the maximum number of outstanding Submit requests
	// (default 10, max 1000).
	Window int
	// EnquireLink is the keep-alive interval (§4.11; default 30s).
	EnquireLink time.Duration
	// ResponseTimeout bounds the wait for every response, the bind, and each
	// write (default 10s).
	ResponseTimeout time.Duration
	// ReconnectMin and ReconnectMax bound the exponential re-bind back-off
	// (defaults 1s and 60s); each wait is jittered to [d/2, d].
	ReconnectMin time.Duration
	ReconnectMax time.Duration
	// ReceiptBuffer is the capacity of the Receipts channel (default 64).
	// When it is full, receipts are refused with ESME_RX_T_APPN so that the
	// SMSC redelivers them later.
	ReceiptBuffer int
	// Logger receives connection events; nil discards them.
	Logger *slog.Logger
	// Dial opens the TCP connection; nil uses net.Dialer with
	// ResponseTimeout as timeout. Useful for TLS.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

const (
	maxWindow = 1000
	// maxDiscard bounds how many octets of an over-long PDU (command_length
	// above MaxPDULength) are skipped to stay in sync; longer ones drop the
	// connection.
	maxDiscard = 1 << 20
)

func (cfg Config) withDefaults() (Config, error) {
	if cfg.Addr == "" {
		return cfg, errors.New("smpp: config: Addr is empty")
	}
	if cfg.BindMode != BindTransmitter && cfg.BindMode != BindTransceiver {
		return cfg, fmt.Errorf("smpp: config: BindMode %s: want transmitter or transceiver", cfg.BindMode)
	}
	def := func(d *time.Duration, v time.Duration, name string) error {
		if *d < 0 {
			return fmt.Errorf("smpp: config: %s is negative", name)
		}
		if *d == 0 {
			*d = v
		}
		return nil
	}
	for _, x := range []struct {
		d    *time.Duration
		v    time.Duration
		name string
	}{
		{&cfg.EnquireLink, 30 * time.Second, "EnquireLink"},
		{&cfg.ResponseTimeout, 10 * time.Second, "ResponseTimeout"},
		{&cfg.ReconnectMin, time.Second, "ReconnectMin"},
		{&cfg.ReconnectMax, 60 * time.Second, "ReconnectMax"},
	} {
		if err := def(x.d, x.v, x.name); err != nil {
			return cfg, err
		}
	}
	if cfg.ReconnectMax < cfg.ReconnectMin {
		cfg.ReconnectMax = cfg.ReconnectMin
	}
	if cfg.Window == 0 {
		cfg.Window = 10
	}
	if cfg.Window < 0 || cfg.Window > maxWindow {
		return cfg, fmt.Errorf("smpp: config: Window %d not in [1,%d]", cfg.Window, maxWindow)
	}
	if cfg.ReceiptBuffer == 0 {
		cfg.ReceiptBuffer = 64
	}
	if cfg.ReceiptBuffer < 0 {
		return cfg, errors.New("smpp: config: ReceiptBuffer is negative")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if _, err := Encode(cfg.bindPDU(1)); err != nil {
		return cfg, fmt.Errorf("smpp: config: %w", err)
	}
	return cfg, nil
}

func (cfg *Config) bindPDU(seq uint32) *Bind {
	return &Bind{
		Header:           Header{Sequence: seq},
		Mode:             cfg.BindMode,
		SystemID:         cfg.SystemID,
		Password:         cfg.Password,
		SystemType:       cfg.SystemType,
		InterfaceVersion: InterfaceVersion34,
		AddrTON:          cfg.AddrTON,
		AddrNPI:          cfg.AddrNPI,
		AddressRange:     cfg.AddressRange,
	}
}

// Client is an SMPP v3.4 ESME bound as transmitter or transceiver. It is
// safe for concurrent use.
type Client struct {
	cfg      Config
	log      *slog.Logger
	ctx      context.Context // cancelled by Close
	cancel   context.CancelFunc
	seq      atomic.Uint32
	window   chan struct{}
	receipts chan Receipt
	wg       sync.WaitGroup // supervisor and session goroutines

	mu      sync.Mutex
	sess    *session      // current bound session, nil while re-binding
	boundCh chan struct{} // closed while sess != nil
	closed  bool

	closeOnce sync.Once
}

// Dial connects to cfg.Addr and binds (§4.1). The first connect and bind are
// bounded by ctx and cfg.ResponseTimeout and their failure is returned
// (errors.Is(err, StatusInvPaswd) etc. for a rejected bind); afterwards the
// client re-binds on its own until Close.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg:      cfg,
		log:      cfg.Logger.With("smsc", cfg.Addr),
		window:   make(chan struct{}, cfg.Window),
		receipts: make(chan Receipt, cfg.ReceiptBuffer),
		boundCh:  make(chan struct{}),
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	s, err := c.connect(ctx)
	if err != nil {
		c.cancel()
		return nil, fmt.Errorf("smpp: dial %s: %w", cfg.Addr, err)
	}
	c.log.Info("smpp: bound", "mode", cfg.BindMode, "smsc_system_id", s.peerID)
	c.attach(s)
	c.wg.Add(1)
	go c.supervise(s)
	return c, nil
}

// Receipts returns the channel of parsed delivery receipts. It is closed by
// Close. Receipts only arrive on a transceiver bind.
func (c *Client) Receipts() <-chan Receipt { return c.receipts }

// Bound reports whether the client currently has a bound session.
func (c *Client) Bound() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sess != nil
}

// Submit sends sm as a submit_sm (§4.4.1) and returns the message_id of the
// matching submit_sm_resp (§4.4.2). sm's Header is ignored; the client
// allocates the sequence number. While the client is re-binding, Submit
// waits for the bind until ctx ends and then fails with ErrNotBound.
// A non-zero command_status is a *StatusError (matching ErrThrottled for
// ESME_RTHROTTLED / ESME_RMSGQFUL); see also ErrConnectionLost and
// ErrResponseTimeout. If ctx ends after the submit_sm was written, the
// ctx error is returned and, as with ErrResponseTimeout, the outcome is
// unknown.
func (c *Client) Submit(ctx context.Context, sm SubmitSM) (string, error) {
	sm.Header = Header{}
	raw, err := Encode(&sm)
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	p, err := c.request(ctx, raw)
	if err != nil {
		return "", fmt.Errorf("submit: %w", err)
	}
	switch v := p.(type) {
	case *SubmitSMResp:
		if v.Status != StatusOK {
			return "", fmt.Errorf("submit: %w", &StatusError{Command: CmdSubmitSM, Status: v.Status})
		}
		return v.MessageID, nil
	case *GenericNack:
		return "", fmt.Errorf("submit: %w", &StatusError{Command: CmdSubmitSM, Nack: true, Status: v.Status})
	}
	return "", fmt.Errorf("submit: unexpected response %s", p.CommandID())
}

// Close unbinds (§4.2, bounded by ResponseTimeout), closes the connection,
// stops every goroutine of the client and closes Receipts. In-flight and
// later calls fail with ErrClosed (or ErrConnectionLost). Only the first
// call does anything; it returns an unbind failure, if any.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.mu.Lock()
		c.closed = true
		s := c.sess
		c.mu.Unlock()
		if s != nil {
			raw, _ := Encode(&Unbind{})
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.ResponseTimeout)
			p, uerr := s.roundTrip(ctx, raw)
			cancel()
			switch {
			case uerr != nil:
				err = fmt.Errorf("smpp: close: unbind: %w", uerr)
			case p.Hdr().Status != StatusOK:
				err = fmt.Errorf("smpp: close: %w", &StatusError{Command: CmdUnbind, Status: p.Hdr().Status})
			}
			s.close(ErrClosed)
		}
		c.cancel()
		c.wg.Wait()
		close(c.receipts)
	})
	return err
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// nextSeq allocates a sequence_number in [1, MaxSequence] (§5.1.4).
func (c *Client) nextSeq() uint32 {
	for {
		old := c.seq.Load()
		n := old + 1
		if n > MaxSequence {
			n = 1
		}
		if c.seq.CompareAndSwap(old, n) {
			return n
		}
	}
}

// request sends an encoded request within the window and returns its
// response PDU.
func (c *Client) request(ctx context.Context, raw []byte) (PDU, error) {
	select {
	case c.window <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for window: %w", ctx.Err())
	case <-c.ctx.Done():
		return nil, ErrClosed
	}
	defer func() { <-c.window }()
	for {
		s, err := c.waitBound(ctx)
		if err != nil {
			return nil, err
		}
		p, err := s.roundTrip(ctx, raw)
		if errors.Is(err, errNotSent) {
			continue // the session ended before the write; wait for the next
		}
		if err != nil && c.ctx.Err() != nil {
			return nil, fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return p, err
	}
}

// waitBound returns the current session, waiting for a re-bind until ctx
// ends.
func (c *Client) waitBound(ctx context.Context) (*session, error) {
	for {
		c.mu.Lock()
		s, ch, closed := c.sess, c.boundCh, c.closed
		c.mu.Unlock()
		if closed {
			return nil, ErrClosed
		}
		if s != nil {
			return s, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: %w", ErrNotBound, ctx.Err())
		case <-c.ctx.Done():
			return nil, ErrClosed
		}
	}
}

// attach makes s the current session and starts its goroutines; it refuses
// (false) once Close has begun.
func (c *Client) attach(s *session) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.sess = s
	close(c.boundCh)
	c.wg.Add(2)
	go s.readLoop()
	go s.keepalive()
	return true
}

// detach forgets s if it is current (called once per session, from close).
func (c *Client) detach(s *session) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sess == s {
		c.sess = nil
		c.boundCh = make(chan struct{})
	}
}

// supervise waits for the current session to end and re-binds with
// exponential back-off until Close.
func (c *Client) supervise(s *session) {
	defer c.wg.Done()
	delay := c.cfg.ReconnectMin
	for {
		select {
		case <-s.done:
		case <-c.ctx.Done():
			return
		}
		if c.isClosed() {
			return
		}
		if time.Since(s.started) > c.cfg.ReconnectMax {
			delay = c.cfg.ReconnectMin
		}
		c.log.Warn("smpp: connection lost", "err", s.err())
		for attempt := 1; ; attempt++ {
			wait := delay/2 + rand.N(delay/2+1)
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-c.ctx.Done():
				t.Stop()
				return
			}
			delay = min(delay*2, c.cfg.ReconnectMax)
			ns, err := c.connect(c.ctx)
			if err == nil {
				if !c.attach(ns) {
					ns.close(ErrClosed)
					return
				}
				c.log.Info("smpp: re-bound", "attempt", attempt, "smsc_system_id", ns.peerID)
				s = ns
				break
			}
			if c.ctx.Err() != nil {
				return
			}
			c.log.Warn("smpp: re-bind failed", "attempt", attempt, "err", err, "next", delay)
		}
	}
}

// connect dials and binds a new session.
func (c *Client) connect(ctx context.Context) (*session, error) {
	dial := c.cfg.Dial
	if dial == nil {
		d := &net.Dialer{Timeout: c.cfg.ResponseTimeout}
		dial = d.DialContext
	}
	conn, err := dial(ctx, "tcp", c.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	s := &session{
		c:       c,
		conn:    conn,
		br:      bufio.NewReaderSize(conn, 4096),
		started: time.Now(),
		pending: make(map[uint32]waiter),
		done:    make(chan struct{}),
	}
	if err := s.bind(ctx); err != nil {
		_ = conn.Close()
		return nil, err
	}
	return s, nil
}

// errNotSent: the session was already closed, nothing was written.
var errNotSent = errors.New("smpp: session closed before write")

type result struct {
	p   PDU
	err error
}

type waiter struct {
	cmd CommandID
	ch  chan result // buffered 1, written at most once
}

// session is one TCP connection and bind.
type session struct {
	c       *Client
	conn    net.Conn
	br      *bufio.Reader // owned by bind, then by readLoop
	buf     []byte        // frame buffer, owned like br
	started time.Time
	peerID  string

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	pending map[uint32]waiter // nil once closed
	cause   error

	done chan struct{}
	once sync.Once
}

func (s *session) err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cause
}

// close ends the session once: it fails pending requests (their waiters see
// done), closes the connection and detaches from the client.
func (s *session) close(cause error) {
	s.once.Do(func() {
		s.mu.Lock()
		s.cause = cause
		s.pending = nil
		s.mu.Unlock()
		close(s.done)
		_ = s.conn.Close()
		s.c.detach(s)
	})
}

// bind sends the bind request and waits for its response (§4.1), answering
// enquire_link meanwhile and ignoring anything else; bounded by ctx and
// ResponseTimeout.
func (s *session) bind(ctx context.Context) error {
	cfg := &s.c.cfg
	stop := context.AfterFunc(ctx, func() { _ = s.conn.SetDeadline(time.Unix(1, 0)) })
	if err := s.conn.SetDeadline(time.Now().Add(cfg.ResponseTimeout)); err != nil {
		stop()
		return fmt.Errorf("bind: %w", err)
	}
	req := cfg.bindPDU(s.c.nextSeq())
	err := s.bindExchange(req)
	if !stop() || ctx.Err() != nil {
		return fmt.Errorf("bind: %w", context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	if err := s.conn.SetDeadline(time.Time{}); err != nil {
		return fmt.Errorf("bind: %w", err)
	}
	return nil
}

func (s *session) bindExchange(req *Bind) error {
	raw, err := Encode(req)
	if err != nil {
		return err
	}
	if _, err := s.conn.Write(raw); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	for {
		raw, derr, _, err := s.readFrame()
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if derr != nil {
			return derr
		}
		p, err := Decode(raw)
		if err != nil {
			return err
		}
		switch v := p.(type) {
		case *BindResp:
			if v.Sequence != req.Sequence {
				continue
			}
			if v.Status != StatusOK {
				return &StatusError{Command: req.CommandID(), Status: v.Status}
			}
			if v.Mode != req.Mode {
				return fmt.Errorf("got %s for %s", v.CommandID(), req.CommandID())
			}
			s.peerID = v.SystemID
			return nil
		case *GenericNack:
			if v.Sequence == req.Sequence {
				return &StatusError{Command: req.CommandID(), Nack: true, Status: v.Status}
			}
		case *EnquireLink:
			raw, _ := Encode(&EnquireLinkResp{Header: Header{Sequence: v.Sequence}})
			if _, err := s.conn.Write(raw); err != nil {
				return fmt.Errorf("write: %w", err)
			}
		}
	}
}

// readFrame reads one PDU's bytes (valid until the next call). A bad
// command_length gives a *DecodeError; fatal means the stream cannot be
// resynchronised (command_length below the header size, or more than
// maxDiscard octets to skip).
func (s *session) readFrame() (raw []byte, derr *DecodeError, fatal bool, err error) {
	var h [HeaderLen]byte
	if _, err := io.ReadFull(s.br, h[:]); err != nil {
		return nil, nil, false, err
	}
	n := binary.BigEndian.Uint32(h[0:])
	id := CommandID(binary.BigEndian.Uint32(h[4:]))
	seq := binary.BigEndian.Uint32(h[12:])
	if n < HeaderLen || n > MaxPDULength {
		derr = &DecodeError{HeaderValid: true, CommandID: id, Sequence: seq, Status: StatusInvCmdLen,
			Field: "command_length", Err: ErrInvalidLength}
		if n < HeaderLen || n-HeaderLen > maxDiscard {
			return nil, derr, true, nil
		}
		if _, err := io.CopyN(io.Discard, s.br, int64(n-HeaderLen)); err != nil {
			return nil, nil, false, err
		}
		return nil, derr, false, nil
	}
	if cap(s.buf) < int(n) {
		s.buf = make([]byte, n, max(int(n), 512))
	}
	buf := s.buf[:n]
	copy(buf, h[:])
	if _, err := io.ReadFull(s.br, buf[HeaderLen:]); err != nil {
		return nil, nil, false, err
	}
	return buf, nil, false, nil
}

// write sends raw under the write lock with a deadline; a failure closes
// the session. errNotSent means the session had already ended.
func (s *session) write(raw []byte) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	select {
	case <-s.done:
		return errNotSent
	default:
	}
	if err := s.conn.SetWriteDeadline(time.Now().Add(s.c.cfg.ResponseTimeout)); err != nil {
		s.close(fmt.Errorf("write: %w", err))
		return err
	}
	if _, err := s.conn.Write(raw); err != nil {
		err = fmt.Errorf("write: %w", err)
		s.close(err)
		return err
	}
	return nil
}

// send encodes and writes a PDU (responses; the caller sets the sequence).
func (s *session) send(p PDU) {
	raw, err := Encode(p)
	if err == nil {
		err = s.write(raw)
	}
	if err != nil && !errors.Is(err, errNotSent) {
		s.c.log.Warn("smpp: send failed", "pdu", p.CommandID(), "err", err)
	}
}

// roundTrip assigns a sequence number to the encoded request raw, writes it
// and waits for the matching response or generic_nack.
func (s *session) roundTrip(ctx context.Context, raw []byte) (PDU, error) {
	cmd := CommandID(binary.BigEndian.Uint32(raw[4:]))
	seq := s.c.nextSeq()
	binary.BigEndian.PutUint32(raw[12:], seq)
	w := waiter{cmd: cmd, ch: make(chan result, 1)}
	s.mu.Lock()
	if s.pending == nil {
		s.mu.Unlock()
		return nil, errNotSent
	}
	s.pending[seq] = w
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.pending != nil {
			delete(s.pending, seq)
		}
		s.mu.Unlock()
	}()
	if err := s.write(raw); err != nil {
		if errors.Is(err, errNotSent) {
			return nil, errNotSent
		}
		return nil, fmt.Errorf("%w: %w", ErrConnectionLost, err)
	}
	t := time.NewTimer(s.c.cfg.ResponseTimeout)
	defer t.Stop()
	select {
	case r := <-w.ch:
		return r.p, r.err
	case <-s.done:
		select {
		case r := <-w.ch:
			return r.p, r.err
		default:
		}
		return nil, fmt.Errorf("%w: %w", ErrConnectionLost, s.err())
	case <-t.C:
		return nil, fmt.Errorf("%s seq %d: %w", cmd, seq, ErrResponseTimeout)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// complete hands a response to the request waiting for it. A response
// matches by sequence_number and command_id (request|0x80000000, §5.1.2.1)
// or is a generic_nack (§4.3).
func (s *session) complete(resp CommandID, seq uint32, r result) {
	s.mu.Lock()
	w, ok := s.pending[seq]
	if ok && (resp == CmdGenericNack || resp == w.cmd|0x80000000) {
		delete(s.pending, seq)
	} else {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		s.c.log.Debug("smpp: unmatched response", "pdu", resp, "seq", seq)
		return
	}
	w.ch <- r
}

// readLoop reads and dispatches PDUs until the connection fails. The read
// deadline is EnquireLink+2*ResponseTimeout: our own enquire_link makes
// the peer send something well within that.
func (s *session) readLoop() {
	defer s.c.wg.Done()
	idle := s.c.cfg.EnquireLink + 2*s.c.cfg.ResponseTimeout
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(idle))
		raw, derr, fatal, err := s.readFrame()
		if err != nil {
			s.close(fmt.Errorf("read: %w", err))
			return
		}
		if derr != nil {
			// §4.3: generic_nack for an invalid command_length; like any malformed
			// response, it also fails the request waiting for it.
			s.reject(derr)
			if fatal {
				s.close(fmt.Errorf("read: %w", derr))
				return
			}
			continue
		}
		p, err := Decode(raw)
		if err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				s.reject(de)
			}
			continue
		}
		s.dispatch(p)
	}
}

// reject answers a PDU whose header was read but which failed to decode.
// generic_nack answers ESME_RINVCMDLEN / ESME_RINVCMDID (§4.3); a
// deliver_sm with a bad field gets deliver_sm_resp with the field's status
// (§4.6.2). A generic_nack is never answered (that could loop), and a
// malformed response also fails the request waiting for it.
func (s *session) reject(de *DecodeError) {
	s.c.log.Warn("smpp: malformed PDU from peer", "err", de)
	if de.CommandID == CmdGenericNack {
		return
	}
	if _, known := commandNames[de.CommandID]; known && de.CommandID.IsResponse() {
		s.complete(de.CommandID, de.Sequence, result{err: de})
	}
	if de.CommandID == CmdDeliverSM && de.Status != StatusInvCmdLen && de.Status != StatusInvCmdID {
		s.send(&DeliverSMResp{Header: Header{Status: de.Status, Sequence: de.Sequence}})
		return
	}
	s.send(&GenericNack{Header: Header{Status: de.Status, Sequence: de.Sequence}})
}

func (s *session) dispatch(p PDU) {
	h := p.Hdr()
	switch v := p.(type) {
	case *SubmitSMResp, *EnquireLinkResp, *UnbindResp, *BindResp, *DeliverSMResp, *GenericNack:
		s.complete(p.CommandID(), h.Sequence, result{p: p})
	case *EnquireLink: // §4.11.2
		s.send(&EnquireLinkResp{Header: Header{Sequence: v.Sequence}})
	case *DeliverSM:
		s.deliver(v)
	case *Unbind: // §4.2.2: acknowledge, then the connection ends
		s.send(&UnbindResp{Header: Header{Sequence: v.Sequence}})
		s.close(errors.New("unbound by peer"))
	default: // bind, submit_sm: not valid towards an ESME
		s.send(&GenericNack{Header: Header{Status: StatusInvCmdID, Sequence: h.Sequence}})
	}
}

// deliver handles deliver_sm (§4.6): receipts go to Receipts; the
// deliver_sm_resp is ESME_RX_T_APPN when that channel is full so that the
// SMSC retries, ESME_ROK otherwise.
func (s *session) deliver(d *DeliverSM) {
	st := StatusOK
	if IsReceipt(d) {
		r, err := ParseReceipt(d)
		if err != nil {
			s.c.log.Warn("smpp: unusable delivery receipt", "err", err)
		} else {
			select {
			case s.c.receipts <- r:
			default:
				st = StatusXTAppn
				s.c.log.Warn("smpp: receipt buffer full, asking SMSC to retry", "message_id", r.MessageID)
			}
		}
	} else {
		s.c.log.Info("smpp: ignoring deliver_sm that is not a receipt", "esm_class", d.ESMClass, "source", d.Source.Addr)
	}
	s.send(&DeliverSMResp{Header: Header{Status: st, Sequence: d.Sequence}})
}

// keepalive sends enquire_link every EnquireLink (§4.11) and closes the
// session when one is not answered within ResponseTimeout.
func (s *session) keepalive() {
	defer s.c.wg.Done()
	t := time.NewTicker(s.c.cfg.EnquireLink)
	defer t.Stop()
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		}
		raw, _ := Encode(&EnquireLink{})
		p, err := s.roundTrip(s.c.ctx, raw)
		if err == nil && p.Hdr().Status != StatusOK {
			err = &StatusError{Command: CmdEnquireLink, Status: p.Hdr().Status, Nack: p.CommandID() == CmdGenericNack}
		}
		if err != nil {
			s.close(fmt.Errorf("enquire_link: %w", err))
			return
		}
	}
}
