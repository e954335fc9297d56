// Package grpctlstest makes throw-away certificates for tests: a CA and certificates it
// signs, generated with crypto/x509 when the test runs (no key is ever checked in) and
// written as PEM files into the test's temporary directory.
package grpctlstest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// TB is what the helpers need from a *testing.T (or an e2e.Env).
type TB interface {
	Helper()
	TempDir() string
	Fatalf(format string, args ...any)
}

// CA is a certificate authority; CAFile is its certificate as PEM.
type CA struct {
	CAFile string
	dir    string
	cert   *x509.Certificate
	key    *ecdsa.PrivateKey
}

// NewCA creates a CA named name.
func NewCA(tb TB, name string) *CA {
	tb.Helper()
	key := newKey(tb)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(tb),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"dmgrid tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("grpctlstest: CA certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	ca := &CA{dir: tb.TempDir(), cert: cert, key: key}
	ca.CAFile = ca.write(tb, name+"-ca.crt", "CERTIFICATE", der)
	return ca
}

// Server issues a server certificate for hosts (DNS names or IP addresses; 127.0.0.1, ::1
// and localhost when none are given) and returns its certificate and key files.
func (ca *CA) Server(tb TB, name string, hosts ...string) (certFile, keyFile string) {
	tb.Helper()
	if len(hosts) == 0 {
		hosts = []string{"127.0.0.1", "::1", "localhost"}
	}
	tmpl := ca.template(tb, name, x509.ExtKeyUsageServerAuth)
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	return ca.issue(tb, name, tmpl)
}

// Client issues a client certificate with common name name and returns its files.
func (ca *CA) Client(tb TB, name string) (certFile, keyFile string) {
	tb.Helper()
	return ca.issue(tb, name, ca.template(tb, name, x509.ExtKeyUsageClientAuth))
}

func (ca *CA) template(tb TB, name string, usage x509.ExtKeyUsage) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(tb),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"dmgrid tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
}

func (ca *CA) issue(tb TB, name string, tmpl *x509.Certificate) (certFile, keyFile string) {
	tb.Helper()
	key := newKey(tb)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		tb.Fatalf("grpctlstest: certificate %s: %v", name, err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	return ca.write(tb, name+".crt", "CERTIFICATE", der), ca.write(tb, name+".key", "PRIVATE KEY", kder)
}

func (ca *CA) write(tb TB, file, typ string, der []byte) string {
	tb.Helper()
	path := filepath.Join(ca.dir, file)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatalf("grpctlstest: %v", err)
	}
	return path
}

func newKey(tb TB) *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("grpctlstest: key: %v", err)
	}
	return key
}

func serial(tb TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		tb.Fatalf("grpctlstest: serial: %v", err)
	}
	return n
}
