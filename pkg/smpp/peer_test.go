package smpp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The tests in client_test.go run the Go client against testdata/smsc.pl,
// an SMSC built on Net::SMPP (Debian libnet-smpp-perl): every PDU the
// client sends is decoded by that independent implementation, and the
// assertions are on what it decoded.

var (
	perlOnce sync.Once
	perlErr  error
)

// requirePeer skips (or, with CI=true, fails) when Net::SMPP is missing.
func requirePeer(t *testing.T) {
	t.Helper()
	perlOnce.Do(func() {
		out, err := exec.Command("perl", "-MNet::SMPP", "-MJSON::PP", "-e1").CombinedOutput()
		if err != nil {
			perlErr = fmt.Errorf("%v: %s", err, bytes.TrimSpace(out))
		}
	})
	if perlErr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("Net::SMPP not installed (apt-get install libnet-smpp-perl): %v", perlErr)
		}
		t.Skip("Net::SMPP not installed (apt-get install libnet-smpp-perl); skipping outside CI")
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// peerEvent is one JSON line from smsc.pl. Numbers are what Net::SMPP
// decoded; ShortMessage is hex.
type peerEvent struct {
	Event            string            `json:"event"`
	Seq              uint32            `json:"seq"`
	Status           int64             `json:"status"`
	CommandID        uint32            `json:"command_id"`
	CommandLength    int               `json:"command_length"`
	SystemID         string            `json:"system_id"`
	Password         string            `json:"password"`
	SystemType       string            `json:"system_type"`
	InterfaceVersion int               `json:"interface_version"`
	ServiceType      string            `json:"service_type"`
	SourceAddr       string            `json:"source_addr"`
	SourceAddrTON    int               `json:"source_addr_ton"`
	SourceAddrNPI    int               `json:"source_addr_npi"`
	DestinationAddr  string            `json:"destination_addr"`
	DestAddrTON      int               `json:"dest_addr_ton"`
	DestAddrNPI      int               `json:"dest_addr_npi"`
	ESMClass         int               `json:"esm_class"`
	ProtocolID       int               `json:"protocol_id"`
	PriorityFlag     int               `json:"priority_flag"`
	ScheduleTime     string            `json:"schedule_delivery_time"`
	ValidityPeriod   string            `json:"validity_period"`
	RegDelivery      int               `json:"registered_delivery"`
	ReplaceIfPresent int               `json:"replace_if_present_flag"`
	DataCoding       int               `json:"data_coding"`
	SMDefaultMsgID   int               `json:"sm_default_msg_id"`
	ShortMessage     string            `json:"short_message"`
	SMLength         int               `json:"sm_length"`
	TLVs             map[string]string `json:"tlvs"`
	MessageID        string            `json:"message_id"`
	Reason           string            `json:"reason"`
	raw              string
}

// peer is a running smsc.pl.
type peer struct {
	t      *testing.T
	port   int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	exited chan struct{}

	mu      sync.Mutex
	events  []peerEvent
	changed chan struct{} // closed and replaced on every event
	stderr  bytes.Buffer
}

// startPeer runs smsc.pl on port (0: any) and waits for "READY <port>".
func startPeer(t *testing.T, port int, args ...string) *peer {
	t.Helper()
	requirePeer(t)
	p := &peer{t: t, exited: make(chan struct{}), changed: make(chan struct{})}
	p.cmd = exec.Command("perl", append([]string{"testdata/smsc.pl", strconv.Itoa(port)}, args...)...)
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan int, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if rest, ok := strings.CutPrefix(line, "READY "); ok {
				n, _ := strconv.Atoi(rest)
				ready <- n
				continue
			}
			var ev peerEvent
			if err := json.Unmarshal([]byte(line), &ev); err != nil {
				ev = peerEvent{Event: "bad_json"}
			}
			ev.raw = line
			p.mu.Lock()
			p.events = append(p.events, ev)
			close(p.changed)
			p.changed = make(chan struct{})
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() || testing.Verbose() {
			p.mu.Lock()
			stderr := p.stderr.String()
			p.mu.Unlock()
			t.Logf("smsc.pl :%d stderr:\n%s\nevents:\n%s", p.port, stderr, p.dump())
		}
	})
	select {
	case p.port = <-ready:
	case <-p.exited:
		t.Fatalf("smsc.pl exited before READY: %s", p.stderr.String())
	case <-time.After(10 * time.Second):
		t.Fatal("smsc.pl not READY within 10s")
	}
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

func (p *peer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p.port)) }

// stop closes stdin (smsc.pl exits on EOF) and kills it if it lingers.
func (p *peer) stop() {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(3 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *peer) kill() {
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		p.t.Fatal("smsc.pl did not die")
	}
}

// all returns the events whose name is one of names (all if none given).
func (p *peer) all(names ...string) []peerEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []peerEvent
	for _, ev := range p.events {
		if len(names) == 0 || contains(names, ev.Event) {
			out = append(out, ev)
		}
	}
	return out
}

// dump returns the raw event lines.
func (p *peer) dump() string {
	var b strings.Builder
	for _, ev := range p.all() {
		b.WriteString(ev.raw)
		b.WriteByte('\n')
	}
	return b.String()
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// waitN waits until at least n events named name arrived and returns them.
func (p *peer) waitN(name string, n int, timeout time.Duration) []peerEvent {
	p.t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		ch := p.changed
		p.mu.Unlock()
		if evs := p.all(name); len(evs) >= n {
			return evs
		}
		select {
		case <-ch:
		case <-p.exited:
			if evs := p.all(name); len(evs) >= n {
				return evs
			}
			p.t.Fatalf("smsc.pl exited while waiting for %d %q events", n, name)
		case <-deadline.C:
			p.t.Fatalf("timeout waiting for %d %q events; have:\n%s", n, name, p.dump())
		}
	}
}
