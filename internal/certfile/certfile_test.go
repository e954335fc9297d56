package certfile_test

import (
	"crypto/tls"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dmgrid/dmgrid/internal/certfile"
	"github.com/dmgrid/dmgrid/internal/grpctls/grpctlstest"
)

const interval = 20 * time.Millisecond

func commonName(c *tls.Certificate) string {
	if c == nil || c.Leaf == nil {
		return ""
	}
	return c.Leaf.Subject.CommonName
}

// waitFor calls p.Certificate until it holds cn (bounded).
func waitFor(t *testing.T, p *certfile.Pair, cn string) {
	t.Helper()
	if !grpctlstest.Eventually(func() bool { return commonName(p.Certificate()) == cn }) {
		t.Fatalf("certificate %q, want %q", commonName(p.Certificate()), cn)
	}
}

// keep checks that p keeps serving cn over several intervals (several checks).
func keep(t *testing.T, p *certfile.Pair, cn string) {
	t.Helper()
	for end := time.Now().Add(6 * interval); time.Now().Before(end); time.Sleep(interval / 2) {
		if got := commonName(p.Certificate()); got != cn {
			t.Fatalf("certificate %q, want %q kept", got, cn)
		}
	}
}

func TestReload(t *testing.T) {
	ca := grpctlstest.NewCA(t, "test")
	certA, keyA := ca.Server(t, "srv-a")
	certB, keyB := ca.Server(t, "srv-b")
	certC, keyC := ca.Server(t, "srv-c")
	logs := &grpctlstest.LogBuffer{}
	sec := grpctlstest.NewSecret(t, certA, keyA)

	// At start a bad pair is an error, as before.
	if _, err := certfile.Load(sec.CertFile, keyB, certfile.Options{}); err == nil {
		t.Fatal("a certificate with another key loaded")
	}
	p, err := certfile.Load(sec.CertFile, sec.KeyFile, certfile.Options{Interval: interval, Log: slog.New(slog.NewTextHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if got := commonName(p.Certificate()); got != "srv-a" {
		t.Fatalf("start: %q", got)
	}
	// Readers race with the swaps (go test -race).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c, _ := p.GetCertificate(nil); c == nil || c.Leaf == nil {
					t.Error("no certificate")
					return
				}
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()

	sec.Update(t, certB, keyB)
	waitFor(t, p, "srv-b")
	if n := logs.Count("TLS certificate reloaded"); n != 1 {
		t.Fatalf("%d reload messages:\n%s", n, logs)
	}

	// A certificate with another certificate's key: B stays, one warning naming the files.
	sec.Update(t, certC, keyB)
	if !grpctlstest.Eventually(func() bool { p.Certificate(); return logs.Count("level=WARN") > 0 }) {
		t.Fatalf("no warning:\n%s", logs)
	}
	keep(t, p, "srv-b")
	if n := logs.Count("level=WARN"); n != 1 {
		t.Fatalf("%d warnings for one broken replacement, want 1:\n%s", n, logs)
	}
	out := logs.String()
	if !strings.Contains(out, sec.CertFile) || !strings.Contains(out, sec.KeyFile) || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("warning must name the files and hold no key:\n%s", out)
	}
	key, _ := os.ReadFile(keyB)
	if body := strings.Split(string(key), "\n")[1]; strings.Contains(out, body) {
		t.Fatal("the log holds key material")
	}

	// Files gone (the Secret's volume broken): B stays, one warning.
	if err := os.Rename(sec.KeyFile, sec.KeyFile+".gone"); err != nil {
		t.Fatal(err)
	}
	if !grpctlstest.Eventually(func() bool { p.Certificate(); return logs.Count("level=WARN") > 1 }) {
		t.Fatalf("no warning for a missing file:\n%s", logs)
	}
	keep(t, p, "srv-b")
	if n := logs.Count("level=WARN"); n != 2 {
		t.Fatalf("%d warnings, want 2:\n%s", n, logs)
	}
	if err := os.Rename(sec.KeyFile+".gone", sec.KeyFile); err != nil {
		t.Fatal(err)
	}

	// A good replacement after the broken one is taken.
	sec.Update(t, certC, keyC)
	waitFor(t, p, "srv-c")
}

// Without a change nothing is read again, however often it is asked.
func TestNoChangeNoReload(t *testing.T) {
	ca := grpctlstest.NewCA(t, "test")
	cert, key := ca.Server(t, "srv")
	loads := 0
	var mu sync.Mutex
	p, err := certfile.Load(cert, key, certfile.Options{Interval: time.Nanosecond, Load: func(c, k string) (tls.Certificate, error) {
		mu.Lock()
		loads++
		mu.Unlock()
		return tls.LoadX509KeyPair(c, k)
	}})
	if err != nil {
		t.Fatal(err)
	}
	for range 100 {
		p.Certificate()
	}
	mu.Lock()
	defer mu.Unlock()
	if loads != 1 {
		t.Fatalf("%d loads, want 1", loads)
	}
}
