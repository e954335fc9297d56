package grpctlstest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Secret is a directory laid out like a Kubernetes Secret volume: tls.crt and tls.key are
// symlinks to ..data/tls.crt and ..data/tls.key, and ..data is a symlink to a directory
// holding the current version. Update writes a new version the way the kubelet does: a new
// directory, a new symlink renamed over ..data in one step, then the old directory removed.
type Secret struct {
	Dir      string
	CertFile string // Dir/tls.crt
	KeyFile  string // Dir/tls.key
	version  int
}

// NewSecret makes a Secret volume holding copies of certFile and keyFile.
func NewSecret(tb TB, certFile, keyFile string) *Secret {
	tb.Helper()
	s := &Secret{Dir: tb.TempDir()}
	s.CertFile, s.KeyFile = filepath.Join(s.Dir, "tls.crt"), filepath.Join(s.Dir, "tls.key")
	s.Update(tb, certFile, keyFile)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(s.Dir, name)); err != nil {
			tb.Fatalf("grpctlstest: %v", err)
		}
	}
	return s
}

// Update replaces the Secret's files with copies of certFile and keyFile, atomically.
func (s *Secret) Update(tb TB, certFile, keyFile string) {
	tb.Helper()
	s.version++
	version := fmt.Sprintf("..v%d", s.version)
	if err := os.Mkdir(filepath.Join(s.Dir, version), 0o700); err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	for name, from := range map[string]string{"tls.crt": certFile, "tls.key": keyFile} {
		b, err := os.ReadFile(from)
		if err != nil {
			tb.Fatalf("grpctlstest: %v", err)
		}
		if err := os.WriteFile(filepath.Join(s.Dir, version, name), b, 0o600); err != nil {
			tb.Fatalf("grpctlstest: %v", err)
		}
	}
	tmp := filepath.Join(s.Dir, "..data_tmp")
	if err := os.Symlink(version, tmp); err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	if err := os.Rename(tmp, filepath.Join(s.Dir, "..data")); err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	if s.version > 1 { // the kubelet removes the old version
		if err := os.RemoveAll(filepath.Join(s.Dir, fmt.Sprintf("..v%d", s.version-1))); err != nil {
			tb.Fatalf("grpctlstest: %v", err)
		}
	}
}

// LogBuffer collects log output; safe for concurrent use.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Count returns how many times s occurs in the log.
func (l *LogBuffer) Count(s string) int { return strings.Count(l.String(), s) }

// Eventually calls cond every 10 ms until it returns true or 5 s have passed, and reports
// whether it did.
func Eventually(cond func() bool) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
