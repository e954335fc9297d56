package smpp

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/pkg/wappush"
)

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return nil
}

func dialPeer(t *testing.T, p *peer, mod func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		Addr:            p.addr(),
		SystemID:        "dmgrid",
		Password:        "secret",
		SystemType:      "OMADM",
		BindMode:        BindTransceiver,
		ResponseTimeout: 3 * time.Second,
		ReconnectMin:    20 * time.Millisecond,
		ReconnectMax:    200 * time.Millisecond,
		Logger:          testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// wspPush is a WSP Push PDU (WAP-230 §8.2.4.1) carrying an OMA DM
// notification (content type application/vnd.syncml.notification, 0x44)
// padded to 200 octets so that it needs two SMS segments.
func wspPush() []byte {
	b := []byte{0x01, 0x06, 0x03, 0xC4, 0xAF, 0x84}
	for len(b) < 200 {
		b = append(b, byte(len(b)))
	}
	return b
}

func waitReceipts(t *testing.T, c *Client, n int) []Receipt {
	t.Helper()
	var out []Receipt
	timeout := time.After(5 * time.Second)
	for len(out) < n {
		select {
		case r, ok := <-c.Receipts():
			if !ok {
				t.Fatal("Receipts closed")
			}
			out = append(out, r)
		case <-timeout:
			t.Fatalf("got %d of %d receipts", len(out), n)
		}
	}
	return out
}

// TestPeerWAPPushBinary binds, submits a two-segment binary WAP Push and
// checks field by field what Net::SMPP decoded, then the receipts.
func TestPeerWAPPushBinary(t *testing.T) {
	p := startPeer(t, freePort(t), "--system-id", "dmgrid", "--password", "secret")
	c := dialPeer(t, p, nil)

	bind := p.waitN("bind", 1, 5*time.Second)[0]
	if bind.CommandID != uint32(CmdBindTransceiver) || bind.SystemID != "dmgrid" || bind.Password != "secret" ||
		bind.SystemType != "OMADM" || bind.InterfaceVersion != 0x34 || bind.Status != 0 {
		t.Fatalf("peer decoded bind %+v", bind)
	}

	src, _ := ParseAddress("+4930123456")
	dst, _ := ParseAddress("+4915112345678")
	segs, err := wappush.Segments(wspPush(), 0x5A, wappush.PortWAPPush, wappush.PortWSPConnectionless)
	if err != nil || len(segs) != 2 {
		t.Fatalf("%d segments, %v", len(segs), err)
	}
	var ids []string
	for _, seg := range segs {
		id, err := c.Submit(ctxT(t, 5*time.Second), NewBinarySubmit(src, dst, seg.UD, true))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}

	evs := p.waitN("submit_sm", 2, 5*time.Second)
	for i, ev := range evs {
		seg := segs[i].UD
		udh := fmt.Sprintf("0b05040b8423f000035a02%02x", i+1)
		wantLen := HeaderLen + 1 + 2 + len("4930123456") + 1 + 2 + len("4915112345678") + 1 + 3 + 2 + 5 + len(seg)
		switch {
		case ev.ESMClass != 0x40, ev.DataCoding != 0x04, ev.RegDelivery != 1:
			t.Errorf("segment %d: esm_class %#x data_coding %#x registered_delivery %d", i, ev.ESMClass, ev.DataCoding, ev.RegDelivery)
		case ev.SourceAddr != "4930123456", ev.SourceAddrTON != 1, ev.SourceAddrNPI != 1:
			t.Errorf("segment %d: source %q ton %d npi %d", i, ev.SourceAddr, ev.SourceAddrTON, ev.SourceAddrNPI)
		case ev.DestinationAddr != "4915112345678", ev.DestAddrTON != 1, ev.DestAddrNPI != 1:
			t.Errorf("segment %d: dest %q ton %d npi %d", i, ev.DestinationAddr, ev.DestAddrTON, ev.DestAddrNPI)
		case ev.ShortMessage != hex.EncodeToString(seg), ev.SMLength != len(seg):
			t.Errorf("segment %d: short_message %s (len %d), want %x", i, ev.ShortMessage, ev.SMLength, seg)
		case !strings.HasPrefix(ev.ShortMessage, udh):
			t.Errorf("segment %d: UDH %s, want %s", i, ev.ShortMessage[:24], udh)
		case ev.ServiceType != "", ev.ProtocolID != 0, ev.PriorityFlag != 0, ev.ScheduleTime != "",
			ev.ValidityPeriod != "", ev.ReplaceIfPresent != 0, ev.SMDefaultMsgID != 0, len(ev.TLVs) != 0:
			t.Errorf("segment %d: unexpected defaults %+v", i, ev)
		case ev.CommandLength != wantLen:
			t.Errorf("segment %d: command_length %d, want %d", i, ev.CommandLength, wantLen)
		case ev.MessageID != ids[i]:
			t.Errorf("segment %d: peer issued %q, Submit returned %q", i, ev.MessageID, ids[i])
		}
	}
	if want := segs[0].UD[12:]; len(want) != 128 {
		t.Fatalf("first segment carries %d payload octets", len(want))
	}

	rs := waitReceipts(t, c, 2)
	got := map[string]Receipt{}
	for _, r := range rs {
		got[r.MessageID] = r
	}
	for _, id := range ids {
		r, ok := got[id]
		if !ok {
			t.Fatalf("no receipt for %s; got %+v", id, rs)
		}
		if r.State != StateDelivered || r.Stat != "DELIVRD" || r.Err != "000" ||
			r.Source != dst || r.Dest != src || r.Text != "push" {
			t.Errorf("receipt %+v", r)
		}
	}
	// Net::SMPP decoded our deliver_sm_resp for each receipt, ESME_ROK.
	sent := p.waitN("deliver_sm_sent", 2, 5*time.Second)
	resps := p.waitN("deliver_sm_resp", 2, 5*time.Second)
	for i := range sent {
		if resps[i].Seq != sent[i].Seq || resps[i].Status != 0 {
			t.Errorf("deliver_sm seq %d answered by %+v", sent[i].Seq, resps[i])
		}
	}
}

// TestPeerReceiptForms: the id comes from the text alone or the TLV alone.
func TestPeerReceiptForms(t *testing.T) {
	for _, mode := range []string{"text", "tlv"} {
		t.Run(mode, func(t *testing.T) {
			p := startPeer(t, freePort(t), "--receipt", mode)
			c := dialPeer(t, p, nil)
			src, _ := ParseAddress("DMGRID")
			dst, _ := ParseAddress("+4915112345678")
			id, err := c.Submit(ctxT(t, 5*time.Second), NewBinarySubmit(src, dst, []byte{0x06, 0x05, 0x04, 0x0B, 0x84, 0x23, 0xF0, 0xAA}, true))
			if err != nil {
				t.Fatal(err)
			}
			if ev := p.waitN("submit_sm", 1, 5*time.Second)[0]; ev.SourceAddr != "DMGRID" || ev.SourceAddrTON != 5 || ev.SourceAddrNPI != 0 {
				t.Fatalf("alphanumeric source decoded as %+v", ev)
			}
			r := waitReceipts(t, c, 1)[0]
			if r.MessageID != id || r.State != StateDelivered {
				t.Fatalf("receipt %+v for %s", r, id)
			}
			if mode == "tlv" && r.Stat != "" {
				t.Fatalf("tlv-only receipt has stat %q", r.Stat)
			}
		})
	}
}

// TestPeerThrottle: ESME_RTHROTTLED / ESME_RMSGQFUL surface as ErrThrottled
// and a later retry succeeds.
func TestPeerThrottle(t *testing.T) {
	for _, st := range []Status{StatusThrottled, StatusMsgQFul} {
		t.Run(st.String(), func(t *testing.T) {
			p := startPeer(t, freePort(t), "--throttle", "2", "--throttle-status", fmt.Sprintf("0x%x", uint32(st)), "--receipt", "none")
			c := dialPeer(t, p, func(c *Config) { c.BindMode = BindTransmitter })
			sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, false)
			for i := 0; i < 2; i++ {
				_, err := c.Submit(ctxT(t, 5*time.Second), sm)
				var se *StatusError
				if !errors.Is(err, ErrThrottled) || !IsRetryable(err) || !errors.Is(err, st) || !errors.As(err, &se) || se.Command != CmdSubmitSM {
					t.Fatalf("attempt %d: %v", i, err)
				}
			}
			id, err := c.Submit(ctxT(t, 5*time.Second), sm)
			if err != nil || id == "" {
				t.Fatalf("retry: %q %v", id, err)
			}
			evs := p.waitN("submit_sm", 3, 5*time.Second)
			if evs[0].Status != int64(st) || evs[1].Status != int64(st) || evs[2].Status != 0 || evs[2].MessageID != id {
				t.Fatalf("peer side %+v", evs)
			}
			if len(p.all("bind")) != 1 {
				t.Fatal("throttling caused a re-bind")
			}
		})
	}
}

// TestPeerReconnect kills the SMSC, checks that Submit fails retryably
// while it is down, restarts it on the same port and expects Submit to
// succeed again within a bounded time.
func TestPeerReconnect(t *testing.T) {
	port := freePort(t)
	p1 := startPeer(t, port, "--receipt", "none")
	c := dialPeer(t, p1, nil)
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1, 2, 3}, false)
	if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
		t.Fatal(err)
	}
	p1.kill()
	deadline := time.Now().Add(5 * time.Second)
	for c.Bound() {
		if time.Now().After(deadline) {
			t.Fatal("client still bound 5s after the SMSC died")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, err := c.Submit(ctxT(t, 300*time.Millisecond), sm)
	if !errors.Is(err, ErrNotBound) || !IsRetryable(err) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("submit while down: %v", err)
	}

	p2 := startPeer(t, port, "--receipt", "none")
	start := time.Now()
	id, err := c.Submit(ctxT(t, 10*time.Second), sm)
	if err != nil {
		t.Fatalf("submit after restart: %v", err)
	}
	t.Logf("re-bound and submitted in %v", time.Since(start))
	if ev := p2.waitN("submit_sm", 1, 5*time.Second)[0]; ev.MessageID != id {
		t.Fatalf("id %q, peer %+v", id, ev)
	}
	if len(p2.all("bind")) != 1 {
		t.Fatalf("binds on new SMSC: %+v", p2.all("bind"))
	}
}

// TestPeerMalformed: the SMSC injects an unknown command_id, a truncated
// deliver_sm, an over-long PDU and a deliver_sm with a broken TLV. Each is
// answered (decoded by Net::SMPP) and the bind stays up.
func TestPeerMalformed(t *testing.T) {
	p := startPeer(t, freePort(t), "--malformed", "--receipt", "none")
	c := dialPeer(t, p, nil)
	nacks := p.waitN("generic_nack", 3, 5*time.Second)
	want := map[uint32]Status{0x7F000001: StatusInvCmdID, 0x7F000002: StatusInvCmdLen, 0x7F000003: StatusInvCmdLen}
	for _, n := range nacks {
		if st, ok := want[n.Seq]; !ok || Status(n.Status) != st {
			t.Errorf("generic_nack seq %#x status %#x", n.Seq, n.Status)
		}
		delete(want, n.Seq)
	}
	if len(want) != 0 {
		t.Errorf("not nacked: %v", want)
	}
	dr := p.waitN("deliver_sm_resp", 1, 5*time.Second)[0]
	if dr.Seq != 0x7F000004 || Status(dr.Status) != StatusInvOptParStream {
		t.Errorf("deliver_sm_resp %+v", dr)
	}
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, false)
	if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
		t.Fatal(err)
	}
	if !c.Bound() || len(p.all("connect")) != 1 || len(p.all("bind")) != 1 || len(p.all("disconnect")) != 0 {
		t.Fatalf("bind did not survive: %+v", p.all())
	}
}

// TestPeerKeepalive: our enquire_link is answered, and we answer the
// SMSC's.
func TestPeerKeepalive(t *testing.T) {
	p := startPeer(t, freePort(t), "--enquire-ms", "50")
	c := dialPeer(t, p, func(c *Config) { c.EnquireLink = 50 * time.Millisecond })
	p.waitN("enquire_link", 3, 5*time.Second)
	sent := p.waitN("enquire_link_sent", 3, 5*time.Second)
	resps := p.waitN("enquire_link_resp", 3, 5*time.Second)
	for i := 0; i < 3; i++ {
		if resps[i].Seq != sent[i].Seq || resps[i].Status != 0 {
			t.Fatalf("enquire_link %d answered %+v", sent[i].Seq, resps[i])
		}
	}
	if !c.Bound() || len(p.all("bind")) != 1 {
		t.Fatal("keep-alive caused a re-bind")
	}
}

// TestPeerConcurrentSubmits: more submitters than the window, all answered.
func TestPeerConcurrentSubmits(t *testing.T) {
	p := startPeer(t, freePort(t), "--receipt", "none")
	c := dialPeer(t, p, func(c *Config) { c.Window = 4 })
	const n = 40
	var wg sync.WaitGroup
	ids := make([]string, n)
	errs := make([]error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: fmt.Sprint(4915000 + i)}, []byte{byte(i)}, false)
			ids[i], errs[i] = c.Submit(ctxT(t, 10*time.Second), sm)
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	for i := range ids {
		if errs[i] != nil || seen[ids[i]] {
			t.Fatalf("submit %d: %q %v", i, ids[i], errs[i])
		}
		seen[ids[i]] = true
	}
	evs := p.waitN("submit_sm", n, 5*time.Second)
	seqs := map[uint32]bool{}
	for _, ev := range evs {
		if seqs[ev.Seq] || !seen[ev.MessageID] {
			t.Fatalf("peer event %+v", ev)
		}
		seqs[ev.Seq] = true
	}
}

// TestPeerClose: Close unbinds, closes Receipts, stops every goroutine.
func TestPeerClose(t *testing.T) {
	p := startPeer(t, freePort(t))
	c := dialPeer(t, p, nil)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	p.waitN("unbind", 1, 5*time.Second)
	if _, ok := <-c.Receipts(); ok {
		t.Fatal("Receipts not closed")
	}
	if _, err := c.Submit(context.Background(), SubmitSM{Dest: Address{Addr: "1"}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("submit after close: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
	checkNoGoroutines(t)
}

// TestPeerBindRejected: a wrong password fails Dial with ESME_RINVPASWD.
func TestPeerBindRejected(t *testing.T) {
	p := startPeer(t, freePort(t), "--password", "right")
	_, err := Dial(ctxT(t, 5*time.Second), Config{Addr: p.addr(), SystemID: "dmgrid", Password: "wrong"})
	var se *StatusError
	if !errors.Is(err, StatusInvPaswd) || !errors.As(err, &se) || se.Command != CmdBindTransmitter {
		t.Fatalf("Dial: %v", err)
	}
	checkNoGoroutines(t)
}

// checkNoGoroutines waits until no goroutine of a Client is left.
func checkNoGoroutines(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		s := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(s, "smpp.(*session)") && !strings.Contains(s, "smpp.(*Client)") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("client goroutines still running:\n%s", s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPeerResponseTimeout: an unanswered submit_sm times out with
// ErrResponseTimeout (not retryable: outcome unknown); the bind survives.
func TestPeerResponseTimeout(t *testing.T) {
	p := startPeer(t, freePort(t), "--silent", "1", "--receipt", "none")
	c := dialPeer(t, p, func(c *Config) { c.ResponseTimeout = 300 * time.Millisecond })
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, false)
	start := time.Now()
	_, err := c.Submit(ctxT(t, 5*time.Second), sm)
	if !errors.Is(err, ErrResponseTimeout) || IsRetryable(err) {
		t.Fatalf("silent SMSC: %v", err)
	}
	if d := time.Since(start); d < 300*time.Millisecond || d > 2*time.Second {
		t.Fatalf("timed out after %v", d)
	}
	if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
		t.Fatal(err)
	}
	if len(p.all("bind")) != 1 {
		t.Fatal("timeout caused a re-bind")
	}
}

// TestPeerShortLength: command_length 8 cannot be resynchronised: the
// client answers generic_nack ESME_RINVCMDLEN, drops the connection and
// re-binds.
func TestPeerShortLength(t *testing.T) {
	p := startPeer(t, freePort(t), "--short-length", "--receipt", "none")
	c := dialPeer(t, p, nil)
	nack := p.waitN("generic_nack", 1, 5*time.Second)[0]
	if nack.Seq != 0x7F000010 || Status(nack.Status) != StatusInvCmdLen {
		t.Fatalf("nack %+v", nack)
	}
	p.waitN("bind", 2, 5*time.Second)
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, false)
	if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
		t.Fatal(err)
	}
}

// TestPeerUnbind: the SMSC unbinds; the client answers unbind_resp and
// re-binds.
func TestPeerUnbind(t *testing.T) {
	p := startPeer(t, freePort(t), "--unbind-after-ms", "50", "--receipt", "none")
	c := dialPeer(t, p, nil)
	sent := p.waitN("unbind_sent", 1, 5*time.Second)[0]
	resp := p.waitN("unbind_resp", 1, 5*time.Second)[0]
	if resp.Seq != sent.Seq || resp.Status != 0 {
		t.Fatalf("unbind_resp %+v", resp)
	}
	p.waitN("bind", 2, 5*time.Second)
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, false)
	if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
		t.Fatal(err)
	}
}

// TestPeerReceiptBackpressure: with the Receipts buffer full, receipts are
// refused with ESME_RX_T_APPN (the SMSC retries later) instead of blocking
// the session.
func TestPeerReceiptBackpressure(t *testing.T) {
	p := startPeer(t, freePort(t))
	c := dialPeer(t, p, func(c *Config) { c.ReceiptBuffer = 1 })
	sm := NewBinarySubmit(Address{TON: 1, NPI: 1, Addr: "4930"}, Address{TON: 1, NPI: 1, Addr: "4915"}, []byte{1}, true)
	for i := 0; i < 3; i++ {
		if _, err := c.Submit(ctxT(t, 5*time.Second), sm); err != nil {
			t.Fatal(err)
		}
	}
	resps := p.waitN("deliver_sm_resp", 3, 5*time.Second)
	var ok, refused int
	for _, r := range resps {
		switch Status(r.Status) {
		case StatusOK:
			ok++
		case StatusXTAppn:
			refused++
		}
	}
	if ok != 1 || refused != 2 {
		t.Fatalf("deliver_sm_resp statuses: %d ok, %d ESME_RX_T_APPN", ok, refused)
	}
	if len(waitReceipts(t, c, 1)) != 1 {
		t.Fatal("buffered receipt lost")
	}
}
