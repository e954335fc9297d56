//go:build linux

package provider

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/vectors"
	"github.com/dmgrid/dmgrid/pkg/wappush"
)

// TestKannelReal sends WAP Push notifications through a real Kannel on loopback:
// bearerbox with a `smsc = fake` connection, smsbox with the sendsms HTTP interface, and
// Kannel's fakesmsc test tool as the "SMSC". fakesmsc logs every MT message it receives as
// "Got message N: <from to udh %XX.. data %XX..>" (UDH and payload URL-encoded); the test
// decodes those lines and requires exactly the UDH and payload of every segment the adapter
// sent. Everything runs from its own config, ports and temp dir; no system Kannel is used.
func TestKannelReal(t *testing.T) {
	bins := kannelBinaries(t)

	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()

	dir := t.TempDir()
	ports := freeLoopbackPorts(t, 4)
	adminPort, boxPort, smscPort, sendsmsPort := ports[0], ports[1], ports[2], ports[3]
	const adminPassword, user, password = "adm-pw", "notifier", "sendsms-pw"
	conf := filepath.Join(dir, "kannel.conf")
	writeKannelConfig(t, conf, dir, kannelPorts{admin: adminPort, box: boxPort, smsc: smscPort, sendsms: sendsmsPort},
		adminPassword, user, password)

	statusURL := fmt.Sprintf("http://127.0.0.1:%d/status.txt?password=%s", adminPort, adminPassword)
	httpc := &http.Client{Timeout: 2 * time.Second}

	bb := startKannelProc(t, "bearerbox", bins.bearerbox, dir, "-v", "1", conf)
	// The fake SMSC listener must exist before fakesmsc connects (it gives up otherwise).
	waitFor(ctx, t, "bearerbox admin status with the fake smsc", []*kannelProc{bb}, func() (bool, string) {
		body, err := httpGet(ctx, httpc, statusURL)
		if err != nil {
			return false, err.Error()
		}
		return strings.Contains(body, "fake[fake]"), body
	})
	sb := startKannelProc(t, "smsbox", bins.smsbox, dir, "-v", "1", conf)
	// -m 0: send no MO message, only print what bearerbox delivers; the message argument is
	// required by the command line but never used. -v 0 logs received lines (debug level).
	fs := startKannelProc(t, "fakesmsc", bins.fakesmsc, dir,
		"-v", "0", "-H", "127.0.0.1", "-r", fmt.Sprint(smscPort), "-m", "0", "100 200 text unused")
	procs := []*kannelProc{bb, sb, fs}

	boxOnline := regexp.MustCompile(`smsbox:.*on-line`)
	waitFor(ctx, t, "smsbox and fakesmsc connected to bearerbox", procs, func() (bool, string) {
		body, err := httpGet(ctx, httpc, statusURL)
		if err != nil {
			return false, err.Error()
		}
		return boxOnline.MatchString(body) && strings.Contains(body, "fake[fake]") && strings.Contains(body, "(online"), body
	})
	sendsmsURL := fmt.Sprintf("http://127.0.0.1:%d/cgi-bin/sendsms", sendsmsPort)
	waitFor(ctx, t, "sendsms port answering", procs, func() (bool, string) {
		// Without credentials smsbox answers 403; any HTTP answer means it is serving.
		_, err := httpGet(ctx, httpc, sendsmsURL)
		var se *httpStatusError
		return err == nil || errors.As(err, &se), fmt.Sprint(err)
	})

	const msisdn, sender = "+491701234567", "4915550001"
	k := &Kannel{URL: sendsmsURL, User: user, Password: password, From: sender, Timeout: 5 * time.Second}
	received := 0 // fakesmsc lines already checked

	for _, c := range []struct {
		vector string
		ref    byte
		segs   int
	}{
		{"pkg0/p1.pkg0.bin", 0x00, 1},
		{"pkg0/p5.pkg0.bin", 0x5a, 2},
	} {
		t.Run(filepath.Base(c.vector), func(t *testing.T) {
			pdu := wappush.DMNotificationPDU(0x01, vectors.Read(t, c.vector))
			segs, err := wappush.Segments(pdu, c.ref, wappush.DefaultDstPort, wappush.DefaultSrcPort)
			if err != nil {
				t.Fatal(err)
			}
			if len(segs) != c.segs {
				t.Fatalf("%s: %d segments, want %d", c.vector, len(segs), c.segs)
			}
			m := Message{NotificationID: c.vector, MSISDN: msisdn}
			for _, s := range segs {
				m.UDHSegments = append(m.UDHSegments, s.UD)
			}
			ids, err := k.Send(ctx, m)
			if err != nil {
				t.Fatalf("Send: %v", err)
			}
			if len(ids) != len(segs) {
				t.Fatalf("Send returned %d ids for %d segments", len(ids), len(segs))
			}

			var got []fakeSMS
			waitFor(ctx, t, fmt.Sprintf("fakesmsc receiving %d segment(s)", len(segs)), procs, func() (bool, string) {
				all, err := parseFakeSMSC(fs.out.String())
				if err != nil {
					t.Fatal(err)
				}
				if len(all) >= received+len(segs) {
					got = all[received:]
					return true, ""
				}
				return false, fmt.Sprintf("%d lines so far", len(all))
			})
			received += len(got)
			if len(got) != len(segs) {
				t.Fatalf("fakesmsc received %d messages, want %d", len(got), len(segs))
			}

			// Kannel does not promise ordering between separate sendsms requests; match each
			// sent segment to exactly one received message.
			used := make([]bool, len(got))
			for i, s := range segs {
				wantUDH, wantPayload := s.UDH, s.UD[len(s.UDH):]
				t.Logf("sent     seg %d/%d: udh=%x payload(%d)=%x", i+1, len(segs), wantUDH, len(wantPayload), wantPayload)
				found := false
				for j, g := range got {
					if !used[j] && bytes.Equal(g.UDH, wantUDH) && bytes.Equal(g.Payload, wantPayload) {
						used[j], found = true, true
						t.Logf("received seg %d/%d: from=%s to=%s udh=%x payload(%d)=%x", i+1, len(segs),
							g.From, g.To, g.UDH, len(g.Payload), g.Payload)
						if g.To != msisdn || g.From != sender {
							t.Errorf("segment %d: from %q to %q, want from %q to %q", i+1, g.From, g.To, sender, msisdn)
						}
						break
					}
				}
				if !found {
					t.Errorf("segment %d/%d (udh %x payload %x) not received intact", i+1, len(segs), wantUDH, wantPayload)
				}
			}
			if t.Failed() {
				for _, g := range got {
					t.Logf("fakesmsc got: %s", g.Line)
				}
			}
			// The segments reassemble to the WSP push PDU that was segmented.
			r := wappush.NewReassembler(wappush.Limits{}, nil)
			var whole []byte
			for _, g := range got {
				p, done, err := r.Add(g.From, append(append([]byte(nil), g.UDH...), g.Payload...))
				if err != nil {
					t.Fatalf("reassemble: %v", err)
				}
				if done {
					whole = p
				}
			}
			if !bytes.Equal(whole, pdu) {
				t.Errorf("reassembled %x, want %x", whole, pdu)
			}
		})
	}

	// Rejections from real smsbox: bad credentials (403) and no sender when smsbox has no
	// global-sender (400) are permanent, and nothing reaches the SMSC.
	t.Run("rejected", func(t *testing.T) {
		p1 := wappush.DMNotificationPDU(0x01, vectors.Read(t, "pkg0/p1.pkg0.bin"))
		segs, err := wappush.Segments(p1, 0, wappush.DefaultDstPort, wappush.DefaultSrcPort)
		if err != nil {
			t.Fatal(err)
		}
		m := Message{MSISDN: msisdn, UDHSegments: [][]byte{segs[0].UD}}
		for name, bad := range map[string]*Kannel{
			"password": {URL: sendsmsURL, User: user, Password: "wrong", From: sender, Timeout: 5 * time.Second},
			"sender":   {URL: sendsmsURL, User: user, Password: password, Timeout: 5 * time.Second},
		} {
			if _, err := bad.Send(ctx, m); !IsPermanent(err) {
				t.Errorf("%s: Send error %v, want a permanent error", name, err)
			} else {
				t.Logf("%s: %v", name, err)
			}
		}
		time.Sleep(300 * time.Millisecond)
		all, err := parseFakeSMSC(fs.out.String())
		if err != nil {
			t.Fatal(err)
		}
		if len(all) != received {
			t.Errorf("fakesmsc received %d messages, want %d", len(all), received)
		}
	})
}

type kannelBins struct{ bearerbox, smsbox, fakesmsc string }

// kannelBinaries finds bearerbox, smsbox (Debian package kannel) and fakesmsc (kannel-extras,
// installed outside PATH). Missing binaries skip the test, or fail it under CI=true.
func kannelBinaries(t *testing.T) kannelBins {
	t.Helper()
	find := func(name string, dirs ...string) string {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
		for _, d := range dirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p
			}
		}
		return ""
	}
	b := kannelBins{
		bearerbox: find("bearerbox", "/usr/sbin", "/usr/local/sbin"),
		smsbox:    find("smsbox", "/usr/sbin", "/usr/local/sbin"),
		fakesmsc:  find("fakesmsc", "/usr/lib/kannel/test", "/usr/local/lib/kannel/test"),
	}
	var missing []string
	for name, p := range map[string]string{"bearerbox": b.bearerbox, "smsbox": b.smsbox, "fakesmsc": b.fakesmsc} {
		if p == "" {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		msg := fmt.Sprintf("Kannel binaries not found: %s (apt-get install kannel kannel-extras; fakesmsc is in /usr/lib/kannel/test)",
			strings.Join(missing, ", "))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg + "; skipping outside CI")
	}
	return b
}

type kannelPorts struct{ admin, box, smsc, sendsms int }

// writeKannelConfig writes one configuration file read by both boxes: the core group and
// the fake smsc for bearerbox, the smsbox and sendsms-user groups for smsbox. Every
// listener is bound to 127.0.0.1 and every file stays in dir.
func writeKannelConfig(t *testing.T, path, dir string, p kannelPorts, adminPassword, user, password string) {
	t.Helper()
	conf := fmt.Sprintf(`group = core
admin-port = %d
admin-interface = 127.0.0.1
admin-password = %q
smsbox-port = %d
smsbox-interface = 127.0.0.1
box-allow-ip = 127.0.0.1
log-file = %q
log-level = 0

group = smsc
smsc = fake
smsc-id = fake
port = %d
our-host = 127.0.0.1
connect-allow-ip = 127.0.0.1

group = smsbox
bearerbox-host = 127.0.0.1
bearerbox-port = %d
sendsms-port = %d
sendsms-interface = 127.0.0.1
log-file = %q
log-level = 0

group = sendsms-user
username = %q
password = %q
`, p.admin, adminPassword, p.box, filepath.Join(dir, "bearerbox.log"), p.smsc,
		p.box, p.sendsms, filepath.Join(dir, "smsbox.log"), user, password)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freeLoopbackPorts returns n distinct ports that were free on 127.0.0.1 a moment ago.
func freeLoopbackPorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// syncBuffer collects a process's combined output.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type kannelProc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, valid after done
}

// startKannelProc starts a Kannel program in dir. It dies with the test process
// (Pdeathsig) and is killed at cleanup, where its output is logged if the test failed.
func startKannelProc(t *testing.T, name, bin, dir string, args ...string) *kannelProc {
	t.Helper()
	p := &kannelProc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			t.Errorf("%s (pid %d) did not exit after SIGKILL", name, p.cmd.Process.Pid)
		}
		if t.Failed() {
			t.Logf("--- %s output:\n%s", name, tail(p.out.String(), 4000))
			if name != "fakesmsc" {
				if b, err := os.ReadFile(filepath.Join(dir, name+".log")); err == nil {
					t.Logf("--- %s.log:\n%s", name, tail(string(b), 4000))
				}
			}
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}

// waitFor polls cond every 50ms until it holds, ctx ends or one of procs exits.
func waitFor(ctx context.Context, t *testing.T, what string, procs []*kannelProc, cond func() (bool, string)) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	last := ""
	for {
		ok, detail := cond()
		if ok {
			return
		}
		last = detail
		for _, p := range procs {
			select {
			case <-p.done:
				t.Fatalf("waiting for %s: %s exited: %v", what, p.name, p.err)
			default:
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting for %s: %v; last: %s", what, ctx.Err(), tail(last, 1500))
		case <-tick.C:
		}
	}
}

type httpStatusError struct{ code int }

func (e *httpStatusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

func httpGet(ctx context.Context, c *http.Client, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode != http.StatusOK {
		return string(b), &httpStatusError{resp.StatusCode}
	}
	return string(b), nil
}

// fakeSMS is one MT message as fakesmsc printed it.
type fakeSMS struct {
	Line, From, To string
	UDH, Payload   []byte
}

var fakesmscGot = regexp.MustCompile(`Got message \d+: <([^>\n]*)>`)

// parseFakeSMSC extracts the messages fakesmsc logged, in order. smsc_fake writes an MT
// message with a UDH as "from to udh <udh> data <payload>" (older Kannel versions omit the
// "data" keyword), both URL-encoded by octstr_url_encode (space as '+'), so
// url.QueryUnescape restores the bytes. Other message types are reported with no UDH.
func parseFakeSMSC(out string) ([]fakeSMS, error) {
	var msgs []fakeSMS
	for _, m := range fakesmscGot.FindAllStringSubmatch(out, -1) {
		line := m[1]
		f := strings.Fields(line)
		if len(f) < 4 {
			return nil, fmt.Errorf("fakesmsc line %q: too few fields", line)
		}
		s := fakeSMS{Line: line, From: f[0], To: f[1]}
		switch {
		case f[2] == "udh" && len(f) == 6 && f[4] == "data":
			s.UDH, s.Payload = unescape(f[3]), unescape(f[5])
		case f[2] == "udh" && len(f) == 5:
			s.UDH, s.Payload = unescape(f[3]), unescape(f[4])
		case f[2] == "data" && len(f) == 4:
			s.Payload = unescape(f[3])
		case f[2] == "text":
			s.Payload = []byte(strings.Join(f[3:], " "))
		default:
			return nil, fmt.Errorf("fakesmsc line %q: unknown format", line)
		}
		if s.UDH == nil && f[2] == "udh" || s.Payload == nil {
			return nil, fmt.Errorf("fakesmsc line %q: bad URL encoding", line)
		}
		msgs = append(msgs, s)
	}
	return msgs, nil
}

func unescape(s string) []byte {
	u, err := url.QueryUnescape(s)
	if err != nil {
		return nil
	}
	return []byte(u)
}

// TestKannelFakeSMSCFormat pins the fakesmsc line format the real-Kannel test decodes.
func TestKannelFakeSMSCFormat(t *testing.T) {
	out := "2026-01-01 00:00:00 [1] [0] DEBUG: Got message 1: <123 +491 udh %06%05%04%0B%84%23%F0 data %00%01%FF+%2B+abc%25>\n" +
		"2026-01-01 00:00:00 [1] [0] DEBUG: Got message 2: <1 2 udh %02%00%00 %41%00>\n"
	got, err := parseFakeSMSC(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].From != "123" || got[0].To != "+491" ||
		hex.EncodeToString(got[0].UDH) != "0605040b8423f0" || hex.EncodeToString(got[0].Payload) != "0001ff202b2061626325" ||
		hex.EncodeToString(got[1].UDH) != "020000" || hex.EncodeToString(got[1].Payload) != "4100" {
		t.Fatalf("parsed %+v", got)
	}
}
