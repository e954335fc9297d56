// Package certfile serves a TLS certificate and its private key from PEM files and picks up
// a renewed pair without a restart: a Kubernetes Secret mounted as a volume (cert-manager
// renews it in place) changes its files by swapping the ..data symlink, and os.Stat, which
// follows the symlinks, sees new files.
//
// A Pair is loaded and checked once at start (Load fails as before on a bad pair). Then, on
// a handshake at most once per interval (DefaultInterval), the files are stat'ed; when one
// of them changed (another file, modification time or size) the pair is read again. A
// replacement that cannot be read or does not match is logged once, with the file names,
// and the last good certificate stays in use; it is tried again when the files change
// again. Only the certificate and key are reloaded: CA bundles are not this package's.
package certfile

import (
	"crypto/tls"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultInterval bounds how often the files are checked when Options.Interval is zero.
const DefaultInterval = 30 * time.Second

// Options tune a Pair; the zero value is usable.
type Options struct {
	// Interval is the least time between two checks of the files (DefaultInterval when zero
	// or negative).
	Interval time.Duration
	// Log receives a warning when a changed pair cannot be used (slog.Default() when nil).
	Log *slog.Logger
	// Load reads and parses the pair (tls.LoadX509KeyPair when nil); its errors are returned
	// by Load at start and logged on a failed reload, so they must not hold key material.
	Load func(certFile, keyFile string) (tls.Certificate, error)
}

// Pair is a certificate and key read from files, reloaded when the files change. Its
// methods are safe for concurrent use.
type Pair struct {
	certFile, keyFile string
	interval          time.Duration
	log               *slog.Logger
	load              func(certFile, keyFile string) (tls.Certificate, error)

	cur       atomic.Pointer[tls.Certificate]
	nextCheck atomic.Int64 // UnixNano: no check before it

	mu       sync.Mutex // serialises checks; guards the fields below
	loaded   stamp      // the files the current certificate was read from
	failed   stamp      // the last files that failed to load (not retried until they change)
	statFail string     // the last stat error logged (not repeated)
}

// Load reads the pair and returns a Pair serving it, or the loader's error.
func Load(certFile, keyFile string, o Options) (*Pair, error) {
	p := &Pair{certFile: certFile, keyFile: keyFile, interval: o.Interval, log: o.Log, load: o.Load}
	if p.interval <= 0 {
		p.interval = DefaultInterval
	}
	if p.log == nil {
		p.log = slog.Default()
	}
	if p.load == nil {
		p.load = tls.LoadX509KeyPair
	}
	st, _ := p.stat() // before reading: a change in between is seen by the next check
	cert, err := p.load(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	p.cur.Store(&cert)
	p.loaded = st
	p.nextCheck.Store(time.Now().Add(p.interval).UnixNano())
	return p, nil
}

// Certificate returns the current certificate, first checking the files if the interval has
// passed since the last check.
func (p *Pair) Certificate() *tls.Certificate {
	now := time.Now().UnixNano()
	if next := p.nextCheck.Load(); now >= next && p.nextCheck.CompareAndSwap(next, now+int64(p.interval)) {
		p.check()
	}
	return p.cur.Load()
}

// GetCertificate is for tls.Config.GetCertificate (servers).
func (p *Pair) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// GetClientCertificate is for tls.Config.GetClientCertificate (clients).
func (p *Pair) GetClientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return p.Certificate(), nil
}

// check reloads the pair if its files changed since it was loaded (or last failed).
func (p *Pair) check() {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, err := p.stat()
	if err != nil {
		if msg := err.Error(); msg != p.statFail {
			p.statFail = msg
			p.log.Warn("TLS certificate files unreadable; keeping the current certificate",
				"cert_file", p.certFile, "key_file", p.keyFile, "err", err)
		}
		return
	}
	p.statFail = ""
	if st.same(p.loaded) || st.same(p.failed) {
		return
	}
	cert, err := p.load(p.certFile, p.keyFile)
	if err != nil {
		p.failed = st
		p.log.Warn("renewed TLS certificate not usable; keeping the current certificate",
			"cert_file", p.certFile, "key_file", p.keyFile, "err", err)
		return
	}
	p.cur.Store(&cert)
	p.loaded, p.failed = st, stamp{}
	attrs := []any{"cert_file", p.certFile}
	if cert.Leaf != nil {
		attrs = append(attrs, "subject", cert.Leaf.Subject.String(), "not_after", cert.Leaf.NotAfter)
	}
	p.log.Info("TLS certificate reloaded", attrs...)
}

// stamp identifies the files' current versions.
type stamp struct{ cert, key os.FileInfo }

func (p *Pair) stat() (stamp, error) {
	c, err := os.Stat(p.certFile)
	if err != nil {
		return stamp{}, err
	}
	k, err := os.Stat(p.keyFile)
	if err != nil {
		return stamp{}, err
	}
	return stamp{c, k}, nil
}

func (s stamp) same(o stamp) bool {
	return sameFile(s.cert, o.cert) && sameFile(s.key, o.key)
}

func sameFile(a, b os.FileInfo) bool {
	return a != nil && b != nil && os.SameFile(a, b) && a.ModTime().Equal(b.ModTime()) && a.Size() == b.Size()
}
